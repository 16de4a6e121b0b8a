"""Tests of the neural face renderer: networks, losses, data, training, inference, DDP.

Everything runs on a tiny synthetic actor folder (8 frames of 64x64 PNGs in the
train-mode layout) with the ``unet_tiny`` generator, in seconds on one CPU thread.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ned.errors import InputError, ModelFileError
from ned.render import losses as L
from ned.render.dataset import (
    CelebFrames,
    MeshWarpProvider,
    RendererDataset,
    eye_layout_for,
    mouth_center_from_eyes,
    nmfc_warp,
    rasterize_eyes,
    write_synthetic_celeb,
)
from ned.render.networks import (
    COND_CHANNELS,
    FrameGenerator,
    MultiscaleDiscriminator,
    NetworkOptions,
    SequenceGenerator,
    build_networks,
    create_renderer,
    crop_mouth,
    list_renderers,
)
from ned.render.neural_renderer import NeuralRenderer, composite_crop, face_polygon_from_nmfc, is_renderer_checkpoint
from ned.render.train import (
    LOSS_KEYS,
    StepSampler,
    Trainer,
    TrainOptions,
    read_checkpoint,
    reconstruction_metrics,
    train_renderer,
)

torch.set_num_threads(1)

TINY = dict(size=32, arch="unet_tiny", batch_size=2, d_channels=8, log_every=1, image_every=0, checkpoint_every=0,
            warp_provider="nmfc")


@pytest.fixture(scope="module")
def celeb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_celeb(tmp_path_factory.mktemp("celeb") / "actor", n_frames=8, crop_size=64)


@pytest.fixture(scope="module")
def trained(celeb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder of a 4-step run at 32 px, warp-guided by the training-free renderer."""
    out = tmp_path_factory.mktemp("trained")
    opts = TrainOptions(**{**TINY, "steps": 4, "image_every": 2, "warp_provider": "mesh"})
    train_renderer(celeb, out, opts, device="cpu", quiet=True)
    return out


def _log_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- networks


class TestRegistry:
    def test_names(self) -> None:
        assert {"unet_256", "unet_small", "unet_tiny"} <= set(list_renderers())

    def test_unet_256_defaults(self) -> None:
        g = create_renderer("unet_256")
        assert g.size == 256 and g.hparams["n_down"] == 5 and g.use_warp

    def test_override_size_rederives_depth(self) -> None:
        g = create_renderer("unet_256", size=64)
        assert g.hparams["n_down"] == 3

    def test_exception(self) -> None:
        with pytest.raises(ValueError, match="unknown renderer 'unet_9'.*unet_256"):
            create_renderer("unet_9")
        with pytest.raises(ValueError, match="unknown generator argument"):
            create_renderer("unet_tiny", widht=3)
        with pytest.raises(ValueError, match="power of two"):
            create_renderer("unet_tiny", size=48)


class TestFrameGenerator:
    @pytest.mark.parametrize("size", [32, 64])
    @pytest.mark.parametrize("use_warp", [True, False])
    def test_cardinality(self, size: int, use_warp: bool) -> None:
        g = create_renderer("unet_tiny", size=size, use_warp=use_warp)
        cond = torch.rand(2, COND_CHANNELS * 2, size, size)
        warp = torch.rand(2, 3, size, size) if use_warp else None
        out = g(cond, torch.rand(2, 3, size, size), warp)
        assert out.shape == (2, 3, size, size)
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1

    def test_warp_guided_starts_as_identity(self) -> None:
        g = create_renderer("unet_tiny", size=32)
        warp = torch.rand(1, 3, 32, 32)
        out = g(torch.rand(1, 18, 32, 32), torch.rand(1, 3, 32, 32), warp)
        assert torch.allclose(out, warp, atol=1e-6)

    def test_exception(self) -> None:
        g = create_renderer("unet_tiny", size=32)
        with pytest.raises(ValueError, match="cond: expected"):
            g(torch.rand(1, 9, 32, 32), torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
        with pytest.raises(ValueError, match="warp must be given"):
            g(torch.rand(1, 18, 32, 32), torch.rand(1, 3, 32, 32))

    def test_sequence_feeds_previous_output(self) -> None:
        torch.manual_seed(0)
        g = create_renderer("unet_tiny", size=32, use_warp=False)
        cond = torch.rand(1, 3, COND_CHANNELS, 32, 32)
        seq = SequenceGenerator(g)(cond)
        assert seq.shape == (1, 3, 3, 32, 32)
        first = g(torch.cat([cond[:, 0], cond[:, 0]], 1), torch.zeros(1, 3, 32, 32))
        second = g(torch.cat([cond[:, 1], cond[:, 0]], 1), first)
        assert torch.allclose(seq[:, 0], first, atol=1e-6) and torch.allclose(seq[:, 1], second, atol=1e-6)

    def test_gradcheck(self) -> None:
        g = create_renderer("unet_tiny", size=32, use_warp=False).double()
        cond = torch.rand(1, 18, 32, 32, dtype=torch.float64)
        base = torch.rand(1, 3, 32, 32, dtype=torch.float64)
        patch = torch.rand(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)  # 12 inputs: cheap

        def fn(p: torch.Tensor) -> torch.Tensor:
            prev = base.clone()
            prev[..., 15:17, 15:17] = p
            return g(cond, prev)[..., 14:18, 14:18]

        assert torch.autograd.gradcheck(fn, (patch,), eps=1e-6, atol=1e-4)


class TestDiscriminators:
    def test_multiscale_features(self) -> None:
        d = MultiscaleDiscriminator(12, base_channels=8, n_layers=3, n_scales=2)
        out = d(torch.rand(2, 12, 32, 32))
        assert len(out) == 2 and all(len(scale) == 5 for scale in out)
        assert out[0][-1].shape[:2] == (2, 1) and out[1][-1].shape[-1] < out[0][-1].shape[-1]

    def test_build_networks(self) -> None:
        nets = build_networks(NetworkOptions(arch="unet_tiny", size=32, d_channels=8, mouth_scales=0))
        assert isinstance(nets.generator, FrameGenerator) and nets.mouth_discriminator is None
        assert isinstance(build_networks(NetworkOptions(arch="unet_tiny", size=32), generator_only=True),
                          FrameGenerator)

    def test_options_exception(self) -> None:
        with pytest.raises(ValueError, match="unknown renderer arch"):
            NetworkOptions(arch="nope")
        with pytest.raises(ValueError, match="mouth_fraction"):
            NetworkOptions(mouth_fraction=2.0)


class TestCropMouth:
    def test_unit(self) -> None:
        img = torch.arange(2 * 1 * 10 * 10, dtype=torch.float32).view(2, 1, 10, 10)
        out = crop_mouth(img, torch.tensor([[5.0, 5.0], [9.0, 0.0]]), 4)
        assert torch.equal(out[0, 0], img[0, 0, 3:7, 3:7])
        assert torch.equal(out[1, 0], img[1, 0, 0:4, 6:10])  # shifted inside the image

    def test_exception(self) -> None:
        with pytest.raises(ValueError, match="crop must be"):
            crop_mouth(torch.rand(1, 1, 8, 8), torch.zeros(1, 2), 9)


# --------------------------------------------------------------------------- losses


def _fake_d_output(value: float) -> list[list[torch.Tensor]]:
    return [[torch.full((1, 4, 3, 3), value), torch.full((1, 1, 2, 2), value)] for _ in range(2)]


class TestLosses:
    def test_lsgan_unit(self) -> None:
        ones = _fake_d_output(1.0)
        assert L.lsgan_loss(ones, True).item() == 0.0
        assert L.lsgan_loss(ones, False).item() == 1.0
        assert L.lsgan_loss(_fake_d_output(0.5), True).item() == pytest.approx(0.25)

    def test_feature_matching(self) -> None:
        assert L.feature_matching_loss(_fake_d_output(1.0), _fake_d_output(1.0)).item() == 0.0
        assert L.feature_matching_loss(_fake_d_output(1.0), _fake_d_output(0.0)).item() == pytest.approx(1.0)
        with pytest.raises(ValueError, match="differ"):
            L.feature_matching_loss(_fake_d_output(1.0)[:1], _fake_d_output(1.0))

    def test_discriminator_loss_dict(self) -> None:
        total, logs = L.discriminator_loss(_fake_d_output(1.0), _fake_d_output(0.0))
        assert total.item() == 0.0 and set(logs) == {"D_real", "D_fake", "Dm_real", "Dm_fake"}

    def test_generator_loss_without_vgg(self) -> None:
        img = torch.rand(1, 3, 8, 8)
        total, logs = L.generator_loss(img, img, _fake_d_output(1.0), _fake_d_output(1.0), L.LossWeights())
        assert logs["G_vgg"] == 0.0 and logs["G_l1"] == 0.0 and total.item() == pytest.approx(0.0)
        assert set(logs) == {"G_gan", "G_mouth", "G_feat", "G_vgg", "G_l1", "G_total"}

    def test_weights_exception(self) -> None:
        with pytest.raises(ValueError, match="l1"):
            L.LossWeights(l1=-1.0)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A made-up VGG19 in torchvision's layout (features + a classifier we ignore)."""
    torch.manual_seed(0)
    state = {f"module.{k}": v for k, v in L.VGG19Features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(state, path)
    return path


class TestVGG:
    def test_load_and_loss(self, vgg_file: Path) -> None:
        vgg = L.load_vgg19_features(vgg_file)
        a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
        assert L.perceptual_loss(vgg, a, a).item() == 0.0
        assert L.perceptual_loss(vgg, a, b).item() > 0.0
        assert not any(p.requires_grad for p in vgg.parameters())

    def test_exception(self, tmp_path: Path) -> None:
        with pytest.raises(ModelFileError, match="not found"):
            L.load_vgg19_features(tmp_path / "missing.pth")
        (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
        with pytest.raises(ModelFileError, match="not a loadable"):
            L.load_vgg19_features(tmp_path / "junk.pth")
        torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "partial.pth")
        with pytest.raises(ModelFileError, match="missing"):
            L.load_vgg19_features(tmp_path / "partial.pth")


# --------------------------------------------------------------------------- data


class TestEyes:
    def test_layouts(self) -> None:
        assert eye_layout_for(14).contour == 6 and eye_layout_for(34).contour == 16
        assert eye_layout_for(42).iris == 5 and eye_layout_for(7) is None

    def test_rasterize(self, celeb: Path) -> None:
        pts = CelebFrames(celeb).eye_points(0)
        img = rasterize_eyes(pts, 64)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert all(img[..., c].max() > 0 for c in range(3))
        half = rasterize_eyes(pts, 32, scale=0.5)
        assert half.shape == (32, 32, 3)

    def test_missing_face_and_unknown_layout(self) -> None:
        assert rasterize_eyes(np.full((14, 2), np.nan), 32).max() == 0
        dots = rasterize_eyes(np.array([[5.0, 5.0], [20.0, 20.0], [10.0, 25.0]]), 32)
        assert dots[5, 5].min() > 0 and np.array_equal(dots[..., 0], dots[..., 2])

    def test_mouth_center_unit(self) -> None:
        pts = np.zeros((14, 2))
        pts[12], pts[13] = (10.0, 20.0), (30.0, 20.0)
        np.testing.assert_allclose(mouth_center_from_eyes(pts, 64), [20.0, 20.0 + 1.2 * 20.0], rtol=1e-6)
        np.testing.assert_allclose(mouth_center_from_eyes(None, 256), [127.5, 170.0])


class TestNmfcWarp:
    def test_identity(self, celeb: Path) -> None:
        f = CelebFrames(celeb)
        out = nmfc_warp(f.image(0), f.nmfc(0), f.nmfc(0), smooth_px=1)
        np.testing.assert_array_equal(out, f.image(0))

    def test_moves_face_towards_target(self, celeb: Path) -> None:
        f = CelebFrames(celeb)
        src, dst = f.image(0), f.image(2)
        warped = nmfc_warp(src, f.nmfc(0), f.nmfc(2))
        face = (f.nmfc(2).max(-1) > 0) & (f.nmfc(0).max(-1) > 0)
        before = np.abs(src.astype(float) - dst)[face].mean()
        after = np.abs(warped.astype(float) - dst)[face].mean()
        assert after < 0.5 * before

    def test_mesh_provider(self, celeb: Path) -> None:
        f, warp = CelebFrames(celeb), MeshWarpProvider()
        np.testing.assert_array_equal(warp(f, 0, 0, 64), f.image(0))  # same mesh: unchanged
        moved = warp(f, 0, 2, 64)
        before = np.abs(f.image(0).astype(float) - f.image(2)).mean()
        assert np.abs(moved.astype(float) - f.image(2)).mean() < 0.6 * before
        assert warp(f, 0, 2, 32).shape == (32, 32, 3)

    def test_mesh_provider_needs_face3d(self, tmp_path: Path) -> None:
        root = write_synthetic_celeb(tmp_path / "a", n_frames=4, crop_size=32, face3d=False)
        with pytest.raises(InputError, match="warp_provider nmfc"):
            train_renderer(root, tmp_path / "ck", TrainOptions(**{**TINY, "warp_provider": "mesh"}), device="cpu")

    def test_exception(self) -> None:
        with pytest.raises(ValueError, match="shapes differ"):
            nmfc_warp(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), np.zeros((9, 9, 3), np.uint8))


class TestDataset:
    def test_item(self, celeb: Path) -> None:
        ds = RendererDataset(CelebFrames(celeb), 32, seed=3)
        item = ds[(0, 2)]
        assert item["cond"].shape == (2, 9, 32, 32) and item["image"].shape == (2, 3, 32, 32)
        assert item["warp"].shape == (2, 3, 32, 32) and item["mouth"].shape == (2, 2)
        assert item["frame"].tolist() == [2, 3]
        again = RendererDataset(CelebFrames(celeb), 32, seed=3)[(0, 2)]
        assert torch.equal(item["warp"], again["warp"])  # same seed, same draw

    def test_warp_source_is_another_frame(self, celeb: Path) -> None:
        ds = RendererDataset(CelebFrames(celeb), 32, seed=0)
        for epoch in range(5):
            for i, start in enumerate(ds.starts):
                src = ds.warp_sources(start, epoch)
                assert src[0] != start and src[1] == src[0] + 1

    def test_clips_and_split(self, tmp_path: Path) -> None:
        root = write_synthetic_celeb(tmp_path / "two", n_frames=5, crop_size=32, n_clips=2)
        frames = CelebFrames(root)
        assert frames.clip_ranges == [(0, 5), (5, 10)]
        ds = RendererDataset(frames, 32)
        assert 4 not in ds.starts and len(ds) == 8  # no window crosses the clip boundary
        held = RendererDataset(frames, 32, frame_ids=[3, 4], source_ids=[0, 1, 2])
        assert held.starts == [3] and max(held.warp_sources(3, 0)) <= 2

    def test_missing_folder(self, tmp_path: Path) -> None:
        root = write_synthetic_celeb(tmp_path / "a", n_frames=3, crop_size=32)
        shutil.rmtree(root / "nmfcs")
        with pytest.raises(InputError, match="ned preprocess .* --mode train"):
            CelebFrames(root)

    def test_sampler_resume_consistent(self) -> None:
        full = StepSampler(7, 3, seed=1, start_step=0, stop_step=6)
        later = StepSampler(7, 3, seed=1, start_step=4, stop_step=6)
        assert list(later) == [k for s in (4, 5) for k in full.keys(s)]
        r0, r1 = (StepSampler(7, 2, 1, 0, 1, rank=r, world_size=2).keys(0) for r in (0, 1))
        assert set(r0).isdisjoint(r1)


# --------------------------------------------------------------------------- training


def test_tiny_training_loss_falls(celeb: Path, tmp_path: Path) -> None:
    opts = TrainOptions(**{**TINY, "steps": 25, "use_warp": False, "lr_g": 1e-3})
    report = train_renderer(celeb, tmp_path, opts, device="cpu", quiet=True)
    l1 = [float(r["G_l1"]) for r in _log_rows(tmp_path)]
    assert len(l1) == 25 and report.end_step == 25
    assert np.mean(l1[-5:]) < 0.6 * np.mean(l1[:5])


def test_resume_reproduces_next_step(celeb: Path, tmp_path: Path) -> None:
    opts = TrainOptions(**{**TINY, "steps": 3, "checkpoint_every": 2, "keep_checkpoints": 5})
    straight = tmp_path / "straight"
    train_renderer(celeb, straight, opts, device="cpu", quiet=True)
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(straight / "step_0000002.pt", resumed)
    report = train_renderer(celeb, resumed, opts, device="cpu", resume=True, quiet=True)
    assert (report.start_step, report.end_step) == (2, 3)
    a, b = read_checkpoint(straight / "step_0000003.pt"), read_checkpoint(resumed / "step_0000003.pt")
    for group in ("generator", "generator_ema", "discriminator", "mouth_discriminator"):
        for key, tensor in a["nets"][group].items():
            assert torch.equal(tensor, b["nets"][group][key]), f"{group}.{key} differs after resume"
    assert _log_rows(straight)[-1] == {**_log_rows(resumed)[-1], "elapsed_s": _log_rows(straight)[-1]["elapsed_s"],
                                       "steps_per_s": _log_rows(straight)[-1]["steps_per_s"]}


def test_checkpoint_contents(trained: Path) -> None:
    state = read_checkpoint(trained)
    assert state["version"] == 1 and state["step"] == 4 and isinstance(state["options"], dict)
    assert TrainOptions.from_dict(state["options"]).size == 32
    assert {"g", "d"} <= set(state["optim"]) and "torch" in state["rng"]
    assert not list(trained.glob(".*tmp*"))
    assert is_renderer_checkpoint(trained) and not is_renderer_checkpoint(trained / "log.csv")


def test_log_and_image_grid(trained: Path) -> None:
    rows = _log_rows(trained)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert set(LOSS_KEYS) <= set(rows[0])
    grids = sorted(p.name for p in (trained / "images").glob("*.png"))
    assert grids == ["step_0000002.png", "step_0000004.png"]
    import cv2

    grid = cv2.imread(str(trained / "images" / grids[-1]))
    assert grid.shape == (2 * 32, 6 * 32, 3)  # 2 samples x (NMFC, eyes, shape, warp, output, target)


def test_trains_without_vgg_and_says_so(celeb: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ned.render.train"):
        report = train_renderer(celeb, tmp_path, TrainOptions(**{**TINY, "steps": 1}), device="cpu", quiet=True)
    assert not report.used_vgg and report.losses["G_vgg"] == 0.0
    assert any("without the perceptual loss" in r.getMessage() for r in caplog.records)


def test_trains_with_vgg(celeb: Path, tmp_path: Path, vgg_file: Path) -> None:
    report = train_renderer(celeb, tmp_path, TrainOptions(**{**TINY, "steps": 1}), device="cpu",
                            vgg_weights=vgg_file, quiet=True)
    assert report.used_vgg and report.losses["G_vgg"] > 0.0


def test_size_mismatch_refused(celeb: Path, trained: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"trained at 32x32 px .* --size 64"):
        NeuralRenderer.load(trained, size=64, device="cpu")
    shutil.copytree(trained, tmp_path / "ck")
    with pytest.raises(ModelFileError, match="trained at size 32, cannot resume at size 64"):
        train_renderer(celeb, tmp_path / "ck", TrainOptions(**{**TINY, "size": 64, "steps": 6}), device="cpu",
                       resume=True, quiet=True)
    with pytest.raises(ModelFileError, match="cannot fine-tune at size 64"):
        train_renderer(celeb, tmp_path / "new", TrainOptions(**{**TINY, "size": 64, "steps": 1}), device="cpu",
                       load_pretrain=trained, quiet=True)
    renderer = NeuralRenderer.load(trained, device="cpu")
    with pytest.raises(ValueError, match="renders 32x32 crops; got 64x64"):
        renderer.render(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8), np.zeros((14, 2)),
                        np.zeros((64, 64, 3), np.uint8))


def test_load_pretrain_fine_tunes(celeb: Path, trained: Path, tmp_path: Path) -> None:
    report = train_renderer(celeb, tmp_path, TrainOptions(**{**TINY, "steps": 1}), device="cpu",
                            load_pretrain=trained, quiet=True)
    assert (report.start_step, report.end_step) == (0, 1)
    with pytest.raises(ModelFileError, match="no neural renderer checkpoint"):
        train_renderer(celeb, tmp_path / "x", TrainOptions(**{**TINY, "steps": 1}), device="cpu",
                       load_pretrain=tmp_path / "empty", quiet=True)


def test_trainer_step_returns_all_losses(celeb: Path) -> None:
    opts = TrainOptions(**TINY)
    torch.manual_seed(0)
    trainer = Trainer(opts, build_networks(opts.network_options()), torch.device("cpu"))
    ds = RendererDataset(CelebFrames(celeb), 32)
    batch = torch.utils.data.default_collate([ds[(0, 0)], ds[(0, 1)]])
    logs = trainer.train_step(batch)
    assert set(logs) == set(LOSS_KEYS) and trainer.step == 1 and all(np.isfinite(list(logs.values())))


# --------------------------------------------------------------------------- inference


def _clip_inputs(celeb: Path, size: int) -> list[tuple[np.ndarray, ...]]:
    ds = RendererDataset(CelebFrames(celeb), size, window=1)
    out = []
    for i in range(3):
        item = ds[(0, i)]
        to8 = lambda t: (t.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)  # noqa: E731
        frames = CelebFrames(celeb)
        out.append((to8(item["cond"][0, 0:3]), to8(item["cond"][0, 6:9]), frames.eye_points(i) * size / 64,
                    to8(item["warp"][0])))
    return out


def test_render_sequence_deterministic(celeb: Path, trained: Path) -> None:
    renderer = NeuralRenderer.load(trained, size=32, device="cpu")
    assert renderer.size == 32 and renderer.use_warp and renderer.step == 4
    inputs = _clip_inputs(celeb, 32)
    first = [renderer.render(*x) for x in inputs]
    renderer.reset()
    second = [renderer.render(*x) for x in inputs]
    assert all(o.shape == (32, 32, 3) and o.dtype == np.uint8 for o in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    with pytest.raises(ValueError, match="warp-guided"):
        renderer.render(*inputs[0][:3])


def test_render_frame_contract(celeb: Path, trained: Path) -> None:
    """Frame in, RenderedFace out (the training-free renderer's contract), pixels outside kept."""
    frames = CelebFrames(celeb)
    renderer = NeuralRenderer.load(trained, device="cpu")
    frame = np.random.default_rng(1).integers(0, 255, (100, 140, 3), dtype=np.uint8)
    crop_from_frame = np.array([[0.8, 0.0, -24.0], [0.0, 0.8, -8.0]])  # frame box (30, 10)..(110, 90) -> 64 px
    frame_from_crop = np.array([[1.25, 0.0, 30.0], [0.0, 1.25, 10.0]])
    import cv2

    frame[10:90, 30:110] = cv2.resize(frames.image(0), (80, 80))
    src = frames.landmarks(0).copy()
    src[:, :2] = src[:, :2] @ frame_from_crop[:, :2].T + frame_from_crop[:, 2]
    dst = src.copy()
    dst[61, 1] -= 2.0  # lift a mouth corner
    out = renderer.render_frame(frame, src, dst, crop_from_frame, crop_size=64)
    assert out.rendered and out.frame.shape == frame.shape and out.frame.dtype == np.uint8
    np.testing.assert_array_equal(out.frame[out.mask == 0], frame[out.mask == 0])
    missing = renderer.render_frame(frame, np.full_like(src, np.nan), dst, crop_from_frame, crop_size=64)
    assert not missing.rendered and np.array_equal(missing.frame, frame)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no neural renderer checkpoint"):
        NeuralRenderer.load(tmp_path, device="cpu")
    torch.save({"kind": "something else"}, tmp_path / "step_0000001.pt")
    with pytest.raises(ModelFileError, match="not a NED neural renderer checkpoint"):
        NeuralRenderer.load(tmp_path, device="cpu")


def test_composite_crop_keeps_outside_pixels(celeb: Path) -> None:
    frames = CelebFrames(celeb)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    crop_from_frame = np.array([[0.5, 0.0, -20.0], [0.0, 0.5, -10.0]])  # a 128 px box at (40, 20)
    polygon = face_polygon_from_nmfc(frames.nmfc(0))
    result = composite_crop(frame, frames.image(0), crop_from_frame, polygon)
    assert result.rendered and result.frame.shape == frame.shape
    outside = result.mask == 0
    np.testing.assert_array_equal(result.frame[outside], frame[outside])
    assert np.abs(result.frame.astype(int) - frame)[result.mask > 0.9].mean() > 10
    assert not composite_crop(frame, frames.image(0), crop_from_frame, None).rendered


def test_reconstruction_metrics_unit() -> None:
    a = np.full((16, 16, 3), 100, np.uint8)
    b = a.copy()
    b[:8] += 10  # MSE 50 over the whole image, 100 on the top half
    assert reconstruction_metrics(a, b)["psnr"] == pytest.approx(10 * np.log10(255**2 / 50))
    mask = np.zeros((16, 16), np.float32)
    mask[:8] = 1
    assert reconstruction_metrics(a, b, mask)["psnr"] == pytest.approx(10 * np.log10(255**2 / 100))
    assert reconstruction_metrics(a, a)["ssim"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- command and DDP


def test_command(celeb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ned.commands import train_renderer as cmd

    rc = cmd.main(["--celeb", str(celeb), "--checkpoints_dir", str(tmp_path), "--size", "32", "--arch", "unet_tiny",
                   "--steps", "2", "--batch_size", "1", "--device", "cpu", "--holdout_fraction", "0.25", "--quiet",
                   "--warp_provider", "nmfc"])
    out = capsys.readouterr().out
    assert rc == 0 and "trained steps 0..2" in out and "without VGG" in out and "held-out PSNR" in out
    assert cmd.main(["--checkpoints_dir", str(tmp_path)]) == InputError.exit_code
    assert cmd.main([str(celeb), "--checkpoints_dir", str(tmp_path), "--size", "48"]) == InputError.exit_code


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_processes(celeb: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "ned.commands.train_renderer", str(celeb),
           "--checkpoints_dir", str(tmp_path), "--size", "32", "--arch", "unet_tiny", "--steps", "2",
           "--batch_size", "1", "--device", "cpu", "--seed", "5", "--warp_provider", "nmfc"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "generator parameters identical across 2 ranks" in proc.stderr
    state = read_checkpoint(tmp_path)
    assert state["step"] == 2 and state["world_size"] == 2
