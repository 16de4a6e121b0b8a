"""Speed of the training-free renderer: warp + blend, milliseconds per frame.

Cases: a 1920x1080 frame with a ~300 px wide face, and a 256x256 aligned crop. The face is
scikit-image's ``astronaut()`` (public domain) with the project's 468-point topology; the
landmarks come from ``ned.face`` when its models are installed, else a synthetic disk
mesh stands in. The edit lifts the mouth corners (a smile) by 4% of the face width.

Usage::

    python benchmarks/bench_render.py [--repeat 50] [--json out.json]

Prints one line per case and method; no assertions (speed is measured, not tested).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ned.layout import atomic_write_json
from ned.render.blend import BlendOptions, blend, soft_mask
from ned.render.warp import anchor_ring, warp_piecewise_affine
from ned.render.warp_renderer import RenderOptions, WarpRenderer

from _timing import time_ms  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

logger = logging.getLogger("bench_render")


@dataclass(frozen=True)
class Face:
    image: np.ndarray       # (H, W, 3) uint8
    points: np.ndarray      # (N, 2) float64 frame px
    triangles: np.ndarray   # (M, 3) int32
    oval: np.ndarray        # (K,) int32 ordered loop
    corners: tuple[int, int]


def astronaut_face() -> Face:
    """The astronaut photo with its mesh, or a synthetic disk mesh if ned.face is unavailable."""
    from skimage.data import astronaut

    image = astronaut()
    try:
        from ned.face.models import FaceDetector, FaceMesh, roi_from_detection
        from ned.morph.topology import load_topology

        detection = FaceDetector().detect(image)[0]
        landmarks, _ = FaceMesh()(image, roi_from_detection(detection))
        topo = load_topology()
        return Face(image, landmarks[:, :2].astype(np.float64), topo.triangles,
                    topo.group("face_oval").astype(np.int32), (61, 291))
    except Exception as err:  # noqa: BLE001 - a benchmark falls back to synthetic data
        logger.warning("real mesh unavailable (%s); using a synthetic disk mesh", err)
        from scipy.spatial import Delaunay

        centre, radius = np.array([224.0, 125.0]), 48.0
        rings = [centre[None]]
        for i in range(1, 13):
            k = 6 * i if i < 12 else 36
            t = np.arange(k) / k * 2 * np.pi + 0.3 * i
            rings.append(centre + radius * i / 12 * np.stack([np.cos(t), np.sin(t)], 1))
        pts = np.concatenate(rings)
        oval = np.arange(len(pts) - 36, len(pts), dtype=np.int32)
        corners = tuple(int(np.argmin(np.linalg.norm(pts - centre - d, axis=1))) for d in ((-20, 25), (20, 25)))
        return Face(image, pts, Delaunay(pts).simplices.astype(np.int32), oval, corners)


def place(face: Face, face_width_px: float, canvas: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Scale the photo so the face is ``face_width_px`` wide and centre it on a canvas (h, w)."""
    scale = face_width_px / float(np.ptp(face.points[face.oval, 0]))
    centre = face.points[face.oval].mean(axis=0) * scale
    h, w = canvas
    frame_from_photo = np.array([[scale, 0, w / 2 - centre[0]], [0, scale, h / 2 - centre[1]]])
    frame = cv2.warpAffine(face.image, frame_from_photo, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
    points = face.points @ frame_from_photo[:, :2].T + frame_from_photo[:, 2]
    return frame, points


def smile(points: np.ndarray, corners: tuple[int, int], oval: np.ndarray, amount: float) -> np.ndarray:
    """Lift the mouth corners by ``amount`` x face width with a Gaussian falloff."""
    width = float(np.ptp(points[oval, 0]))
    dst = points.copy()
    for c in corners:
        weight = np.exp(-np.sum((points - points[c]) ** 2, axis=1) / (2 * (0.12 * width) ** 2))
        dst[:, 1] -= amount * width * weight
    return dst


def tune_malloc(threshold: int = 64 << 20) -> bool:
    """glibc only: raise the mmap threshold so large temporaries come from the heap."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, threshold)) and bool(libc.mallopt(m_trim_threshold, 2 * threshold))
    except (OSError, AttributeError):
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None, help="write the results to this file")
    parser.add_argument("--tune-malloc", action="store_true",
                        help="keep freed blocks < 64 MiB in the heap (glibc mallopt): each frame's "
                             "temporaries then reuse mapped pages instead of page-faulting fresh ones")
    args = parser.parse_args()
    if args.tune_malloc:
        tune_malloc()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cv2.setNumThreads(1)
    face = astronaut_face()
    results = []
    for name, canvas, width in (("1080p, 300 px face", (1080, 1920), 300.0), ("256 crop", (256, 256), 150.0)):
        frame, src = place(face, width, canvas)
        dst = smile(src, face.corners, face.oval, 0.04)
        anchors = anchor_ring(src, dst, face.oval, RenderOptions().ring_scale)
        renderer = WarpRenderer(face.triangles, face.oval)
        tris = renderer.mesh.triangles
        # Warp alone, on the region the renderer would use.
        box = np.concatenate([anchors.min(0) - 20, anchors.max(0) + 20]).round().astype(int)
        box = np.clip(box, 0, [canvas[1], canvas[0], canvas[1], canvas[0]])
        region = frame[box[1]:box[3], box[0]:box[2]]
        off = box[:2].astype(np.float64)
        warp_ms = time_ms(lambda: warp_piecewise_affine(region, src - off, dst - off, tris, anchors=anchors - off,
                                                        interpolation="cubic", map_step=2), args.repeat)
        warped, _ = warp_piecewise_affine(region, src - off, dst - off, tris, anchors=anchors - off,
                                          interpolation="cubic", map_step=2)
        centre = src[face.oval].mean(axis=0)
        polygon = centre + (dst[face.oval] - centre) * RenderOptions().mask_scale - off
        feather = BlendOptions().resolve_feather_px(float(np.ptp(dst[face.oval, 0])))
        mask_ms = time_ms(lambda: soft_mask(polygon, region.shape[:2], feather), args.repeat)
        mask = soft_mask(polygon, region.shape[:2], feather)
        blend_ms = time_ms(lambda: blend(region, warped, mask, BlendOptions()), args.repeat)
        row = {"case": name, "frame": f"{canvas[1]}x{canvas[0]}", "region": f"{region.shape[1]}x{region.shape[0]}",
               "warp_ms": round(warp_ms, 2), "mask_ms": round(mask_ms, 2), "blend_ms": round(blend_ms, 2)}
        variants = {
            "render_ms": RenderOptions(),                                   # defaults: cubic, laplacian
            "render_linear_ms": RenderOptions(interpolation="linear"),
            "render_exact_map_ms": RenderOptions(map_step=1),
            "render_copy_ms": RenderOptions(blend=BlendOptions(method="copy")),
            "render_poisson_ms": RenderOptions(blend=BlendOptions(method="poisson")),
        }
        for key, opts in variants.items():
            r = WarpRenderer(face.triangles, face.oval, opts)
            repeat = args.repeat if "poisson" not in key else max(3, args.repeat // 10)
            row[key] = round(time_ms(lambda: r.render(frame, src, dst), repeat), 2)
        results.append(row)
        logger.info("%s", "  ".join(f"{k}={v}" for k, v in row.items()))
    if args.json:
        atomic_write_json(args.json, results, sort_keys=False)


if __name__ == "__main__":
    main()
