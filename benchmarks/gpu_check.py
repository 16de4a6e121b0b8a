"""Prepared correctness check of the CUDA path: one PASS/FAIL/SKIP line per check, with numbers.

Every check builds its own weights under fixed seeds and its own synthetic data (nothing
is downloaded), runs in isolation (an exception fails that check, with a traceback
summary, and the others still run) and reports its wall time and peak device memory
(``torch.cuda.max_memory_allocated``). The exit status is 1 when any check failed.

Checks:

  renderer.forward     generator, same weights on the CPU and the device: fp32 (TF32 off and
                       PyTorch's default) and the project's autocast vs CPU fp32, [0, 1] image units
  renderer.train       Trainer.train_step under AMP (bf16 where supported): losses finite,
                       GradScaler on exactly for fp16, parameters finite
  renderer.train_fp16  the same with float16 forced (what a GPU without bf16 runs) + GradScaler
  renderer.resume      a device checkpoint resumes on the CPU, and under forced fp16
  renderer.infer       train_renderer -> checkpoint -> NeuralRenderer on the device (and CPU):
                       uint8 frames, frames/s, device vs CPU frame difference
  manipulator.train    Trainer steps with AMP, forced fp16 and fp32 (R1 and diversity terms on)
  manipulator.checkpoint  saved on the device, read with torch.load(weights_only=True) and
                       load_manipulator on the CPU; EMA weights equal; CPU vs device outputs
  manipulator.resume   a device checkpoint resumes on the CPU, and under forced fp16
  deca.backend         DecaBackend on the CPU and the device, same crops: parameter vectors
                       (TF32 off and default), FLAME vertices
  ddp.torchrun_renderer     torchrun --standalone --nproc_per_node 1 -m ned.commands.train_renderer
  ddp.torchrun_manipulator  torchrun --standalone --nproc_per_node 1 -m ned.cli train-manipulator
  ddp.two_procs_one_gpu     --nproc_per_node 2 with the device count at 1: ends within
                            --ddp_timeout s with ned's error naming --nproc_per_node (no hang)

The profile sets the sizes: ``full`` (the default on CUDA: unet_256 at 256 px, ned_original,
DECA's ResNet-50 width) or ``smoke`` (the default on the CPU: tiny networks, seconds). On
the CPU the device-vs-CPU comparisons compare the CPU with itself, fp16/AMP parts are
skipped, and the torchrun checks are skipped unless ``--ddp_on_cpu`` (gloo) is given.

Usage::

    python benchmarks/gpu_check.py                              # CUDA, full profile
    python benchmarks/gpu_check.py --device cpu                 # smoke run anywhere
    python benchmarks/gpu_check.py --checks renderer.forward deca.backend --json out.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import math
import os
import pickle
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_neural_renderer, when run from elsewhere

from gpu_neural_renderer import render_inputs, resident_batch  # noqa: E402

from ned.deca import DECA_FILE, FLAME_FILE, DecaBackend, DecaOptions, build_deca_encoder  # noqa: E402
from ned.distributed import autocast, autocast_dtype, resolve_device  # noqa: E402
from ned.layout import atomic_write_json  # noqa: E402
from ned.manipulate.checkpoint import load_manipulator, read_checkpoint as read_manipulator_checkpoint  # noqa: E402
from ned.manipulate.dataset import (ClipData, WindowDataset, cache_path, make_synthetic_clips,  # noqa: E402
                                    parse_mead_path)
from ned.manipulate.learned import LearnedManipulator  # noqa: E402
from ned.manipulate.networks import DECA_INPUT_DIM, ManipulatorArch, create_arch, register_arch  # noqa: E402
from ned.manipulate.train import LossWeights, Trainer as ManipulatorTrainer  # noqa: E402
from ned.manipulate.train import TrainOptions as ManipulatorOptions  # noqa: E402
from ned.render.dataset import CelebFrames, write_synthetic_celeb  # noqa: E402
from ned.render.networks import FrameGenerator, build_networks  # noqa: E402
from ned.render.neural_renderer import NeuralRenderer  # noqa: E402
from ned.render.train import Trainer as RendererTrainer  # noqa: E402
from ned.render.train import TrainOptions as RendererOptions  # noqa: E402
from ned.render.train import read_checkpoint as read_renderer_checkpoint  # noqa: E402
from ned.render.train import save_checkpoint, train_renderer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@register_arch
def gpu_check_tiny(**overrides: int) -> ManipulatorArch:
    """The smoke profile's manipulator (``ned_small`` narrowed, as the tests do): milliseconds a step."""
    return create_arch("ned_small", **{"generator_hidden": 16, "encoder_hidden": 8, "mapping_hidden": 8, **overrides})


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Profile:
    """Sizes of one run (``full`` on a GPU, ``smoke`` anywhere in seconds)."""

    render_arch: str
    render_size: int
    render_batch: int
    render_steps: int  # renderer.train (AMP)
    render_fp16_steps: int  # renderer.train_fp16
    render_e2e_steps: int  # renderer.infer's train_renderer run
    render_frames: int  # frames rendered on the device (and clip length)
    render_cpu_frames: int  # of which also on the CPU
    crop_size: int  # synthetic actor's crop side
    d_channels: int
    num_workers: int
    manip_arch: str
    manip_batch: int
    manip_steps: int  # per precision
    manip_frames: int  # per synthetic clip
    deca_width: int  # ResNet-50 stem width (DECA's: 64)
    deca_vertices: int  # FLAME 2020: 5023
    deca_crops: int
    torchrun_steps: int


PROFILES = {
    "full": Profile(render_arch="unet_256", render_size=256, render_batch=4, render_steps=50, render_fp16_steps=20,
                    render_e2e_steps=20, render_frames=32, render_cpu_frames=4, crop_size=256, d_channels=32,
                    num_workers=4, manip_arch="ned_original", manip_batch=16, manip_steps=30, manip_frames=40,
                    deca_width=64, deca_vertices=5023, deca_crops=4, torchrun_steps=10),
    "smoke": Profile(render_arch="unet_tiny", render_size=32, render_batch=2, render_steps=4, render_fp16_steps=2,
                     render_e2e_steps=2, render_frames=4, render_cpu_frames=2, crop_size=64, d_channels=8,
                     num_workers=0, manip_arch="gpu_check_tiny", manip_batch=4, manip_steps=2, manip_frames=20,
                     deca_width=4, deca_vertices=60, deca_crops=2, torchrun_steps=2),
}


class Skip(Exception):
    """Raised by a check that does not apply here (reported as SKIP with the reason)."""


@dataclass
class Numbers:
    """What a check measured, and which of its bounds failed."""

    values: dict[str, Any] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def add(self, **values: Any) -> None:
        self.values.update(values)

    def below(self, name: str, value: float, limit: float) -> None:
        """Record ``value`` and fail unless it is finite and ``< limit``."""
        self.values[name] = value
        if not (math.isfinite(value) and value < limit):
            self.failed.append(f"{name}={_fmt(value)} not < {limit:g}")

    def require(self, what: str, ok: bool) -> None:
        if not ok:
            self.failed.append(what)


@dataclass
class Result:
    """One check's outcome (a line of output and an entry of the JSON)."""

    name: str
    status: str
    seconds: float
    peak_gib: float | None
    values: dict[str, Any]
    failed: list[str]
    error: str | None = None
    traceback: str | None = None
    logs: list[str] = field(default_factory=list)


class LogCollector(logging.Handler):
    """Keeps the WARNING and worse log records of the running check (shown under its line)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = f"{record.levelname} {record.name}: {record.getMessage()}"
        if line not in self.records:
            self.records.append(line)


class Context:
    """Device, profile, a scratch folder and the synthetic data the checks share."""

    def __init__(self, device: torch.device, profile: Profile, tmp: Path, ddp_on_cpu: bool, ddp_timeout: float):
        self.device, self.profile, self.tmp = device, profile, tmp
        self.ddp_on_cpu, self.ddp_timeout = ddp_on_cpu, ddp_timeout
        self.artifacts: dict[str, Path] = {}  # checkpoints one check leaves for a later one

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @cached_property
    def celeb(self) -> Path:
        """A synthetic train-mode actor folder (tests' layout)."""
        p = self.profile
        return write_synthetic_celeb(self.tmp / "actor", n_frames=max(p.render_frames, 8), crop_size=p.crop_size)

    @cached_property
    def clips(self) -> list[ClipData]:
        """Synthetic DECA-space (51 values) labelled clips of two actors."""
        return make_synthetic_clips(num_actors=2, frames=self.profile.manip_frames, input_dim=DECA_INPUT_DIM, seed=1)

    def render_options(self, **changes: Any) -> RendererOptions:
        p = self.profile
        base = dict(size=p.render_size, arch=p.render_arch, batch_size=p.render_batch, d_channels=p.d_channels,
                    warp_provider="nmfc", num_workers=p.num_workers, log_every=1, image_every=0, checkpoint_every=0)
        return RendererOptions(**{**base, **changes})

    def manip_options(self, folder: str, **changes: Any) -> ManipulatorOptions:
        p = self.profile
        base = dict(checkpoints_dir=self.tmp / folder, arch=p.manip_arch, backend="deca", batch_size=p.manip_batch,
                    epochs=1, device=str(self.device), seed=3, weights=LossWeights(r1=1.0, ds=1.0))
        return ManipulatorOptions(**{**base, **changes})


# --------------------------------------------------------------------------- helpers


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def strict_fp32() -> Iterator[None]:
    """TF32 off for cuDNN convolutions and CUDA matmuls (IEEE fp32 as on the CPU)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def forced_fp16(ctx: Context) -> AbstractContextManager:
    """Make ``autocast_dtype`` pick float16 (a GPU without bf16) while trainers are built."""
    if not ctx.cuda:
        raise Skip("fp16 autocast is CUDA-only (the CPU path is fp32)")
    return mock.patch("torch.cuda.is_bf16_supported", return_value=False)


def _float64(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return x.detach().cpu().double() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x, np.float64))


def diff(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> tuple[float, float, float]:
    """``(max abs, mean abs, max abs / max |b|)`` of ``a - b`` (float64, on the CPU)."""
    a64, b64 = _float64(a), _float64(b)
    d = (a64 - b64).abs()
    return float(d.max()), float(d.mean()), float(d.max() / b64.abs().max().clamp_min(1e-12))


def all_finite(losses: list[Mapping[str, float]]) -> bool:
    return all(math.isfinite(v) for row in losses for v in row.values())


def params_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def first_last(losses: list[Mapping[str, float]], keys: tuple[str, ...]) -> dict[str, str]:
    """``{key: "first->last"}`` of a loss history."""
    return {k: f"{losses[0][k]:.4g}->{losses[-1][k]:.4g}" for k in keys}


def worker_tail(output: str, lines: int = 10) -> str:
    """The last ``lines`` lines the workers printed: torchrun's own log lines and failure
    report (from its traceback through ``distributed/run.py`` on) left out."""
    rows = [row for row in output.strip().splitlines()
            if not (re.match(r"[WEI]\d{4} ", row) and "torch/distributed/" in row)]
    end = next((i for i, row in enumerate(rows) if "distributed/run.py" in row or "ChildFailedError" in row), len(rows))
    agent = [i for i in range(end) if rows[i].startswith("Traceback")]
    if end < len(rows) and agent and all(r.lstrip().startswith(("File", "^", "main()", "run(")) or not r.strip()
                                          for r in rows[agent[-1] + 1:end]):
        end = agent[-1]
    return "\n".join(rows[max(0, end - lines):end] or rows[-lines:])


def brief(err: BaseException) -> str:
    """``Type: first line (at the innermost ned/ frame, and the raising frame)`` of an exception."""
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if f"{os.sep}ned{os.sep}" in f.filename]
    where = list(dict.fromkeys(f"{Path(f.filename).name}:{f.lineno}" for f in ours[-1:] + frames[-1:]))
    message = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    return f"{type(err).__name__}: {message}" + (f" (at {', '.join(where)})" if where else "")


def error_line(output: str) -> str:
    """The most telling error line of a failed subprocess (torchrun's own summary lines last)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for key in ("Duplicate GPU", "DeviceError", "ned train-renderer: error", "Error:", "error:", "NCCL"):
        hits = [line for line in lines if key in line and "ChildFailedError" not in line]
        if hits:
            return hits[0][:300]
    return lines[-1][:300] if lines else ""


# --------------------------------------------------------------------------- renderer


def check_renderer_forward(ctx: Context, n: Numbers) -> None:
    """Generator forward: CPU fp32 vs device fp32 (TF32 off / default) and device autocast."""
    options = ctx.render_options(batch_size=2)
    torch.manual_seed(0)
    g_cpu: FrameGenerator = build_networks(options.network_options(), generator_only=True).eval()
    torch.nn.init.normal_(g_cpu.head.weight, std=0.05)  # the warp-guided head starts at zero: make it count
    torch.nn.init.normal_(g_cpu.head.bias, std=0.05)
    g_dev = copy.deepcopy(g_cpu).to(ctx.device)
    batch = resident_batch(ctx.celeb, options, torch.device("cpu"))
    cond, warp = batch["cond"][:, 0], batch["warp"][:, 0]
    inputs = (torch.cat([cond] * g_cpu.n_cond_frames, dim=1), warp, warp)  # a clip's first frame
    dev_inputs = tuple(t.to(ctx.device) for t in inputs)
    with torch.no_grad():
        ref = g_cpu(*inputs)
        with strict_fp32():
            strict = g_dev(*dev_inputs)
        default = g_dev(*dev_inputs)
        dtype = autocast_dtype(ctx.device)
        with autocast(ctx.device, dtype):
            mixed = g_dev(*dev_inputs).float()
    n.add(shape=tuple(ref.shape), amp_dtype=str(dtype).replace("torch.", ""), tf32_conv=torch.backends.cudnn.allow_tf32)
    n.below("fp32_max", diff(strict, ref)[0], 1e-3)
    n.below("fp32_default_max", diff(default, ref)[0], 2e-2)
    amp_max, amp_mean, _ = diff(mixed, ref)
    n.add(amp_max=amp_max)
    n.below("amp_mean", amp_mean, 0.02)
    n.require("output outside [0, 1]", bool(mixed.min() >= 0 and mixed.max() <= 1))


def _renderer_steps(ctx: Context, steps: int, fp16: bool) -> tuple[RendererTrainer, list[dict[str, float]], float]:
    """``steps`` train_step calls on a few device-resident batches; returns trainer, losses, seconds."""
    options = ctx.render_options()
    torch.manual_seed(0)
    with forced_fp16(ctx) if fp16 else nullcontext():
        trainer = RendererTrainer(options, build_networks(options.network_options()), ctx.device)
    batches = [resident_batch(ctx.celeb, options, ctx.device, start=k * options.batch_size) for k in range(3)]
    losses = [trainer.train_step(batches[0])]  # also the warm-up (cuDNN, allocator): not timed
    _sync(ctx.device)
    start = time.perf_counter()
    for step in range(1, steps):
        losses.append(trainer.train_step(batches[step % len(batches)]))
    _sync(ctx.device)
    seconds = time.perf_counter() - start
    return trainer, losses, seconds


def _report_renderer_training(n: Numbers, trainer: RendererTrainer, losses: list[dict[str, float]],
                              seconds: float) -> None:
    n.add(steps=trainer.step, amp_dtype=str(trainer.amp_dtype).replace("torch.", ""),
          scaler=trainer.scaler_g.is_enabled(), steps_per_s=round((len(losses) - 1) / max(seconds, 1e-9), 2),
          **first_last(losses, ("G_total", "G_l1", "D_real", "D_fake")))
    n.require("non-finite losses", all_finite(losses))
    n.require("non-finite parameters", params_finite(trainer.generator) and params_finite(trainer.discriminator))
    fp16 = trainer.amp_dtype == torch.float16
    n.require("GradScaler on iff fp16", trainer.scaler_g.is_enabled() == fp16 == trainer.scaler_d.is_enabled())
    if fp16:
        n.add(scale=trainer.scaler_g.get_scale())
        n.require("GradScaler scale not in (0, inf)", 0 < trainer.scaler_g.get_scale() < float("inf"))


def check_renderer_train(ctx: Context, n: Numbers) -> None:
    """Trainer.train_step under the default AMP; the state is kept for renderer.resume."""
    trainer, losses, seconds = _renderer_steps(ctx, ctx.profile.render_steps, fp16=False)
    _report_renderer_training(n, trainer, losses, seconds)
    n.require(f"AMP not on for {ctx.device}", trainer.use_amp == ctx.cuda)
    path = save_checkpoint(ctx.tmp / "renderer_state" / f"step_{trainer.step:07d}.pt", trainer.state_dict())
    ctx.artifacts["renderer_state"] = path


def check_renderer_train_fp16(ctx: Context, n: Numbers) -> None:
    """Trainer.train_step with float16 forced (GradScaler path)."""
    trainer, losses, seconds = _renderer_steps(ctx, ctx.profile.render_fp16_steps, fp16=True)
    _report_renderer_training(n, trainer, losses, seconds)
    n.require("float16 not used", trainer.amp_dtype == torch.float16)


def _resume_renderer(ctx: Context, device: torch.device, fp16: bool) -> dict[str, float]:
    """Load renderer.train's checkpoint into a fresh trainer on ``device`` and take one step."""
    path = ctx.artifacts.get("renderer_state")
    if path is None:
        raise Skip("needs renderer.train's checkpoint")
    options = ctx.render_options()
    with forced_fp16(ctx) if fp16 else nullcontext():
        trainer = RendererTrainer(options, build_networks(options.network_options()), device)
    trainer.load_state_dict(read_renderer_checkpoint(path))
    return trainer.train_step(resident_batch(ctx.celeb, options, device))


def _check_resume(ctx: Context, n: Numbers, resume: Callable[..., dict[str, float]], loss: str) -> None:
    """A checkpoint written on the device resumes on the CPU and under forced fp16 (a
    bf16 run's empty scaler state must not stop an fp16 run); ``loss`` is reported."""
    losses = resume(ctx, torch.device("cpu"), fp16=False)
    n.add(**{f"cpu_{loss}": losses[loss]})
    n.require("non-finite losses after CPU resume", all_finite([losses]))
    if not ctx.cuda:
        n.add(fp16="skipped (CPU)")
        return
    try:
        losses = resume(ctx, ctx.device, fp16=True)
        n.add(**{f"fp16_{loss}": losses[loss]})
        n.require("non-finite losses after fp16 resume", all_finite([losses]))
    except Exception as err:  # noqa: BLE001 - reported as this sub-check's failure
        n.failed.append(f"fp16 resume of a bf16 checkpoint: {brief(err)}")


def check_renderer_resume(ctx: Context, n: Numbers) -> None:
    """renderer.train's checkpoint resumes on the CPU and under forced fp16."""
    _check_resume(ctx, n, _resume_renderer, "G_total")


def check_renderer_infer(ctx: Context, n: Numbers) -> None:
    """train_renderer writes a checkpoint; NeuralRenderer renders it on the device and the CPU."""
    p = ctx.profile
    options = ctx.render_options(steps=p.render_e2e_steps)
    report = train_renderer(ctx.celeb, ctx.tmp / "renderer_ck", options, device=str(ctx.device), quiet=True)
    n.add(e2e_steps_per_s=round(report.steps_per_s, 2), e2e_G_total=report.losses["G_total"])
    n.require("non-finite train_renderer losses", all_finite([report.losses]))
    inputs = render_inputs(ctx.celeb, options.size, p.render_frames, options.warp_provider)
    renderer = NeuralRenderer.load(report.checkpoint, device=str(ctx.device))
    for x in inputs[:2]:
        renderer.render(*x)  # warm-up
    renderer.reset()
    start = time.perf_counter()
    frames = [renderer.render(*x) for x in inputs]
    seconds = time.perf_counter() - start
    cpu = NeuralRenderer.load(report.checkpoint, device="cpu")
    cpu_frames = [cpu.render(*x) for x in inputs[: p.render_cpu_frames]]
    want = (options.size, options.size, 3)
    n.require(f"frames not {want} uint8", all(f.shape == want and f.dtype == np.uint8 for f in frames))
    d_max, d_mean, _ = diff(np.stack(frames[: len(cpu_frames)]), np.stack(cpu_frames))
    n.add(frames=len(frames), frames_per_s=round(len(frames) / max(seconds, 1e-9), 1),
          amp_dtype=str(renderer.amp_dtype).replace("torch.", ""), vs_cpu_max_levels=d_max)
    n.below("vs_cpu_mean_levels", d_mean, 5.0)


# --------------------------------------------------------------------------- manipulator


def _manip_train_set(ctx: Context) -> WindowDataset:
    return WindowDataset([c for c in ctx.clips if c.actor == "A0"], window=10, hop=2)


def _manip_steps(ctx: Context, folder: str, amp: bool, fp16: bool) -> tuple[ManipulatorTrainer, list[dict[str, float]]]:
    options = ctx.manip_options(folder, amp=amp)
    with forced_fp16(ctx) if fp16 else nullcontext():
        trainer = ManipulatorTrainer(options, _manip_train_set(ctx), device=ctx.device)
    losses = [trainer.train_step(trainer.batch_at(trainer.step)) for _ in range(ctx.profile.manip_steps)]
    return trainer, losses


def check_manipulator_train(ctx: Context, n: Numbers) -> None:
    """Trainer steps with AMP (default dtype), forced fp16 and fp32; R1 and diversity terms on."""
    keys = ("G/latent_cyc", "G/latent_adv", "D/latent_real", "D/latent_r1")
    runs = [("amp", True, False), ("fp16", True, True), ("fp32", False, False)]
    for label, amp, fp16 in runs:
        if fp16 and not ctx.cuda:
            n.add(fp16="skipped (CPU)")
            continue
        start = time.perf_counter()
        try:
            trainer, losses = _manip_steps(ctx, f"manip_{label}", amp, fp16)
        except Exception as err:  # noqa: BLE001 - one precision failing should not hide the others
            n.failed.append(f"{label}: {brief(err)}")
            continue
        _sync(ctx.device)
        dtype = str(trainer.amp_dtype).replace("torch.", "")
        n.add(**{f"{label}_dtype": dtype, f"{label}_s": round(time.perf_counter() - start, 2),
                 **{f"{label}_{k}": v for k, v in first_last(losses, keys).items()}})
        n.require(f"{label}: non-finite losses", all_finite(losses))
        n.require(f"{label}: non-finite parameters", all(params_finite(m) for m in trainer.raw.values()))
        n.require(f"{label}: GradScaler on iff fp16",
                  trainer.scalers["g"].is_enabled() == (trainer.amp_dtype == torch.float16))
        if label == "amp":
            ctx.artifacts["manip_state"] = trainer.save(1)


def check_manipulator_checkpoint(ctx: Context, n: Numbers) -> None:
    """Saved on the device, loaded on the CPU: same EMA weights; CPU vs device outputs."""
    trainer, _ = _manip_steps(ctx, "manip_ckpt", amp=True, fp16=False)
    path = trainer.save(1)
    saved = next(iter(torch.load(path, weights_only=True)["generator"].values())).device  # as written
    raw = torch.load(path, map_location="cpu", weights_only=True)
    n.add(saved_on=str(saved))
    n.require("torch.load(map_location='cpu') left tensors off the CPU",
              all(t.device.type == "cpu" for t in raw["generator"].values()))
    nets_cpu, info = load_manipulator(path, backend="deca")
    same = all(torch.equal(a.cpu(), b) for a, b in zip(trainer.ema["generator"].state_dict().values(),
                                                      nets_cpu.generator.state_dict().values()))
    n.require("loaded generator differs from the trainer's EMA generator", same)
    nets_dev, _ = load_manipulator(path, backend="deca")
    cpu = LearnedManipulator(nets_cpu, backend="deca", seed=2, speech_indices=(0,), device="cpu")
    dev = LearnedManipulator(nets_dev, backend="deca", seed=2, speech_indices=(0,), device=ctx.device)
    x, reference = ctx.clips[0].expressions, ctx.clips[4].expressions
    n.add(step=info.step)
    for target, name in (("happy", "label"), (reference, "reference")):
        want = cpu.manipulate(x, target)
        with strict_fp32():
            n.below(f"{name}_fp32_rel", diff(dev.manipulate(x, target), want)[2], 1e-4)
        n.below(f"{name}_default_rel", diff(dev.manipulate(x, target), want)[2], 2e-2)  # cuDNN LSTMs may use TF32


def _resume_manipulator(ctx: Context, device: torch.device, fp16: bool) -> dict[str, float]:
    path = ctx.artifacts.get("manip_state")
    if path is None:
        raise Skip("needs manipulator.train's AMP checkpoint")
    options = ctx.manip_options("manip_resume", device=str(device))
    with forced_fp16(ctx) if fp16 else nullcontext():
        trainer = ManipulatorTrainer(options, _manip_train_set(ctx), device=device)
    trainer.load_state_dict(read_manipulator_checkpoint(path), path=path)
    return trainer.train_step(trainer.batch_at(trainer.step))


def check_manipulator_resume(ctx: Context, n: Numbers) -> None:
    """manipulator.train's checkpoint resumes on the CPU and under forced fp16."""
    _check_resume(ctx, n, _resume_manipulator, "G/latent_cyc")


# --------------------------------------------------------------------------- DECA


def flame_model(n_vertices: int, seed: int = 0) -> dict[str, Any]:
    """Random arrays in FLAME 2020's ``generic_model.pkl`` layout (5 joints, 400 + 36 components)."""
    rng = np.random.default_rng(seed)
    regressor = rng.random((5, n_vertices)) * (rng.random((5, n_vertices)) < 0.1)
    regressor[np.arange(5), np.arange(5)] += 1.0
    return {
        "v_template": rng.normal(size=(n_vertices, 3)) * 0.1,
        "shapedirs": rng.normal(size=(n_vertices, 3, 400)) * 0.001,
        "posedirs": rng.normal(size=(n_vertices, 3, 36)) * 0.001,
        "J_regressor": regressor / regressor.sum(axis=1, keepdims=True),
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "weights": rng.dirichlet(np.ones(5), size=n_vertices),
        "f": rng.integers(0, n_vertices, size=(2 * n_vertices, 3)).astype(np.uint32),
    }


def write_deca_dir(folder: Path, n_vertices: int, width: int, seed: int = 0) -> Path:
    """A ``--deca_dir`` with a random FLAME-layout model and random DECA encoders."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FLAME_FILE).write_bytes(pickle.dumps(flame_model(n_vertices, seed), protocol=4))
    torch.manual_seed(seed)
    torch.save({"E_flame": build_deca_encoder("coarse", width=width).state_dict(),
                "E_detail": build_deca_encoder("detail", width=width).state_dict()}, folder / DECA_FILE)
    return folder


def _deca_vector(params: Any) -> np.ndarray:
    return np.concatenate([np.asarray(getattr(params, k), np.float64).ravel()
                           for k in ("shape", "tex", "exp", "pose", "cam", "light", "detail")])


def check_deca_backend(ctx: Context, n: Numbers) -> None:
    """DecaBackend on the CPU and the device on the same crops: parameters and FLAME vertices."""
    import cv2

    p = ctx.profile
    folder = write_deca_dir(ctx.tmp / "deca", p.deca_vertices, p.deca_width)
    frames = CelebFrames(ctx.celeb)
    crops = [cv2.resize(frames.image(i), (224, 224), interpolation=cv2.INTER_LINEAR) for i in range(p.deca_crops)]
    cpu = DecaBackend(folder, DecaOptions(device="cpu", encoder_width=p.deca_width))
    dev = DecaBackend(folder, DecaOptions(device=str(ctx.device), encoder_width=p.deca_width))
    ref = [cpu.encode(c) for c in crops]
    with strict_fp32():
        strict = [dev.encode(c) for c in crops]
    dev.encode(crops[0])  # warm-up for the timing
    _sync(ctx.device)
    start = time.perf_counter()
    default = [dev.encode(c) for c in crops]
    seconds = time.perf_counter() - start
    a, b, c = (np.stack([_deca_vector(x) for x in group]) for group in (ref, strict, default))
    n.add(crops=len(crops), crops_per_s=round(len(crops) / max(seconds, 1e-9), 1), code_absmax=float(np.abs(a).max()),
          fp32_max=diff(b, a)[0], fp32_default_max=diff(c, a)[0])
    n.below("fp32_rel", diff(b, a)[2], 1e-3)
    n.below("fp32_default_rel", diff(c, a)[2], 5e-2)
    verts_max = max(diff(dev.vertices(r), cpu.vertices(r))[0] for r in ref)  # FLAME alone, same parameters
    n.below("vertices_max_m", verts_max, 1e-4)
    n.require("vertices not (V, 3)", dev.vertices(ref[0]).shape == (p.deca_vertices, 3))


# --------------------------------------------------------------------------- torchrun


@dataclass
class Launch:
    """What a torchrun subprocess did."""

    rc: int | None  # None: killed after the timeout
    seconds: float
    output: str


def torchrun(nproc: int, args: list[str], timeout: float) -> Launch:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m <args>``, killed
    (its whole process group) after ``timeout`` seconds."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), "-m", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        rc = None
    return Launch(rc=rc, seconds=round(time.perf_counter() - start, 1), output=out or "")


def _ddp_device(ctx: Context) -> str:
    if not ctx.cuda and not ctx.ddp_on_cpu:
        raise Skip("torchrun checks need CUDA (pass --ddp_on_cpu to run them with gloo on the CPU)")
    return str(ctx.device)


def _renderer_cli(ctx: Context, folder: Path, device: str) -> list[str]:
    p = ctx.profile
    return ["ned.commands.train_renderer", str(ctx.celeb), "--checkpoints_dir", str(folder),
            "--size", str(min(p.render_size, 64)), "--arch", "unet_tiny", "--steps", str(p.torchrun_steps),
            "--batch_size", "2", "--device", device, "--warp_provider", "nmfc", "--image_every", "0",
            "--checkpoint_every", "0", "--quiet"]


def check_torchrun_renderer(ctx: Context, n: Numbers) -> None:
    """torchrun, one process: ned.commands.train_renderer trains and writes its checkpoint."""
    device = _ddp_device(ctx)
    folder = ctx.tmp / "torchrun_renderer"
    run = torchrun(1, _renderer_cli(ctx, folder, device), timeout=max(90.0, ctx.ddp_timeout))
    n.add(rc=run.rc, launch_s=run.seconds)
    if run.rc != 0:
        n.failed.append(f"rc {run.rc}: {error_line(run.output)}")
        n.add(output_tail=worker_tail(run.output))
        return
    state = read_renderer_checkpoint(folder)
    n.add(step=state["step"], world_size=state["world_size"])
    n.require("checkpoint step differs from --steps", state["step"] == ctx.profile.torchrun_steps)


def write_manipulator_data(root: Path, cache: Path, clips: list[ClipData]) -> None:
    """MEAD-style (empty) clip files whose DECA vectors are already in the expression cache."""
    for clip in clips:
        actor, emotion, _ = clip.name.split("_")
        path = root / f"{actor}_front_{emotion}_level3_001.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        target = cache_path(cache, parse_mead_path(path, root))
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, clip.expressions)


def check_torchrun_manipulator(ctx: Context, n: Numbers) -> None:
    """torchrun, one process: ``ned train-manipulator`` (DECA vectors from a filled cache)."""
    device = _ddp_device(ctx)
    data, cache, folder = ctx.tmp / "mead", ctx.tmp / "mead_cache", ctx.tmp / "torchrun_manip"
    write_manipulator_data(data, cache, ctx.clips)
    args = ["ned.cli", "train-manipulator", "--data", str(data), "--checkpoints_dir", str(folder), "--cache_dir",
            str(cache), "--backend", "deca", "--arch", "ned_small", "--epochs", "1", "--max_steps",
            str(ctx.profile.torchrun_steps), "--batch_size", "4", "--hop", "5", "--val_actors", "A1",
            "--device", device, "--quiet"]
    run = torchrun(1, args, timeout=max(90.0, ctx.ddp_timeout))
    n.add(rc=run.rc, launch_s=run.seconds)
    if run.rc != 0:
        n.failed.append(f"rc {run.rc}: {error_line(run.output)}")
        n.add(output_tail=worker_tail(run.output))
        return
    state = read_manipulator_checkpoint(folder / "01_nets.pth")
    n.add(step=state["step"])
    n.require("checkpoint step differs from --max_steps", state["step"] == ctx.profile.torchrun_steps)


def check_two_procs_one_gpu(ctx: Context, n: Numbers) -> None:
    """torchrun with two processes on a machine of one GPU: must end (error or not), never hang."""
    device = _ddp_device(ctx)
    n.add(gpus=torch.cuda.device_count() if ctx.cuda else 0)
    folder = ctx.tmp / "torchrun_two"
    run = torchrun(2, _renderer_cli(ctx, folder, device), timeout=ctx.ddp_timeout)
    outcome = "trained" if run.rc == 0 else "hang" if run.rc is None else "error"
    n.add(rc=run.rc, launch_s=run.seconds, outcome=outcome)
    n.require(f"hung: no exit within {ctx.ddp_timeout:g} s (killed)", run.rc is not None)
    if run.rc == 0:
        n.add(world_size=read_renderer_checkpoint(folder)["world_size"])
    else:
        n.add(message=error_line(run.output), output_tail=worker_tail(run.output))
    if ctx.cuda and torch.cuda.device_count() < 2:  # ned.distributed names the fix
        n.require("no clear error naming --nproc_per_node", run.rc != 0 and "--nproc_per_node" in run.output)


# --------------------------------------------------------------------------- runner


CHECKS: dict[str, Callable[[Context, Numbers], None]] = {
    "renderer.forward": check_renderer_forward,
    "renderer.train": check_renderer_train,
    "renderer.train_fp16": check_renderer_train_fp16,
    "renderer.resume": check_renderer_resume,
    "renderer.infer": check_renderer_infer,
    "manipulator.train": check_manipulator_train,
    "manipulator.checkpoint": check_manipulator_checkpoint,
    "manipulator.resume": check_manipulator_resume,
    "deca.backend": check_deca_backend,
    "ddp.torchrun_renderer": check_torchrun_renderer,
    "ddp.torchrun_manipulator": check_torchrun_manipulator,
    "ddp.two_procs_one_gpu": check_two_procs_one_gpu,
}
_QUIET_IN_LINE = {"output_tail"}  # in the JSON only


def run_check(name: str, ctx: Context, logs: LogCollector) -> Result:
    """Run one check in isolation: time, peak device memory, log warnings, PASS / FAIL / SKIP."""
    logs.records = []
    if ctx.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(ctx.device)
    numbers = Numbers()
    error = trace = None
    start = time.perf_counter()
    try:
        CHECKS[name](ctx, numbers)
        status = FAIL if numbers.failed else PASS
    except Skip as reason:
        status, error = SKIP, str(reason)
    except Exception as err:  # noqa: BLE001 - a failing check must not stop the others
        status, error, trace = FAIL, f"{type(err).__name__}: {err}", traceback.format_exc()
    peak = round(torch.cuda.max_memory_allocated(ctx.device) / 2**30, 3) if ctx.cuda else None
    return Result(name=name, status=status, seconds=round(time.perf_counter() - start, 2), peak_gib=peak,
                  values=numbers.values, failed=numbers.failed, error=error, traceback=trace, logs=logs.records)


def format_result(r: Result) -> str:
    """``STATUS name  12.3s  peak 1.23 GiB  k=v ...`` and, for failures, indented reasons."""
    peak = f"peak {r.peak_gib:.2f} GiB" if r.peak_gib is not None else "peak -"
    values = " ".join(f"{k}={_fmt(v)}" for k, v in r.values.items() if k not in _QUIET_IN_LINE)
    lines = [f"{r.status} {r.name:<26} {r.seconds:7.1f}s  {peak:<15} {values}".rstrip()]
    if r.status == SKIP:
        lines[0] += f"  ({r.error})"
    lines += [f"    bound: {f}" for f in r.failed]
    lines += [f"    log: {line[:200]}" for line in r.logs[:3]]
    if "output_tail" in r.values:
        lines += [f"    | {line[:240]}" for line in str(r.values["output_tail"]).splitlines()]
    if r.traceback:
        summary = [line for line in r.traceback.strip().splitlines() if line.strip()]
        lines += [f"    {line}" for line in summary[-7:]]
    return "\n".join(lines)


def environment(device: torch.device) -> dict[str, Any]:
    """What ran the checks (also the first printed line)."""
    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), gpus=torch.cuda.device_count(),
                    bf16=torch.cuda.is_bf16_supported(), tf32_conv=torch.backends.cudnn.allow_tf32,
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu (smoke run)")
    parser.add_argument("--profile", choices=sorted(PROFILES), help="sizes (default: full on CUDA, smoke on the CPU)")
    parser.add_argument("--checks", nargs="+", choices=list(CHECKS), metavar="NAME",
                        help="run only these checks (default: all, in the order listed above)")
    parser.add_argument("--ddp_on_cpu", action="store_true", help="run the torchrun checks with gloo on the CPU")
    parser.add_argument("--ddp_timeout", type=float, default=60.0,
                        help="seconds before the two-process torchrun is killed as hung (default 60)")
    parser.add_argument("--time_budget", type=float, default=0.0,
                        help="seconds after which the checks not yet started are skipped (0: no limit)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check.json",
                        help="where the results go as JSON")
    return parser.parse_args(argv)


def run_checks(names: list[str], ctx: Context, time_budget: float) -> list[Result]:
    """Run ``names`` in order, printing each result as it comes; later ones SKIP once the budget is spent."""
    logs = LogCollector()
    logging.getLogger().addHandler(logs)
    results: list[Result] = []
    start = time.perf_counter()
    try:
        for name in names:
            if time_budget and time.perf_counter() - start > time_budget:
                results.append(Result(name, SKIP, 0.0, None, {}, [], error=f"--time_budget {time_budget:g} s spent"))
            else:
                results.append(run_check(name, ctx, logs))
            print(format_result(results[-1]), flush=True)
    finally:
        logging.getLogger().removeHandler(logs)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the checks; returns 0 when none failed, else 1."""
    args = parse_args(argv)
    device = resolve_device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)
    profile = args.profile or ("full" if device.type == "cuda" else "smoke")
    env = environment(device)
    print("gpu_check: " + " ".join(f"{k}={_fmt(v)}" for k, v in env.items()) + f" profile={profile}", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        ctx = Context(device, PROFILES[profile], Path(tmp), args.ddp_on_cpu, args.ddp_timeout)
        results = run_checks(args.checks or list(CHECKS), ctx, args.time_budget)
    counts = {s: sum(r.status == s for r in results) for s in (PASS, FAIL, SKIP)}
    seconds = round(time.perf_counter() - start, 1)
    print(f"gpu_check: {counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped in {seconds}s", flush=True)
    summary = {"environment": env, "profile": {"name": profile, **dataclasses.asdict(PROFILES[profile])},
               "seconds": seconds, "counts": counts, "checks": [dataclasses.asdict(r) for r in results]}
    atomic_write_json(args.json, summary, sort_keys=False)
    print(f"wrote {args.json}")
    return 1 if counts[FAIL] else 0


if __name__ == "__main__":
    sys.exit(main())
