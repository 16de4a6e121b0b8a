"""Speed of the face model: fitting, manipulation and NMFC / shape rasterisation.

Runs on ONE core (BLAS/OpenMP threads are pinned to 1 before numpy loads). The frames
are synthetic: the canonical mesh with random expressions, head poses and 0.3 px
landmark noise, so no footage or model file is needed.

Usage::

    python benchmarks/bench_fit.py [--frames 2000] [--repeat 50] [--json out.json]

Prints one line per measurement (CPU time of this single-threaded process, so other
load on the machine does not inflate it); no assertions (speed is measured, not tested).
Requirements from the issues: fit >= 500 frames/s on one core; NMFC + shape
rasterisation <= 5 ms per 256x256 frame each.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from ned.layout import atomic_write_json  # noqa: E402
from ned.manipulate.emotions import EmotionSpec  # noqa: E402
from ned.manipulate.label import manipulate_labels  # noqa: E402
from ned.morph.fit import FaceModel, Pose, apply_expression_delta, estimate_identity  # noqa: E402
from ned.morph.raster import render_nmfc, render_shape  # noqa: E402
from ned.morph.rig import Blendshape, load_rig  # noqa: E402
from ned.morph.topology import load_topology  # noqa: E402

logger = logging.getLogger("bench_fit")


def synthetic_sequence(frames: int, seed: int = 0) -> np.ndarray:
    """(T, 468, 3) landmarks in a 256x256 crop: random expressions, poses and noise."""
    rng = np.random.default_rng(seed)
    rig, topo = load_rig(), load_topology()
    out = np.empty((frames, 468, 3))
    for t in range(frames):
        w = np.where(rng.random(len(Blendshape)) < 0.3, rng.uniform(0, 0.8, len(Blendshape)), 0.0)
        rot = Rotation.from_euler("ZYX", rng.uniform(-0.25, 0.25, 3)).as_matrix()
        pose = Pose(rot, np.array([128.0, 130.0, 0.0]) + rng.normal(0, 3, 3), rng.uniform(55, 75))
        out[t] = pose.frame_from_canonical(topo.canonical + rig.displacement(w)) + rng.normal(0, 0.3, (468, 3))
    return out.astype(np.float32)


def timed(fn, repeat: int = 1) -> float:
    """Median CPU seconds of ``repeat`` calls (process time: on a shared machine wall
    time also counts other processes; with one thread, CPU time is the one-core cost)."""
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return float(np.median(times))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=50, help="repeats of the per-frame raster timings")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    seq = synthetic_sequence(args.frames)
    results: dict[str, float] = {}

    t = timed(lambda: estimate_identity(seq))
    results["estimate_identity_ms_per_frame"] = 1e3 * t / len(seq)
    model = FaceModel.from_sequence(seq)
    model.fit_batch(seq[:10])  # warm-up
    t = timed(lambda: model.fit_batch(seq), 3)
    results["fit_batch_frames_per_s"] = len(seq) / t
    n_single = min(300, len(seq))
    t = timed(lambda: [model.fit(seq[i]) for i in range(n_single)])
    results["fit_single_frames_per_s"] = n_single / t
    for chunk in (8, 32):
        t = timed(lambda: [model.fit_batch(seq[i:i + chunk]) for i in range(0, len(seq), chunk)])
        results[f"fit_chunks_of_{chunk}_frames_per_s"] = len(seq) / t

    fits = model.fit_batch(seq)
    t = timed(lambda: manipulate_labels(fits.expression, [EmotionSpec("happy"), EmotionSpec("sad")], 25.0), 3)
    results["manipulate_labels_ms_per_frame"] = 1e3 * t / len(seq)
    new = manipulate_labels(fits.expression, [EmotionSpec("happy")], 25.0)
    t = timed(lambda: apply_expression_delta(seq, fits, new), 3)
    results["apply_expression_delta_ms_per_frame"] = 1e3 * t / len(seq)

    verts = seq[: args.repeat]
    render_nmfc(verts[0], (256, 256))
    for name, fn in (("nmfc", render_nmfc), ("shape", render_shape)):
        t = timed(lambda: [fn(v, (256, 256)) for v in verts])
        results[f"render_{name}_256_ms"] = 1e3 * t / len(verts)
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    for key, value in results.items():
        logger.info("%-40s %10.3f", key, value)
    if args.json:
        atomic_write_json(args.json, results, sort_keys=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
