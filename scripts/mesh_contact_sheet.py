#!/usr/bin/env python
"""Contact sheet of label-driven edits on the mesh: source render vs edited render.

    python scripts/mesh_contact_sheet.py VIDEO [-o /tmp/mesh_sheet.png]
        [--emotions happy sad ...] [--frames 3] [--intensity 1.0] [--nmfc] [--size 256]

Tracks the clip (:mod:`ned.face`), fits the face model (identity from the clip itself),
converts the whole clip to each emotion with the training-free label manipulator, and
renders a few evenly spaced frames: one row per emotion, each frame as a pair
(source mesh | edited mesh), shaded (default) or as NMFC images, with the brow, eye and
lip contours drawn on top (blue: source, red: edited). The first row is the source
with the video frame. Nothing is written next to the input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ned.manipulate.emotions import EMOTIONS, parse_emotion  # noqa: E402
from ned.manipulate.label import ManipulateOptions, manipulate_labels  # noqa: E402
from ned.morph.fit import FaceModel, apply_expression_delta  # noqa: E402
from ned.morph.raster import render_nmfc, render_shape  # noqa: E402

logger = logging.getLogger("mesh_contact_sheet")


def _label(img: np.ndarray, text: str) -> np.ndarray:
    import cv2

    out = img.copy()
    cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 60, 60), 1, cv2.LINE_AA)
    return out


def build_sheet(video: Path, emotions: list[str], frames: int, intensity: float, nmfc: bool,
                size: int) -> np.ndarray:
    """The contact sheet as an (H, W, 3) uint8 RGB image."""
    import cv2

    from ned import media
    from ned.face import track_video

    rgb_frames = [f.rgb for f in media.iter_frames(video)]
    obs = track_video(video)
    lm = np.stack([o.landmarks for o in obs]).astype(np.float32)
    ok = np.isfinite(lm[:, :468]).all(axis=(1, 2))
    idx = np.flatnonzero(ok)
    lm_ok = lm[idx]
    model = FaceModel.from_sequence(lm_ok)
    topo = model.topology
    fits = model.fit_batch(lm_ok)
    fps = float(media.probe(video).fps)
    picks = np.linspace(0, len(idx) - 1, frames + 2)[1:-1].round().astype(int)
    # one square crop around the face (all frames), scaled to `size`
    xy = lm_ok[:, :468, :2].reshape(-1, 2)
    lo, hi = xy.min(0), xy.max(0)
    centre, side = (lo + hi) / 2, float((hi - lo).max() * 1.15)
    scale = size / side
    offset = centre - side / 2

    def to_tile(points: np.ndarray) -> np.ndarray:
        pts = points[:468].astype(np.float64).copy()
        pts[:, :2] = (pts[:, :2] - offset) * scale
        pts[:, 2] *= scale
        return pts.astype(np.float32)

    def render(points: np.ndarray) -> np.ndarray:
        fn = render_nmfc if nmfc else render_shape
        return fn(to_tile(points), (size, size))

    def crop(rgb: np.ndarray) -> np.ndarray:
        m = np.array([[scale, 0, -offset[0] * scale], [0, scale, -offset[1] * scale]])
        return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_AREA)

    contour_loops = [topo.group(n) for n in ("eye_r", "eye_l", "lips_outer", "lips_inner")]
    contour_lines = [topo.group(n) for n in ("brow_r", "brow_l")]

    def contours(img: np.ndarray, points: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
        p = np.round(to_tile(points)[:, :2] * 4).astype(np.int32)
        for loop in contour_loops:
            cv2.polylines(img, [p[loop]], True, colour, 1, cv2.LINE_AA, 2)
        for line in contour_lines:  # brows: lower row then upper row, 5 points each
            cv2.polylines(img, [p[line[:5]], p[line[5:]]], False, colour, 1, cv2.LINE_AA, 2)
        return img

    rows = []
    head = []
    for k in picks:
        head += [_label(crop(rgb_frames[idx[k]]), f"frame {idx[k]}"), _label(render(lm_ok[k]), "source mesh")]
    rows.append(np.hstack(head))
    for text in emotions:
        spec = parse_emotion(text, intensity)
        edited_w = manipulate_labels(fits.expression, [spec], fps, ManipulateOptions())
        edited = apply_expression_delta(lm_ok, fits, edited_w)
        row = []
        for k in picks:
            src_img = contours(render(lm_ok[k]).copy(), lm_ok[k], (40, 90, 255))
            new_img = contours(render(edited[k]).copy(), lm_ok[k], (40, 90, 255))
            new_img = contours(new_img, edited[k], (255, 40, 40))
            row += [_label(src_img, "source"), _label(new_img, str(spec))]
        rows.append(np.hstack(row))
        logger.info("%s: mean emotion-weight change %.3f", spec, float(np.abs(edited_w - fits.expression).mean()))
    return np.vstack(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("video", type=Path)
    ap.add_argument("-o", "--output", type=Path, default=Path("/tmp/mesh_sheet.png"))
    ap.add_argument("--emotions", nargs="+", default=[e for e in EMOTIONS])
    ap.add_argument("--frames", type=int, default=3, help="frames per emotion")
    ap.add_argument("--intensity", type=float, default=1.0)
    ap.add_argument("--nmfc", action="store_true", help="render NMFC images instead of shaded meshes")
    ap.add_argument("--size", type=int, default=256, help="long side of each tile (pixels)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import cv2

    sheet = build_sheet(args.video, args.emotions, args.frames, args.intensity, args.nmfc, args.size)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.output), sheet[:, :, ::-1])
    logger.info("wrote %s (%dx%d)", args.output, sheet.shape[1], sheet.shape[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
