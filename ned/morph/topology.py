"""The face model's topology: canonical neutral mesh, triangles, named landmark groups, UVs.

Canonical space (the frame every rig field, identity and texture coordinate lives in):

- ``x`` to the image's right (the person's LEFT in a non-mirrored frontal view),
  ``y`` DOWN (as image rows), ``z`` AWAY from the camera (larger = farther), so an upright
  frontal face seen by the camera has pose rotation ≈ identity and positive scale;
- origin at the centroid of the 468 mesh points, unit = the inter-ocular distance (IOD,
  between the centres of the two eyelid contours); the mesh is mirror-symmetric about
  ``x = 0`` (``mirror[i]`` is the mirror partner of vertex ``i``).

Sides in names are the person's own (anatomical, FACS convention): ``L`` = the person's
left = image right = ``x > 0``.

The data file ``ned/data/face_topology.npz`` is built by ``scripts/build_topology.py``
from the MediaPipe face mesh of scikit-image's ``astronaut()`` photo (public domain),
symmetrised and with the lips closed (it also stores ``canonical_open``, the symmetrised
photo mesh before that, smiling with the mouth open, and ``group_face_outline``, the
mesh's outer boundary loop); this module holds the pure functions that script uses and
:func:`load_topology` that everyone else uses.

Triangles cover the whole face oval, the mouth and eye openings included (so a warp
covers every pixel); ``mouth_triangles`` / ``eye_triangles`` flag the ones inside the
openings so renderers can leave them out. Texture coordinates ``uv`` are a frontal
orthographic projection of the canonical mesh, isotropic, in ``[0, 1]`` (``u`` right,
``v`` down), the space for appearance maps.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ned.errors import ModelFileError
from ned.face.landmarks import (
    FACE_OVAL,
    LEFT_EYE_CONTOUR,
    LIPS_INNER,
    LIPS_OUTER,
    RIGHT_EYE_CONTOUR,
)
from ned.types import check_array

__all__ = [
    "NUM_VERTICES",
    "GROUPS",
    "INNER_LIP_PAIRS",
    "lip_grid",
    "Topology",
    "load_topology",
    "topology_path",
    "mirror_permutation",
    "symmetrise",
    "canonicalise",
    "triangulate",
    "opening_triangles",
    "enforce_edges",
    "frontal_uv",
    "eye_centres",
    "eye_corner_centres",
    "inter_ocular_distance",
    "inner_lip_gaps",
    "mesh_edges",
    "outline_loop",
]

logger = logging.getLogger(__name__)

NUM_VERTICES = 468

# ---------------------------------------------------------------------------------------
# Named landmark groups (MediaPipe face-mesh indices). Loops are closed and ordered.
# ---------------------------------------------------------------------------------------
_BROW_R = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)  # lower row outer->inner, upper row
_BROW_L = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)

GROUPS: dict[str, tuple[int, ...]] = {
    "face_oval": tuple(int(i) for i in FACE_OVAL),
    "lips_outer": tuple(int(i) for i in LIPS_OUTER),
    "lips_inner": tuple(int(i) for i in LIPS_INNER),
    # inner lip line: corners first/last, centre at 13 (upper) and 14 (lower)
    "lips_inner_upper": (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308),
    "lips_inner_lower": (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308),
    "lips_outer_upper": (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291),
    "lips_outer_lower": (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291),
    "mouth_corners": (61, 291),  # right, left (outer lip corners)
    "eye_r": tuple(int(i) for i in RIGHT_EYE_CONTOUR),
    "eye_l": tuple(int(i) for i in LEFT_EYE_CONTOUR),
    "eye_r_upper": (33, 246, 161, 160, 159, 158, 157, 173, 133),
    "eye_r_lower": (33, 7, 163, 144, 145, 153, 154, 155, 133),
    "eye_l_upper": (263, 466, 388, 387, 386, 385, 384, 398, 362),
    "eye_l_lower": (263, 249, 390, 373, 374, 380, 381, 382, 362),
    "brow_r": _BROW_R,
    "brow_l": _BROW_L,
    "brow_r_inner": (55, 65, 107, 66),
    "brow_r_outer": (46, 53, 70, 63),
    "brow_l_inner": (285, 295, 336, 296),
    "brow_l_outer": (276, 283, 300, 293),
    "nose": (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 327, 64, 294, 48, 278, 129, 358,
             102, 331, 49, 279, 115, 344, 220, 440, 45, 275, 44, 274),
    "nose_wings": (64, 294, 98, 327, 48, 278, 129, 358, 102, 331, 49, 279),
    "cheek_r": (50, 101, 36, 205, 187, 123, 117, 118, 119, 100, 116, 111),
    "cheek_l": (280, 330, 266, 425, 411, 352, 346, 347, 348, 329, 345, 340),
    "chin": (152, 175, 199, 200, 171, 396, 208, 428, 32, 262, 140, 369),
    # Lip rings (outer, two middle rings, inner), 9 columns each from the person's right
    # to left; columns line up across rings. Corner points: outer -> inner.
    "lips_upper_ring0": (185, 40, 39, 37, 0, 267, 269, 270, 409),
    "lips_upper_ring1": (184, 74, 73, 72, 11, 302, 303, 304, 408),
    "lips_upper_ring2": (183, 42, 41, 38, 12, 268, 271, 272, 407),
    "lips_upper_ring3": (191, 80, 81, 82, 13, 312, 311, 310, 415),
    "lips_lower_ring0": (146, 91, 181, 84, 17, 314, 405, 321, 375),
    "lips_lower_ring1": (77, 90, 180, 85, 16, 315, 404, 320, 307),
    "lips_lower_ring2": (96, 89, 179, 86, 15, 316, 403, 319, 325),
    "lips_lower_ring3": (95, 88, 178, 87, 14, 317, 402, 318, 324),
    "lip_corner_r": (61, 76, 62, 78),
    "lip_corner_l": (291, 306, 292, 308),
    # Pose is estimated on points that only move with the head: forehead, nose
    # bridge, temples, side of the face at ear level.
    "rigid": (10, 338, 297, 332, 109, 67, 103, 151, 108, 337, 168, 6, 197, 195,
              127, 356, 162, 389, 21, 251, 54, 284, 234, 454, 93, 323),
}

LIP_COLUMNS = 9
LIP_RINGS = 4


def lip_grid(part: str) -> np.ndarray:
    """(4, 9) vertex indices of the ``"upper"`` or ``"lower"`` lip: rings outer -> inner,
    columns from the person's right to left."""
    return np.array([GROUPS[f"lips_{part}_ring{k}"] for k in range(LIP_RINGS)], dtype=np.int64)


# (upper, lower) inner-lip vertex pairs across the mouth opening; their gaps are the
# inner-lip aperture that speech owns.
INNER_LIP_PAIRS: tuple[tuple[int, int], ...] = (
    (191, 95), (80, 88), (81, 178), (82, 87), (13, 14),
    (312, 317), (311, 402), (310, 318), (415, 324),
)


@dataclass(frozen=True, eq=False)
class Topology:
    """The canonical mesh and everything attached to its vertices.

    Attributes:
        canonical: (468, 3) float32, canonical neutral mesh (see module docstring).
        triangles: (F, 3) int32 vertex indices, counter-clockwise in the image (x right,
            y down) seen from the camera.
        mouth_triangles: (F,) bool, triangles inside the inner-lip opening.
        eye_triangles: (F,) bool, triangles inside either eyelid opening.
        uv: (468, 2) float32 texture coordinates in [0, 1] (u right, v down).
        mirror: (468,) int32, left/right partner of each vertex (self on the midline).
        groups: named vertex-index groups (:data:`GROUPS`).
    """

    canonical: np.ndarray
    triangles: np.ndarray
    mouth_triangles: np.ndarray
    eye_triangles: np.ndarray
    uv: np.ndarray
    mirror: np.ndarray
    groups: dict[str, tuple[int, ...]]

    def group(self, name: str) -> np.ndarray:
        """The vertex indices of group ``name`` as an int64 array.

        Raises:
            KeyError: naming the known groups.
        """
        if name not in self.groups:
            raise KeyError(f"unknown landmark group {name!r}; known: {sorted(self.groups)}")
        return np.asarray(self.groups[name], dtype=np.int64)

    def render_triangles(self, holes: tuple[str, ...] = ("mouth",)) -> np.ndarray:
        """Triangles without the named openings (``"mouth"``, ``"eyes"``): (F', 3) int32.

        Raises:
            ValueError: for an unknown opening name.
        """
        keep = np.ones(len(self.triangles), bool)
        for hole in holes:
            if hole == "mouth":
                keep &= ~self.mouth_triangles
            elif hole == "eyes":
                keep &= ~self.eye_triangles
            else:
                raise ValueError(f"unknown opening {hole!r}; use 'mouth' and/or 'eyes'")
        return self.triangles[keep]


def topology_path() -> Path:
    """Path of the packaged ``face_topology.npz``."""
    return Path(str(resources.files("ned") / "data" / "face_topology.npz"))


@functools.lru_cache(maxsize=4)
def load_topology(path: str | Path | None = None) -> Topology:
    """Load the topology data file (cached).

    Args:
        path: an ``.npz`` written by ``scripts/build_topology.py``; default the packaged one.

    Raises:
        ModelFileError: when the file is missing or lacks a field.
    """
    p = Path(path) if path is not None else topology_path()
    if not p.is_file():
        raise ModelFileError(f"{p}: face topology missing; run `python scripts/build_topology.py`")
    try:
        with np.load(p, allow_pickle=False) as z:
            groups = {str(k[len("group_"):]): tuple(int(i) for i in z[k]) for k in z.files if k.startswith("group_")}
            topo = Topology(
                canonical=z["canonical"].astype(np.float32),
                triangles=z["triangles"].astype(np.int32),
                mouth_triangles=z["mouth_triangles"].astype(bool),
                eye_triangles=z["eye_triangles"].astype(bool),
                uv=z["uv"].astype(np.float32),
                mirror=z["mirror"].astype(np.int32),
                groups=groups,
            )
    except KeyError as err:
        raise ModelFileError(f"{p}: not a face topology file (missing {err}); rebuild it with "
                             "`python scripts/build_topology.py`") from err
    for arr in (topo.canonical, topo.triangles, topo.uv, topo.mirror):
        arr.setflags(write=False)
    return topo


# ---------------------------------------------------------------------------------------
# Pure geometry helpers (used by the build script, the rig and the tests)
# ---------------------------------------------------------------------------------------
def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the right and left eyelid contours of ``points (*, 468, D)``: two (*, D)."""
    return (points[..., list(GROUPS["eye_r"]), :].mean(-2),
            points[..., list(GROUPS["eye_l"]), :].mean(-2))


def eye_corner_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Midpoints of the right and left eye corners (canthi) of ``points (*, 468, D)``: two
    ``(*, D)``. The corners carry the eyeball: unlike :func:`eye_centres` they do not move
    when the lids open or close."""
    return tuple(0.5 * (points[..., GROUPS[g][0], :] + points[..., GROUPS[g][-1], :])
                 for g in ("eye_r_upper", "eye_l_upper"))


def inter_ocular_distance(points: np.ndarray) -> np.ndarray:
    """Distance between the eyelid-contour centres of ``points (*, 468, D)``: (*,)."""
    r, l = eye_centres(points)
    return np.linalg.norm(l - r, axis=-1)


def inner_lip_gaps(points: np.ndarray) -> np.ndarray:
    """Lower-minus-upper inner-lip vectors of :data:`INNER_LIP_PAIRS`: (*, 9, D).

    Their ``y`` components (canonical or image, y down) are the mouth aperture profile.
    """
    up = [u for u, _ in INNER_LIP_PAIRS]
    lo = [l for _, l in INNER_LIP_PAIRS]
    return points[..., lo, :] - points[..., up, :]


def mirror_permutation(points: np.ndarray, iterations: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left/right vertex correspondence of a face mesh and its symmetry plane.

    Alternates (a) the optimal one-to-one matching of the points with their reflection
    and (b) the plane that best explains the matched pairs (normal = main direction of
    the pair differences, through the mean of the pair midpoints).

    Args:
        points: (N, 3) a roughly frontal face, x to the image right.
        iterations: alternations.

    Returns:
        ``perm`` (N,) int (an involution), plane normal (3,) (unit, x > 0) and a point
        on the plane (3,).

    Raises:
        ValueError: on a bad shape.
    """
    from scipy.optimize import linear_sum_assignment

    check_array(points, "N 3", name="points")
    p = points.astype(np.float64)
    normal = np.array([1.0, 0.0, 0.0])
    centre = p.mean(0)
    perm = np.arange(len(p))
    for _ in range(iterations):
        refl = p - 2.0 * ((p - centre) @ normal)[:, None] * normal
        cost = np.linalg.norm(p[:, None, :] - refl[None, :, :], axis=-1)
        _, perm = linear_sum_assignment(cost)
        diff = p - p[perm]
        w, v = np.linalg.eigh(diff.T @ diff)
        normal = v[:, -1] * np.sign(v[0, -1] or 1.0)
        centre = ((p + p[perm]) / 2).mean(0)
    # make it an involution: keep i -> j only when j -> i
    bad = perm[perm] != np.arange(len(p))
    if bad.any():
        logger.warning("mirror matching not symmetric for %d vertices; they map to themselves", int(bad.sum()))
        perm = perm.copy()
        perm[bad] = np.flatnonzero(bad)
    return perm.astype(np.int32), normal, centre


def symmetrise(points: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Average a mesh (already symmetric about ``x = 0`` up to noise) with its mirror.

    Args:
        points: (N, 3). perm: (N,) mirror partner of each vertex.

    Returns:
        (N, 3) exactly symmetric: ``out[perm] == out * (-1, 1, 1)``.
    """
    m = points[perm] * np.array([-1.0, 1.0, 1.0])
    out = (points + m) / 2.0
    out[perm == np.arange(len(points)), 0] = 0.0
    return out


def canonicalise(points: np.ndarray, normal: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Rotate a face so its symmetry plane is ``x = 0``, then centre and scale to IOD 1.

    The rotation takes ``normal`` to +x and keeps image "down" as close to +y as possible.

    Args:
        points: (N, 3) image pixels (x right, y down, z away). normal, centre: the plane.

    Returns:
        (N, 3) canonical coordinates (float64).
    """
    ex = normal / np.linalg.norm(normal)
    down = np.array([0.0, 1.0, 0.0])
    ey = down - (down @ ex) * ex
    ey /= np.linalg.norm(ey)
    ez = np.cross(ex, ey)
    rot = np.stack([ex, ey, ez])  # rows: new axes
    q = (points - centre) @ rot.T
    q -= q.mean(0)
    return q / inter_ocular_distance(q)


def triangulate(
    points_2d: np.ndarray,
    boundary_loop: np.ndarray,
    constraints: tuple[np.ndarray, ...] | None = None,
    min_angle_deg: float = 12.0,
    points_3d: np.ndarray | None = None,
) -> np.ndarray:
    """Delaunay triangles of the points inside a boundary loop, border slivers removed.

    The edges of ``boundary_loop`` and of each closed loop in ``constraints`` (e.g. the
    inner-lip and eyelid contours) are forced into the triangulation by edge flips, so no
    triangle crosses them. Triangles whose centroid lies outside ``boundary_loop`` are dropped; then border
    triangles (with an edge used once, not on the boundary loop) whose smallest angle
    (measured on ``points_3d`` when given, else in 2-D) is below ``min_angle_deg`` are
    peeled while every vertex stays in some triangle.

    Args:
        points_2d: (N, 2) frontal projection. boundary_loop: closed loop of vertex indices.
        constraints: closed loops whose edges must be triangle edges.
        min_angle_deg: sliver threshold.
        points_3d: (N, 3) the same points in 3-D, to judge slivers by their true shape
            (the sides of a frontal face are foreshortened in 2-D).

    Returns:
        (F, 3) int32 triangles, counter-clockwise for x right / y down as seen on screen
        (positive signed area in those axes).
    """
    import cv2
    from scipy.spatial import Delaunay

    check_array(points_2d, "N 2", name="points_2d")
    tri = Delaunay(points_2d).simplices.astype(np.int64)
    for loop in (*(constraints or ()), boundary_loop):
        loop = [int(i) for i in loop]
        tri = enforce_edges(points_2d, tri, list(zip(loop, loop[1:] + loop[:1])))
    poly = points_2d[boundary_loop].astype(np.float32).reshape(-1, 1, 2)
    cent = points_2d[tri].mean(1)
    inside = np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), False) >= 0 for x, y in cent])
    tri = tri[inside]
    n = len(points_2d)
    quality_points = points_2d if points_3d is None else points_3d
    loop = [int(i) for i in boundary_loop]
    keep_keys = {min(a, b) * n + max(a, b) for a, b in zip(loop, loop[1:] + loop[:1])}
    while True:
        edges = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1)
        key = edges[:, 0] * n + edges[:, 1]
        uniq, counts = np.unique(key, return_counts=True)
        border_keys = set(uniq[counts == 1].tolist())
        is_border = np.array([any(k in border_keys for k in key[[i, i + len(tri), i + 2 * len(tri)]])
                              for i in range(len(tri))])
        angles = _min_angles(quality_points, tri)
        use = np.bincount(tri.ravel(), minlength=n)
        cand = [i for i in np.flatnonzero(is_border & (angles < min_angle_deg))
                if (use[tri[i]] > 1).all() and not _has_edge(tri[i], keep_keys, n)]
        if not cand:
            break
        worst = min(cand, key=lambda i: angles[i])
        tri = np.delete(tri, worst, axis=0)
    return _orient_ccw(points_2d, tri).astype(np.int32)


def enforce_edges(points_2d: np.ndarray, triangles: np.ndarray, edges: list[tuple[int, int]]) -> np.ndarray:
    """Flip triangle edges until every ``(a, b)`` in ``edges`` is a triangle edge.

    Sloan's constraint recovery: an edge crossing the segment ``ab`` is flipped when its
    two triangles form a convex quadrilateral, until none crosses. Constraint segments
    must not cross each other.

    Args:
        points_2d: (N, 2). triangles: (F, 3) a triangulation of them. edges: constraints.

    Returns:
        (F, 3) int64 triangles containing every constraint edge.

    Raises:
        RuntimeError: when an edge cannot be recovered (crossing constraints).
    """
    tri = [list(map(int, t)) for t in triangles]
    p = points_2d.astype(np.float64)

    def orient(a, b, c):
        return (p[b, 0] - p[a, 0]) * (p[c, 1] - p[a, 1]) - (p[b, 1] - p[a, 1]) * (p[c, 0] - p[a, 0])

    def crosses(u, v, a, b):
        if len({u, v, a, b}) < 4:
            return False
        return orient(a, b, u) * orient(a, b, v) < 0 and orient(u, v, a) * orient(u, v, b) < 0

    for a, b in edges:
        for _ in range(10 * len(tri)):
            edge_tris: dict[tuple[int, int], list[int]] = {}
            for k, t in enumerate(tri):
                for i in range(3):
                    edge_tris.setdefault(tuple(sorted((t[i], t[(i + 1) % 3]))), []).append(k)
            if tuple(sorted((a, b))) in edge_tris:
                break
            flipped = False
            for (u, v), ks in edge_tris.items():
                if len(ks) != 2 or not crosses(u, v, a, b):
                    continue
                p1 = [x for x in tri[ks[0]] if x not in (u, v)][0]
                p2 = [x for x in tri[ks[1]] if x not in (u, v)][0]
                if orient(p1, p2, u) * orient(p1, p2, v) >= 0:
                    continue  # not convex: flip another crossing edge first
                tri[ks[0]] = [p1, p2, u]
                tri[ks[1]] = [p2, p1, v]
                flipped = True
                break
            if not flipped:
                raise RuntimeError(f"cannot recover constraint edge ({a}, {b})")
        else:
            raise RuntimeError(f"cannot recover constraint edge ({a}, {b})")
    return np.asarray(tri, dtype=np.int64)


def _has_edge(t: np.ndarray, keys: set[int], n: int) -> bool:
    return any(min(int(t[i]), int(t[(i + 1) % 3])) * n + max(int(t[i]), int(t[(i + 1) % 3])) in keys
               for i in range(3))


def _min_angles(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    a, b, c = p[tri[:, 0]], p[tri[:, 1]], p[tri[:, 2]]

    def ang(u, v):
        cos = (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1) + 1e-12)
        return np.degrees(np.arccos(np.clip(cos, -1, 1)))

    return np.minimum.reduce([ang(b - a, c - a), ang(a - b, c - b), ang(a - c, b - c)])


def _orient_ccw(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    a, b, c = p[tri[:, 0]], p[tri[:, 1]], p[tri[:, 2]]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    out = tri.copy()
    flip = area < 0
    out[flip] = out[flip][:, [0, 2, 1]]
    return out


def opening_triangles(points_2d: np.ndarray, triangles: np.ndarray, loop: np.ndarray) -> np.ndarray:
    """Triangles lying inside an opening: all three vertices on ``loop``, centroid inside it.

    Args:
        points_2d: (N, 2). triangles: (F, 3). loop: closed loop of vertex indices.

    Returns:
        (F,) bool.
    """
    import cv2

    on_loop = np.isin(triangles, loop).all(1)
    poly = points_2d[loop].astype(np.float32).reshape(-1, 1, 2)
    cent = points_2d[triangles].mean(1)
    inside = np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), False) > 0 for x, y in cent])
    return on_loop & inside


def frontal_uv(canonical: np.ndarray, margin: float = 0.02) -> np.ndarray:
    """Isotropic frontal orthographic texture coordinates in [margin, 1 - margin].

    Args:
        canonical: (N, 3) canonical mesh (x right, y down, centred).

    Returns:
        (N, 2) float32 ``(u, v)``; ``u`` grows with x, ``v`` with y; same scale on both.
    """
    xy = canonical[:, :2]
    lo, hi = xy.min(0), xy.max(0)
    mid = (lo + hi) / 2
    half = (hi - lo).max() / 2
    uv = 0.5 + (xy - mid) / half * (0.5 - margin)
    return uv.astype(np.float32)


def outline_loop(points_2d: np.ndarray, loop: np.ndarray) -> np.ndarray:
    """Grow a closed loop so that every point lies inside or on it.

    Each point outside the polygon is inserted into the loop edge nearest to it (repeated
    until none is outside). MediaPipe's face oval leaves a few cheek points just outside
    in a frontal projection; the grown loop is the mesh's outer boundary.

    Args:
        points_2d: (N, 2). loop: closed loop of vertex indices.

    Returns:
        (M,) int64, M >= len(loop), the grown loop.
    """
    import cv2

    out = [int(i) for i in loop]
    for _ in range(len(points_2d)):
        poly = points_2d[out].astype(np.float32).reshape(-1, 1, 2)
        dist = np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), True) for x, y in points_2d])
        dist[out] = 0.0
        worst = int(np.argmin(dist))
        if dist[worst] >= 0:
            break
        q = points_2d[worst]
        best, best_d = 0, np.inf
        for k in range(len(out)):
            a, b = points_2d[out[k]], points_2d[out[(k + 1) % len(out)]]
            t = np.clip(np.dot(q - a, b - a) / max(np.dot(b - a, b - a), 1e-12), 0, 1)
            d = np.linalg.norm(a + t * (b - a) - q)
            if d < best_d:
                best, best_d = k, d
        out.insert(best + 1, worst)
    return np.asarray(out, dtype=np.int64)


def mesh_edges(triangles: np.ndarray) -> np.ndarray:
    """Unique undirected edges (E, 2) int64 (sorted pairs) of a triangle list."""
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]).astype(np.int64)
    return np.unique(np.sort(e, axis=1), axis=0)
