#!/usr/bin/env python
"""Build ``ned/data/expression_rig.npz``: the authored FACS-like blendshapes.

    python scripts/build_rig.py [-o ned/data/expression_rig.npz] [--preview out.png]

Every blendshape is authored here, on the canonical mesh of ``face_topology.npz``
(units: inter-ocular distance, IOD; x right = the person's left, y down, z away from the
camera), and extracted from no footage. A shape is a set of *handles*: control
landmarks with a prescribed displacement (lid contours, brow points, lip-grid columns,
corners, chin, ...), plus vertices held still; the field in between is the biharmonic
interpolation over the mesh (cut open at the mouth and eyes), limited to a geodesic
radius around the handles (:mod:`ned.morph.deform`). The rigid points used for pose
never move in any shape. Left shapes are authored, right ones are their mirror images.

Speech/emotion split: for every emotion shape, each (upper, lower) inner-lip pair is
then given the same displacement (the mean of the two) and the field is re-solved with
those as extra handles, so emotion shapes cannot change the inner-lip aperture: a smile
lifts both lips at the corner together instead of opening the mouth.

Weight 1 is a strong action (e.g. brows up by 0.12 IOD, about 7.5 mm on an adult face).
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
from ned.morph.rig import EMOTION_SHAPES, Blendshape  # noqa: E402

logger = logging.getLogger("build_rig")

UP = np.array([0.0, -1.0, 0.0])
DOWN = -UP
OUT_L = np.array([1.0, 0.0, 0.0])  # away from the midline on the person's left
FORWARD = np.array([0.0, 0.0, -1.0])  # towards the camera
BACK = -FORWARD

#: default bounds; exceptions below
BOUNDS = {b: (0.0, 1.5) for b in Blendshape}
BOUNDS[Blendshape.JAW_OPEN] = (0.0, 2.0)
BOUNDS[Blendshape.MOUTH_SHIFT] = (-1.5, 1.5)
BOUNDS[Blendshape.EYES_LOOK_UP] = (-1.5, 1.5)


class Author:
    """Authoring context: the canonical mesh, its cut triangulation and helpers."""

    def __init__(self, topo: T.Topology) -> None:
        self.topo = topo
        self.v = topo.canonical.astype(np.float64)
        cut = topo.mouth_triangles | topo.eye_triangles
        self.tri = topo.triangles[~cut]
        self.lap = deform.cotan_laplacian(self.v, self.tri)
        self.rigid = set(topo.group("rigid").tolist())
        self.up_grid = T.lip_grid("upper")
        self.lo_grid = T.lip_grid("lower")
        self.x_corner = abs(self.v[T.GROUPS["lip_corner_l"][0], 0])

    # -- helpers -------------------------------------------------------------------------
    def g(self, name: str) -> list[int]:
        return list(self.topo.groups[name])

    def field(self, handles: dict[int, np.ndarray], zero: set[int] | list[int] = (), radius: float = 0.5) -> np.ndarray:
        """Biharmonic field through ``handles``, still on ``zero``, the rigid points and
        everything farther than ``radius`` (geodesic) from the handles."""
        handles = {int(k): np.asarray(d, np.float64) for k, d in handles.items()}
        dist = deform.geodesic_distances(self.v, self.tri, np.array(sorted(handles)))
        still = (set(zero) | self.rigid | set(np.flatnonzero(dist > radius).tolist())) - set(handles)
        return deform.biharmonic_field(self.v, self.tri, handles, np.array(sorted(still), dtype=np.int64), self.lap)

    @staticmethod
    def lid_profile(n: int) -> np.ndarray:
        """sin profile over a lid contour of n points, 0 at both corners."""
        return np.sin(np.pi * np.arange(n) / (n - 1))

    def col_weight(self, col: int, power: float = 2.0, side: str = "l") -> float:
        """How much a lip column follows a corner: (|x| / x_corner)^power on that side, else 0."""
        x = self.v[self.up_grid[0, col], 0]
        if (side == "l" and x < 0) or (side == "r" and x > 0):
            return 0.0
        return float(min(1.0, abs(x) / self.x_corner) ** power)

    def centre_profile(self, col: int, power: float = 2.0) -> float:
        """1 at the lip centre, 0 at the corners."""
        x = self.v[self.up_grid[0, col], 0]
        return float(max(0.0, 1.0 - min(1.0, abs(x) / self.x_corner) ** power))

    def corner_motion(self, vec: np.ndarray, power: float = 2.0, side: str = "l") -> dict[int, np.ndarray]:
        """Handles moving a lip corner by ``vec``, the lip columns following by column weight."""
        h = {i: vec for i in self.g(f"lip_corner_{side}")}
        for grid in (self.up_grid, self.lo_grid):
            for col in range(T.LIP_COLUMNS):
                w = self.col_weight(col, power, side)
                for i in grid[:, col]:
                    h[int(i)] = w * vec
        return h

    def mirror(self, field: np.ndarray) -> np.ndarray:
        """The mirror image of a field (an _L shape -> its _R twin)."""
        return field[self.topo.mirror] * np.array([-1.0, 1.0, 1.0])

    def lock_inner_lips(self, field: np.ndarray, handles: dict[int, np.ndarray], zero, radius: float) -> np.ndarray:
        """Re-solve so every inner-lip pair moves together (aperture unchanged)."""
        h = dict(handles)
        for up, lo in T.INNER_LIP_PAIRS:
            mean = (field[up] + field[lo]) / 2.0
            h[up] = mean
            h[lo] = mean
        out = self.field(h, zero, radius)
        for up, lo in T.INNER_LIP_PAIRS:  # exact, whatever the solver's rounding
            mean = (out[up] + out[lo]) / 2.0
            out[up] = mean
            out[lo] = mean
        return out


def author_left_and_bilateral(a: Author) -> dict[Blendshape, tuple[dict, set, float]]:
    """Handles, still vertices and radius of each _L and bilateral shape."""
    g = a.g
    v = a.v
    eyes = set(g("eye_r") + g("eye_l"))
    brows = set(g("brow_r") + g("brow_l"))
    lips_all = set(a.up_grid.ravel().tolist() + a.lo_grid.ravel().tolist() + g("lip_corner_l") + g("lip_corner_r"))
    nose_ridge = {168, 6, 197, 195, 5, 4, 1, 19, 94, 2}
    S: dict[Blendshape, tuple[dict, set, float]] = {}

    # ---- brows ----------------------------------------------------------------------
    inner_up = {285: .12, 336: .12, 295: .10, 296: .10, 282: .06, 334: .06, 283: .025, 293: .025, 276: .01, 300: .01}
    S[Blendshape.BROW_INNER_UP_L] = ({i: UP * d for i, d in inner_up.items()}, eyes | set(g("brow_r")), 0.45)
    outer_up = {300: .12, 276: .11, 293: .115, 283: .10, 334: .07, 282: .06, 296: .025, 295: .02, 336: .0, 285: .0}
    S[Blendshape.BROW_OUTER_UP_L] = ({i: UP * d for i, d in outer_up.items()}, eyes | set(g("brow_r")), 0.45)
    down = {285: (.07, .04), 336: (.07, .04), 295: (.06, .03), 296: (.06, .03), 282: (.04, .015), 334: (.04, .015),
            283: (.02, 0.0), 293: (.02, 0.0), 276: (.01, 0.0), 300: (.01, 0.0)}
    S[Blendshape.BROW_DOWN_L] = ({i: DOWN * dy - OUT_L * dx for i, (dy, dx) in down.items()},
                                 eyes | set(g("brow_r")), 0.4)

    # ---- lids -----------------------------------------------------------------------
    upper, lower = g("eye_l_upper"), g("eye_l_lower")  # outer corner -> inner corner
    prof = a.lid_profile(len(upper))
    S[Blendshape.UPPER_LID_UP_L] = ({i: UP * .05 * p for i, p in zip(upper, prof)},
                                    set(lower) | brows, 0.22)
    h = {i: UP * .035 * p for i, p in zip(lower, prof)}
    h.update({i: DOWN * .012 * p for i, p in zip(upper, prof)})
    S[Blendshape.LID_TIGHTEN_L] = (h, brows, 0.2)
    h = {}
    for u, lo, p in zip(upper, lower, prof):
        gap = v[lo] - v[u]
        h[u] = gap * 0.9 * (p > 0)
        h[lo] = -gap * 0.05 * (p > 0)
    S[Blendshape.EYE_BLINK_L] = (h, brows, 0.2)

    # ---- cheek, nose, upper lip -------------------------------------------------------
    h = {346: UP * .06 + FORWARD * .015, 347: UP * .06 + FORWARD * .02, 348: UP * .055 + FORWARD * .02,
         330: UP * .05 + FORWARD * .02, 280: UP * .05 + FORWARD * .02, 340: UP * .045, 329: UP * .035,
         425: UP * .035, 411: UP * .03, 266: UP * .03}
    h.update({i: UP * .015 * p for i, p in zip(lower, prof)})
    S[Blendshape.CHEEK_RAISE_L] = (h, set(upper) | set(g("brow_l")) | lips_all | nose_ridge, 0.55)

    h = {}
    for i in g("nose_wings"):
        h[i] = UP * .05 + BACK * .01
    for i in (115, 344, 220, 440, 45, 275, 44, 274):
        h[i] = UP * .035
    for i in (1, 4, 5):
        h[i] = UP * .012
    for i in (285, 295, 55, 65):
        h[i] = DOWN * .03
    for col in range(T.LIP_COLUMNS):
        h[int(a.up_grid[0, col])] = UP * .02 * a.centre_profile(col)
    S[Blendshape.NOSE_WRINKLE] = (h, eyes | {168, 6, 197}, 0.5)

    h = {}
    for k, amp in enumerate((.05, .035, .018)):
        for col in range(T.LIP_COLUMNS):
            h[int(a.up_grid[k, col])] = UP * amp * (0.4 + 0.6 * a.centre_profile(col))
    for i in (64, 294, 98, 327, 129, 358):
        h[i] = UP * .025
    for i in (205, 425, 36, 266):
        h[i] = UP * .015
    zero = eyes | set(a.up_grid[3].tolist()) | set(a.lo_grid.ravel().tolist()) | set(g("lip_corner_l") + g("lip_corner_r"))
    S[Blendshape.UPPER_LIP_RAISE] = (h, zero, 0.5)

    # ---- lip corners ------------------------------------------------------------------
    other = set(g("lip_corner_r"))
    h = a.corner_motion(OUT_L * .07 + UP * .09 + BACK * .04, side="l")
    h.update({425: UP * .05 + OUT_L * .02, 411: UP * .04 + OUT_L * .01, 266: UP * .03, 280: UP * .02})
    S[Blendshape.LIP_CORNER_PULL_L] = (h, eyes | other | nose_ridge | set(g("chin")), 0.55)
    h = a.corner_motion(OUT_L * .01 + DOWN * .08, side="l")
    for i in (287, 273, 335, 406):
        h[i] = DOWN * .045
    S[Blendshape.LIP_CORNER_DEPRESS_L] = (h, eyes | other | nose_ridge | {346, 347, 348, 330, 280}, 0.6)
    h = a.corner_motion(OUT_L * .08 + DOWN * .02 + BACK * .01, power=1.0, side="l")
    for i in (287, 432, 434):
        h[i] = OUT_L * .035
    S[Blendshape.LIP_STRETCH_L] = (h, eyes | other | nose_ridge, 0.6)

    # ---- chin and lip tightening (bilateral) ---------------------------------------------
    h = {}
    for i, amp in ((199, 1.0), (200, 1.0), (175, .9), (208, .9), (428, .9), (152, .6), (171, .6), (396, .6),
                   (32, .5), (262, .5), (140, .4), (369, .4)):
        h[i] = (UP * .05 + FORWARD * .02) * amp
    for k, (amp_lo, amp_up) in enumerate(((.035, .005), (.03, .01), (.025, .015), (.02, .02))):
        for col in range(T.LIP_COLUMNS):
            c = a.centre_profile(col, power=1.0)
            fwd = FORWARD * .02 * c if k == 0 else 0.0
            h[int(a.lo_grid[k, col])] = UP * amp_lo * c + fwd
            h[int(a.up_grid[k, col])] = UP * amp_up * c
    for i in g("lip_corner_l") + g("lip_corner_r"):
        h[i] = DOWN * .01
    S[Blendshape.CHIN_RAISE] = (h, eyes | nose_ridge, 0.5)

    h = {}
    for k, (amp_up, amp_lo) in enumerate(((.03, .035), (.02, .023), (.01, .012), (0.0, 0.0))):
        for col in range(T.LIP_COLUMNS):
            c = a.centre_profile(col)
            h[int(a.up_grid[k, col])] = DOWN * amp_up * c + BACK * .015
            h[int(a.lo_grid[k, col])] = UP * amp_lo * c + BACK * .015
    for side, sign in (("l", 1.0), ("r", -1.0)):
        for i in g(f"lip_corner_{side}"):
            h[i] = -OUT_L * sign * .015 + BACK * .01
    S[Blendshape.LIP_TIGHTEN] = (h, eyes | nose_ridge, 0.3)

    # ---- speech ---------------------------------------------------------------------------
    hinge = np.array([0.0, -0.1, 1.1])
    theta = 0.3
    rot = np.array([[1, 0, 0], [0, np.cos(theta), -np.sin(theta)], [0, np.sin(theta), np.cos(theta)]])

    def jaw(i: int) -> np.ndarray:
        d = (rot @ (v[i] - hinge) + hinge) - v[i]
        return d * np.array([1.0, 1.0, 0.5])  # the condyle slides forward: less backward travel

    lower_jaw = set(a.lo_grid.ravel().tolist()) | set(g("chin")) | set(np.flatnonzero(v[:, 1] > 0.75).tolist())
    h = {i: jaw(i) for i in lower_jaw}
    upper_face = set(a.up_grid.ravel().tolist()) | nose_ridge | set(np.flatnonzero(v[:, 1] < 0.3).tolist())
    S[Blendshape.JAW_OPEN] = (h, upper_face - lower_jaw, 10.0)

    h = {}
    for k, (amp_up, amp_lo) in enumerate(((.005, .015), (.01, .025), (.015, .035), (.02, .045))):
        for col in range(T.LIP_COLUMNS):
            c = a.centre_profile(col)
            h[int(a.up_grid[k, col])] = UP * amp_up * c
            h[int(a.lo_grid[k, col])] = DOWN * amp_lo * c
    S[Blendshape.LIPS_PART] = (h, eyes | nose_ridge | set(g("lip_corner_l") + g("lip_corner_r")), 0.3)

    h = {}
    for grid, sign in ((a.up_grid, -1.0), (a.lo_grid, 1.0)):
        for k, (flare, fwd) in enumerate(((.02, .07), (.018, .065), (.015, .055), (.02, .04))):
            for col in range(T.LIP_COLUMNS):
                x = v[grid[k, col], 0]
                h[int(grid[k, col])] = (np.array([-.05 * x / a.x_corner, sign * flare * a.centre_profile(col), 0.0])
                                        + FORWARD * fwd)
    for side, sign in (("l", 1.0), ("r", -1.0)):
        for i in g(f"lip_corner_{side}"):
            h[i] = -OUT_L * sign * .05 + FORWARD * .03
    S[Blendshape.LIP_FUNNEL] = (h, eyes | nose_ridge, 0.35)

    h = {}
    for grid in (a.up_grid, a.lo_grid):
        for k in range(T.LIP_RINGS):
            for col in range(T.LIP_COLUMNS):
                x = v[grid[k, col], 0]
                h[int(grid[k, col])] = np.array([-.10 * x / a.x_corner, 0.0, 0.0]) + FORWARD * (.03 + .03 * a.centre_profile(col))
    for side, sign in (("l", 1.0), ("r", -1.0)):
        for i in g(f"lip_corner_{side}"):
            h[i] = -OUT_L * sign * .10 + FORWARD * .03
    S[Blendshape.LIP_PUCKER] = (h, eyes | nose_ridge, 0.45)

    h = {i: OUT_L * .08 for i in lips_all}
    S[Blendshape.MOUTH_SHIFT] = (h, eyes | nose_ridge, 0.4)

    # ---- gaze: both eyes' lids follow a vertical eye rotation ---------------------------------
    h = {}
    for side in ("l", "r"):
        up_lid, lo_lid = g(f"eye_{side}_upper"), g(f"eye_{side}_lower")
        p = 0.3 + 0.7 * a.lid_profile(len(up_lid))
        h.update({i: UP * .05 * q for i, q in zip(up_lid, p)})
        h.update({i: UP * .04 * q for i, q in zip(lo_lid, p)})
    S[Blendshape.EYES_LOOK_UP] = (h, brows, 0.25)
    return S


def build(preview: Path | None = None) -> dict[str, np.ndarray]:
    topo = T.load_topology(ROOT / "ned" / "data" / "face_topology.npz")
    a = Author(topo)
    specs = author_left_and_bilateral(a)
    basis = np.zeros((len(Blendshape), T.NUM_VERTICES, 3))
    for shape, (handles, zero, radius) in specs.items():
        f = a.field(handles, zero, radius)
        if shape in EMOTION_SHAPES:
            f = a.lock_inner_lips(f, handles, zero, radius)
        basis[shape] = f
        if shape.name.endswith("_L"):
            basis[Blendshape[shape.name[:-2] + "_R"]] = a.mirror(f)
    missing = [b.name for b in Blendshape if not np.abs(basis[b]).any()]
    if missing:
        raise SystemExit(f"shapes without a field: {missing}")
    _report(a, basis)
    data = {
        "names": np.array([b.name for b in Blendshape]),
        "basis": basis.astype(np.float32),
        "lower": np.array([BOUNDS[b][0] for b in Blendshape], np.float32),
        "upper": np.array([BOUNDS[b][1] for b in Blendshape], np.float32),
        "canonical": topo.canonical.astype(np.float32),
    }
    if preview is not None:
        _preview(topo, basis, preview)
    return data


def _report(a: Author, basis: np.ndarray) -> None:
    gaps = np.array([np.abs(T.inner_lip_gaps(a.v + basis[b]) - T.inner_lip_gaps(a.v)).max() for b in EMOTION_SHAPES])
    logger.info("max inner-lip gap change over emotion shapes: %.2e IOD", gaps.max())
    rigid = np.abs(basis[:, list(a.rigid)]).max()
    logger.info("max rigid-point motion: %.2e IOD", rigid)
    flat = basis.reshape(len(basis), -1)
    s = np.linalg.svd(flat / np.linalg.norm(flat, axis=1, keepdims=True), compute_uv=False)
    logger.info("condition number of the normalised basis: %.1f", s[0] / s[-1])
    for b in Blendshape:
        logger.info("  %-22s max %.3f IOD", b.name, np.linalg.norm(basis[b], axis=1).max())


def _preview(topo: T.Topology, basis: np.ndarray, path: Path) -> None:
    """A grid of shaded renders: each shape at weight 1 (front view)."""
    import cv2

    from ned.morph.raster import render_shape

    tiles = []
    size = 200
    for b in Blendshape:
        verts = (topo.canonical + basis[b]) * 70 + np.array([size / 2, size / 2 + 5, 0])
        img = render_shape(verts.astype(np.float32), (size, size)).copy()
        cv2.putText(img, b.name, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 0, 0), 1, cv2.LINE_AA)
        tiles.append(img)
    neutral = render_shape((topo.canonical * 70 + np.array([size / 2, size / 2 + 5, 0])).astype(np.float32), (size, size)).copy()
    cv2.putText(neutral, "NEUTRAL", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 0, 0), 1, cv2.LINE_AA)
    tiles.insert(0, neutral)
    cols = 8
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)]
    cv2.imwrite(str(path), np.vstack(rows)[:, :, ::-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "ned" / "data" / "expression_rig.npz")
    ap.add_argument("--preview", type=Path, default=None, help="write a PNG grid of every shape at weight 1")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    atomic_save_npz_compressed(args.output, **build(args.preview))
    logger.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
