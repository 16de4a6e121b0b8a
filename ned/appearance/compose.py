"""Put a texture-space luminance gain onto an image: luminance only, skin only, soft.

Convention: images ``(H, W, 3) uint8`` RGB; gains are natural-log luminance factors;
points ``(>= 468, 2|3)`` the image's mesh in its pixels.

Luminance is BT.601 ``Y = 0.299 R + 0.587 G + 0.114 B`` (OpenCV's ``YCrCb``). A gain ``g``
adds ``Y (e^g - 1)`` to all three channels: ``Y`` is multiplied by ``e^g`` and
``Cr, Cb`` (which depend on ``R - Y`` and ``B - Y``) stay exactly as they were, so skin
tone, make-up colour and redness are the input's; only shading changes. The absolute
change is proportional to the local brightness (a multiplicative change), so dark and
light skin get the same relative crease depth.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from ned.appearance.options import AppearanceOptions
from ned.appearance.texture import ImageUV, UVRaster, image_uv_map, sample_texture, skin_mask_uv
from ned.types import check_array

__all__ = ["LUMA", "luminance", "apply_luminance_gain", "skin_guard", "render_gain", "luma_gain_map"]

#: BT.601 luma weights of R, G, B.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luminance ``(H, W) float32`` in [0, 255] of an ``(H, W, 3) uint8`` RGB image."""
    check_array(rgb, "H W 3", np.uint8, name="rgb")
    return _luma(rgb.astype(np.float32))


def _luma(rgb: np.ndarray) -> np.ndarray:
    """``(H, W) float32`` luminance of an ``(H, W, 3) float32`` image (same scale)."""
    if rgb.size == 0:
        return np.zeros(rgb.shape[:2], np.float32)
    return cv2.transform(rgb, LUMA.reshape(1, 3)).reshape(rgb.shape[:2])


def apply_luminance_gain(rgb: np.ndarray, log_gain: np.ndarray) -> np.ndarray:
    """Multiply the luminance of ``rgb`` by ``exp(log_gain)``, keeping its chroma.

    Args:
        rgb: ``(H, W, 3) uint8``.
        log_gain: ``(H, W) float32`` natural-log gain (0 = unchanged).

    Returns:
        ``(H, W, 3) uint8``; pixels where ``log_gain == 0`` are the input's bit for bit,
        elsewhere ``Cr``/``Cb`` equal the input's within rounding (unless a channel clips).

    Raises:
        ValueError: on bad shapes or dtypes.
    """
    check_array(rgb, "H W 3", np.uint8, name="rgb")
    check_array(log_gain, f"{rgb.shape[0]} {rgb.shape[1]}", name="log_gain")
    out = rgb.copy()
    nz = log_gain != 0
    rows = np.flatnonzero(nz.any(axis=1))
    if rows.size == 0:
        return out
    cols = np.flatnonzero(nz[rows[0]:rows[-1] + 1].any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    _add_luminance_gain(out[y0:y1, x0:x1], np.ascontiguousarray(log_gain[y0:y1, x0:x1], np.float32))
    return out


def skin_guard(y: np.ndarray, weight: np.ndarray, guard: tuple[float, float], sigma_px: float) -> np.ndarray:
    """Fade the change out where the image is much darker than the face's skin.

    Args:
        y: ``(h, w) float32`` luminance (any scale).
        weight: ``(h, w) float32`` skin weight (where to measure the skin's median).
        guard: ``(low, high)`` ratios to the median skin luminance.
        sigma_px: blur of ``y`` first (pixels, >= 0).

    Returns:
        ``(h, w) float32`` in [0, 1] (all ones when there is no skin to measure).
    """
    sel = weight > 0.5
    if not sel.any():
        return np.ones_like(y)
    yb = cv2.GaussianBlur(y, (0, 0), sigma_px) if sigma_px > 0.3 else y
    vals = yb[sel]
    if vals.size > 4096:  # the median of a regular subsample is plenty
        vals = vals[:: vals.size // 4096]
    ref = float(np.median(vals))
    if ref <= 1e-6:
        return np.ones_like(y)
    low, high = guard
    t = np.clip((yb / ref - low) / (high - low), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def render_gain(image: np.ndarray, points: np.ndarray, log_gain_uv: np.ndarray, raster: UVRaster,
                options: AppearanceOptions, *, where: ImageUV | None = None,
                limit: np.ndarray | None = None) -> np.ndarray:
    """Apply a texture-space log gain to an image through its mesh.

    The gain (already multiplied by the skin mask in texture space, or not: it is
    multiplied again here) is rendered onto the image's mesh, faded where the image is
    much darker than its skin (:func:`skin_guard`), clipped to
    ``options.max_log_gain`` and applied to the luminance (:func:`apply_luminance_gain`).

    Args:
        image: ``(H, W, 3) uint8``.
        points: ``(>= 468, 2|3)`` mesh in ``image`` pixels.
        log_gain_uv: ``(S, S) float32`` natural-log gain in texture space.
        raster: texture tables of size ``S``.
        options: appearance options (``max_log_gain``, ``skin_guard``, ``guard_sigma_iod``).
        where: a precomputed :func:`image_uv_map` of ``points`` (saves a rasterisation).
        limit: ``(H, W) float32`` in [0, 1], multiplied into the gain (e.g. a blend mask).

    Returns:
        ``(H, W, 3) uint8``; outside the skin region the input bit for bit.

    Raises:
        ValueError: on bad shapes.
    """
    check_array(image, "H W 3", np.uint8, name="image")
    check_array(log_gain_uv, f"{raster.size} {raster.size}", name="log_gain_uv")
    out = image.copy()
    _render_gain_into(out, points, log_gain_uv, raster, options, where=where, limit=limit)
    return out


#: The gain is band-limited (smooth log-luminance shading), so it is computed on a grid of
#: about this many samples across the face's bounding box and upsampled (bilinear) to
#: the pixels; only the final ``rgb += Y (e^g - 1)`` runs at full resolution.
GAIN_GRID_PX = 160


def _render_gain_into(image: np.ndarray, points: np.ndarray, log_gain_uv: np.ndarray, raster: UVRaster,
                      options: AppearanceOptions, *, where: ImageUV | None = None,
                      limit: np.ndarray | None = None) -> None:
    """:func:`render_gain` writing into ``image`` (modified in place)."""
    patch = _gain_patch(image.shape[:2], points, log_gain_uv, raster, options,
                        lambda x0, y0, x1, y1: cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY),
                        where=where, limit=limit)
    if patch is not None:
        (x0, y0), gain = patch
        _add_luminance_gain(image[y0:y0 + gain.shape[0], x0:x0 + gain.shape[1]], gain)


def luma_gain_map(shape: tuple[int, int], points: np.ndarray, log_gain_uv: np.ndarray, raster: UVRaster,
                  options: AppearanceOptions, luma: np.ndarray, *, where: ImageUV | None = None,
                  limit: np.ndarray | None = None) -> np.ndarray:
    """The image-space log gain that :func:`render_gain` applies, without applying it.

    Args:
        shape: ``(H, W)`` of the image.
        points, log_gain_uv, raster, options, where, limit: as in :func:`render_gain`.
        luma: ``(H, W)`` luminance of the image, ``uint8`` or ``float32``, on any linear
            scale whose 0 is black (only ratios to the skin's median are used), e.g. the
            RGB luminance or ``Y' - 16`` of limited-range video.

    Returns:
        ``(H, W) float32`` natural-log gain, clipped to ``options.max_log_gain``; 0 outside
        the skin (and where ``limit`` is 0).
    """
    h, w = shape[:2]
    check_array(luma, f"{h} {w}", name="luma")
    out = np.zeros((h, w), np.float32)
    patch = _gain_patch((h, w), points, log_gain_uv, raster, options,
                        lambda x0, y0, x1, y1: luma[y0:y1, x0:x1], where=where, limit=limit)
    if patch is not None:
        (x0, y0), gain = patch
        out[y0:y0 + gain.shape[0], x0:x0 + gain.shape[1]] = gain
    return out


def _gain_patch(shape: tuple[int, int], points: np.ndarray, log_gain_uv: np.ndarray, raster: UVRaster,
                options: AppearanceOptions, luma_box: Callable[[int, int, int, int], np.ndarray], *,
                where: ImageUV | None = None, limit: np.ndarray | None = None
                ) -> tuple[tuple[int, int], np.ndarray] | None:
    """The clipped image-space log gain over the rectangle where it is non-zero:
    ``((x0, y0), (h, w) float32)``, or None when it is zero everywhere.

    ``luma_box(x0, y0, x1, y1)`` returns the image's luminance over a rectangle (any
    linear scale with 0 = black: :func:`skin_guard` uses ratios only).
    """
    if not np.any(log_gain_uv):
        return None
    h, w = shape[:2]
    if limit is not None:
        check_array(limit, f"{h} {w}", name="limit")
    pts = np.asarray(points)
    if where is None:
        span = max(float(np.ptp(pts[:468, 0])), float(np.ptp(pts[:468, 1])), 1.0)
        step = max(1, int(round(span / GAIN_GRID_PX)))
        where = image_uv_map(pts, (h, w), raster, step=step, upsample=False)
    else:
        step = 1
    if where.empty:
        return None
    x0, y0, x1, y1 = (int(v) for v in where.box)
    bh, bw = y1 - y0, x1 - x0
    gh, gw = where.map_x.shape
    skin = skin_mask_uv(raster.size)
    both = cv2.merge([np.multiply(log_gain_uv, skin, dtype=np.float32), np.asarray(skin, np.float32)])
    sampled = sample_texture(both, where)
    gain, skin_px = sampled[..., 0], sampled[..., 1]
    # luminance on the grid: block means of the patch (grid sample j covers pixels step*j ..)
    grey = luma_box(x0, y0, x1, y1)
    if step > 1:
        grey = _block_mean(grey, step, gh, gw)
    y = grey.astype(np.float32)
    iod_px = _iod_px(points)
    gain *= skin_guard(y, skin_px, tuple(options.skin_guard), options.guard_sigma_iod * iod_px / step)
    # only where the gain is non-zero (grid rows/cols, one sample of margin for the upsampling)
    nz = np.abs(gain) >= 1e-4
    rows = np.flatnonzero(nz.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(nz[rows[0]:rows[-1] + 1].any(axis=0))
    r0, r1 = max(rows[0] - 1, 0), min(rows[-1] + 2, gh)
    c0, c1 = max(cols[0] - 1, 0), min(cols[-1] + 2, gw)
    sub = np.ascontiguousarray(gain[r0:r1, c0:c1])
    if step > 1:
        up = cv2.resize(sub, ((c1 - c0) * step, (r1 - r0) * step), interpolation=cv2.INTER_LINEAR)
        py0, px0 = r0 * step, c0 * step
        py1, px1 = min(r1 * step, bh), min(c1 * step, bw)
        up = up[:py1 - py0, :px1 - px0]
    else:
        up, py0, px0, py1, px1 = sub, r0, c0, r1, c1
    if limit is not None:
        up = up * limit[y0 + py0:y0 + py1, x0 + px0:x0 + px1]
    np.clip(up, -options.max_log_gain, options.max_log_gain, out=up)
    return (x0 + px0, y0 + py0), np.ascontiguousarray(up, np.float32)


def _block_mean(img: np.ndarray, step: int, gh: int, gw: int) -> np.ndarray:
    """Means of ``step x step`` blocks of ``img`` on a ``(gh, gw)`` grid (edges replicated)."""
    h, w = img.shape[:2]
    ph, pw = gh * step - h, gw * step - w
    if ph or pw:
        img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
    return cv2.resize(img, (gw, gh), interpolation=cv2.INTER_AREA)


def _add_luminance_gain(rgb: np.ndarray, log_gain: np.ndarray) -> None:
    """``rgb += Y (e^g - 1)`` in place (uint8 ``(h, w, 3)``, float32 ``(h, w)`` gain); pixels
    with ``|Y (e^g - 1)| < 0.5`` (e.g. ``g == 0``) keep their value bit for bit."""
    if rgb.size == 0:
        return
    y = _luma_u8(rgb)
    delta = np.expm1(log_gain, dtype=np.float32)
    delta *= y
    rgb[...] = cv2.add(rgb, cv2.merge([delta, delta, delta]), dtype=cv2.CV_8U)


def _luma_u8(rgb: np.ndarray) -> np.ndarray:
    """``(h, w) float32`` BT.601 luminance of a ``uint8`` RGB image (unrounded)."""
    return cv2.transform(rgb.astype(np.float32), LUMA.reshape(1, 3)).reshape(rgb.shape[:2])


def _iod_px(points: np.ndarray) -> float:
    """Inter-ocular distance of a mesh, in its pixels."""
    from ned.morph.topology import inter_ocular_distance

    return float(inter_ocular_distance(np.asarray(points, np.float64)[:468, :2]))
