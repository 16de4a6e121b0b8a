"""Prepared GPU throughput check of the neural renderer (AMP on, synthetic data).

Measures, at the paper's 256 px by default:

1. ``train_step`` throughput on a fixed batch already on the device (pure compute:
   D step + G step + EMA, autocast bf16/fp16), after warm-up steps;
2. end-to-end ``train_renderer`` steps/s on a synthetic actor folder (data loading with
   ``--num_workers``, the training-free renderer's warp, logging, one checkpoint);
3. rendering frames/s of :class:`ned.render.neural_renderer.NeuralRenderer` (batch 1,
   frame by frame, as the pipeline calls it);

plus peak device memory, and writes everything as JSON. Runs on the CPU with tiny
settings (``--device cpu --size 64 --steps 3``) so the script itself is testable anywhere.

Usage::

    python benchmarks/gpu_neural_renderer.py [--device cuda] [--size 256] [--arch unet_256]
        [--batch_size 8] [--steps 300] [--e2e_steps 100] [--num_workers 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import logging
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ned.layout import atomic_write_json
from ned.distributed import resolve_device
from ned.render.dataset import CelebFrames, RendererDataset, make_warp_provider, write_synthetic_celeb
from ned.render.networks import build_networks
from ned.render.neural_renderer import NeuralRenderer
from ned.render.train import Trainer, TrainOptions, train_renderer

logger = logging.getLogger("gpu_neural_renderer")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resident_batch(celeb: Path, options: TrainOptions, device: torch.device, start: int = 0
                   ) -> dict[str, torch.Tensor]:
    """One training batch of ``options.batch_size`` windows (from window ``start`` on), on ``device``."""
    ds = RendererDataset(CelebFrames(celeb), options.size, window=options.window,
                         warp_provider=make_warp_provider(options.warp_provider))
    items = [ds[(0, (start + i) % len(ds))] for i in range(options.batch_size)]
    return {k: v.to(device) for k, v in torch.utils.data.default_collate(items).items()}


def render_inputs(celeb: Path, size: int, frames: int, provider: str
                  ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``NeuralRenderer.render`` arguments ``(nmfc, shape, eye_landmarks, warped)`` of the
    first ``frames`` frames, at ``size`` px."""
    f = CelebFrames(celeb)
    ds = RendererDataset(f, size, window=1, warp_provider=make_warp_provider(provider))
    to8 = lambda t: (t.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)  # noqa: E731
    inputs = []
    for i in range(min(frames, len(ds))):
        item = ds[(0, i)]
        inputs.append((to8(item["cond"][0, 0:3]), to8(item["cond"][0, 6:9]),
                       f.eye_points(i) * size / f.crop_size, to8(item["warp"][0])))
    return inputs


def bench_compute(celeb: Path, options: TrainOptions, device: torch.device, steps: int, warmup: int) -> dict:
    """Steps/s of ``train_step`` on one batch resident on the device."""
    torch.manual_seed(0)
    trainer = Trainer(options, build_networks(options.network_options()), device)
    batch = resident_batch(celeb, options, device)
    for _ in range(warmup):
        trainer.train_step(batch)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    losses = {}
    for _ in range(steps):
        losses = trainer.train_step(batch)
    _sync(device)
    seconds = time.perf_counter() - start
    out = {"steps": steps, "seconds": round(seconds, 3), "steps_per_s": round(steps / seconds, 3),
           "windows_per_s": round(steps * options.batch_size / seconds, 2),
           "frames_per_s": round(steps * options.batch_size * options.window / seconds, 2),
           "amp": trainer.use_amp,
           "amp_dtype": str(trainer.amp_dtype).replace("torch.", "") if trainer.use_amp else None,
           "last_losses": {k: round(v, 4) for k, v in losses.items()},
           "generator_params": sum(p.numel() for p in trainer.generator.parameters())}
    if device.type == "cuda":
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def bench_end_to_end(celeb: Path, options: TrainOptions, device: str, folder: Path) -> tuple[dict, Path]:
    """A whole ``train_renderer`` run: returns its throughput and checkpoint."""
    report = train_renderer(celeb, folder, options, device=device, quiet=True)
    return {"steps": report.end_step, "steps_per_s": round(report.steps_per_s, 3),
            "seconds": round(report.seconds, 2)}, report.checkpoint


def bench_render(celeb: Path, checkpoint: Path, device: str, frames: int, provider: str) -> dict:
    """Frames/s of frame-by-frame rendering (conditioning prepared beforehand)."""
    renderer = NeuralRenderer.load(checkpoint, device=device)
    inputs = render_inputs(celeb, renderer.size, frames, provider)
    for x in inputs[:3]:
        renderer.render(*x)
    renderer.reset()
    start = time.perf_counter()
    for x in inputs:
        renderer.render(*x)  # returns uint8 on the host: includes the device sync
    seconds = time.perf_counter() - start
    return {"frames": len(inputs), "frames_per_s": round(len(inputs) / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--arch", default="unet_256")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300, help="timed train_step calls (compute only)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--e2e_steps", type=int, default=100, help="steps of the end-to-end run (0: skip)")
    parser.add_argument("--num_workers", type=int, default=8)
    parser.add_argument("--frames", type=int, default=64, help="synthetic clip length and frames rendered")
    parser.add_argument("--no_amp", action="store_true")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/gpu_neural_renderer.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    options = TrainOptions(size=args.size, arch=args.arch, batch_size=args.batch_size, amp=not args.no_amp,
                           steps=max(args.e2e_steps, 1), num_workers=args.num_workers, log_every=10,
                           image_every=0, checkpoint_every=0)
    result: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "size": args.size, "arch": args.arch, "batch_size": args.batch_size,
    }
    with tempfile.TemporaryDirectory() as tmp:
        celeb = write_synthetic_celeb(Path(tmp) / "actor", n_frames=max(args.frames, 8), crop_size=256)
        result["compute"] = bench_compute(celeb, options, device, args.steps, args.warmup)
        print(f"[{result['device']}] train_step {args.arch} {args.size}px batch {args.batch_size}: "
              f"{result['compute']['steps_per_s']} steps/s, {result['compute']['frames_per_s']} frames/s "
              f"(amp {result['compute']['amp_dtype']}, peak {result['compute'].get('peak_memory_gib', '-')} GiB)",
              flush=True)
        if args.e2e_steps:
            result["end_to_end"], ckpt = bench_end_to_end(celeb, options, str(device), Path(tmp) / "ck")
            print(f"end-to-end train_renderer ({args.num_workers} workers): {result['end_to_end']['steps_per_s']} "
                  f"steps/s", flush=True)
            result["render"] = bench_render(celeb, ckpt, str(device), args.frames, options.warp_provider)
            print(f"render: {result['render']['frames_per_s']} frames/s", flush=True)
    atomic_write_json(args.json, result, sort_keys=False)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
