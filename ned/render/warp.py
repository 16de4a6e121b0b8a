"""Piecewise-affine image warping over a fixed triangulation, with a fixed anchor ring.

Convention: images are ``(H, W, 3) uint8`` RGB; points are ``(N, 2)`` (or ``(N, 3)``,
``z`` ignored) ``float32`` ``(x, y)`` pixels of the named image, origin top-left, pixel
centres at integer coordinates. ``triangles`` are ``(M, 3) int32`` vertex indices.

The warp is *backward*: every output pixel ``p`` inside destination triangle ``t`` samples
the source image at ``A_t p``, where ``A_t`` is the affine map taking ``t``'s destination
vertices onto its source vertices. Outside every destination triangle the map is the
identity, so the warp changes nothing there. Computing it costs one rasterisation of a
triangle-index image (``cv2.fillConvexPoly`` per triangle, at every ``map_step``-th pixel),
two look-ups of per-triangle displacement coefficients (``cv2.remap`` with nearest
neighbour), and one ``cv2.remap`` of the image, all restricted to the bounding box of the
triangles that move. No Python loop touches pixels.

The anchor ring makes the warp fade out: :func:`build_warp_mesh` adds a band of triangles
between the face-oval loop and a copy of it pushed outwards (:func:`anchor_ring`). The
anchors are the same points in source and destination, so the displacement is exactly zero
on the outer loop and the warp is continuous with the identity outside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from ned.types import check_array

__all__ = [
    "WarpMesh",
    "anchor_ring",
    "box_maps",
    "build_warp_mesh",
    "displacement_affines",
    "loop_from_edges",
    "warp_piecewise_affine",
    "with_anchors",
]

logger = logging.getLogger(__name__)

_INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}
_MIN_AREA_PX2 = 1e-3          # destination triangles smaller than this (px^2) are skipped
_SUBPIXEL_SHIFT = 4           # fixed-point bits for cv2.fillConvexPoly vertices
_STILL_PX = 1e-3              # points moving less than this (px) count as still


# --------------------------------------------------------------------------- mesh topology


@dataclass(frozen=True)
class WarpMesh:
    """A face triangulation extended by a band of triangles out to a ring of anchors.

    Attributes:
        triangles: ``(M + 2K, 3) int32``; the face triangles first, then the band. Indices
            ``< n_points`` are face landmarks, ``n_points + k`` is anchor ``k``.
        n_points: number of face landmarks the triangles refer to (``N``).
        oval: ``(K,) int32`` face-oval landmark indices as an ordered closed loop.
        n_face_triangles: ``M``, the number of face triangles (the band follows them).
    """

    triangles: np.ndarray
    n_points: int
    oval: np.ndarray
    n_face_triangles: int

    @property
    def n_anchors(self) -> int:
        """``K``, the number of anchor points (one per face-oval point)."""
        return int(self.oval.shape[0])


def loop_from_edges(edges: np.ndarray) -> np.ndarray:
    """Order an unordered set of edges forming one closed loop (e.g. MediaPipe's face oval).

    Args:
        edges: ``(K, 2)`` int vertex index pairs, each vertex in exactly two edges.

    Returns:
        ``(K,) int32`` vertex indices in loop order, starting at the smallest index.

    Raises:
        ValueError: if the edges do not form a single closed loop.
    """
    edges = check_array(np.asarray(edges), "K 2", name="edges").astype(np.int64)
    neighbours: dict[int, list[int]] = {}
    for a, b in edges.tolist():
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    if any(len(v) != 2 for v in neighbours.values()):
        raise ValueError("edges: every vertex of a closed loop must be in exactly two edges")
    start = min(neighbours)
    loop, prev, cur = [start], -1, start
    while True:
        a, b = neighbours[cur]
        nxt = a if a != prev else b
        if nxt == start:
            break
        loop.append(nxt)
        prev, cur = cur, nxt
        if len(loop) > len(neighbours):
            break
    if len(loop) != len(neighbours):
        raise ValueError(f"edges: form several loops ({len(loop)} of {len(neighbours)} vertices in the first)")
    return np.asarray(loop, np.int32)


def build_warp_mesh(triangles: np.ndarray, oval: np.ndarray, n_points: int | None = None) -> WarpMesh:
    """Extend a face triangulation with a band of triangles out to a ring of anchors.

    Built once per topology. For face-oval loop point ``o_i`` and its anchor ``a_i`` (index
    ``n_points + i``), the band holds the quad ``o_i o_{i+1} a_{i+1} a_i`` split into two
    triangles. A band (rather than a Delaunay triangulation of the combined points) gives
    the same topology whatever the pose and never connects an anchor to an inner point.

    Args:
        triangles: ``(M, 3)`` int vertex indices of the face triangulation. They should cover
            the face as one disk (mouth and eye interiors included), so that no pixel
            inside the face oval is left out.
        oval: ``(K,)`` int indices of the face-oval landmarks, an ordered closed loop (use
            :func:`loop_from_edges` for an edge list), ``K >= 3``.
        n_points: number of landmarks; default ``triangles.max() + 1``.

    Returns:
        The :class:`WarpMesh`.

    Raises:
        ValueError: on bad shapes, indices out of range or repeated oval points.
    """
    triangles = check_array(np.asarray(triangles), "M 3", name="triangles")
    oval = check_array(np.asarray(oval), "K", name="oval")
    if not (np.issubdtype(triangles.dtype, np.integer) and np.issubdtype(oval.dtype, np.integer)):
        raise ValueError("triangles and oval must hold integer indices")
    if triangles.shape[0] == 0 or oval.shape[0] < 3:
        raise ValueError(f"need at least one triangle and 3 oval points, got {triangles.shape[0]} and {oval.shape[0]}")
    n = int(triangles.max()) + 1 if n_points is None else int(n_points)
    if triangles.min() < 0 or triangles.max() >= n or oval.min() < 0 or oval.max() >= n:
        raise ValueError(f"triangles/oval: indices must lie in [0, {n})")
    if len(np.unique(oval)) != len(oval):
        raise ValueError("oval: indices must be distinct (an ordered loop, not an edge list)")
    k = oval.shape[0]
    o0, o1 = oval.astype(np.int32), np.roll(oval, -1).astype(np.int32)
    a0 = n + np.arange(k, dtype=np.int32)
    a1 = np.roll(a0, -1)
    band = np.concatenate([np.stack([o0, o1, a1], 1), np.stack([o0, a1, a0], 1)])
    all_triangles = np.ascontiguousarray(np.concatenate([triangles.astype(np.int32), band]))
    return WarpMesh(triangles=all_triangles, n_points=n, oval=oval.astype(np.int32),
                    n_face_triangles=int(triangles.shape[0]))


def anchor_ring(src_points: np.ndarray, dst_points: np.ndarray, oval: np.ndarray,
                ring_scale: float) -> np.ndarray:
    """Anchor points: the face-oval loop pushed outwards from its centroid.

    Anchor ``i`` lies on the ray from the source oval's centroid ``c`` through source oval
    point ``i``, at ``1 + ring_scale`` times the farther of the source and destination
    oval points' distance along that ray, so both ovals stay inside the anchor loop.

    Args:
        src_points: ``(N, 2|3)`` source landmarks, pixels.
        dst_points: ``(N, 2|3)`` destination landmarks, pixels of the same image.
        oval: ``(K,)`` ordered face-oval loop indices.
        ring_scale: relative width of the band, ``> 0`` (0.25 = a quarter of the
            centroid-to-oval distance).

    Returns:
        ``(K, 2) float32`` anchor points, pixels.

    Raises:
        ValueError: if ``ring_scale <= 0`` or on bad shapes.
    """
    if not ring_scale > 0:
        raise ValueError(f"ring_scale must be > 0, got {ring_scale}")
    src = np.asarray(src_points, np.float64)[oval, :2]
    dst = np.asarray(dst_points, np.float64)[oval, :2]
    centre = src.mean(axis=0)
    ray = src - centre
    r_src = np.linalg.norm(ray, axis=1)
    unit = ray / np.maximum(r_src, 1e-9)[:, None]
    r_dst = np.einsum("kd,kd->k", dst - centre, unit)
    radius = np.maximum(r_src, r_dst) * (1.0 + ring_scale)
    return (centre + unit * radius[:, None]).astype(np.float32)


def with_anchors(points: np.ndarray, mesh: WarpMesh, anchors: np.ndarray) -> np.ndarray:
    """Landmarks ``(N', 2|3)`` (``N' >= mesh.n_points``) followed by anchors: ``(N + K, 2) float32``.

    Raises:
        ValueError: if there are too few landmarks or the anchors do not match the mesh.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[0] < mesh.n_points or points.shape[1] not in (2, 3):
        raise ValueError(f"points: expected shape (>= {mesh.n_points}, 2|3), got {points.shape}")
    check_array(np.asarray(anchors), f"{mesh.n_anchors} 2", name="anchors")
    return np.concatenate([points[: mesh.n_points, :2], anchors]).astype(np.float32)


# --------------------------------------------------------------------------- the warp


def _signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Signed areas ``(M,)`` (px^2) of the triangles; positive = counter-clockwise in (x, y)."""
    p0, p1, p2 = points[triangles[:, 0]], points[triangles[:, 1]], points[triangles[:, 2]]
    e1, e2 = p1 - p0, p2 - p0
    return 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])


def displacement_affines(src_points: np.ndarray, dst_points: np.ndarray,
                         triangles: np.ndarray) -> np.ndarray:
    """Per-triangle affine displacement ``src - dst`` as a function of the destination point.

    For triangle ``t`` the returned ``(2, 3)`` matrix ``D_t`` gives ``src(p) - p = D_t @
    [x, y, 1]`` for any destination pixel ``p = (x, y)`` (barycentric interpolation of the
    vertex displacements). Where all three vertices are fixed, ``D_t`` is exactly zero.

    Args:
        src_points, dst_points: ``(N, 2) float64`` pixels.
        triangles: ``(M, 3)`` indices; their destination triangles must be non-degenerate.

    Returns:
        ``(M, 2, 3) float64``.
    """
    d0 = dst_points[triangles[:, 0]]                           # (M, 2)
    e1 = dst_points[triangles[:, 1]] - d0
    e2 = dst_points[triangles[:, 2]] - d0
    v0 = src_points[triangles[:, 0]] - d0                      # vertex displacements
    w1 = src_points[triangles[:, 1]] - dst_points[triangles[:, 1]] - v0
    w2 = src_points[triangles[:, 2]] - dst_points[triangles[:, 2]] - v0
    # p = d0 + a e1 + b e2  =>  (a, b) = inv([e1 e2]) (p - d0); disp = v0 + a w1 + b w2.
    inv_det = 1.0 / (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    ia = np.stack([e2[:, 1], -e2[:, 0]], axis=1) * inv_det[:, None]    # row of inv for a
    ib = np.stack([-e1[:, 1], e1[:, 0]], axis=1) * inv_det[:, None]    # row of inv for b
    linear = w1[:, :, None] * ia[:, None, :] + w2[:, :, None] * ib[:, None, :]   # (M, 2, 2)
    const = v0 - np.einsum("mij,mj->mi", linear, d0)
    return np.concatenate([linear, const[:, :, None]], axis=2)


_GRID_CACHE: dict[str, np.ndarray] = {}


def _grid(kind: str, height: int, width: int) -> np.ndarray:
    """Cached pixel-coordinate grids, grow-only; returns a ``[:height, :width]`` view.

    ``kind``: ``"x"`` / ``"y"`` ``(h, w) float32`` of ``x`` / ``y``; ``"xy"`` ``(h, w, 2)``
    of ``(x, y)``; ``"xy1xy1/<step>"`` ``(h, w, 6)`` of ``(X, Y, 1, X, Y, 1)`` with ``X =
    step * x + (step - 1) / 2`` (the sample grid of :func:`_backward_map`).
    """
    grid = _GRID_CACHE.get(kind)
    if grid is None or grid.shape[0] < height or grid.shape[1] < width:
        h = max(height, 0 if grid is None else grid.shape[0])
        w = max(width, 0 if grid is None else grid.shape[1])
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        if kind in ("x", "y"):
            grid = xs if kind == "x" else ys
        elif kind == "xy":
            grid = np.ascontiguousarray(np.dstack([xs, ys]))
        else:
            step = int(kind.split("/")[1])
            offset = np.float32((step - 1) / 2.0)
            sx, sy = xs * np.float32(step) + offset, ys * np.float32(step) + offset
            ones = np.ones_like(xs)
            grid = np.ascontiguousarray(np.dstack([sx, sy, ones, sx, sy, ones]))
        _GRID_CACHE[kind] = grid
    return grid[:height, :width]


def _parse_size(out_size: tuple[int, int] | None, image: np.ndarray) -> tuple[int, int]:
    if out_size is None:
        return int(image.shape[0]), int(image.shape[1])
    if len(out_size) != 2 or min(int(out_size[0]), int(out_size[1])) <= 0:
        raise ValueError(f"out_size must be (height, width) > 0, got {out_size}")
    return int(out_size[0]), int(out_size[1])


def warp_piecewise_affine(image: np.ndarray, src_points: np.ndarray, dst_points: np.ndarray,
                          triangles: np.ndarray, *, out_size: tuple[int, int] | None = None,
                          anchors: np.ndarray | None = None, interpolation: str = "linear",
                          map_step: int = 1, background: str = "identity",
                          out_box: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image`` so that ``src_points`` land on ``dst_points``, triangle by triangle.

    Convention: backward mapping; output pixel ``(x, y)`` inside destination triangle ``t``
    samples ``image`` at the point with the same barycentric coordinates in source triangle
    ``t`` (border replicated). Output pixels outside every destination triangle sample
    ``image`` at ``(x, y)`` itself, i.e. they are copied unchanged (0 where that lies
    outside ``image``). Only the bounding box of the destination triangles is computed.

    Only triangles with a moving vertex (by more than 1e-3 px) are drawn: the others map
    by the identity anyway, so edits that move part of the face cost less. Folded triangles
    (destination orientation opposite to the source's) are drawn first so that regular
    triangles win where they overlap; destination triangles with an area under 1e-3 px^2
    are skipped (their neighbours cover them). With ``src_points == dst_points`` the output
    equals the input bit for bit, whatever ``map_step``.

    Args:
        image: ``(H, W, 3) uint8`` source image.
        src_points: ``(N, 2|3)`` points in ``image`` pixels.
        dst_points: ``(N, 2|3)`` the same points in output pixels.
        triangles: ``(M, 3)`` integer indices into the points (followed by the anchors if
            given).
        out_size: ``(height, width)`` of the output; default ``image``'s.
        anchors: ``(K, 2)`` fixed points appended to both point sets (indices ``N..N+K-1``);
            they do not move, so the warp fades to the identity at them.
        interpolation: ``"linear"`` (default), ``"cubic"`` (sharper) or ``"nearest"``.
        map_step: the displacement field is evaluated every ``map_step`` pixels and
            bilinearly upsampled, ``1..4``. 1 is exact; 2 is about twice as fast and differs
            by well under a pixel only near triangle edges (exact for a global affine map).
        background: ``"identity"`` (default; the warp of an image onto itself) or
            ``"zero"`` (e.g. mapping a texture onto a mesh: 0 outside the triangles).
        out_box: ``(x0, y0, x1, y1)`` (exclusive ends) within the output: compute and
            return only this box (the source may still be read anywhere in ``image``);
            default the whole output.

    Returns:
        ``warped`` ``(h, w, 3) uint8`` and ``coverage`` ``(h, w) float32`` (the output size,
        or the box's): 1 where the output pixel was warped (it lies in a non-degenerate
        destination triangle with a moving vertex), else 0.

    Raises:
        ValueError: on bad shapes, dtypes, non-finite points, indices out of range, an
            unknown interpolation or background, a bad ``map_step`` or ``out_box``.
    """
    check_array(image, "H W 3", np.uint8, name="image")
    if background not in ("identity", "zero"):
        raise ValueError(f"background must be 'identity' or 'zero', got {background!r}")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {interpolation!r}")
    if isinstance(map_step, bool) or not isinstance(map_step, (int, np.integer)) or not 1 <= map_step <= 4:
        raise ValueError(f"map_step must be an integer in [1, 4], got {map_step!r}")
    src = np.asarray(src_points, np.float64)
    dst = np.asarray(dst_points, np.float64)
    if src.ndim != 2 or src.shape[1] not in (2, 3) or dst.shape != src.shape:
        raise ValueError(f"src_points/dst_points: expected equal shapes (N, 2|3), got {src.shape} and {dst.shape}")
    src, dst = src[:, :2], dst[:, :2]
    if anchors is not None:
        fixed = np.asarray(check_array(np.asarray(anchors), "K 2", name="anchors"), np.float64)
        src, dst = np.concatenate([src, fixed]), np.concatenate([dst, fixed])
    triangles = check_array(np.asarray(triangles), "M 3", name="triangles")
    if not np.issubdtype(triangles.dtype, np.integer):
        raise ValueError(f"triangles: expected integer indices, got {triangles.dtype}")
    if triangles.size and (triangles.min() < 0 or triangles.max() >= len(src)):
        raise ValueError(f"triangles: indices must lie in [0, {len(src)}) (points plus anchors)")
    used = np.zeros(len(src), bool)
    used[triangles.ravel()] = True
    if not (np.isfinite(src[used]).all() and np.isfinite(dst[used]).all()):
        raise ValueError("src_points/dst_points: non-finite coordinates (a missing face should not be warped)")
    height, width = _parse_size(out_size, image)
    if out_box is None:
        box = (0, 0, width, height)
    else:
        box = tuple(int(v) for v in out_box)
        if len(box) != 4 or not (0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height):
            raise ValueError(f"out_box must be (x0, y0, x1, y1) inside the {width}x{height} output, got {out_box}")
    return _warp_box(image, src, dst, triangles, box, interpolation=interpolation, map_step=map_step,
                     identity=background == "identity")


#: ``adjust(map_xy (h, w, 2) float32, origin (x0, y0))``: rewrites a backward map in place.
MapAdjust = Callable[[np.ndarray, tuple[int, int]], None]


@dataclass(frozen=True)
class _BoxMaps:
    """Backward maps of the part of a box that the drawn triangles cover.

    Attributes:
        box: ``(x0, y0, x1, y1)`` of that part, output pixels (within the requested box).
        map_xy: ``(h, w, 2) float32`` source coordinates ``(x, y)`` (image pixels) of each
            output pixel.
        index: ``(h, w) float32`` drawn-triangle index (``n_drawn`` outside all), or None.
        n_drawn: number of triangles drawn.
    """

    box: tuple[int, int, int, int]
    map_xy: np.ndarray
    index: np.ndarray | None
    n_drawn: int


def _box_maps(src: np.ndarray, dst: np.ndarray, triangles: np.ndarray, box: tuple[int, int, int, int], *,
              map_step: int, identity: bool, need_index: bool, whole_box: bool = False) -> _BoxMaps | None:
    """The backward maps of :func:`warp_piecewise_affine` over ``box`` of the output
    (checked inputs; ``src``, ``dst`` ``(N, 2) float64`` with the anchors appended).

    By default only the part of the box covered by the drawn triangles is mapped, on a
    sampling grid anchored at the triangles' corner; ``whole_box`` maps the whole box on
    a grid anchored at its corner (the identity where no triangle is drawn).

    Returns None when no triangle is drawn inside the box (the warp is the identity there).
    """
    bx0, by0, bx1, by1 = box
    if triangles.shape[0] == 0:
        return None
    # Triangles to draw: non-degenerate in the destination and moving; folded ones first.
    triangles = triangles.astype(np.intp)
    area_dst = _signed_areas(dst, triangles)
    area_src = _signed_areas(src, triangles)
    moving = np.hypot(*(src - dst).T) > _STILL_PX
    draw = np.abs(area_dst) >= _MIN_AREA_PX2
    if identity:
        draw &= moving[triangles].any(axis=1)
    folded = draw & (area_dst * area_src < 0)
    if folded.any():
        logger.debug("warp: %d folded triangles", int(folded.sum()))
    order = np.concatenate([np.flatnonzero(folded), np.flatnonzero(draw & ~folded)])
    if len(order) == 0:
        return None

    # Region of the output that can change: bounding box of the drawn triangles, within
    # the box. The sampling grid of the displacement stays anchored at the triangles'
    # corner (same parity), so a box gives the same values as the whole output.
    corners = dst[triangles[order].ravel()]
    tx0, ty0 = np.floor(corners.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
    x0 = tx0 if tx0 >= bx0 else bx0 - (bx0 - tx0) % map_step
    y0 = ty0 if ty0 >= by0 else by0 - (by0 - ty0) % map_step
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, bx1), min(y1, by1)
    if x1 <= max(x0, bx0) or y1 <= max(y0, by0):
        return None
    if whole_box:
        x0, y0, x1, y1 = bx0, by0, bx1, by1
    origin = np.array([x0, y0], np.float64)
    src_l, dst_l = src - origin, dst - origin                  # region-local pixels
    index, map_xy = _backward_map(src_l, dst_l, triangles[order], y1 - y0, x1 - x0, map_step,
                                  need_index=need_index)
    # Crop the grid's parity margin to the box.
    cx, cy = max(bx0 - x0, 0), max(by0 - y0, 0)
    if cx or cy:
        map_xy = map_xy[cy:, cx:]
        index = index[cy:, cx:] if index is not None else None
        x0, y0 = x0 + cx, y0 + cy
    map_xy = cv2.add(map_xy, (float(x0), float(y0), 0.0, 0.0))  # (numpy's broadcast add is 10x slower)
    return _BoxMaps((int(x0), int(y0), int(x1), int(y1)), map_xy, index, len(order))


def box_maps(src: np.ndarray, dst: np.ndarray, triangles: np.ndarray, box: tuple[int, int, int, int], *,
             map_step: int, map_adjust: MapAdjust | None = None) -> np.ndarray | None:
    """Backward map of the identity-background warp over a whole box, for warping
    several planes (e.g. Y, Cb, Cr) with ``cv2.remap`` exactly as :func:`warp_piecewise_affine`
    warps an image.

    Args:
        src, dst: ``(N, 2) float64`` source / destination points, anchors appended.
        triangles: ``(M, 3)`` integer indices.
        box: ``(x0, y0, x1, y1)`` output pixels.
        map_step: as in :func:`warp_piecewise_affine`.
        map_adjust: rewrites the map in place (e.g. :func:`ned.render.eyes.reveal_eyes`).

    Returns:
        ``map_xy`` ``(y1 - y0, x1 - x0, 2) float32``: the source pixel ``(x, y)`` of each
        output pixel (the identity outside the moving triangles; the displacement is
        sampled every ``map_step`` pixels from the box's corner), or None when nothing
        moves in the box.
    """
    maps = _box_maps(src, dst, triangles, tuple(int(v) for v in box), map_step=map_step, identity=True,
                     need_index=False, whole_box=True)
    if maps is None:
        return None
    if map_adjust is not None:
        map_adjust(maps.map_xy, maps.box[:2])
    return maps.map_xy


def _warp_box(image: np.ndarray, src: np.ndarray, dst: np.ndarray, triangles: np.ndarray,
              box: tuple[int, int, int, int], *, interpolation: str, map_step: int, identity: bool,
              coverage: bool = True, map_adjust: MapAdjust | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The warp of :func:`warp_piecewise_affine` over ``box`` of the output (checked inputs).

    ``src``, ``dst``: ``(N, 2) float64`` with the anchors appended; ``map_adjust`` as in
    :func:`box_maps`. Returns ``warped`` ``(h, w, 3) uint8`` and ``coverage`` ``(h, w)
    float32`` of the box (None when ``coverage`` is False).
    """
    bx0, by0, bx1, by1 = box
    bh, bw = by1 - by0, bx1 - bx0
    warped = _identity_output(image, box) if identity else np.zeros((bh, bw, 3), np.uint8)
    cover = np.zeros((bh, bw), np.float32) if coverage else None
    maps = _box_maps(src, dst, triangles, box, map_step=map_step, identity=identity,
                     need_index=coverage or not identity)
    if maps is None:
        return warped, cover
    x0, y0, x1, y1 = maps.box
    if map_adjust is not None:
        map_adjust(maps.map_xy, (x0, y0))
    region = cv2.remap(image, maps.map_xy, None, _INTERPOLATIONS[interpolation], borderMode=cv2.BORDER_REPLICATE)
    out = warped[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]
    if identity and image.shape[0] >= y1 and image.shape[1] >= x1:
        # Outside the triangles the map is the exact identity on integer pixel centres,
        # which every cv2 interpolation reproduces bit for bit: copy the whole region.
        out[...] = region
    else:
        inside = maps.index < maps.n_drawn
        np.copyto(out, region, where=inside[..., None])
    if cover is not None:
        cover[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0] = maps.index < maps.n_drawn
    return warped, cover


def _backward_map(src: np.ndarray, dst: np.ndarray, triangles: np.ndarray, height: int, width: int,
                  step: int, need_index: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """Triangle index and backward map of a region, drawing ``triangles`` in order.

    Args:
        src, dst: ``(N, 2) float64`` region pixels.
        triangles: ``(m, 3)`` non-degenerate destination triangles, in drawing order.
        height, width: region size.
        step: sampling step of the displacement (1 = every pixel).
        need_index: also return the triangle index at full resolution.

    Returns:
        ``index`` ``(h, w) float32`` (``m`` outside every triangle; None unless
        ``need_index``) and ``map_xy`` ``(h, w, 2) float32``: the source coordinates
        ``(x, y)`` of each pixel in region pixels (``cv2.remap``'s two-channel map).
    """
    m = len(triangles)
    # Coefficient table: entry t = triangle t's displacement affine (x row, y row);
    # entry m = zero (outside every triangle).
    table = np.zeros((1, m + 1, 6), np.float32)
    table[0, :m] = displacement_affines(src, dst, triangles).reshape(m, 6)

    # Sample grid: sample (i, j) sits at region pixel (step * j + o, step * i + o), the
    # centre of its step x step cell, so a bilinear resize by ``step`` lands on pixels.
    offset = (step - 1) / 2.0
    gh, gw = -(-height // step), -(-width // step)
    index = np.full((gh, gw), float(m), np.float32)
    verts = np.round((dst[triangles] - offset) / step * (1 << _SUBPIXEL_SHIFT)).astype(np.int32)
    fill = cv2.fillConvexPoly
    for i, tri in enumerate(list(verts)):
        fill(index, tri, i, cv2.LINE_8, _SUBPIXEL_SHIFT)

    # Per-sample displacement = coefficients(index) . (x, y, 1), for x and y at once.
    coefs = cv2.remap(table, index, np.zeros((gh, gw), np.float32), cv2.INTER_NEAREST)   # (gh, gw, 6)
    terms = cv2.multiply(coefs, _grid(f"xy1xy1/{step}", gh, gw))
    # Sum each triple: as (gh, 2 gw, 3) -> 1 channel (OpenCV's 3-channel path is 10x faster).
    disp = cv2.transform(terms.reshape(gh, 2 * gw, 3), _SUM3).reshape(gh, gw, 2)
    if step > 1:
        size = (gw * step, gh * step)
        disp = cv2.resize(disp, size, interpolation=cv2.INTER_LINEAR)[:height, :width]
        index = cv2.resize(index, size, interpolation=cv2.INTER_NEAREST)[:height, :width] if need_index else None
    return index, cv2.add(disp, _grid("xy", height, width))


_SUM3 = np.ones((1, 3), np.float32)  # cv2.transform: the sum of 3 channels


def _identity_output(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``(h, w, 3) uint8`` over ``box`` of the output: ``image`` where it overlaps, zeros elsewhere."""
    x0, y0, x1, y1 = box
    if x1 <= image.shape[1] and y1 <= image.shape[0]:
        return image[y0:y1, x0:x1].copy()
    out = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    h, w = max(min(y1, image.shape[0]) - y0, 0), max(min(x1, image.shape[1]) - x0, 0)
    out[:h, :w] = image[y0:y0 + h, x0:x0 + w]
    return out
