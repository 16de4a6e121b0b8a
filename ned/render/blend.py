"""Compositing a rendered face into the frame inside a soft mask.

Convention: ``frame`` and ``rendered`` are ``(H, W, 3) uint8`` RGB images of the same
size and registration (the rendered face already un-aligned into frame pixels); ``mask``
is ``(H, W) float32`` in ``[0, 1]``. All methods work on the *difference* ``rendered -
frame`` and add a blended version of it back onto the frame, so that

* where ``mask == 0`` the output is the input frame **bit for bit** (enforced by a final
  hard copy, and the blended difference is tapered to zero before the mask's support
  ends, so the hard copy leaves no step);
* where ``rendered == frame`` nothing changes (an identity render is exact).

Methods:

``"laplacian"`` (default)
    Burt-Adelson multi-band blending: each band of the difference's Laplacian pyramid is
    weighted by the same level of the mask's Gaussian pyramid. Low frequencies (colour,
    shading) blend over a wide zone, fine detail over a narrow one. Computed only over the
    bounding box of the mask's support.
``"poisson"``
    Gradient-domain cloning (Perez et al. 2003) on the mask's support: inside it the
    output keeps the gradients of ``rendered``, on its border it equals ``frame``. Solved
    exactly (sparse LU) up to 5k unknowns; larger regions by a cascadic multigrid (exact
    at the coarsest level, Jacobi sweeps on the way up; ~0.1 grey levels from exact).
    Slower than the others: tens of milliseconds for a 300 px face.
``"copy"``
    Alpha compositing with the feathered mask.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from ned.types import check_array

__all__ = ["BLEND_METHODS", "BlendOptions", "blend", "blend_box", "mask_box", "mask_reach_px", "soft_mask"]

logger = logging.getLogger(__name__)

BLEND_METHODS = ("laplacian", "poisson", "copy")
_TAPER_MASK_LEVEL = 0.1   # the blended difference reaches full strength where mask >= this
_RING_MAX_MASK = 0.5      # colour correction ring: 0 < mask <= this (the outer half of the soft edge)
_POISSON_EXACT_MAX = 5_000   # unknowns solved exactly; larger domains go multilevel
_JACOBI_SWEEPS = 24          # per level of the multilevel Poisson solve
_JUST_ABOVE_ONE = float(np.nextafter(np.float32(1.0), np.float32(2.0)))   # cv2.checkRange's bound is exclusive


@dataclass(frozen=True)
class BlendOptions:
    """How the rendered face is composited into the frame.

    Attributes:
        method: ``"laplacian"`` (multi-band), ``"poisson"`` (gradient domain) or ``"copy"``
            (feathered alpha paste).
        feather_px: width of the mask's soft edge in frame pixels (0 to 1 across it),
            ``> 0``; ``None`` = ``feather_rel`` times the face width.
        feather_rel: soft-edge width relative to the face width when ``feather_px`` is
            None, in ``(0, 1]``.
        levels: Laplacian pyramid levels, ``1..10`` (1 = a plain feathered copy).
        color_correct: shift the rendered face's mean colour to the frame's, measured in
            the outer half of the mask's soft edge. Off by default: the warp renderer takes
            its colours from the same frame, and there a ring difference comes from moved
            content (a lowered jaw line), not from a colour cast. Turn it on for renderers
            whose colours can drift (a neural renderer).
    """

    method: str = "laplacian"
    feather_px: float | None = None
    feather_rel: float = 0.1
    levels: int = 4
    color_correct: bool = False

    def __post_init__(self) -> None:
        if self.method not in BLEND_METHODS:
            raise ValueError(f"BlendOptions.method must be one of {BLEND_METHODS}, got {self.method!r}")
        if self.feather_px is not None and not (np.isfinite(self.feather_px) and self.feather_px > 0):
            raise ValueError(f"BlendOptions.feather_px must be > 0 or None, got {self.feather_px}")
        if not (0 < self.feather_rel <= 1):
            raise ValueError(f"BlendOptions.feather_rel must be in (0, 1], got {self.feather_rel}")
        if isinstance(self.levels, bool) or not isinstance(self.levels, (int, np.integer)) or not 1 <= self.levels <= 10:
            raise ValueError(f"BlendOptions.levels must be an integer in [1, 10], got {self.levels!r}")
        if not isinstance(self.color_correct, (bool, np.bool_)):
            raise ValueError(f"BlendOptions.color_correct must be a bool, got {self.color_correct!r}")

    def resolve_feather_px(self, face_width_px: float) -> float:
        """The soft-edge width in pixels for a face ``face_width_px`` wide (at least 1 px)."""
        if self.feather_px is not None:
            return float(self.feather_px)
        return max(1.0, self.feather_rel * float(face_width_px))


def soft_mask(polygon: np.ndarray, shape: tuple[int, int], feather_px: float) -> np.ndarray:
    """A filled polygon with a soft edge: the blend mask.

    The polygon is filled (sub-pixel vertices) and blurred with a Gaussian truncated at
    ``r = ceil(feather_px / 2)`` pixels, so the mask goes from 1 to 0 across a band about
    ``feather_px`` wide centred on the outline and is exactly 0 farther than
    :func:`mask_reach_px` (``1.5 r + 3``; the separable kernel's square support reaches
    ``sqrt(2) r`` along diagonals) pixels outside it. For ``feather_px >= 8`` the blur runs at half resolution (area
    downsampled, bilinearly upsampled: the mask is smooth at that scale; 3x cheaper).

    Args:
        polygon: ``(K, 2)`` vertices in pixels of the target image, in loop order.
        shape: ``(height, width)`` of the mask.
        feather_px: soft-edge width in pixels, ``> 0``.

    Returns:
        ``(H, W) float32`` mask in ``[0, 1]``.

    Raises:
        ValueError: on a bad polygon or ``feather_px <= 0``.
    """
    polygon = check_array(np.asarray(polygon), "K 2", name="polygon")
    if polygon.shape[0] < 3 or not np.isfinite(polygon).all():
        raise ValueError(f"polygon: need >= 3 finite vertices, got {polygon.shape[0]}")
    if not feather_px > 0:
        raise ValueError(f"feather_px must be > 0, got {feather_px}")
    height, width = int(shape[0]), int(shape[1])
    shift = 4
    pts = np.round(polygon.astype(np.float64) * (1 << shift)).astype(np.int32)
    mask = np.zeros((height, width), np.float32)
    cv2.fillPoly(mask, [pts], 1.0, cv2.LINE_8, shift)
    step = 2 if feather_px >= 8 and min(height, width) >= 8 else 1
    radius = max(1, int(np.ceil(feather_px / 2)) // step)
    ksize = 2 * radius + 1
    if step == 1:
        cv2.GaussianBlur(mask, (ksize, ksize), sigmaX=ksize / 5.0, dst=mask, borderType=cv2.BORDER_CONSTANT)
    else:
        gh, gw = -(-height // step), -(-width // step)
        padded = np.zeros((gh * step, gw * step), np.float32)
        padded[:height, :width] = mask
        small = cv2.resize(padded, (gw, gh), interpolation=cv2.INTER_AREA)      # anti-aliased
        cv2.GaussianBlur(small, (ksize, ksize), sigmaX=ksize / 5.0, dst=small, borderType=cv2.BORDER_CONSTANT)
        mask = np.ascontiguousarray(cv2.resize(small, (gw * step, gh * step),
                                               interpolation=cv2.INTER_LINEAR)[:height, :width])
    # Clip to [0, 1]; values under 1e-6 become 0 and over 1 - 1e-6 become 1 (rounding of
    # the normalised kernel). OpenCV thresholds: one pass each, no boolean temporaries.
    cv2.threshold(mask, 1e-6, 0.0, cv2.THRESH_TOZERO, dst=mask)                   # <= 1e-6 -> 0
    top = cv2.threshold(mask, 1.0 - 1e-6, 1.0, cv2.THRESH_BINARY)[1]             # > 1 - 1e-6 -> 1
    cv2.threshold(mask, 1.0, 1.0, cv2.THRESH_TRUNC, dst=mask)
    return cv2.max(mask, top, dst=mask)


def mask_reach_px(feather_px: float) -> int:
    """How far (pixels) :func:`soft_mask` can be non-zero outside its polygon."""
    return int(np.ceil(1.5 * np.ceil(feather_px / 2))) + 3


def mask_box(mask: np.ndarray, margin: int = 0) -> tuple[int, int, int, int] | None:
    """Bounding box ``(x0, y0, x1, y1)`` (exclusive ends) of ``mask > 0`` grown by ``margin``
    and clipped to the image, or None for an empty mask."""
    x, y, w, h = cv2.boundingRect((mask > 0).view(np.uint8))
    if w == 0 or h == 0:
        return None
    height, width = mask.shape[:2]
    return max(0, x - margin), max(0, y - margin), min(width, x + w + margin), min(height, y + h + margin)


def blend(frame: np.ndarray, rendered: np.ndarray, mask: np.ndarray,
          options: BlendOptions = BlendOptions()) -> np.ndarray:
    """Composite ``rendered`` into ``frame`` inside ``mask``.

    Args:
        frame: ``(H, W, 3) uint8`` the original frame (or a region of it).
        rendered: ``(H, W, 3) uint8`` the rendered face, registered with ``frame``.
        mask: ``(H, W) float32`` blend weight in ``[0, 1]`` (see :func:`soft_mask`).
        options: the method and its parameters (``feather_px`` is not used here: it shapes
            the mask, which the caller builds).

    Returns:
        ``(H, W, 3) uint8``; equal to ``frame`` bit for bit where ``mask == 0``.

    Raises:
        ValueError: on mismatched shapes or dtypes, or mask values outside ``[0, 1]``.
    """
    check_array(frame, "H W 3", np.uint8, name="frame")
    check_array(rendered, f"{frame.shape[0]} {frame.shape[1]} 3", np.uint8, name="rendered")
    check_array(mask, f"{frame.shape[0]} {frame.shape[1]}", np.float32, name="mask")
    if mask.size and not _in_unit_range(mask):
        raise ValueError("mask: values must be finite and in [0, 1]")
    out = frame.copy()
    box = mask_box(mask, 2)
    if box is None:
        return out
    x0, y0, x1, y1 = box
    out[y0:y1, x0:x1] = blend_box(frame[y0:y1, x0:x1], rendered[y0:y1, x0:x1],
                                  np.ascontiguousarray(mask[y0:y1, x0:x1]), options)
    return out


def blend_box(frame: np.ndarray, rendered: np.ndarray, m: np.ndarray, options: BlendOptions) -> np.ndarray:
    """The core of :func:`blend` on any number of channels (checked inputs, no box search).

    Used directly on the planes of YUV video (luma, and the two chroma planes together).

    Args:
        frame, rendered: ``(h, w)`` or ``(h, w, C) uint8`` (C = 1..4 for ``"laplacian"`` and
            ``"copy"``, 3 for ``"poisson"``).
        m: ``(h, w) float32`` C-contiguous mask in ``[0, 1]``.
        options: as in :func:`blend`.

    Returns:
        ``uint8`` of ``frame``'s shape, equal to ``frame`` bit for bit where ``m == 0``.
    """
    channels = 1 if frame.ndim == 2 else frame.shape[2]
    diff = cv2.subtract(rendered, frame, dtype=cv2.CV_32F)      # rendered - frame
    if options.color_correct:
        cv2.add(diff, _ring_offset(diff, m), dst=diff)
    taper = _support_taper(m)
    if options.method == "laplacian":
        blended = _laplacian_blend(diff, m, options.levels)
    elif options.method == "poisson":
        blended = _poisson_difference(diff, m)
    else:
        blended, taper = diff, taper * m
    cv2.multiply(blended, _channels(taper, channels), dst=blended)
    region = cv2.add(blended, frame, dtype=cv2.CV_8U)           # round to nearest, saturate to [0, 255]
    return cv2.copyTo(frame, (m == 0).view(np.uint8), region)   # the invariant, enforced


def _channels(a: np.ndarray, channels: int) -> np.ndarray:
    """A ``(h, w)`` float image repeated to ``channels`` channels (itself for 1)."""
    if channels == 1:
        return a
    if channels == 3:
        return cv2.cvtColor(a, cv2.COLOR_GRAY2RGB)
    return cv2.merge([a] * channels)


def _in_unit_range(mask: np.ndarray) -> bool:
    """All values finite and in ``[0, 1]`` (one fast pass; NaN fails; -0.0 rechecked)."""
    if cv2.checkRange(mask, True, 0.0, _JUST_ABOVE_ONE)[0]:
        return True
    return bool(np.nanmin(mask) >= 0.0 and np.nanmax(mask) <= 1.0 and np.isfinite(mask).all())


def _support_taper(m: np.ndarray) -> np.ndarray:
    """``(h, w) float32``: smoothstep from 0 at ``m = 0`` to 1 at ``m >= 0.1``."""
    t = cv2.threshold(m, _TAPER_MASK_LEVEL, 0.0, cv2.THRESH_TRUNC)[1]      # min(m, 0.1)
    t *= np.float32(1.0 / _TAPER_MASK_LEVEL)
    t2 = cv2.multiply(t, t)
    cv2.addWeighted(t, -2.0, t, 0.0, 3.0, dst=t)                          # 3 - 2 t
    return cv2.multiply(t, t2, dst=t)                                      # t^2 (3 - 2 t)


def _ring_offset(diff: np.ndarray, m: np.ndarray) -> tuple[float, float, float, float]:
    """Colour offset (a cv2 scalar) that zeroes the mean difference in the mask's outer ring."""
    ring = ((m > 0) & (m <= _RING_MAX_MASK)).view(np.uint8)
    if not ring.any():
        return (0.0, 0.0, 0.0, 0.0)
    mean = cv2.mean(diff, mask=ring)
    return (-mean[0], -mean[1], -mean[2], -mean[3])


def _laplacian_blend(diff: np.ndarray, m: np.ndarray, levels: int) -> np.ndarray:
    """Multi-band blend of ``diff`` (``(h, w[, C]) float32``) against zero with mask ``m``.

    Equals ``lap(rendered) * G(m) + lap(frame) * (1 - G(m))`` collapsed, minus ``frame``,
    because the Laplacian pyramid is linear.
    """
    channels = 1 if diff.ndim == 2 else diff.shape[2]
    levels = max(1, min(levels, int(np.log2(max(1, min(m.shape))))))
    gauss_d, gauss_m = [diff], [m]
    for _ in range(levels - 1):
        gauss_d.append(cv2.pyrDown(gauss_d[-1]))
        gauss_m.append(cv2.pyrDown(gauss_m[-1]))
    out = cv2.multiply(gauss_d[-1], _channels(gauss_m[-1], channels))
    for level in range(levels - 2, -1, -1):
        size = (gauss_d[level].shape[1], gauss_d[level].shape[0])
        band = cv2.pyrUp(gauss_d[level + 1], dstsize=size)
        cv2.subtract(gauss_d[level], band, dst=band)
        cv2.multiply(band, _channels(gauss_m[level], channels), dst=band)
        out = cv2.pyrUp(out, dstsize=size)
        cv2.add(out, band, dst=out)
    return out


def _poisson_difference(diff: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``P - frame`` for the Poisson clone ``P`` on the mask's support ``m > 0``.

    ``P = rendered + h`` inside the support, with ``h`` harmonic there and ``h = -diff`` on
    the pixels just outside it (4-neighbourhood), so ``P`` meets ``frame`` without a step
    while keeping ``rendered``'s gradients. Outside the support the result is 0.
    """
    inside = m > 0
    inside[0, :] = inside[-1, :] = inside[:, 0] = inside[:, -1] = False
    out = np.zeros_like(diff)
    if not inside.any():
        return out
    boundary = -diff
    h = _harmonic_multilevel(boundary, inside)
    out[inside] = diff[inside] + h[inside]
    return out


def _harmonic_exact(g: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """``(h, w, 3) float32`` equal to ``g`` outside ``inside`` and harmonic inside it
    (5-point Laplacian, Dirichlet data from ``g``), by a sparse LU solve.

    ``inside`` must be False on the array's border rows and columns.
    """
    import scipy.sparse as sp  # imported here: only the Poisson blend needs SciPy
    import scipy.sparse.linalg as sla
    n = int(inside.sum())
    index = np.full(inside.shape, -1, np.int64)
    index[inside] = np.arange(n)
    ys, xs = np.nonzero(inside)
    rows, cols, vals = [np.arange(n)], [np.arange(n)], [np.full(n, 4.0)]
    rhs = np.zeros((n, g.shape[2]), np.float64)
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        nb = index[ys + dy, xs + dx]
        interior = nb >= 0
        rows.append(np.flatnonzero(interior))
        cols.append(nb[interior])
        vals.append(-np.ones(int(interior.sum())))
        edge = ~interior
        rhs[edge] += g[ys[edge] + dy, xs[edge] + dx]
    lap = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    out = g.copy()
    out[inside] = sla.splu(lap).solve(rhs).astype(np.float32)
    return out


def _harmonic_multilevel(g: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """As :func:`_harmonic_exact`, for any domain size (cascadic multigrid): solve the
    half-resolution problem (recursively, exactly once it is small), upsample it, then
    smooth with Jacobi sweeps that restore the detail of this level's boundary data.
    About 0.1 grey levels from the exact solution on average."""
    if int(inside.sum()) <= _POISSON_EXACT_MAX:
        return _harmonic_exact(g, inside)
    height, width = inside.shape
    cw, ch = -(-width // 2), -(-height // 2)
    pad = ((0, ch * 2 - height), (0, cw * 2 - width))
    g_small = cv2.resize(np.pad(g, pad + ((0, 0),), mode="edge"), (cw, ch), interpolation=cv2.INTER_AREA)
    inside_small = cv2.resize(np.pad(inside, pad).astype(np.float32), (cw, ch), interpolation=cv2.INTER_AREA) > 0.5
    inside_small[0, :] = inside_small[-1, :] = inside_small[:, 0] = inside_small[:, -1] = False
    h = g.copy()
    if inside_small.any():
        coarse = _harmonic_multilevel(g_small, inside_small)
        up = cv2.resize(coarse, (cw * 2, ch * 2), interpolation=cv2.INTER_LINEAR)[:height, :width]
        h[inside] = up[inside]
    # Jacobi sweeps; cells outside ``inside`` keep their Dirichlet values.
    kernel = np.array([[0, 0.25, 0], [0.25, 0, 0.25], [0, 0.25, 0]], np.float32)
    sel = inside.view(np.uint8)
    for _ in range(_JACOBI_SWEEPS):
        avg = cv2.filter2D(h, -1, kernel, borderType=cv2.BORDER_REPLICATE)
        h = cv2.copyTo(avg, sel, h)
    return h
