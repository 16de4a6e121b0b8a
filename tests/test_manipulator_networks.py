"""Networks and checkpoints of the learned NED manipulator (ned.manipulate.networks / checkpoint)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ned.errors import ModelFileError
from ned.manipulate.checkpoint import (checkpoint_path, filter_state_dict, find_checkpoint, infer_input_dim,
                                       list_checkpoints, load_manipulator, load_state_strict, read_checkpoint,
                                       save_checkpoint)
from ned.manipulate.networks import (EMOTIONS, Discriminator, Generator, ManipulatorArch, MappingNetwork,
                                     StyleEncoder, build_networks, create_arch, list_archs)

torch.set_num_threads(1)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "ned_official_state_dicts.txt"
SECTIONS = ("generator", "mapping_network", "style_encoder", "discriminator")


def parse_reference(path: Path) -> tuple[dict[str, dict[str, tuple[int, ...]]], dict[str, int]]:
    """Tensor shapes and parameter counts per network, from the reference listing."""
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    counts: dict[str, int] = {}
    current = None
    for line in path.read_text().splitlines():
        if line.startswith("====="):  # the renderer appendix follows
            break
        header = re.match(r"^## (\w+)", line)
        if header:
            current = header.group(1) if header.group(1) in SECTIONS else None
            if current:
                shapes[current] = {}
            continue
        if current is None:
            continue
        count = re.match(r"^# \d+ entries, ([\d,]+) unique trainable parameters", line)
        if count:
            counts[current] = int(count.group(1).replace(",", ""))
        tensor = re.match(r"^(\S+)\s+\[([\d, ]*)\]\s*$", line)
        if tensor:
            dims = tuple(int(d) for d in tensor.group(2).split(",") if d.strip())
            shapes[current][tensor.group(1)] = dims
    return shapes, counts


needs_reference = pytest.mark.skipif(not REFERENCE.is_file(), reason="reference listing not available")


@pytest.fixture(scope="module")
def reference():
    return parse_reference(REFERENCE)


@pytest.fixture(scope="module")
def reference_state(reference):
    """A state dict of every network built from the reference shapes (seeded random values)."""
    gen = torch.Generator().manual_seed(0)
    shapes, _ = reference
    return {net: {name: torch.randn(shape, generator=gen) * 0.05 for name, shape in tensors.items()}
            for net, tensors in shapes.items()}


@pytest.fixture(scope="module")
def original_dir(tmp_path_factory, reference_state):
    folder = tmp_path_factory.mktemp("original")
    torch.save(reference_state, folder / "02_nets_finetuned.pth")
    return folder


def small_arch(**kw) -> ManipulatorArch:
    return create_arch("ned_small", **{"input_dim": 6, "generator_hidden": 16, "encoder_hidden": 8,
                                       "mapping_hidden": 8, **kw})


# --- reference layout ------------------------------------------------------------------

@needs_reference
class TestReferenceLayout:
    def test_parsed(self, reference):
        shapes, counts = reference
        assert set(shapes) == set(SECTIONS)
        assert len(shapes["generator"]) == 26 and len(shapes["mapping_network"]) == 34
        assert shapes["generator"]["seq1.0.weight"] == (512, 67)
        assert set(counts) == set(SECTIONS)

    def test_same_names_and_shapes(self, reference):
        shapes, _ = reference
        nets = build_networks(ManipulatorArch())
        for key, module in nets.modules().items():
            ours = {k: tuple(v.shape) for k, v in module.state_dict().items()}
            assert ours == shapes[key], key

    def test_parameter_counts(self, reference):
        _, counts = reference
        nets = build_networks(create_arch("ned_original"))
        for key, module in nets.modules().items():
            assert sum(p.numel() for p in module.parameters()) == counts[key], key

    def test_state_dict_loads_strictly(self, reference_state):
        nets = build_networks(ManipulatorArch(input_dim=51))
        for key, module in nets.modules().items():
            result = module.load_state_dict(reference_state[key], strict=True)
            assert not result.missing_keys and not result.unexpected_keys

    def test_checkpoint_file_loads(self, original_dir, reference_state):
        nets, info = load_manipulator(original_dir, backend="deca")
        assert info.epoch == 2 and info.backend == "deca" and info.version is None
        assert info.path.name == "02_nets_finetuned.pth"
        assert nets.discriminator is None
        for key in ("generator", "mapping_network", "style_encoder"):
            for name, value in getattr(nets, key).state_dict().items():
                torch.testing.assert_close(value, reference_state[key][name], rtol=0, atol=0)
        x = torch.zeros(2, 10, 51)
        assert nets.generator(x, torch.zeros(2, 16)).shape == (2, 10, 51)
        assert torch.equal(nets.mean, torch.zeros(51)) and torch.equal(nets.std, torch.ones(51))

    def test_with_discriminator(self, original_dir):
        nets, _ = load_manipulator(original_dir, backend="deca", with_discriminator=True)
        assert isinstance(nets.discriminator, Discriminator)

    def test_wrong_shape_names_tensor(self, tmp_path, reference_state):
        state = {k: dict(v) for k, v in reference_state.items()}
        state["generator"]["LSTM.weight_hh_l1"] = torch.zeros(2048, 100)
        torch.save(state, tmp_path / "02_nets.pth")
        with pytest.raises(ModelFileError, match=r"generator\.LSTM\.weight_hh_l1 has shape \[2048, 100\], "
                                                 r"expected \[2048, 512\]"):
            load_manipulator(tmp_path, backend="deca")

    def test_wrong_output_size_outvoted(self, tmp_path, reference_state):
        state = {k: dict(v) for k, v in reference_state.items()}
        state["generator"]["seq2.4.bias"] = torch.zeros(52)
        torch.save(state, tmp_path / "02_nets.pth")
        with pytest.raises(ModelFileError, match=r"generator\.seq2\.4\.bias has shape \[52\], expected \[51\]"):
            load_manipulator(tmp_path, backend="deca")

    def test_missing_tensor(self, tmp_path, reference_state):
        state = {k: dict(v) for k, v in reference_state.items()}
        del state["style_encoder"]["seq2.2.bias"]
        torch.save(state, tmp_path / "01_nets.pth")
        with pytest.raises(ModelFileError, match=r"style_encoder\.seq2\.2\.bias is missing"):
            load_manipulator(tmp_path, backend="deca")

    def test_unexpected_tensor(self, tmp_path, reference_state):
        state = {k: dict(v) for k, v in reference_state.items()}
        state["mapping_network"]["unshared.7.0.weight"] = torch.zeros(64, 64)
        torch.save(state, tmp_path / "01_nets.pth")
        with pytest.raises(ModelFileError, match=r"mapping_network"):
            load_manipulator(tmp_path, backend="deca")

    def test_dataparallel_prefix(self, tmp_path, reference_state):
        state = {k: {f"module.{n}": t for n, t in v.items()} for k, v in reference_state.items()}
        torch.save(state, tmp_path / "03_nets.pth")
        nets, info = load_manipulator(tmp_path, backend="deca")
        assert info.epoch == 3

    def test_backend_mismatch(self, original_dir):
        with pytest.raises(ModelFileError, match=r"needs the 'deca' backend.*--backend deca"):
            load_manipulator(original_dir, backend="face3d")
        with pytest.raises(ModelFileError, match=r"--backend deca"):
            load_manipulator(original_dir, backend="face3d", input_dim=20)

    def test_infer_input_dim(self, reference_state):
        assert infer_input_dim(reference_state) == 51


# --- our own checkpoints -----------------------------------------------------------------

def test_face3d_checkpoint_refused_by_deca(tmp_path):
    nets = build_networks(small_arch(input_dim=12))
    payload = {k: m.state_dict() for k, m in nets.modules().items()}
    payload.update(backend="face3d", arch=nets.arch.to_dict(), version=1, epoch=1, step=3)
    save_checkpoint(checkpoint_path(tmp_path, 1), payload)
    with pytest.raises(ModelFileError, match=r"needs the 'face3d' backend.*--backend face3d"):
        load_manipulator(tmp_path, backend="deca")
    with pytest.raises(ModelFileError, match=r"face3d"):
        load_manipulator(tmp_path, backend="face3d", input_dim=13)
    loaded, info = load_manipulator(tmp_path, backend="face3d", input_dim=12)
    assert info.arch == nets.arch and info.step == 3 and info.version == 1
    for key, module in nets.modules().items():
        if key != "discriminator":
            for name, value in module.state_dict().items():
                assert torch.equal(getattr(loaded, key).state_dict()[name], value)


class TestNotACheckpoint:
    def test_random_bytes(self, tmp_path):
        (tmp_path / "01_nets.pth").write_bytes(b"this is not a checkpoint" * 10)
        with pytest.raises(ModelFileError, match="not a NED manipulator checkpoint"):
            load_manipulator(tmp_path, backend="deca")

    def test_wrong_content(self, tmp_path):
        torch.save([1, 2, 3], tmp_path / "01_nets.pth")
        with pytest.raises(ModelFileError, match="holds a list"):
            read_checkpoint(tmp_path / "01_nets.pth")
        torch.save({"model": {}}, tmp_path / "02_nets.pth")
        with pytest.raises(ModelFileError, match=r"missing \['generator'"):
            read_checkpoint(tmp_path / "02_nets.pth")

    def test_unsafe_pickle_refused(self, tmp_path):
        torch.save({"generator": {}, "mapping_network": {}, "style_encoder": {}, "x": Path("/")},
                   tmp_path / "01_nets.pth")
        with pytest.raises(ModelFileError, match="not a NED manipulator checkpoint"):
            read_checkpoint(tmp_path / "01_nets.pth")

    def test_missing(self, tmp_path):
        with pytest.raises(ModelFileError, match="no manipulator checkpoints"):
            load_manipulator(tmp_path, backend="deca")
        with pytest.raises(ModelFileError, match="no such checkpoint folder"):
            load_manipulator(tmp_path / "nope", backend="deca")


class TestFindCheckpoint:
    def test_latest_and_finetuned(self, tmp_path):
        for name in ("01_nets.pth", "02_nets.pth", "02_nets_finetuned.pth", "10_nets.pth", "notes.txt"):
            (tmp_path / name).write_bytes(b"x")
        assert find_checkpoint(tmp_path) == (tmp_path / "10_nets.pth", 10)
        assert find_checkpoint(tmp_path, 2) == (tmp_path / "02_nets_finetuned.pth", 2)
        assert find_checkpoint(tmp_path, 1) == (tmp_path / "01_nets.pth", 1)
        assert [e for e, _, _ in list_checkpoints(tmp_path)] == [1, 2, 2, 10]
        with pytest.raises(ModelFileError, match=r"available epochs: \[1, 2, 10\]"):
            find_checkpoint(tmp_path, 5)

    def test_file(self, tmp_path):
        (tmp_path / "my.pth").write_bytes(b"x")
        assert find_checkpoint(tmp_path / "my.pth") == (tmp_path / "my.pth", -1)

    def test_naming(self, tmp_path):
        assert checkpoint_path(tmp_path, 2).name == "02_nets.pth"
        assert checkpoint_path(tmp_path, 2, finetuned=True).name == "02_nets_finetuned.pth"


def test_save_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "01_nets.pth"
    save_checkpoint(target, {"a": torch.ones(2)})

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError):
        save_checkpoint(target, {"a": torch.zeros(2)})
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["01_nets.pth"]


def test_load_state_strict_direct():
    module = StyleEncoder(6, 4, 8)
    state = module.state_dict()
    load_state_strict(module, filter_state_dict(state), key="style_encoder", path="x.pth")
    bad = dict(state, **{"seq1.0.weight": torch.zeros(32, 7)})
    with pytest.raises(ModelFileError, match=r"x\.pth: tensor style_encoder\.seq1\.0\.weight has shape \[32, 7\]"):
        load_state_strict(module, bad, key="style_encoder", path="x.pth")


# --- the networks ------------------------------------------------------------------------

class TestNetworks:
    def test_shapes(self):
        arch = small_arch()
        nets = build_networks(arch)
        x = torch.randn(3, 10, 6)
        y = torch.tensor([0, 4, 6])
        s = nets.mapping_network(torch.randn(3, 4), y)
        assert s.shape == (3, 16)
        assert nets.generator(x, s).shape == (3, 10, 6)
        assert nets.style_encoder(x).shape == (3, 16)
        assert nets.discriminator(x, y).shape == (3,)
        assert nets.generator(torch.randn(1, 3, 6), s[:1]).shape == (1, 3, 6)  # any length

    def test_mapping_picks_head(self):
        net = MappingNetwork(4, 8, 5, 7)
        z = torch.randn(2, 4)
        out = net(z, torch.tensor([3, 5]))
        h = net.shared(z)
        torch.testing.assert_close(out[0], net.unshared[3](h[0]))
        torch.testing.assert_close(out[1], net.unshared[5](h[1]))

    def test_discriminator_picks_logit(self):
        net = Discriminator(6, 7, 8)
        x = torch.randn(2, 5, 6)
        full = net.per_frame(x).mean(1)
        torch.testing.assert_close(net(x, torch.tensor([1, 2])), full[[0, 1], [1, 2]])

    def test_style_encoder_is_time_mean(self):
        net = StyleEncoder(6, 4, 8)
        x = torch.randn(2, 5, 6)
        torch.testing.assert_close(net(x), net.per_frame(x).mean(1))

    def test_exceptions(self):
        gen = Generator(6, 4, 8)
        with pytest.raises(ValueError, match=r"expected shape \(B, T, 6\)"):
            gen(torch.zeros(1, 10, 5), torch.zeros(1, 4))
        with pytest.raises(ValueError, match="s: expected shape"):
            gen(torch.zeros(1, 10, 6), torch.zeros(2, 4))
        with pytest.raises(ValueError, match="emotion indices"):
            MappingNetwork(4, 8, 4, 7)(torch.zeros(1, 4), torch.tensor([7]))
        with pytest.raises(ValueError, match="integer tensor"):
            Discriminator(6, 7, 8)(torch.zeros(1, 10, 6), torch.tensor([0.0]))

    def test_gradcheck(self):
        net = StyleEncoder(3, 2, 4).double()
        x = torch.randn(1, 4, 3, dtype=torch.double, requires_grad=True)
        assert torch.autograd.gradcheck(net, (x,))

    def test_arch_validation_and_registry(self):
        assert set(list_archs()) >= {"ned_original", "ned_small"}
        assert create_arch("ned_original") == ManipulatorArch()
        assert ManipulatorArch.from_dict(small_arch().to_dict()) == small_arch()
        with pytest.raises(ValueError, match="unknown manipulator architecture"):
            create_arch("big")
        with pytest.raises(ValueError, match="input_dim"):
            ManipulatorArch(input_dim=0)
        with pytest.raises(ValueError, match="window"):
            ManipulatorArch(window=1)
        with pytest.raises(ValueError, match="unknown ManipulatorArch fields"):
            ManipulatorArch.from_dict({"bogus": 1})

    def test_emotion_order(self):
        assert EMOTIONS == ("neutral", "angry", "disgusted", "fear", "happy", "sad", "surprised")

    def test_normalisation_round_trip(self):
        nets = build_networks(small_arch())
        nets.mean, nets.std = torch.arange(6.0), torch.full((6,), 2.0)
        x = torch.randn(4, 6)
        torch.testing.assert_close(nets.denormalize(nets.normalize(x)), x)
        np.testing.assert_allclose(nets.normalize(torch.arange(6.0)).numpy(), np.zeros(6))
