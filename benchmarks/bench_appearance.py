"""Speed of the appearance step (ned.appearance), milliseconds per frame.

Cases: a 256x256 aligned crop with a 150 px face and a 1920x1080 frame with a 300 px
face. The face is scikit-image's ``astronaut()`` (public domain) with its MediaPipe mesh
(``ned.face``); the edit is a smile-and-frown expression change (no footage is read).
For each case it reports the warp renderer alone, the renderer with the appearance step
in each mode (built-in maps; reference ratio transfer, the reference's detail computed
every frame; exemplar bank, detail maps precomputed), and the step's share of the
renderer's time; and the brow offset measured once per kept reference frame
(:mod:`ned.appearance.brows`). The share of ``ned edit``'s time is smaller still (decode, tracking,
fitting and encoding are not counted here).

Usage::

    python benchmarks/bench_appearance.py [--repeat 30] [--json out.json]

No assertions: speed is measured, not tested.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np

from ned.layout import atomic_write_json
from ned.appearance import AppearanceFrame, AppearanceOptions, ExemplarBank, ExpressionAppearance, ReferenceFrame
from ned.appearance.brows import with_brow_offsets
from ned.appearance.texture import uv_raster
from ned.morph.rig import Blendshape
from ned.morph.topology import load_topology
from ned.render.warp_renderer import RenderOptions, WarpRenderer

from _timing import time_ms  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

logger = logging.getLogger("bench_appearance")
K = len(Blendshape)


def astronaut_mesh() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photo and its 468-point mesh (photo pixels)."""
    from skimage.data import astronaut

    from ned.face.models import FaceDetector, FaceMesh, roi_from_detection

    image = astronaut()
    detection = FaceDetector().detect(image)[0]
    landmarks, _ = FaceMesh()(image, roi_from_detection(detection))
    return image, landmarks[:468, :2].astype(np.float64)


def place(image: np.ndarray, points: np.ndarray, face_width: float, canvas: tuple[int, int]):
    """Scale the photo so the face is ``face_width`` px wide, centred on a canvas (h, w)."""
    oval = load_topology().group("face_oval")
    scale = face_width / float(np.ptp(points[oval, 0]))
    centre = points[oval].mean(axis=0) * scale
    h, w = canvas
    m = np.array([[scale, 0, w / 2 - centre[0]], [0, scale, h / 2 - centre[1]]])
    frame = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return frame, (points @ m[:, :2].T + m[:, 2]).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cv2.setNumThreads(1)
    topo = load_topology()
    image, mesh = astronaut_mesh()
    src_w = np.zeros(K, np.float32)
    dst_w = src_w.copy()
    for b, w in ((Blendshape.CHEEK_RAISE_L, 0.6), (Blendshape.CHEEK_RAISE_R, 0.6), (Blendshape.LIP_CORNER_PULL_L, 0.8),
                 (Blendshape.LIP_CORNER_PULL_R, 0.8), (Blendshape.BROW_DOWN_L, 0.4), (Blendshape.BROW_INNER_UP_R, 0.3)):
        dst_w[b] = w
    results = []
    for name, canvas, width in (("256 crop", (256, 256), 150.0), ("1080p, 300 px face", (1080, 1920), 300.0)):
        frame, pts = place(image, mesh, width, canvas)
        dst = pts.copy()
        dst[[61, 291], 1] -= 0.03 * width  # a little smile so the warp does work
        ref_emotion = frame.copy()
        cv2.line(ref_emotion, tuple(int(v) for v in pts[205]), tuple(int(v) for v in pts[50]), (140, 100, 90), 3)
        bank_details = np.zeros((4, 192, 192), np.float32)
        bank_details[:, 100:110, 40:150] = -0.1
        deltas = np.tile(dst_w, (4, 1))
        bank = ExemplarBank(np.array(["happy"] * 4), np.array(["a"] * 4), deltas, deltas, bank_details,
                            np.array(["x"] * 4), Path("."))
        hooks = {
            "plain": None,
            "maps": ExpressionAppearance(AppearanceOptions(mode="maps")),
            "reference": ExpressionAppearance(AppearanceOptions(mode="reference"),
                                              reference_neutral=[ReferenceFrame(frame, pts, src_w)]),
            "bank": ExpressionAppearance(AppearanceOptions(mode="reference"), bank=bank),
        }
        row = {"case": name}
        for key, hook in hooks.items():
            renderer = WarpRenderer(topo.triangles, topo.group("face_oval"), RenderOptions(), appearance=hook,
                                    n_points=468)
            counter = iter(range(10 ** 9))

            def one() -> None:
                t = next(counter)
                payload = None if hook is None else AppearanceFrame(
                    src_w, dst_w, t, "happy",
                    reference=ReferenceFrame(ref_emotion, pts, dst_w) if key == "reference" else None)
                renderer.render(frame, pts, dst, payload=payload)

            row[f"render_{key}_ms"] = round(time_ms(one, args.repeat), 2)
        raster = uv_raster(AppearanceOptions().texture_size)
        pair = ([ReferenceFrame(ref_emotion, pts, dst_w)], [ReferenceFrame(frame, pts, src_w)])
        # once per kept reference frame (at most 300 per edit), not per edited frame
        row["brow_offset_per_reference_frame_ms"] = round(time_ms(lambda: with_brow_offsets(*pair, raster), args.repeat), 2)
        for key in ("maps", "reference", "bank"):
            step = row[f"render_{key}_ms"] - row["render_plain_ms"]
            row[f"{key}_step_ms"] = round(step, 2)
            row[f"{key}_share_of_render"] = round(step / row["render_plain_ms"], 2)
        results.append(row)
        logger.info("%s", "  ".join(f"{k}={v}" for k, v in row.items()))
    if args.json:
        atomic_write_json(args.json, results, sort_keys=False)


if __name__ == "__main__":
    main()
