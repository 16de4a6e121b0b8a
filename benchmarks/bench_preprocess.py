"""Speed and memory of ``ned preprocess --mode test`` and of the NMFC / shape rasteriser.

1. ``preprocess --mode test`` on a clip, every folder written (``full_frames/`` as JPEG
   quality 95, the rest PNG / text / npz), in a fresh child process (``ned.bench``),
   ``--repeat`` times; then once on the same clip looped 4 times for peak memory.
   Reported: frames/s (wall clock), CPU seconds, peak resident memory clip vs x4.
2. NMFC + shape images of 256x256 crops, from the clip's own tracked landmarks (the
   crops preprocessing writes): milliseconds of CPU per frame for both images
   (``render_nmfc_and_shape``, as preprocessing calls it) and for the two separate calls.

Usage::

    python benchmarks/bench_preprocess.py [--clip PATH] [--repeat 2] [--no-loop] [--json out.json]

Targets (issue 2): >= 15 frames/s on a 1080p clip on 2 cores, peak memory independent
of the clip's length; NMFC + shape <= 5 ms per 256x256 frame. No assertions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from ned.bench import format_table, results_json, run_bench
from ned.layout import atomic_write_json

DEFAULT_CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "mead_1080p" / "W015_level_1_neutral_030.mp4"


def crop_landmarks(clip: Path | None, frames: int) -> list[np.ndarray]:
    """Tracked landmarks of the first ``frames`` frames in the 256x256 crop preprocessing writes."""
    from ned.face.tracker import FaceTracker
    from ned.media import iter_frames, probe
    from ned.preprocess import frame_geometry
    from ned.sample import sample_clip_path

    clip = clip or sample_clip_path()
    info = probe(clip)
    out = []
    for frame, obs in FaceTracker().track(iter_frames(clip, max_frames=frames), fps=info.fps):
        if obs.status != "missing":
            out.append(frame_geometry(obs, frame.rgb.shape[:2], 256).landmarks_crop[:468].copy())
    return out


def raster_ms(points: list[np.ndarray], repeat: int = 5) -> dict[str, float]:
    """CPU milliseconds per frame (median of ``repeat`` passes over ``points``)."""
    from ned.morph.raster import render_nmfc, render_shape, render_nmfc_and_shape

    def per_frame(fn) -> float:
        fn(points[0])
        times = []
        for _ in range(repeat):
            t0 = time.process_time()
            for p in points:
                fn(p)
            times.append((time.process_time() - t0) / len(points) * 1e3)
        return statistics.median(times)

    size = (256, 256)
    return {
        "nmfc_and_shape_ms": per_frame(lambda p: render_nmfc_and_shape(p, size)),
        "nmfc_ms": per_frame(lambda p: render_nmfc(p, size)),
        "shape_ms": per_frame(lambda p: render_shape(p, size)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP if DEFAULT_CLIP.is_file() else None,
                    help="video (default: the 1080p MEAD clip W015 when present, else the built-in sample)")
    ap.add_argument("--repeat", type=int, default=2, help="preprocessing runs")
    ap.add_argument("--no-loop", action="store_true", help="skip the 4x-looped memory run")
    ap.add_argument("--raster-frames", type=int, default=40, help="frames whose landmarks time the rasteriser")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    results = run_bench(args.clip, stages=("preprocess",), loop_memory=not args.no_loop, repeat=args.repeat,
                        progress=lambda m: print(f"bench_preprocess: {m}", file=sys.stderr, flush=True))
    pre = results[0]
    raster = raster_ms(crop_landmarks(args.clip, args.raster_frames))
    print(format_table(results))
    print()
    fps_runs = [pre.frames / s for s in pre.seconds_runs]
    print(f"{'preprocess fps (wall)':<28} median {statistics.median(fps_runs):.1f}  "
          f"range {min(fps_runs):.1f}-{max(fps_runs):.1f}")
    print(f"{'preprocess fps (CPU time)':<28} {pre.frames / pre.cpu_seconds:.1f} frames per CPU-second")
    if pre.peak_rss_mb_looped4 is not None:
        print(f"{'peak MB clip / x4':<28} {pre.peak_rss_mb:.0f} / {pre.peak_rss_mb_looped4:.0f}")
    for key, value in raster.items():
        print(f"{key:<28} {value:.2f}")
    figures = results_json(results, args.clip)
    figures["raster_256"] = raster
    figures["full_frames_format"] = "jpg quality 95"
    if args.json:
        atomic_write_json(args.json, figures, sort_keys=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
