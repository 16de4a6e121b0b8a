"""Training, data and inference of the learned NED manipulator (ned.manipulate.train / dataset / learned)."""

from __future__ import annotations

import argparse
import csv
import functools
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ned.errors import InputError, ModelFileError
from ned.manipulate.backends import backend_fingerprint, backend_input_dim, get_extractor
from ned.manipulate.checkpoint import load_manipulator, read_checkpoint
from ned.manipulate.dataset import (ClipData, ClipRecord, DataOptions, WindowDataset, cache_path, discover_clips,
                                    extract_expressions, load_clips, make_synthetic_clips, parse_mead_path,
                                    read_labels_csv, split_by_actor)
from ned.manipulate.learned import (LearnedManipulator, LearnedOptions, blend_windows, gaussian_window_weights,
                                    geometric_median, resolve_device, style_from_label, style_from_reference,
                                    translate_sequence, window_starts)
from ned.manipulate.networks import build_networks, create_arch
from ned.manipulate.train import (LossWeights, Trainer, TrainOptions, adversarial_loss, discriminator_loss,
                                  diversity_weight_at, ema_beta_at, generator_loss, init_distributed,
                                  learning_rate_at, moving_average, mouth_correlation, pearson_correlation,
                                  r1_penalty, train_manipulator)

torch.set_num_threads(1)

TINY = {"generator_hidden": 16, "encoder_hidden": 8, "mapping_hidden": 8}
D = backend_input_dim("face3d") or 6  # the face model's K (checkpoints are checked against it)


def tiny_nets(input_dim: int = D, **kw):
    return build_networks(create_arch("ned_small", input_dim=input_dim, **{**TINY, **kw}))


def tiny_options(tmp_path: Path, **kw) -> TrainOptions:
    base = dict(checkpoints_dir=tmp_path, arch="ned_small", batch_size=4, epochs=2, backend="face3d",
                mouth_indices=(0,), device="cpu", seed=3)
    return TrainOptions(**{**base, **kw})


@pytest.fixture(scope="module")
def clips():
    return make_synthetic_clips(num_actors=2, frames=24, input_dim=D, seed=1)


@pytest.fixture(scope="module")
def train_set(clips):
    return WindowDataset([c for c in clips if c.actor == "A0"], window=10, hop=2)


@pytest.fixture(scope="module")
def val_set(clips):
    return WindowDataset([c for c in clips if c.actor == "A1"], window=10, hop=5)


def tiny_trainer(tmp_path, train_set, val_set=None, **kw) -> Trainer:
    trainer = Trainer(tiny_options(tmp_path, **kw), train_set, val_set)
    return trainer


@pytest.fixture(autouse=True)
def small_arch(monkeypatch):
    """Make ``ned_small`` tiny so that training steps take milliseconds."""
    from ned.manipulate import networks

    original = networks._ARCHS["ned_small"]
    monkeypatch.setitem(networks._ARCHS, "ned_small", lambda **kw: original(**{**TINY, **kw}))


def params_of(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


# --- losses --------------------------------------------------------------------------------

class TestLosses:
    def test_adversarial(self):
        assert adversarial_loss(torch.tensor([1.0, 3.0]), 1.0).item() == pytest.approx(2.0)
        assert adversarial_loss(torch.tensor([0.5]), 0.0).item() == pytest.approx(0.25)

    def test_pearson(self):
        a = torch.tensor([[0.0, 1.0, 3.0, 2.0]])
        assert pearson_correlation(a, 2 * a + 1).item() == pytest.approx(1.0, abs=1e-4)
        assert pearson_correlation(a, -a).item() == pytest.approx(-1.0, abs=1e-4)
        assert pearson_correlation(a, torch.tensor([[1.0, 0.0, 0.0, 1.0]])).abs().item() < 0.5

    def test_mouth_uses_indices(self):
        x = torch.randn(2, 10, 3)
        y = x.clone()
        y[..., 1] = torch.randn(2, 10)
        assert mouth_correlation(x, y, (0,)).item() == pytest.approx(1.0, abs=1e-4)
        assert mouth_correlation(x, y, (0, 2)).item() == pytest.approx(1.0, abs=1e-4)
        assert mouth_correlation(x, y, (1,)).item() < 0.99

    def test_r1_linear(self):
        w = torch.tensor([1.0, 2.0])
        x = torch.randn(3, 4, 2, requires_grad=True)
        out = (x * w).sum(dim=(1, 2))  # d out / dx = w per frame: |grad|^2 = 4 * 5
        assert r1_penalty(out, x).item() == pytest.approx(0.5 * 20)

    def test_discriminator_loss(self):
        nets = tiny_nets()
        x, y = torch.randn(4, 10, D), torch.tensor([0, 1, 2, 3])
        total, parts = discriminator_loss(nets.discriminator, x, y, x + 1, y, r1_weight=0.5)
        assert set(parts) == {"real", "fake", "r1"} and parts["r1"] > 0
        assert total.item() == pytest.approx(parts["real"] + parts["fake"] + 0.5 * parts["r1"], rel=1e-5)

    def test_generator_loss(self):
        nets = tiny_nets()
        x, y = torch.randn(4, 10, D), torch.tensor([0, 1, 2, 3])
        s1, s2 = nets.mapping_network(torch.randn(4, 4), y), nets.mapping_network(torch.randn(4, 4), y)
        w = LossWeights(adv=1, sty=2, cyc=3, mouth=0.5)
        total, p = generator_loss(nets.generator, nets.discriminator, nets.style_encoder, x, y, s1, weights=w,
                                  mouth_indices=(0,), s_trg2=s2, ds_weight=0.25)
        assert set(p) == {"adv", "sty", "cyc", "mouth", "ds"} and p["ds"] > 0
        expected = p["adv"] + 2 * p["sty"] + 3 * p["cyc"] - 0.5 * p["mouth"] - 0.25 * p["ds"]
        assert total.item() == pytest.approx(expected, rel=1e-5)
        total.backward()
        assert all(q.grad is not None for q in nets.generator.parameters())

    def test_weights_validated(self):
        with pytest.raises(ValueError, match="LossWeights.r1"):
            LossWeights(r1=-1)


class TestSchedules:
    def test_lr(self):
        assert learning_rate_at(0, 1.0, 100, 0) == 1.0
        assert learning_rate_at(49, 1.0, 100, 50) == 1.0
        assert learning_rate_at(75, 1.0, 100, 50) == pytest.approx(0.5)
        assert learning_rate_at(100, 1.0, 100, 50) == 0.0

    def test_diversity(self):
        assert diversity_weight_at(5, 2.0, 0) == 2.0
        assert diversity_weight_at(5, 2.0, 10) == pytest.approx(1.0)
        assert diversity_weight_at(50, 2.0, 10) == 0.0

    def test_ema(self):
        assert ema_beta_at(0, 0.999) == pytest.approx(0.1)
        assert ema_beta_at(10**6, 0.999) == 0.999
        a, b = nn.Linear(2, 2), nn.Linear(2, 2)
        expected = 0.25 * params_of(b) + 0.75 * params_of(a)
        moving_average(a, b, 0.25)
        torch.testing.assert_close(params_of(b), expected)

    def test_options_validated(self, tmp_path):
        for bad in ({"batch_size": 0}, {"betas": (0.0, 1.0)}, {"backend": "flame"}, {"arch": "huge"},
                    {"device": "tpu"}, {"lr": 0.0}, {"mouth_indices": ()}, {"lr_decay_epochs": 5}):
            with pytest.raises(ValueError):
                tiny_options(tmp_path, **bad)


# --- inference -------------------------------------------------------------------------------

class IdentityGenerator(nn.Module):
    def forward(self, x, s):
        return x


class TestBlending:
    def test_gaussian_weights(self):
        w = gaussian_window_weights(10)
        assert w.shape == (10,) and w.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(w, w[::-1])
        assert w.argmax() in (4, 5)
        with pytest.raises(ValueError):
            gaussian_window_weights(0)

    @pytest.mark.parametrize("length,hop", [(37, 1), (37, 3), (10, 1), (4, 2), (25, 10)])
    def test_window_starts_cover(self, length, hop):
        starts = window_starts(length, 10, hop)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + min(10, length)] = True
        assert covered.all() and starts[0] == 0 and starts[-1] + min(10, length) == length

    def test_weights_sum_to_one(self):
        """Blending ones gives ones: the weights covering every frame sum to 1."""
        starts = window_starts(23, 10, 2)
        out = blend_windows(np.ones((len(starts), 10, 1), np.float32), starts, 23, gaussian_window_weights(10))
        np.testing.assert_allclose(out, 1.0, atol=1e-7)

    def test_hand_case(self):
        outputs = np.array([[[1.0], [2.0]], [[10.0], [20.0]]], np.float32)
        out = blend_windows(outputs, np.array([0, 1]), 3, np.array([1.0, 3.0]))
        np.testing.assert_allclose(out[:, 0], [1.0, (3 * 2 + 1 * 10) / 4, 20.0], rtol=1e-6)

    def test_uncovered(self):
        with pytest.raises(ValueError, match="covered by no window"):
            blend_windows(np.ones((1, 2, 1), np.float32), np.array([0]), 4, np.ones(2))

    @pytest.mark.parametrize("length,hop", [(57, 1), (57, 4), (7, 1)])
    def test_identity_generator_reproduces_input(self, length, hop):
        nets = tiny_nets()
        nets.generator = IdentityGenerator()
        nets.mean, nets.std = torch.linspace(-1, 1, D), torch.linspace(0.5, 2, D)
        x = np.random.default_rng(0).normal(size=(length, D)).astype(np.float32)
        out = translate_sequence(nets, x, "happy", hop=hop)
        np.testing.assert_allclose(out, x, atol=1e-5)

    def test_missing_rows_stay_missing(self):
        nets = tiny_nets()
        nets.generator = IdentityGenerator()
        x = np.random.default_rng(0).normal(size=(30, D)).astype(np.float32)
        x[5] = np.nan
        out = translate_sequence(nets, x, "sad")
        assert np.isnan(out[5]).all() and np.isfinite(np.delete(out, 5, axis=0)).all()


class TestGeometricMedian:
    def test_hand_cases(self):
        np.testing.assert_allclose(geometric_median(np.array([[0.0], [1.0], [10.0]])), [1.0], atol=1e-5)
        square = np.array([[0, 0], [0, 2], [2, 0], [2, 2]], float)
        np.testing.assert_allclose(geometric_median(square), [1, 1], atol=1e-6)
        np.testing.assert_allclose(geometric_median(np.ones((3, 4))), np.ones(4))

    def test_on_a_data_point(self):
        # the median of a triangle with an angle >= 120 degrees is that vertex
        pts = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.1], [0.0, 0.0]])
        np.testing.assert_allclose(geometric_median(pts), [0.0, 0.0], atol=1e-5)

    def test_minimises_sum_of_distances(self):
        pts = np.random.default_rng(2).normal(size=(30, 5))
        pts[:3] += 50  # outliers barely move it
        med = geometric_median(pts)
        cost = lambda y: np.linalg.norm(pts - y, axis=1).sum()  # noqa: E731
        for delta in np.eye(5) * 1e-3:
            assert cost(med) <= cost(med + delta) + 1e-9 and cost(med) <= cost(med - delta) + 1e-9
        assert np.linalg.norm(med) < 1.0

    def test_exceptions(self):
        with pytest.raises(ValueError):
            geometric_median(np.zeros((0, 3)))
        with pytest.raises(ValueError):
            geometric_median(np.array([[np.nan]]))


class TestTranslate:
    def test_shapes_and_determinism(self, clips):
        nets = tiny_nets().eval()
        x = clips[0].expressions
        a = translate_sequence(nets, x, "angry", seed=5)
        assert a.shape == x.shape and a.dtype == np.float32
        np.testing.assert_array_equal(a, translate_sequence(nets, x, "angry", seed=5))
        assert not np.array_equal(a, translate_sequence(nets, x, "angry", seed=6))
        assert not np.array_equal(a, translate_sequence(nets, x, "happy", seed=5))
        np.testing.assert_array_equal(style_from_label(nets, "fear", 1), style_from_label(nets, 3, 1))

    def test_reference_mode(self, clips):
        nets = tiny_nets().eval()
        ref = clips[5].expressions
        style = style_from_reference(nets, ref, hop=1)
        starts = window_starts(len(ref), 10, 1)
        with torch.no_grad():
            codes = nets.style_encoder(torch.from_numpy(np.stack([ref[s:s + 10] for s in starts])))
        np.testing.assert_allclose(style, geometric_median(codes.numpy()), atol=1e-6)
        out = translate_sequence(nets, clips[0].expressions, style)
        with torch.no_grad():
            expected = nets.generator(torch.from_numpy(clips[0].expressions[None, :10]), torch.from_numpy(style)[None])
        w = gaussian_window_weights(10)
        assert out.shape == clips[0].expressions.shape
        # frame 0 is covered by the first window only
        np.testing.assert_allclose(out[0], expected[0, 0].numpy(), atol=1e-5)
        assert w[0] > 0

    def test_errors(self, clips):
        nets = tiny_nets().eval()
        with pytest.raises(ModelFileError, match="face3d"):
            translate_sequence(nets, np.zeros((20, D + 1), np.float32), "happy")
        with pytest.raises(ValueError, match="unknown emotion"):
            translate_sequence(nets, clips[0].expressions, "contempt")
        with pytest.raises(ValueError, match="float32"):
            translate_sequence(nets, clips[0].expressions.astype(np.float64), "happy")
        deca = tiny_nets(input_dim=51).eval()
        with pytest.raises(ModelFileError, match="--backend deca"):
            translate_sequence(deca, np.zeros((20, D), np.float32), "happy")

    def test_device(self):
        assert resolve_device("cpu").type == "cpu"
        assert resolve_device("auto").type in ("cpu", "cuda")
        with pytest.raises(ValueError):
            resolve_device("gpu7")


# --- data ----------------------------------------------------------------------------------

def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def fake_extract(video: Path, *, dim: int = D) -> np.ndarray:
    """Deterministic stand-in for a face model: a clip's length and values come from its name."""
    seed = sum(map(ord, Path(video).name))
    rng = np.random.default_rng(seed)
    if "broken" in Path(video).name:
        raise RuntimeError("cannot decode")
    return rng.normal(size=(20 + seed % 7, dim)).astype(np.float32)


def fatal_extract(video: Path) -> np.ndarray:
    raise ModelFileError("no face model")


class TestDataset:
    def test_parse_names(self, tmp_path):
        r = parse_mead_path(tmp_path / "M003/video/front/angry/level_3/001.mp4", tmp_path)
        assert (r.actor, r.emotion, r.level, r.view, r.key) == ("M003", "angry", 3, "front", "M003/video/front/angry/level_3/001")
        r = parse_mead_path(tmp_path / "M030_front_happy_level3_001.mp4", tmp_path)
        assert (r.actor, r.emotion, r.level, r.view) == ("M030", "happy", 3, "front")
        r = parse_mead_path(tmp_path / "W009_left_30_surprised_level_2_004.mp4", tmp_path)
        assert (r.actor, r.emotion, r.view) == ("W009", "surprised", "left_30")
        assert parse_mead_path(tmp_path / "holiday.mp4", tmp_path) is None

    def test_discover_layouts(self, tmp_path):
        touch(tmp_path / "mead/M003/video/front/angry/level_3/001.mp4")
        touch(tmp_path / "mead/M003/video/front/contempt/level_3/001.mp4")
        touch(tmp_path / "mead/M003/video/down/angry/level_3/001.mp4")
        touch(tmp_path / "mead/M003/video/front/neutral/level_1/002.mp4")
        found = discover_clips(tmp_path / "mead")
        assert [(c.actor, c.emotion) for c in found] == [("M003", "angry"), ("M003", "neutral")]
        assert len(discover_clips(tmp_path / "mead", views=None)) == 3
        touch(tmp_path / "flat/M030_front_sad_level3_001.mp4")
        touch(tmp_path / "flat/W009_front_fear_level3_001.mp4")
        touch(tmp_path / "flat/readme.mp4")
        assert [c.emotion for c in discover_clips(tmp_path / "flat")] == ["sad", "fear"]

    def test_csv(self, tmp_path):
        touch(tmp_path / "clips/a.mp4")
        touch(tmp_path / "clips/b.mp4")
        (tmp_path / "labels.csv").write_text("path,emotion,actor\nclips/a.mp4,Happiness,bob\nclips/b.mp4,anger,\n")
        records = discover_clips(tmp_path)
        assert [(r.emotion, r.actor, r.key) for r in records] == [("happy", "bob", "clips/a"), ("angry", "clips", "clips/b")]
        (tmp_path / "bad.csv").write_text("path,emotion\nclips/a.mp4,bored\n")
        with pytest.raises(InputError, match="unknown emotion 'bored'"):
            read_labels_csv(tmp_path / "bad.csv")
        (tmp_path / "bad2.csv").write_text("file,label\nclips/a.mp4,happy\n")
        with pytest.raises(InputError, match="header"):
            read_labels_csv(tmp_path / "bad2.csv")
        with pytest.raises(InputError, match="no labelled clips"):
            discover_clips(touch(tmp_path / "empty/x.txt").parent)

    @pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
    def test_extract_cache_resume(self, tmp_path, workers):
        names = ["A_front_happy_level3_001.mp4", "A_front_sad_level3_001.mp4", "B_front_angry_level3_broken.mp4",
                 "B_front_fear_level3_002.mp4"]
        for n in names:
            touch(tmp_path / "data" / n)
        records = [parse_mead_path(tmp_path / "data" / n, tmp_path / "data") for n in names]
        records = [r for r in records if r is not None]
        cache = tmp_path / "cache"
        done = extract_expressions(records, functools.partial(fake_extract, dim=D), cache, workers=workers, quiet=True)
        assert len(done) == 3  # the broken clip is skipped
        first = cache_path(cache, done[0])
        np.testing.assert_array_equal(np.load(first), fake_extract(done[0].path))
        calls = []

        def counting(video):
            calls.append(video)
            return fake_extract(video)

        extract_expressions(done, counting, cache, workers=1, quiet=True)
        assert calls == []  # resumed: nothing re-extracted
        data = load_clips(done, cache)
        assert all(c.expressions.shape[1] == D for c in data)

    def test_extract_fatal(self, tmp_path):
        rec = ClipRecord(path=touch(tmp_path / "a.mp4"), emotion="happy", actor="a", key="a")
        with pytest.raises(ModelFileError, match="no face model"):
            extract_expressions([rec], fatal_extract, tmp_path / "cache", quiet=True)

    def test_windows(self):
        x = np.arange(30 * 2, dtype=np.float32).reshape(30, 2)
        x[12] = np.nan  # runs [0, 12) and [13, 30)
        ds = WindowDataset([ClipData("c", x, 4, "a")], window=5, hop=1)
        assert len(ds) == (12 - 5 + 1) + (17 - 5 + 1)
        xb, yb = ds.gather(np.arange(len(ds)))
        assert xb.shape == (len(ds), 5, 2) and torch.isfinite(xb).all() and (yb == 4).all()
        w, y = ds[0]
        torch.testing.assert_close(w, torch.from_numpy(x[:5]))
        mean, std = ds.statistics()
        assert mean.shape == (2,) and (std > 0).all()
        with pytest.raises(ValueError, match="consecutive"):
            WindowDataset([ClipData("c", x[:3], 0, "a")], window=5)

    def test_split(self, clips):
        train, val = split_by_actor(clips, ["A1"])
        assert {c.actor for c in train} == {"A0"} and {c.actor for c in val} == {"A1"}
        with pytest.raises(InputError, match="have no clips"):
            split_by_actor(clips, ["Z9"])
        with pytest.raises(InputError, match="no training clips"):
            split_by_actor(clips, ["A0", "A1"])

    def test_options(self, tmp_path):
        assert DataOptions(root=str(tmp_path)).root == tmp_path
        with pytest.raises(ValueError):
            DataOptions(root=tmp_path, workers=0)


class TestBackends:
    def test_indices(self):
        from ned.manipulate.backends import backend_kept_indices, backend_mouth_indices

        assert backend_input_dim("deca") == 51
        assert backend_mouth_indices("deca") == (0,) and backend_kept_indices("deca") == (0,)
        k = backend_input_dim("face3d")
        if k is not None:
            assert all(0 <= i < k for i in backend_mouth_indices("face3d") + backend_kept_indices("face3d"))
        with pytest.raises(ValueError, match="unknown expression backend"):
            backend_input_dim("flame")

    def test_fingerprint(self):
        assert backend_fingerprint("deca") == "deca"
        assert backend_fingerprint("face3d").startswith("face3d")

    def test_face3d_on_a_real_clip(self, shared_media):
        clip = shared_media / "mead_crops" / "W009_front_happy_level3_001.mp4"
        if not clip.is_file() or backend_input_dim("face3d") is None:
            pytest.skip("MEAD crop or face model not available")
        x = get_extractor("face3d")(clip)
        assert x.dtype == np.float32 and x.shape[1] == backend_input_dim("face3d") and len(x) > 50
        assert np.isfinite(x).all()

    def test_deca_without_files(self, tmp_path):
        with pytest.raises(ModelFileError, match="--deca_dir"):
            get_extractor("deca")(tmp_path / "a.mp4")
        assert get_extractor("deca", deca_dir=tmp_path).deca_dir == tmp_path


# --- training ------------------------------------------------------------------------------

class TestTrainer:
    def test_losses_change_and_params_move(self, tmp_path, train_set):
        trainer = tiny_trainer(tmp_path, train_set)
        before = params_of(trainer.raw["generator"]).clone()
        ema_before = params_of(trainer.ema["generator"]).clone()
        history = [trainer.train_step(trainer.batch_at(trainer.step)) for _ in range(4)]
        assert trainer.step == 4
        assert all(np.isfinite(v) for h in history for v in h.values())
        assert history[0]["G/latent_cyc"] != history[-1]["G/latent_cyc"]
        assert history[0]["D/latent_real"] != history[-1]["D/latent_real"]
        assert not torch.equal(before, params_of(trainer.raw["generator"]))
        assert not torch.equal(ema_before, params_of(trainer.ema["generator"]))

    def test_deterministic(self, tmp_path, train_set):
        a = tiny_trainer(tmp_path / "a", train_set)
        b = tiny_trainer(tmp_path / "b", train_set)
        for _ in range(2):
            assert a.train_step(a.batch_at(a.step)) == b.train_step(b.batch_at(b.step))
        assert torch.equal(params_of(a.raw["generator"]), params_of(b.raw["generator"]))
        c = tiny_trainer(tmp_path / "c", train_set, seed=4)
        assert c.train_step(c.batch_at(0)) != tiny_trainer(tmp_path / "d", train_set).train_step(a.batch_at(0))

    def test_resume_is_bit_identical(self, tmp_path, train_set):
        options = dict(weights=LossWeights(r1=1.0, ds=1.0), lr_decay_epochs=1)
        a = tiny_trainer(tmp_path / "a", train_set, **options)
        for _ in range(3):
            a.train_step(a.batch_at(a.step))
        path = a.save(1)
        next_a = a.train_step(a.batch_at(a.step))

        b = tiny_trainer(tmp_path / "b", train_set, **options)
        b.load_state_dict(read_checkpoint(path), path=path)
        assert b.step == 3
        next_b = b.train_step(b.batch_at(b.step))
        assert next_a == next_b
        assert next_a["D/latent_r1"] > 0 and next_a["G/latent_ds"] > 0
        for name in ("generator", "mapping_network", "style_encoder", "discriminator"):
            assert torch.equal(params_of(a.raw[name]), params_of(b.raw[name])), name
        for name in ("generator", "mapping_network", "style_encoder"):
            assert torch.equal(params_of(a.ema[name]), params_of(b.ema[name])), name

    def test_checkpoint_loads_for_inference(self, tmp_path, train_set, clips):
        trainer = tiny_trainer(tmp_path, train_set)
        trainer.train_step(trainer.batch_at(0))
        path = trainer.save(1)
        assert path.name == "01_nets.pth"
        data = read_checkpoint(path)
        assert {"generator", "mapping_network", "style_encoder", "discriminator", "optimizers", "rng", "options",
                "version", "epoch", "step", "train_nets", "normalization"} <= set(data)
        assert isinstance(data["options"], dict) and data["options"]["seed"] == 3
        nets, info = load_manipulator(tmp_path, backend="face3d", input_dim=D)
        assert info.step == 1 and info.epoch == 1
        assert torch.equal(params_of(nets.generator), params_of(trainer.ema["generator"]))  # EMA weights
        manip = LearnedManipulator(nets, backend="face3d", seed=2, speech_indices=(0,))
        x = clips[0].expressions
        out = manip.manipulate(x, "happy")
        np.testing.assert_array_equal(out[:, 0], x[:, 0])  # speech part kept
        assert manip.manipulate(x, clips[4].expressions).shape == x.shape  # reference-driven
        manip2 = LearnedManipulator.from_options(LearnedOptions(checkpoints_dir=tmp_path, backend="face3d",
                                                                seed=2, keep_speech=False))
        with pytest.raises(ModelFileError, match="--backend face3d"):
            LearnedManipulator.from_options(LearnedOptions(checkpoints_dir=tmp_path, backend="deca"))
        assert manip2.manipulate(x, "happy").shape == x.shape

    def test_fit_validates_logs_and_resumes(self, tmp_path, train_set, val_set):
        trainer = tiny_trainer(tmp_path, train_set, val_set, epochs=2, batch_size=8)
        spe = trainer.steps_per_epoch
        report = trainer.fit(quiet=True)
        assert [p.name for p in report.checkpoints] == ["01_nets.pth", "02_nets.pth"]
        assert report.steps == 2 * spe and "G/latent_mouth" in report.val_losses
        with open(tmp_path / "loss_log.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [r["phase"] for r in rows].count("train") == 2 * spe
        assert [r["phase"] for r in rows].count("val") == 2
        assert rows[0]["G/latent_cyc"] != ""
        # resuming from epoch 1 rewrites the log after that step and ends where the first run did
        resumed = tiny_trainer(tmp_path, train_set, val_set, epochs=2, batch_size=8)
        resumed.load_state_dict(read_checkpoint(tmp_path / "01_nets.pth"))
        resumed.fit(quiet=True)
        with open(tmp_path / "loss_log.csv", newline="") as handle:
            rows2 = list(csv.DictReader(handle))
        key = lambda r: {k: v for k, v in r.items() if k != "time_s"}  # noqa: E731
        assert [key(r) for r in rows2] == [key(r) for r in rows]
        assert torch.equal(params_of(resumed.raw["generator"]), params_of(trainer.raw["generator"]))

    def test_resume_refuses_other_arch(self, tmp_path, train_set):
        trainer = tiny_trainer(tmp_path, train_set)
        path = trainer.save(1)
        other = Trainer(tiny_options(tmp_path, window=5), WindowDataset(
            make_synthetic_clips(num_actors=1, frames=12, input_dim=D), window=5))
        with pytest.raises(ModelFileError, match="architecture"):
            other.load_state_dict(read_checkpoint(path), path=path)

    def test_init_from_saves_finetuned(self, tmp_path, train_set):
        source = tiny_trainer(tmp_path / "src", train_set)
        source.train_step(source.batch_at(0))
        source.save(1)
        trainer = tiny_trainer(tmp_path / "ft", train_set)
        trainer.init_weights_from(tmp_path / "src")
        assert torch.equal(params_of(trainer.raw["generator"]), params_of(source.ema["generator"]))
        assert trainer.save(1).name == "01_nets_finetuned.pth"


def write_dataset(root: Path, cache: Path) -> None:
    """Two actors of MEAD-style names whose expressions are precomputed in the cache."""
    for clip in make_synthetic_clips(num_actors=2, frames=24, input_dim=D, seed=5):
        actor, emotion, _ = clip.name.split("_")
        path = touch(root / f"{actor}_front_{emotion}_level3_001.mp4")
        rec = parse_mead_path(path, root)
        cache_path(cache, rec).parent.mkdir(parents=True, exist_ok=True)
        np.save(cache_path(cache, rec), clip.expressions)


def test_train_manipulator_end_to_end(tmp_path):
    write_dataset(tmp_path / "data", tmp_path / "ckpt" / "expressions" / backend_fingerprint("face3d"))
    options = tiny_options(tmp_path / "ckpt", epochs=1, val_actors=("A1",), max_steps=3)
    report = train_manipulator(DataOptions(root=tmp_path / "data", hop=5), options, extractor=fatal_extract, quiet=True)
    assert report.steps == 3 and report.val_losses and report.checkpoints[-1].name == "01_nets.pth"
    more = TrainOptions(**{**options.__dict__, "epochs": 2, "max_steps": 0, "resume": True})
    report2 = train_manipulator(DataOptions(root=tmp_path / "data", hop=5), more, extractor=fatal_extract, quiet=True)
    assert report2.steps > 3 and report2.checkpoints[-1].name == "02_nets.pth"


def test_command(tmp_path, capsys):
    from ned import cli
    from ned.commands import train_manipulator as command

    assert "train_manipulator" in cli.COMMAND_MODULES
    parser = argparse.ArgumentParser(prog="ned")
    command.register(parser.add_subparsers(dest="command"))
    write_dataset(tmp_path / "data", tmp_path / "cache")
    args = parser.parse_args(["train-manipulator", "--data", str(tmp_path / "data"), "--checkpoints_dir",
                              str(tmp_path / "ckpt"), "--cache_dir", str(tmp_path / "cache"), "--arch", "ned_small",
                              "--epochs", "1", "--max_steps", "2", "--batch_size", "4", "--device", "cpu",
                              "--val_actors", "A1", "--mouth_indices", "0", "--hop", "5", "--quiet"])
    assert args.lr == 1e-4 and args.betas == [0.0, 0.99] and args.backend == "face3d"
    assert args.func(args) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    bad = parser.parse_args(["train-manipulator", "--data", str(tmp_path), "--checkpoints_dir", str(tmp_path),
                             "--batch_size", "0"])
    with pytest.raises(InputError, match="batch_size"):
        bad.func(bad)


# --- distributed -----------------------------------------------------------------------------

def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    try:
        info, device = init_distributed("cpu")
        data = WindowDataset(make_synthetic_clips(num_actors=1, frames=24, input_dim=D, seed=1), window=10, hop=2)
        options = TrainOptions(checkpoints_dir=Path(out_dir), arch="ned_small", batch_size=4, epochs=1,
                               backend="face3d", mouth_indices=(0,), device="cpu", seed=3)
        trainer = Trainer(options, data, device=device, dist_info=info)
        first = trainer.batch_at(0)
        for _ in range(2):
            trainer.train_step(trainer.batch_at(trainer.step))
        torch.save({"params": {n: params_of(m) for n, m in trainer.raw.items()},
                    "ema": params_of(trainer.ema["generator"]), "x_real": first.x_real},
                   Path(out_dir) / f"rank{rank}.pt")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ddp_two_cpu_processes(tmp_path):
    """Two processes with the gloo backend (as under torchrun): their parameters stay identical."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert not torch.equal(r0["x_real"], r1["x_real"])  # each rank saw its own share of the batch
    for name in r0["params"]:
        assert torch.equal(r0["params"][name], r1["params"][name]), name
    assert torch.equal(r0["ema"], r1["ema"])
