"""Rasterise the face mesh: NMFC images and shaded shape images (numpy + OpenCV, CPU).

``render_nmfc`` colours each vertex by its normalised canonical coordinate (NED's
"normalised mean-face coordinate" image): ``rgb = (canonical - min) / (max - min)`` per
axis, interpolated barycentrically inside each triangle. ``render_shape`` is the mesh
lit by a fixed light (Lambert, grey, Gouraud-interpolated).

Method: triangles facing away from the camera are culled, the rest are drawn far to
near (painter's algorithm on the mean depth; ``z`` larger = farther) as flat triangle
ids with ``cv2.fillConvexPoly`` at 1/16-pixel precision; then every covered pixel gets
barycentric coordinates from its triangle's precomputed inverse edge matrix and the
vertex colours are blended. Pixel ``(row i, column j)`` samples the point ``x = j, y = i``.
About 1 ms per 256x256 image on one core, and :func:`render_nmfc_and_shape` draws both
images of a mesh from one rasterisation (``benchmarks/bench_fit.py`` and
``benchmarks/bench_preprocess.py`` measure it).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from ned.morph.topology import NUM_VERTICES, Topology, load_topology
from ned.types import check_array

__all__ = ["render_nmfc", "render_shape", "render_nmfc_and_shape", "rasterise_ids", "nmfc_colours",
           "vertex_normals"]

#: Direction towards the light in image axes (x right, y down, z away): in front of the
#: face, a little above and to the left.
LIGHT_DIR = np.array([-0.3, -0.45, -1.0]) / np.linalg.norm([-0.3, -0.45, -1.0])
AMBIENT = 0.25
DIFFUSE = 0.75
_SHIFT = 4  # fixed-point bits of cv2.fillConvexPoly


@functools.lru_cache(maxsize=8)
def _triangles(topology: Topology, holes: tuple[str, ...]) -> np.ndarray:
    return np.ascontiguousarray(topology.render_triangles(holes), dtype=np.int64)


@functools.lru_cache(maxsize=4)
def _nmfc_table(topology: Topology) -> np.ndarray:
    return nmfc_colours(topology.canonical)


def nmfc_colours(canonical: np.ndarray) -> np.ndarray:
    """Per-vertex NMFC colours: the canonical mesh normalised to [0, 1] per axis: (N, 3) float32."""
    lo, hi = canonical.min(0), canonical.max(0)
    return ((canonical - lo) / np.maximum(hi - lo, 1e-9)).astype(np.float32)


def _check(vertices: np.ndarray, size: tuple[int, int]) -> tuple[int, int]:
    check_array(vertices, f"{NUM_VERTICES} 3", name="vertices")
    if len(size) != 2 or int(size[0]) <= 0 or int(size[1]) <= 0:
        raise ValueError(f"size must be (H, W) with positive values, got {size}")
    if not np.isfinite(vertices).all():
        raise ValueError("vertices contain NaN or inf; skip frames without a face")
    return int(size[0]), int(size[1])


def rasterise_ids(vertices: np.ndarray, triangles: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Visible triangle per pixel: (H, W) int32, ``-1`` where no triangle covers it.

    Args:
        vertices: (N, 3) image pixels (x right, y down, z away from the camera).
        triangles: (F, 3) counter-clockwise on screen when facing the camera.
        size: (H, W).
    """
    ids = _rasterise(vertices, triangles, size)
    ids -= 1
    return ids


def _rasterise(vertices: np.ndarray, triangles: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """As :func:`rasterise_ids` with ids shifted by one: (H, W) int32, ``0`` = none, ``k + 1``
    = triangle ``k``."""
    h, w = size
    v = vertices.astype(np.float64)
    a, b, c = v[triangles[:, 0]], v[triangles[:, 1]], v[triangles[:, 2]]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    front = np.flatnonzero(area > 0)
    depth = (a[front, 2] + b[front, 2] + c[front, 2])
    order = front[np.argsort(-depth, kind="stable")]
    pts = np.round(v[:, :2] * (1 << _SHIFT)).astype(np.int32)
    ids = np.zeros((h, w), np.int32)
    fill = cv2.fillConvexPoly
    for k, tri in zip((order + 1).tolist(), list(pts[triangles[order]])):
        fill(ids, tri, k, cv2.LINE_8, _SHIFT)
    return ids


def _interpolate(vertices: np.ndarray, triangles: np.ndarray, colours: np.ndarray, size: tuple[int, int],
                 ids: np.ndarray | None = None) -> np.ndarray:
    """Barycentric interpolation of per-vertex ``colours (N, C)`` over the visible mesh.

    Inside a triangle the colour is an affine function of ``(x, y)``; its 3 x C
    coefficients are solved once per triangle, then every covered pixel evaluates its
    triangle's function (values just outside a triangle's edge extrapolate slightly and
    are clipped to the vertex colours' range by the callers).

    Args:
        ids: the output of :func:`_rasterise` for these vertices (computed when None).
    """
    h, w = size
    ids = (_rasterise(vertices, triangles, size) if ids is None else ids).ravel()
    c = colours.shape[1]
    out = np.zeros((h * w, c), np.float32)
    flat = np.flatnonzero(ids)
    if flat.size == 0:
        return out.reshape(h, w, c)
    v = vertices[:, :2].astype(np.float64)
    p0, p1, p2 = v[triangles[:, 0]], v[triangles[:, 1]], v[triangles[:, 2]]
    e1, e2 = p1 - p0, p2 - p0
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    det = np.where(np.abs(det) < 1e-12, 1e-12, det)
    # barycentric l1 = (dx e2y - dy e2x) / det, l2 = (e1x dy - e1y dx) / det, d = p - p0
    a1, b1 = e2[:, 1] / det, -e2[:, 0] / det
    a2, b2 = -e1[:, 1] / det, e1[:, 0] / det
    c0 = colours[triangles[:, 0]].astype(np.float64)
    d1 = colours[triangles[:, 1]] - c0
    d2 = colours[triangles[:, 2]] - c0
    # colour = c0 + l1 d1 + l2 d2 = gx * x + gy * y + g0 (per triangle, per channel)
    gx = a1[:, None] * d1 + a2[:, None] * d2
    gy = b1[:, None] * d1 + b2[:, None] * d2
    g0 = c0 - gx * p0[:, :1] - gy * p0[:, 1:2]
    coef = np.stack([gx, gy, g0], axis=1).astype(np.float32)  # (F, 3, C)
    k = ids[flat] - 1
    xs = (flat % w).astype(np.float32)
    ys = (flat // w).astype(np.float32)
    ck = coef[k]
    out[flat] = ck[:, 0] * xs[:, None] + ck[:, 1] * ys[:, None] + ck[:, 2]
    return out.reshape(h, w, c)


def render_nmfc(
    vertices: np.ndarray,
    size: tuple[int, int],
    *,
    topology: Topology | None = None,
    holes: tuple[str, ...] = ("mouth",),
) -> np.ndarray:
    """NMFC image of a posed mesh.

    Args:
        vertices: (468, 3) float, image pixels (x right, y down, z away; z only orders
            the triangles).
        size: (H, W) of the output.
        topology: default :func:`ned.morph.topology.load_topology`.
        holes: openings left empty (``"mouth"``, ``"eyes"``).

    Returns:
        (H, W, 3) uint8 RGB; background 0.

    Raises:
        ValueError: on a bad shape, size, or non-finite vertices.
    """
    h, w = _check(vertices, size)
    topo = topology or load_topology()
    return _to_uint8(_interpolate(vertices, _triangles(topo, tuple(holes)), _nmfc_table(topo) * 255.0, (h, w)))


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """``floor(clip(img + 0.5, 0, 255))`` as uint8 (rounds half up)."""
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit per-vertex normals pointing towards the camera for front faces: (N, 3) float64."""
    v = vertices.astype(np.float64)
    a, b, c = v[triangles[:, 0]], v[triangles[:, 1]], v[triangles[:, 2]]
    fn = np.cross(c - a, b - a)  # area-weighted, towards the camera (-z) when CCW on screen
    n = np.zeros_like(v)
    for k in range(3):
        for d in range(3):
            n[:, d] += np.bincount(triangles[:, k], weights=fn[:, d], minlength=len(v))
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def render_shape(
    vertices: np.ndarray,
    size: tuple[int, int],
    *,
    topology: Topology | None = None,
    holes: tuple[str, ...] = ("mouth",),
) -> np.ndarray:
    """Grey Lambert-shaded image of a posed mesh (fixed light, see :data:`LIGHT_DIR`).

    Args and Raises as :func:`render_nmfc`.

    Returns:
        (H, W, 3) uint8 RGB, grey; background 0.
    """
    h, w = _check(vertices, size)
    topo = topology or load_topology()
    tri = _triangles(topo, tuple(holes))
    return _grey_rgb(_to_uint8(_interpolate(vertices, tri, _shade(vertices, tri)[:, None], (h, w))))


def _shade(vertices: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """(N,) float64 grey level 0..255 of each vertex under the fixed light."""
    n = vertex_normals(vertices, tri)
    return 255.0 * (AMBIENT + DIFFUSE * np.clip(n @ LIGHT_DIR, 0.0, 1.0))


def _grey_rgb(grey: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 1) uint8 -> (H, W, 3) uint8."""
    return cv2.cvtColor(np.ascontiguousarray(grey.reshape(grey.shape[:2])), cv2.COLOR_GRAY2RGB)


def render_nmfc_and_shape(
    vertices: np.ndarray,
    size: tuple[int, int],
    *,
    topology: Topology | None = None,
    holes: tuple[str, ...] = ("mouth",),
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`render_nmfc` and :func:`render_shape` of the same mesh from one rasterisation
    and one interpolation of four channels (NMFC's three and the shade): about half the
    cost of the two calls, with the same pixels.

    Args and Raises as :func:`render_nmfc`.

    Returns:
        ``(nmfc, shape)``, each (H, W, 3) uint8.
    """
    h, w = _check(vertices, size)
    topo = topology or load_topology()
    tri = _triangles(topo, tuple(holes))
    colours = np.concatenate([_nmfc_table(topo) * 255.0, _shade(vertices, tri)[:, None]], axis=1)
    img = _to_uint8(_interpolate(vertices, tri, colours, (h, w)))
    return np.ascontiguousarray(img[..., :3]), _grey_rgb(img[..., 3])
