"""Speed of the neural renderer on the CPU: training steps/s and rendering frames/s.

Data: a synthetic train-mode actor folder (:func:`ned.render.dataset.write_synthetic_celeb`,
256 px crops as preprocessing writes them) trained at reduced sizes.

- training: :meth:`ned.render.train.Trainer.train_step` (D step, G step, EMA) on a fixed
  batch, after one warm-up step; and end-to-end steps/s of :func:`train_renderer`
  (data loading, NMFC warp, logging and a checkpoint included);
- rendering: :meth:`ned.render.neural_renderer.NeuralRenderer.render` frame by frame
  (conditioning rasterised, network, uint8 out), and the warp provider that feeds it.

Usage::

    python benchmarks/bench_neural_renderer.py [--threads 2] [--sizes 64 128] [--arch unet_small]
        [--batch_size 4] [--steps 10] [--frames 30] [--warp_provider mesh] [--json out.json]

No assertions: speed is measured, not tested.
"""

from __future__ import annotations

import argparse
import logging
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ned.layout import atomic_write_json
from ned.render.dataset import CelebFrames, RendererDataset, make_warp_provider, write_synthetic_celeb
from ned.render.neural_renderer import NeuralRenderer
from ned.render.train import Trainer, TrainOptions, train_renderer

logger = logging.getLogger("bench_neural_renderer")


def _rates(n: int, wall0: float, cpu0: float) -> tuple[float, float]:
    """(per wall second, per CPU second of this process): the second is robust to a
    machine shared with other jobs (with one thread it is the speed of one free core)."""
    return n / (time.perf_counter() - wall0), n / max(time.process_time() - cpu0, 1e-9)


def bench_train_step(celeb: Path, options: TrainOptions, steps: int) -> tuple[float, float]:
    """Steps per (wall, CPU) second of ``train_step`` on one fixed batch (after a warm-up step)."""
    from ned.render.networks import build_networks

    torch.manual_seed(0)
    trainer = Trainer(options, build_networks(options.network_options()), torch.device("cpu"))
    ds = RendererDataset(CelebFrames(celeb), options.size, use_warp=options.use_warp,
                         warp_provider=make_warp_provider(options.warp_provider))
    batch = torch.utils.data.default_collate([ds[(0, i % len(ds))] for i in range(options.batch_size)])
    trainer.train_step(batch)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        trainer.train_step(batch)
    return _rates(steps, wall0, cpu0)


def bench_end_to_end(celeb: Path, options: TrainOptions, steps: int, folder: Path) -> tuple[float, Path]:
    """Steps per second of a whole ``train_renderer`` run (data, logging, one checkpoint)."""
    opts = TrainOptions(**{**options.to_dict(), "steps": steps, "image_every": 0, "checkpoint_every": 0})
    report = train_renderer(celeb, folder, opts, device="cpu", quiet=True)
    return report.steps_per_s, report.checkpoint


def bench_render(celeb: Path, checkpoint: Path, size: int, frames: int, provider: str
                 ) -> tuple[tuple[float, float], tuple[float, float]]:
    """Frames per (wall, CPU) second of rendering, and of the warp provider, over a clip."""
    renderer = NeuralRenderer.load(checkpoint, size=size, device="cpu")
    f = CelebFrames(celeb)
    ds = RendererDataset(f, size, window=1, use_warp=renderer.use_warp, warp_provider=make_warp_provider(provider))
    to8 = lambda t: (t.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)  # noqa: E731
    inputs = []
    for i in range(min(frames, len(ds))):
        item = ds[(0, i)]
        inputs.append((to8(item["cond"][0, 0:3]), to8(item["cond"][0, 6:9]), f.eye_points(i) * size / f.crop_size,
                       to8(item["warp"][0]) if renderer.use_warp else None))
    renderer.render(*inputs[0])  # warm-up
    renderer.reset()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for x in inputs:
        renderer.render(*x)
    render = _rates(len(inputs), wall0, cpu0)
    warp = make_warp_provider(provider)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(len(inputs)):
        warp(f, (i + 1) % len(f), i, size)
    return render, _rates(len(inputs), wall0, cpu0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--arch", default="unet_small")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--warp_provider", default="mesh", choices=["mesh", "nmfc"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        celeb = write_synthetic_celeb(Path(tmp) / "actor", n_frames=max(args.frames, 8), crop_size=256)
        for size in args.sizes:
            options = TrainOptions(size=size, arch=args.arch, batch_size=args.batch_size, log_every=1000,
                                   warp_provider=args.warp_provider)
            (step_s, step_cpu) = bench_train_step(celeb, options, args.steps)
            e2e, ckpt = bench_end_to_end(celeb, options, args.steps, Path(tmp) / f"ck{size}")
            (render_fps, render_cpu), (warp_fps, warp_cpu) = bench_render(celeb, ckpt, size, args.frames,
                                                                          args.warp_provider)
            row = dict(arch=args.arch, size=size, batch_size=args.batch_size, threads=args.threads,
                       train_steps_per_s=round(step_s, 3), train_steps_per_cpu_s=round(step_cpu, 3),
                       end_to_end_steps_per_s=round(e2e, 3), render_fps=round(render_fps, 1),
                       render_frames_per_cpu_s=round(render_cpu, 1), warp_provider=args.warp_provider,
                       warp_fps=round(warp_fps, 1), warp_frames_per_cpu_s=round(warp_cpu, 1))
            results.append(row)
            print(f"{args.arch} {size}px batch {args.batch_size} ({args.threads} threads): train_step "
                  f"{step_s:.2f} steps/s wall ({step_cpu:.2f} per CPU-s), end-to-end {e2e:.2f} steps/s; "
                  f"render {render_fps:.1f} frames/s ({render_cpu:.1f} per CPU-s); {args.warp_provider} warp "
                  f"{warp_fps:.1f} frames/s ({warp_cpu:.1f} per CPU-s)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:.0f} MB")
    if args.json:
        atomic_write_json(args.json, {"results": results, "peak_rss_mb": round(peak_mb)}, sort_keys=False)


if __name__ == "__main__":
    main()
