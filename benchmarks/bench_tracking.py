"""Speed of face tracking (detect + 468-point mesh + iris + smoothing), frames per second.

The clip is ../shared/media/talking/d10.mp4 (512x512) when present, else a synthetic
512x512 clip made from scikit-image's ``astronaut()`` (public domain) moving and
rotating slightly. Frames are decoded first (decode speed is reported separately), then
tracked from memory with no disk writes. Also reports the time of each model call.

Usage::

    python benchmarks/bench_tracking.py [--clip PATH] [--frames N] [--repeat 2] [--json out.json]

Target (issue 2): >= 100 frames/s on 2 cores. No assertions: speed is measured, not tested.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ned.layout import atomic_write_json
from ned.face import FaceTracker, TrackOptions
from ned.face import models

logger = logging.getLogger("bench_tracking")
DEFAULT_CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "talking" / "d10.mp4"


@dataclass(frozen=True)
class _Frame:
    index: int
    rgb: np.ndarray
    pts: int | None
    time_s: float


def synthetic_clip(frames: int = 250, size: int = 512, fps: float = 25.0) -> list[_Frame]:
    """The astronaut photo, shifted and rotated a little each frame."""
    from skimage.data import astronaut

    image = astronaut()
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA) if image.shape[0] != size else image
    out = []
    for i in range(frames):
        t = i / fps
        m = cv2.getRotationMatrix2D((size / 2, size / 2), 4.0 * np.sin(2 * np.pi * 0.3 * t), 1.0)
        m[:, 2] += [12.0 * np.sin(2 * np.pi * 0.2 * t), 6.0 * np.cos(2 * np.pi * 0.25 * t)]
        rgb = cv2.warpAffine(image, m, (size, size), borderMode=cv2.BORDER_REFLECT)
        out.append(_Frame(i, rgb, None, t))
    return out


def decode(path: Path, max_frames: int | None) -> tuple[list, float, float]:
    """Decode a clip into memory; returns (frames, seconds, fps)."""
    from ned import media

    info = media.probe(path)
    start = time.perf_counter()
    frames = list(media.iter_frames(path, max_frames=max_frames))
    return frames, time.perf_counter() - start, float(info.fps)


def time_models(rgb: np.ndarray, repeat: int = 100) -> dict[str, float]:
    """Milliseconds per call of each model wrapper (including crop and decoding)."""
    short, full = models.FaceDetector("short"), models.FaceDetector("full")
    mesh, iris = models.FaceMesh(), models.IrisLandmarker()
    det = short.detect(rgb) or full.detect(rgb)
    roi = models.roi_from_detection(det[0]) if det else models.Roi(rgb.shape[1] / 2, rgb.shape[0] / 2, 200)
    landmarks, _ = mesh(rgb, roi)
    eye = models.eye_roi(landmarks[33], landmarks[133])
    calls = {
        "detect_short_ms": lambda: short.detect(rgb),
        "detect_full_ms": lambda: full.detect(rgb),
        "mesh_ms": lambda: mesh(rgb, roi),
        "iris_one_eye_ms": lambda: iris(rgb, eye, False),
    }
    out = {}
    for name, call in calls.items():
        call()
        start = time.perf_counter()
        for _ in range(repeat):
            call()
        out[name] = (time.perf_counter() - start) / repeat * 1e3
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="512x512 clip (default: d10.mp4)")
    parser.add_argument("--frames", type=int, default=None, help="frames to use (default: all)")
    parser.add_argument("--repeat", type=int, default=2, help="tracking runs; the best is reported")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")

    result: dict[str, object] = {"cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]}
    if hasattr(os, "sched_getaffinity"):
        result["cpus_usable"] = len(os.sched_getaffinity(0))
    if args.clip.is_file():
        frames, seconds, fps = decode(args.clip, args.frames)
        result.update(clip=str(args.clip), decode_fps=len(frames) / seconds)
    else:
        frames, fps = synthetic_clip(args.frames or 250), 25.0
        result.update(clip="synthetic astronaut 512x512", decode_fps=None)
    height, width = frames[0].rgb.shape[:2]
    result.update(frames=len(frames), width=width, height=height)

    tracker = FaceTracker(TrackOptions())
    best, best_cpu = float("inf"), float("inf")
    for _ in range(max(args.repeat, 1)):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _frame, _obs in tracker.track(frames, fps=fps):
            pass
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    # Wall-clock speed depends on what else runs on the machine; CPU-time speed (frames
    # per CPU-second of this process) is what the tracker achieves on one idle core.
    result.update(track_fps=len(frames) / best, track_ms_per_frame=best / len(frames) * 1e3,
                  track_fps_cpu_time=len(frames) / best_cpu,
                  tracked=tracker.stats.tracked, detector_runs=tracker.stats.detector_runs)
    result.update(time_models(frames[0].rgb))

    for key, value in result.items():
        print(f"{key:>20}: {value:.2f}" if isinstance(value, float) else f"{key:>20}: {value}")
    if args.json:
        atomic_write_json(args.json, result, sort_keys=False)


if __name__ == "__main__":
    main()
