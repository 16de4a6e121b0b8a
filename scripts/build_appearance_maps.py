#!/usr/bin/env python
"""Build ``ned/data/appearance_maps.npz``: the authored crease and shading maps.

    python scripts/build_appearance_maps.py [-o ned/data/appearance_maps.npz] [--size 192]
                                            [--preview out.png]

Every feature is authored here, procedurally, in the texture space of
``face_topology.npz`` (:mod:`ned.appearance.texture`), placed by mesh landmarks (MediaPipe
indices; points between landmarks are weighted means, offsets are in IOD units), and
extracted from no footage. A feature is a height field (IOD units, + towards the camera):
a crease (valley with soft shoulders) along a Catmull-Rom curve, or a Gaussian bulge.
Each blendshape's height field becomes a log-luminance gain map by
:func:`ned.appearance.maps.shading_from_height` (light from above + cavity term) and is
multiplied by the skin mask. The person's right side is authored (``_R`` shapes, image
left, ``u < 0.5``); ``_L`` maps are their mirror images; single shapes (nose wrinkle, chin
raise, lip tighten) are authored on both sides.

Anatomy (FACS): AU1/AU2 forehead lines (inner/outer), AU4 glabellar furrows + procerus line
+ brow overhang, AU6 crow's feet + lower-lid bulge + infraorbital furrow + cheek apple,
AU7 lower-lid bulge, AU9 "bunny lines" + nasal-root lines + alar crease, AU10 upper
nasolabial fold, AU12 nasolabial fold + cheek mass beside it, AU14 dimple, AU15 corner
shadows (marionette lines), AU17 mentalis dimpling + mentolabial sulcus, AU20 lateral
corner creases, AU23/24 perioral bulges + sulcus.

``--preview`` writes a sheet of every map (grey = no change) for checking by eye.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ned.appearance.maps import MAPS_VERSION, bulge_height, catmull_rom, crease_height, shading_from_height  # noqa: E402
from ned.appearance.texture import build_uv_raster, skin_mask_uv  # noqa: E402
from ned.morph.rig import Blendshape as B  # noqa: E402
from ned.morph.topology import Topology, load_topology  # noqa: E402

logger = logging.getLogger("build_appearance_maps")

#: storage: maps are saved as int8 times this scale (log gain per unit weight)
STORE_SCALE = 1.0 / 400.0
#: global relief: every authored height is multiplied by this (tuned by eye and with the
#: FER2013 classifier on MEAD clips: creases must read as folds, not drawn lines)
RELIEF = 0.25
#: cavity (ambient-occlusion) term of the shading, log gain per IOD of relative depth
CAVITY = 25.0


class Author:
    """Texel-space authoring on one side of the face (right: ``flip=False``)."""

    def __init__(self, topo: Topology, size: int, flip: bool = False) -> None:
        self.topo = topo
        self.size = size
        self.raster = build_uv_raster(topo, size)
        self.iod = self.raster.iod_texels  # texels per IOD
        self.uv = self.raster.uv_px
        self.flip = flip

    # -- points (texel px) -----------------------------------------------------------------
    def p(self, *spec, up: float = 0.0, out: float = 0.0) -> np.ndarray:
        """A point: ``p(i)`` landmark i; ``p((i, a), (j, b))`` weighted mean; ``up`` /
        ``out`` offsets in IOD (out = away from the midline, on the authored side)."""
        if len(spec) == 1 and not isinstance(spec[0], tuple):
            pt = self.uv[self._idx(spec[0])].copy()
        else:
            total = sum(w for _, w in spec)
            pt = sum(self.uv[self._idx(i)] * w for i, w in spec) / total
        side = 1.0 if self.flip else -1.0  # person's right = image left = -u
        return pt + np.array([side * out * self.iod, -up * self.iod])

    def _idx(self, i: int) -> int:
        return int(self.topo.mirror[i]) if self.flip else int(i)

    def curve(self, points: list[np.ndarray], n: int = 24) -> np.ndarray:
        return catmull_rom(np.stack(points), n)

    # -- features (height, IOD units) ------------------------------------------------------
    def crease(self, points, width_iod: float, depth_iod: float, envelope=None, shoulder=0.35) -> np.ndarray:
        return crease_height(self.size, self.curve(points), width_iod * self.iod, depth_iod, envelope, shoulder)

    def bulge(self, centre, radii_iod, angle_deg: float, height_iod: float) -> np.ndarray:
        ang = np.radians(angle_deg)
        if self.flip:
            ang = np.pi - ang
        return bulge_height(self.size, tuple(centre), (radii_iod[0] * self.iod, radii_iod[1] * self.iod), ang,
                            height_iod)


# ---------------------------------------------------------------------------------------
# The features, person's right side
# ---------------------------------------------------------------------------------------
# forehead columns (brow top row point, top-of-forehead point), midline first
_FOREHEAD = ((9, 10), (107, 109), (66, 67), (105, 103), (63, 54), (70, 21))


#: forehead lines: height (fraction of the brow-to-hairline column) and depth (IOD) of each
_LINES = ((0.2, 0.022), (0.38, 0.021), (0.56, 0.016), (0.73, 0.009))


def forehead_lines(a: Author, inner: bool) -> np.ndarray:
    """AU1 (inner: central forehead, lines bowed up in the middle) / AU2 (outer: lateral).

    Skin folds are not ruled lines: each line's height wanders from column to column and its
    depth varies along it (deterministic draws). The draws are the same for AU1 and AU2 (so
    that their lines coincide where they overlap), differ between the sides except at the
    midline (where the two halves meet), and the lines' overall depths are shared by both sides.
    """
    side = np.random.default_rng(29 if a.flip else 23)
    wander = side.normal(0.0, 0.035, (len(_LINES), len(_FOREHEAD)))
    strength = side.uniform(0.55, 1.0, (len(_LINES), len(_FOREHEAD)))
    wander[:, 0], strength[:, 0] = 0.0, 1.0
    depth_factor = np.random.default_rng(31).uniform(0.8, 1.15, len(_LINES))
    h = np.zeros((a.size, a.size), np.float32)
    for k, (f, depth) in enumerate(_LINES):
        pts, env = [], []
        for c, (lo, hi) in enumerate(_FOREHEAD):
            fk = float(np.clip(f + wander[k, c], 0.08, 0.85))
            bow = (0.05 if inner else 0.0) * (1.0 - c / 5.0) * (1.0 if k else 0.6)
            pts.append(a.p((lo, 1.0 - fk), (hi, fk), up=bow))
            base = [0.9, 1.0, 0.85, 0.45, 0.1, 0.0][c] if inner else [0.0, 0.1, 0.5, 0.95, 1.0, 0.6][c]
            env.append(base * strength[k, c])
        h += a.crease(pts, 0.021, depth * depth_factor[k], envelope=np.array(env))
    return h


def glabella(a: Author) -> np.ndarray:
    """AU4: vertical furrow beside the midline, procerus line, brow overhang.

    No round shadow at the nasal root: with both sides' maps it made a dark spot between
    the brows that read as a bruise, not a fold (it also lifted FER2013's sad on W009's
    label edit from 0.46 to 0.59 -- a blotch that fools the classifier)."""
    furrow = [a.p((107, 0.45), (9, 0.55), up=0.10), a.p((55, 0.4), (8, 0.6)), a.p((193, 0.4), (168, 0.6), up=0.02)]
    h = a.crease(furrow, 0.032, 0.03, envelope=np.array([0.3, 1.0, 1.0, 0.4]))
    second = [a.p((107, 0.7), (9, 0.3), up=0.06), a.p((55, 0.65), (8, 0.35), up=-0.02)]
    h += a.crease(second, 0.02, 0.015)
    procerus = [a.p((193, 0.8), (168, 0.2), up=-0.01), a.p(168, up=-0.03)]
    h += a.crease(procerus, 0.022, 0.014, envelope=np.array([0.3, 1.0, 1.0]))
    h += a.bulge(a.p((55, 0.5), (65, 0.5), up=0.02), (0.16, 0.08), 10.0, 0.03)
    return h


def lower_lid(a: Author, strength: float) -> np.ndarray:
    """Lower-lid bulge and the furrow under it (AU6, AU7)."""
    lid = [a.p(i) for i in (33, 7, 163, 144, 145, 153, 154, 155, 133)]
    bag = [p + np.array([0.0, 0.09 * a.iod]) for p in lid[1:-1]]
    furrow = [p + np.array([0.0, 0.19 * a.iod]) for p in lid[1:-1]]
    h = a.crease(bag, 0.035, -0.02 * strength, shoulder=0.0)
    h += a.crease(furrow, 0.025, 0.016 * strength, envelope=np.array([0.2, 0.8, 1.0, 0.8, 0.3]))
    return h


def crows_feet(a: Author) -> np.ndarray:
    """AU6: three lines fanning out from the outer eye corner."""
    corner = a.p(33)
    h = np.zeros((a.size, a.size), np.float32)
    for ang, ln, depth in ((-28.0, 0.26, 0.012), (0.0, 0.30, 0.016), (26.0, 0.26, 0.014)):
        t = np.radians(ang)
        d = np.array([-np.cos(t), np.sin(t)])  # outwards (image left), +ang = down
        if a.flip:
            d[0] = -d[0]
        pts = [corner + d * (0.12 + s * ln) * a.iod for s in (0.0, 0.5, 1.0)]
        h += a.crease(pts, 0.017, depth, envelope=np.array([0.2, 1.0, 0.7, 0.0]))
    return h


def cheek_apple(a: Author, height: float) -> np.ndarray:
    """AU6/AU12: the raised cheek mass under the eye."""
    return a.bulge(a.p((50, 0.5), (118, 0.3), (101, 0.2), up=0.04), (0.28, 0.18), -15.0, height)


def nasolabial(a: Author, depth: float, upper_only: bool = False) -> np.ndarray:
    """AU12 (whole fold, cheek mass beside it) / AU10 (upper part near the nose wing)."""
    fold = [a.p(129, out=0.05, up=0.02), a.p((203, 0.6), (206, 0.4), out=0.03), a.p(216, out=0.0),
            a.p((212, 0.6), (57, 0.4), out=0.03), a.p(202, out=0.04), a.p((202, 0.5), (210, 0.5), out=0.03)]
    env = np.array([0.6, 1.0, 1.0, 0.9, 0.6, 0.3, 0.0]) if not upper_only else np.array([1.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0])
    h = a.crease(fold, 0.05, depth, envelope=env, shoulder=0.2)
    if not upper_only:
        mass = [p for p in (a.p(203, out=0.16), a.p(206, out=0.15), a.p((216, 0.5), (212, 0.5), out=0.14))]
        h += a.crease(mass, 0.11, -0.6 * depth, shoulder=0.0)
    return h


def bunny_lines(a: Author) -> np.ndarray:
    """AU9: oblique lines on the nasal side wall, lines across the nasal root, alar crease."""
    h = np.zeros((a.size, a.size), np.float32)
    lines = (
        ([(6, 0.45), (122, 0.55)], [(188, 0.3), (114, 0.7)], 0.010),
        ([(197, 0.45), (196, 0.55)], [(174, 0.4), (217, 0.6)], 0.009),
        ([(168, 0.45), (193, 0.55)], [(245, 0.4), (128, 0.6)], 0.008),
    )
    for start, end, depth in lines:
        h += a.crease([a.p(*start), a.p(*end)], 0.03, depth, envelope=np.array([0.0, 1.0, 0.4]))
    for up in (0.0, 0.06):
        root = [a.p((193, 0.7), (168, 0.3), up=up - 0.02), a.p(168, up=up - 0.04)]
        h += a.crease(root, 0.026, 0.010, envelope=np.array([0.3, 1.0, 1.0]))
    alar = [a.p(48, up=0.03, out=0.02), a.p(64, out=0.03), a.p(98, out=0.01, up=-0.02)]
    h += a.crease(alar, 0.022, 0.014)
    return h


def dimple(a: Author, depth: float, length: float = 0.12) -> np.ndarray:
    """AU14/AU20: a short vertical crease just outside the mouth corner."""
    c = a.p(61, out=0.10)
    return a.crease([c + np.array([0, -length * a.iod]), c, c + np.array([0, length * a.iod])], 0.022, depth)


def corner_shadow(a: Author) -> np.ndarray:
    """AU15: marionette line from the corner down and out, the bulge beside it."""
    line = [a.p(61, out=0.04, up=-0.02), a.p((43, 0.6), (204, 0.4)), a.p((204, 0.4), (211, 0.6))]
    h = a.crease(line, 0.03, 0.024, envelope=np.array([1.0, 1.0, 0.7, 0.2]), shoulder=0.2)
    h += a.bulge(a.p((57, 0.5), (43, 0.5), out=0.1), (0.08, 0.05), 70.0, 0.008)
    return h


def chin(a: Author, seed: int) -> np.ndarray:
    """AU17 (both sides): mentalis dimpling (deterministic bumps), mentolabial sulcus, chin boss."""
    h = np.zeros((a.size, a.size), np.float32)
    sulcus = [a.p(83, up=0.0), a.p(18, up=0.02), a.p(313, up=0.0)]
    h += a.crease(sulcus, 0.03, 0.028, envelope=np.array([0.3, 1.0, 1.0, 0.3]))
    h += a.bulge(a.p((199, 0.5), (175, 0.5)), (0.22, 0.14), 0.0, 0.02)
    rng = np.random.default_rng(seed)
    centre = a.p((199, 0.6), (200, 0.4))
    for _ in range(14):
        off = rng.normal(0.0, 1.0, 2) * np.array([0.16, 0.09]) * a.iod
        h += a.bulge(centre + off, (0.035, 0.03), 0.0, -0.004 * rng.uniform(0.6, 1.0))
    return h


def lip_press(a: Author) -> np.ndarray:
    """AU23/24 (both sides): bulges above and below the lips, the mentolabial sulcus."""
    h = np.zeros((a.size, a.size), np.float32)
    upper = [a.p(i, up=0.06) for i in (185, 40, 39, 37, 0, 267, 269, 270, 409)]
    h += a.crease(upper, 0.04, -0.010, shoulder=0.0)
    sulcus = [a.p(83, up=-0.02), a.p(18, up=0.0), a.p(313, up=-0.02)]
    h += a.crease(sulcus, 0.028, 0.016)
    return h


def build(topo: Topology, size: int) -> dict[str, np.ndarray]:
    """Height fields (IOD) of every authored blendshape, by name."""
    right, left = Author(topo, size, flip=False), Author(topo, size, flip=True)
    heights: dict[str, np.ndarray] = {}
    for side, a in (("R", right), ("L", left)):
        heights[f"BROW_INNER_UP_{side}"] = forehead_lines(a, inner=True)
        heights[f"BROW_OUTER_UP_{side}"] = forehead_lines(a, inner=False)
        heights[f"BROW_DOWN_{side}"] = glabella(a)
        heights[f"LID_TIGHTEN_{side}"] = lower_lid(a, 0.8)
        heights[f"CHEEK_RAISE_{side}"] = crows_feet(a) + lower_lid(a, 1.0) + cheek_apple(a, 0.035)
        heights[f"LIP_CORNER_PULL_{side}"] = nasolabial(a, 0.03) + cheek_apple(a, 0.015)
        heights[f"DIMPLER_{side}"] = dimple(a, 0.02)
        heights[f"LIP_CORNER_DEPRESS_{side}"] = corner_shadow(a)
        heights[f"LIP_STRETCH_{side}"] = dimple(a, 0.012, 0.16)
    heights["NOSE_WRINKLE"] = bunny_lines(right) + bunny_lines(left) + lower_lid(right, 0.5) + lower_lid(left, 0.5)
    heights["UPPER_LIP_RAISE"] = nasolabial(right, 0.028, upper_only=True) + nasolabial(left, 0.028, upper_only=True)
    heights["CHIN_RAISE"] = chin(right, seed=17)
    heights["LIP_TIGHTEN"] = lip_press(right)
    return heights


def shade(heights: dict[str, np.ndarray], topo: Topology, size: int) -> dict[str, np.ndarray]:
    raster = build_uv_raster(topo, size)
    mask = skin_mask_uv(size, topo)
    return {k: shading_from_height(h * RELIEF, 1.0 / raster.iod_texels, cavity=CAVITY, cavity_sigma=0.1 * raster.iod_texels) * mask
            for k, h in heights.items()}


def preview(maps: dict[str, np.ndarray], path: Path) -> None:
    import cv2

    tiles = []
    for name, m in maps.items():
        tile = np.clip(128 + m * 400, 0, 255).astype(np.uint8)
        tile = cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR)
        cv2.putText(tile, name, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 255), 1)
        tiles.append(tile)
    while len(tiles) % 6:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i:i + 6]) for i in range(0, len(tiles), 6)]
    cv2.imwrite(str(path), np.vstack(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "ned" / "data" / "appearance_maps.npz")
    parser.add_argument("--size", type=int, default=192, help="texels per side (default: %(default)s)")
    parser.add_argument("--preview", type=Path, default=None, help="write a PNG sheet of the maps")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    topo = load_topology()
    maps = shade(build(topo, args.size), topo, args.size)
    names = [n for n in (b.name for b in B) if n in maps]
    stack = np.stack([maps[n] for n in names])
    q = np.clip(np.round(stack / STORE_SCALE), -127, 127).astype(np.int8)
    for n, m in zip(names, stack):
        logger.info("%-22s log gain %+.3f .. %+.3f", n, m.min(), m.max())
    logger.info("max |log gain| %.3f (int8 clip at %.3f)", np.abs(stack).max(), 127 * STORE_SCALE)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    np.savez_compressed(tmp, names=np.array(names), log_gain=q, scale=np.float32(STORE_SCALE),
                        version=np.int32(MAPS_VERSION))
    tmp.replace(args.out)
    logger.info("wrote %s (%d maps, %d x %d, %.0f kB)", args.out, len(names), args.size, args.size,
                args.out.stat().st_size / 1024)
    if args.preview is not None:
        preview({n: maps[n] for n in names}, args.preview)
        logger.info("wrote %s", args.preview)


if __name__ == "__main__":
    main()
