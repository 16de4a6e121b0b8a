"""Speed of the learned NED manipulator on the CPU: training steps/s and inference frames/s.

Training: :meth:`ned.manipulate.train.Trainer.train_step` (2 D steps, 2 G steps, EMA) on
synthetic windows of 10 frames. Inference: :func:`ned.manipulate.learned.translate_sequence`
on a synthetic clip, every frame a window start (hop 1, as the original release) and hop 5.
Both architectures: ``ned_original`` (the release's sizes) and ``ned_small``; input sizes
51 (DECA) and K (our face model).

Usage::

    python benchmarks/bench_manipulator.py [--threads 1] [--steps 10] [--frames 250] [--json out.json]

No assertions: speed is measured, not tested.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ned.layout import atomic_write_json
from ned.manipulate.backends import backend_input_dim
from ned.manipulate.dataset import WindowDataset, make_synthetic_clips
from ned.manipulate.learned import translate_sequence
from ned.manipulate.train import Trainer, TrainOptions

logger = logging.getLogger("bench_manipulator")


def bench_training(arch: str, input_dim: int, batch_size: int, steps: int) -> float:
    """Training steps per second (after one warm-up step)."""
    data = WindowDataset(make_synthetic_clips(num_actors=1, frames=60, input_dim=input_dim), window=10, hop=1)
    with tempfile.TemporaryDirectory() as folder:
        options = TrainOptions(checkpoints_dir=folder, arch=arch, batch_size=batch_size, device="cpu",
                               mouth_indices=(0,), backend="deca" if input_dim == 51 else "face3d")
        trainer = Trainer(options, data)
        trainer.train_step(trainer.batch_at(0))
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(trainer.batch_at(trainer.step))
        return steps / (time.perf_counter() - start)


def bench_inference(trainer_nets, frames: int, hop: int, repeat: int = 2) -> float:
    """Frames per second of label-driven translation of a ``frames``-long clip."""
    x = np.random.default_rng(0).normal(size=(frames, trainer_nets.arch.input_dim)).astype(np.float32)
    translate_sequence(trainer_nets, x[:20], "happy", hop=hop)
    start = time.perf_counter()
    for _ in range(repeat):
        translate_sequence(trainer_nets, x, "happy", hop=hop)
    return repeat * frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per case")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--frames", type=int, default=250, help="frames of the inference clip")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    from ned.manipulate.networks import build_networks, create_arch

    k = backend_input_dim("face3d") or 31
    results = []
    for arch in ("ned_original", "ned_small"):
        for dim in (51, k):
            steps_s = bench_training(arch, dim, args.batch_size, args.steps)
            nets = build_networks(create_arch(arch, input_dim=dim), with_discriminator=False).eval()
            fps1 = bench_inference(nets, args.frames, hop=1)
            fps5 = bench_inference(nets, args.frames, hop=5)
            row = {"arch": arch, "input_dim": dim, "batch_size": args.batch_size, "threads": args.threads,
                   "train_steps_per_s": round(steps_s, 3), "infer_fps_hop1": round(fps1, 1),
                   "infer_fps_hop5": round(fps5, 1)}
            results.append(row)
            print(f"{arch:13s} D={dim:2d}  train {steps_s:6.2f} steps/s (batch {args.batch_size})   "
                  f"inference {fps1:7.1f} frames/s (hop 1), {fps5:7.1f} frames/s (hop 5)")
    if args.json:
        atomic_write_json(args.json, results, sort_keys=False)


if __name__ == "__main__":
    main()
