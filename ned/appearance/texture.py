"""Texture space of the face mesh: UV raster tables, image <-> texture resampling, skin mask.

Texture space is the topology's per-vertex ``uv`` (:mod:`ned.morph.topology`: a frontal
orthographic projection of the canonical mesh, ``u`` right, ``v`` down, in ``[0, 1]``),
sampled on an ``S x S`` grid of *texels*. Texel ``(row i, column j)`` is the point
``u = (j + 0.5) / S, v = (i + 0.5) / S``; one UV unit is about 2.4 inter-ocular distances
(IOD), so at ``S = 192`` a texel is about 0.012 IOD (0.8 px of a 256 px aligned crop).

Two directions, both piecewise-affine over the mesh triangles (the same triangles map the
same way, so "image A -> texture -> image B" equals the mesh-to-mesh warp A -> B):

- :func:`image_to_uv`: sample an image at every texel, given the image's mesh. The
  texel -> (triangle, barycentric) table is fixed per topology and size
  (:class:`UVRaster`, built once), so per image this is one gather, one weighted sum and
  one ``cv2.remap``.
- :func:`uv_to_image`: sample a texture at every pixel of an image, given the image's
  mesh: the visible triangle per pixel (:func:`ned.morph.raster.rasterise_ids`, painter's
  order on depth), then each triangle's affine map pixel -> texel, then ``cv2.remap``.

:func:`skin_mask_uv` is the authored skin region in texture space: 1 on skin, 0 on the
eye openings (with lashes), irises, brows, lips, mouth, nostrils and outside the face
oval, with soft edges. Appearance changes are multiplied by it before rendering, so they
never reach eyes, teeth, brows or hair, whatever the geometry.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import cv2
import numpy as np

from ned.morph.raster import rasterise_ids
from ned.morph.topology import NUM_VERTICES, Topology, load_topology
from ned.types import box_has_area, check_array

__all__ = [
    "UVRaster",
    "build_uv_raster",
    "uv_raster",
    "image_to_uv",
    "uv_to_image",
    "ImageUV",
    "image_uv_map",
    "sample_texture",
    "skin_mask_uv",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class UVRaster:
    """Fixed lookup tables of one topology's texture space at one size.

    Attributes:
        size: ``S``, texels per side.
        triangles: ``(F, 3) int32`` all mesh triangles (openings included).
        uv_px: ``(468, 2) float64`` vertex positions in texel pixels (``uv * S - 0.5``).
        texel_index: ``(P,) int64`` flat indices (``i * S + j``) of the texels inside some
            triangle.
        texel_vertices: ``(P, 3) int64`` the vertices of the triangle holding each of them.
        texel_bary: ``(P, 3) float32`` their barycentric coordinates in that triangle.
        inside: ``(S, S) bool`` texels covered by the mesh.
        depth: ``(468,) float32`` canonical depth (z, larger = farther) used to order
            overlapping triangles when an image's own depth is unknown.
        iod_texels: the inter-ocular distance in texels (about ``S / 2.4``).
    """

    size: int
    triangles: np.ndarray
    uv_px: np.ndarray
    texel_index: np.ndarray
    texel_vertices: np.ndarray
    texel_bary: np.ndarray
    inside: np.ndarray
    depth: np.ndarray
    iod_texels: float


def build_uv_raster(topology: Topology, size: int) -> UVRaster:
    """Rasterise the topology's triangles in texture space.

    Args:
        topology: the mesh topology (uses ``uv``, ``triangles``, ``canonical``).
        size: ``S`` texels per side, 16..1024.

    Returns:
        The :class:`UVRaster`.

    Raises:
        ValueError: on a bad size.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 16 <= size <= 1024:
        raise ValueError(f"size must be an integer in [16, 1024], got {size!r}")
    size = int(size)
    tri = np.ascontiguousarray(topology.triangles, np.int64)
    uv_px = topology.uv.astype(np.float64) * size - 0.5
    flat = np.concatenate([uv_px, np.zeros((len(uv_px), 1))], axis=1)
    ids = rasterise_ids(flat, tri, (size, size))
    rows, cols = np.nonzero(ids >= 0)
    k = ids[rows, cols]
    bary = _barycentric(uv_px, tri[k], cols.astype(np.float64), rows.astype(np.float64))
    inside = ids >= 0
    raster = UVRaster(size=size, triangles=tri.astype(np.int32), uv_px=uv_px,
                      texel_index=(rows * size + cols).astype(np.int64), texel_vertices=tri[k],
                      texel_bary=bary.astype(np.float32), inside=inside,
                      depth=topology.canonical[:, 2].astype(np.float32),
                      iod_texels=_iod_texels(topology, size))
    for arr in (raster.uv_px, raster.texel_index, raster.texel_vertices, raster.texel_bary, raster.inside):
        arr.setflags(write=False)
    return raster


def _iod_texels(topology: Topology, size: int) -> float:
    """IOD in texels: canonical units are IODs, ``uv`` is their isotropic projection."""
    canon, uv = topology.canonical[:, :2].astype(np.float64), topology.uv.astype(np.float64)
    return float(np.ptp(uv, axis=0).max() / np.ptp(canon, axis=0).max() * size)


@functools.lru_cache(maxsize=8)
def uv_raster(size: int = 192, topology: Topology | None = None) -> UVRaster:
    """The cached :class:`UVRaster` of ``topology`` (default the packaged one) at ``size``."""
    return build_uv_raster(topology or load_topology(), size)


def _barycentric(p: np.ndarray, tri: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Clamped barycentric coordinates ``(P, 3)`` of points ``(x, y)`` in triangles ``p[tri]``."""
    p0, p1, p2 = p[tri[:, 0]], p[tri[:, 1]], p[tri[:, 2]]
    e1, e2 = p1 - p0, p2 - p0
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    det = np.where(np.abs(det) < 1e-12, 1e-12, det)
    dx, dy = x - p0[:, 0], y - p0[:, 1]
    l1 = np.clip((dx * e2[:, 1] - dy * e2[:, 0]) / det, 0.0, 1.0)
    l2 = np.clip((e1[:, 0] * dy - e1[:, 1] * dx) / det, 0.0, 1.0)
    s = l1 + l2
    over = s > 1.0
    l1[over] /= s[over]
    l2[over] /= s[over]
    return np.stack([1.0 - l1 - l2, l1, l2], axis=1)


def _check_points(points: np.ndarray, name: str = "points") -> np.ndarray:
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[0] < NUM_VERTICES or points.shape[1] not in (2, 3):
        raise ValueError(f"{name}: expected shape (>= {NUM_VERTICES}, 2|3), got {points.shape}")
    pts = points[:NUM_VERTICES].astype(np.float64)
    if not np.isfinite(pts).all():
        raise ValueError(f"{name}: contains NaN or inf; skip frames without a face")
    return pts


def image_to_uv(image: np.ndarray, points: np.ndarray, raster: UVRaster,
                interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Resample an image into texture space through its mesh.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` (C <= 4), any dtype OpenCV remaps (float32,
            uint8).
        points: ``(>= 468, 2|3)`` the mesh in ``image`` pixels (``z`` ignored).
        raster: texture tables.
        interpolation: OpenCV interpolation flag.

    Returns:
        ``(S, S[, C])`` of ``image``'s dtype; texels outside the mesh are 0.

    Raises:
        ValueError: on bad shapes or non-finite points.
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        raise ValueError(f"image: expected an (H, W[, C]) array, got {getattr(image, 'shape', type(image))}")
    pts = _check_points(points)
    s = raster.size
    pos = np.einsum("pk,pkd->pd", raster.texel_bary, pts[raster.texel_vertices].astype(np.float32))
    map_x = np.full(s * s, -1e4, np.float32)
    map_y = np.full(s * s, -1e4, np.float32)
    map_x[raster.texel_index] = pos[:, 0]
    map_y[raster.texel_index] = pos[:, 1]
    return cv2.remap(image, map_x.reshape(s, s), map_y.reshape(s, s), interpolation,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@dataclass(frozen=True)
class ImageUV:
    """Where each pixel of an image region lies in texture space.

    Attributes:
        box: ``(4,) int`` ``x0 y0 x1 y1`` (exclusive ends) of the covered region, image px.
        map_x, map_y: ``(y1 - y0, x1 - x0) float32`` texel coordinates of each pixel of the
            box (far outside the texture where no triangle covers the pixel).
        covered: ``(y1 - y0, x1 - x0) bool`` pixels covered by a front-facing triangle.
    """

    box: np.ndarray
    map_x: np.ndarray
    map_y: np.ndarray
    covered: np.ndarray

    @property
    def empty(self) -> bool:
        """True when no pixel is covered."""
        return not box_has_area(self.box)


#: Faces with an inter-ocular distance above this (pixels) are rasterised at half
#: resolution and the texel map upsampled (appearance detail is band-limited well below
#: the pixel scale of such faces).
HALF_RES_IOD_PX = 90.0


def image_uv_map(points: np.ndarray, size: tuple[int, int], raster: UVRaster,
                 depth: np.ndarray | None = None, step: int | None = None, upsample: bool = True) -> ImageUV:
    """Rasterise a posed mesh and give each covered pixel its texel coordinates.

    Args:
        points: ``(>= 468, 2|3)`` mesh in pixels of an ``size = (H, W)`` image. When it has
            a third column that is used as depth (larger = farther), else ``depth``.
        size: ``(H, W)`` of the image.
        raster: texture tables.
        depth: ``(468,)`` depth per vertex in any scale; default the canonical mesh's z
            scaled to the mesh's size (right for near-frontal faces).
        step: rasterise every ``step`` pixels (1 or 2) and upsample the texel map
            bilinearly; None = 2 for faces wider than :data:`HALF_RES_IOD_PX`, else 1.
            With ``upsample=False`` any step >= 1.
        upsample: False = return the maps and coverage on the grid itself, ``(ceil(h /
            step), ceil(w / step))``, sample ``(i, j)`` at box pixel ``(step j + o, step i
            + o)``, ``o = (step - 1) / 2`` (what ``cv2.resize(..., INTER_LINEAR)`` by
            ``step`` assumes); ``box`` is still in image pixels.

    Returns:
        :class:`ImageUV` over the bounding box of the mesh (clipped to the image).

    Raises:
        ValueError: on bad shapes, a bad step or non-finite points.
    """
    pts = _check_points(points)
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive (H, W), got {size}")
    if step is None:
        from ned.morph.topology import inter_ocular_distance

        step = 2 if float(inter_ocular_distance(pts[:, :2])) > HALF_RES_IOD_PX else 1
    if upsample and step not in (1, 2) or isinstance(step, bool) or not isinstance(step, (int, np.integer)) \
            or step < 1:
        raise ValueError(f"step must be 1 or 2 (any integer >= 1 without upsampling), got {step!r}")
    if pts.shape[1] == 3:
        z = pts[:, 2]
    elif depth is not None:
        z = check_array(np.asarray(depth, np.float64), f"{NUM_VERTICES}", name="depth")
    else:
        scale = np.ptp(pts[:, 0]) / max(np.ptp(raster.uv_px[:, 0]), 1e-9) * raster.size
        z = raster.depth.astype(np.float64) * scale / raster.size
    x0 = max(int(np.floor(pts[:, 0].min())), 0)
    y0 = max(int(np.floor(pts[:, 1].min())), 0)
    x1 = min(int(np.ceil(pts[:, 0].max())) + 1, w)
    y1 = min(int(np.ceil(pts[:, 1].max())) + 1, h)
    if x1 <= x0 or y1 <= y0:
        zero = np.zeros((0, 0), np.float32)
        return ImageUV(np.zeros(4, np.int64), zero, zero, zero.astype(bool))
    bh, bw = y1 - y0, x1 - x0
    # sample (i, j) of the grid sits at box pixel (step * j + o, step * i + o), o = (step - 1) / 2
    off = (step - 1) / 2.0
    gh, gw = -(-bh // step), -(-bw // step)
    local = np.stack([(pts[:, 0] - x0 - off) / step, (pts[:, 1] - y0 - off) / step, z], axis=1)
    tri = raster.triangles.astype(np.int64)
    ids = rasterise_ids(local, tri, (gh, gw))
    coefs = np.zeros((len(tri) + 1, 6), np.float32)
    coefs[:-1] = _pixel_to_texel_affines(local[:, :2], raster.uv_px, tri).reshape(-1, 6)
    coefs[-1] = (0, 0, -1e4, 0, 0, -1e4)
    c = coefs[ids]  # ids == -1 picks the last row (outside)
    xs, ys = _grid(gh, gw)
    map_x = c[..., 0] * xs + c[..., 1] * ys + c[..., 2]
    map_y = c[..., 3] * xs + c[..., 4] * ys + c[..., 5]
    covered = ids >= 0
    if step > 1 and upsample:
        full = (gw * step, gh * step)
        map_x = cv2.resize(map_x, full, interpolation=cv2.INTER_LINEAR)[:bh, :bw]
        map_y = cv2.resize(map_y, full, interpolation=cv2.INTER_LINEAR)[:bh, :bw]
        covered = cv2.resize(covered.astype(np.uint8), full, interpolation=cv2.INTER_NEAREST)[:bh, :bw] > 0
        # pixels next to the mesh border mix a far-away "outside" value in: mark them outside
        bad = (map_x < -2) | (map_y < -2)
        map_x[bad], map_y[bad] = -1e4, -1e4
        covered &= ~bad
    return ImageUV(np.array([x0, y0, x1, y1], np.int64), map_x, map_y, covered)


_GRIDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Cached ``x`` and ``y`` pixel-coordinate grids ``(h, w) float32``."""
    g = _GRIDS.get((h, w))
    if g is None:
        if len(_GRIDS) > 16:
            _GRIDS.clear()
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        g = _GRIDS[(h, w)] = (xs, ys)
    return g


def _pixel_to_texel_affines(img: np.ndarray, tex: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Per-triangle affine ``(F, 2, 3) float64`` taking image pixels to texel pixels."""
    d0, d1, d2 = img[tri[:, 0]], img[tri[:, 1]], img[tri[:, 2]]
    s0, s1, s2 = tex[tri[:, 0]], tex[tri[:, 1]], tex[tri[:, 2]]
    e1, e2 = d1 - d0, d2 - d0
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    det = np.where(np.abs(det) < 1e-9, np.where(det < 0, -1e-9, 1e-9), det)
    inv = np.stack([np.stack([e2[:, 1], -e2[:, 0]], 1), np.stack([-e1[:, 1], e1[:, 0]], 1)], 1) / det[:, None, None]
    lin = np.stack([s1 - s0, s2 - s0], axis=2) @ inv  # (F, 2, 2): texel = s0 + lin (p - d0)
    const = s0 - np.einsum("fij,fj->fi", lin, d0)
    return np.concatenate([lin, const[:, :, None]], axis=2)


def sample_texture(texture: np.ndarray, where: ImageUV) -> np.ndarray:
    """Bilinear samples of a texture at an :class:`ImageUV`'s pixels.

    Args:
        texture: ``(S, S)`` or ``(S, S, C)`` float32.
        where: from :func:`image_uv_map` with the same ``S``.

    Returns:
        ``(h, w[, C]) float32`` over ``where.box``; 0 where no triangle covers a pixel.
    """
    if where.empty:
        return np.zeros(where.map_x.shape + texture.shape[2:], np.float32)
    return cv2.remap(np.ascontiguousarray(texture, np.float32), where.map_x, where.map_y, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def uv_to_image(texture: np.ndarray, points: np.ndarray, size: tuple[int, int], raster: UVRaster,
                depth: np.ndarray | None = None) -> np.ndarray:
    """Render a texture onto an image's mesh.

    Args:
        texture: ``(S, S)`` or ``(S, S, C)`` float32 in texture space.
        points: ``(>= 468, 2|3)`` mesh in pixels of the ``size = (H, W)`` image.
        size: ``(H, W)``.
        raster: texture tables of size ``S``.
        depth: see :func:`image_uv_map`.

    Returns:
        ``(H, W[, C]) float32``; 0 outside the mesh.

    Raises:
        ValueError: on bad shapes.
    """
    texture = np.asarray(texture, np.float32)
    if texture.ndim not in (2, 3) or texture.shape[:2] != (raster.size, raster.size):
        raise ValueError(f"texture: expected shape ({raster.size}, {raster.size}[, C]), got {texture.shape}")
    where = image_uv_map(points, size, raster, depth)
    out = np.zeros((int(size[0]), int(size[1])) + texture.shape[2:], np.float32)
    if not where.empty:
        x0, y0, x1, y1 = (int(v) for v in where.box)
        out[y0:y1, x0:x1] = sample_texture(texture, where)
    return out


# ---------------------------------------------------------------------------------------
# Skin mask in texture space
# ---------------------------------------------------------------------------------------
#: Extra exclusion margins, IOD units: lashes around the lid openings, around the brows,
#: outside the lip red, around the nostrils; and the fade-out width at the face oval.
EYE_MARGIN_IOD = 0.05
BROW_MARGIN_IOD = 0.06
LIP_MARGIN_IOD = 0.015
NOSTRIL_MARGIN_IOD = 0.02
OVAL_FADE_IOD = 0.12
EDGE_SOFTNESS_IOD = 0.025

# nostril openings (MediaPipe indices around each nostril's dark hole), person's right / left
_NOSTRIL_R = (79, 166, 59, 75, 60, 20, 238, 239)
_NOSTRIL_L = (309, 392, 289, 305, 290, 250, 458, 459)


@functools.lru_cache(maxsize=8)
def skin_mask_uv(size: int = 192, topology: Topology | None = None) -> np.ndarray:
    """The authored skin region in texture space.

    1 on facial skin; 0 on the eyelid openings grown by the lashes (:data:`EYE_MARGIN_IOD`),
    the brows (their two rows filled, grown), the lips (outer lip contour, grown a little)
    and so the mouth, the nostrils, and outside the face oval; the oval fades out over
    :data:`OVAL_FADE_IOD`; every edge is soft (Gaussian, :data:`EDGE_SOFTNESS_IOD`).

    Args:
        size: ``S`` texels per side.
        topology: default the packaged one.

    Returns:
        ``(S, S) float32`` in ``[0, 1]`` (read-only, cached).
    """
    topo = topology or load_topology()
    raster = uv_raster(size, topo)
    per_iod = raster.iod_texels
    uv = raster.uv_px

    def fill(loop, grow_iod: float) -> np.ndarray:
        img = np.zeros((size, size), np.uint8)
        poly = np.round((uv[list(loop)] + 0.5) * 16 - 8).astype(np.int32)
        cv2.fillPoly(img, [poly], 255, lineType=cv2.LINE_AA, shift=4)
        grow = int(round(grow_iod * per_iod))
        if grow > 0:
            img = cv2.dilate(img, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
        return img.astype(np.float32) / 255.0

    g = topo.groups
    holes = np.zeros((size, size), np.float32)
    for loop, grow in ((g["eye_r"], EYE_MARGIN_IOD), (g["eye_l"], EYE_MARGIN_IOD),
                       (g["lips_outer"], LIP_MARGIN_IOD),
                       (_brow_loop(g["brow_r"]), BROW_MARGIN_IOD), (_brow_loop(g["brow_l"]), BROW_MARGIN_IOD),
                       (_NOSTRIL_R, NOSTRIL_MARGIN_IOD), (_NOSTRIL_L, NOSTRIL_MARGIN_IOD)):
        holes = np.maximum(holes, fill(loop, grow))
    oval = fill(g["face_oval"], 0.0)
    fade = int(round(OVAL_FADE_IOD * per_iod))
    if fade > 0:
        oval = cv2.erode(oval, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (fade + 1, fade + 1)))
        oval = cv2.GaussianBlur(oval, (0, 0), fade / 3.0)
    mask = np.clip(oval * (1.0 - holes), 0.0, 1.0) * raster.inside
    sigma = EDGE_SOFTNESS_IOD * per_iod
    mask = cv2.GaussianBlur(mask, (0, 0), sigma) * raster.inside
    mask = np.clip(mask, 0.0, 1.0).astype(np.float32)
    mask.setflags(write=False)
    return mask


def _brow_loop(brow: tuple[int, ...]) -> tuple[int, ...]:
    """A closed loop around a brow from its two rows (lower outer->inner, upper outer->inner)."""
    lower, upper = brow[:5], brow[5:]
    return tuple(lower) + tuple(reversed(upper))
