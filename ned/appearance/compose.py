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

import cv2
import numpy as np

from ned.appearance.options import AppearanceOptions
from ned.appearance.texture import ImageUV, UVRaster, image_uv_map, sample_texture, skin_mask_uv
from ned.types import check_array

__all__ = ["LUMA", "luminance", "apply_luminance_gain", "skin_guard", "render_gain"]

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
    rows = np.flatnonzero(np.any(log_gain != 0, axis=1))
    if rows.size == 0:
        return out
    cols = np.flatnonzero(np.any(log_gain[rows[0]:rows[-1] + 1] != 0, axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    patch = rgb[y0:y1, x0:x1].astype(np.float32)
    g = log_gain[y0:y1, x0:x1].astype(np.float32)
    y = _luma(patch)
    delta = y * np.expm1(g)
    new = np.clip(patch + delta[..., None] + 0.5, 0, 255).astype(np.uint8)
    changed = (g != 0)[..., None]
    np.copyto(out[y0:y1, x0:x1], new, where=changed)
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
    if not np.any(log_gain_uv):
        return image.copy()
    if where is None:
        where = image_uv_map(points, image.shape[:2], raster)
    if where.empty:
        return image.copy()
    x0, y0, x1, y1 = (int(v) for v in where.box)
    skin = skin_mask_uv(raster.size)
    both = np.dstack([log_gain_uv.astype(np.float32) * skin, skin])
    sampled = sample_texture(both, where)
    gain, skin_px = sampled[..., 0], sampled[..., 1]
    patch = image[y0:y1, x0:x1]
    iod_px = _iod_px(points)
    y = luminance(patch)
    gain = gain * skin_guard(y, skin_px, tuple(options.skin_guard), options.guard_sigma_iod * iod_px)
    if limit is not None:
        gain = gain * limit[y0:y1, x0:x1]
    np.clip(gain, -options.max_log_gain, options.max_log_gain, out=gain)
    gain[np.abs(gain) < 1e-4] = 0.0
    out = image.copy()
    out[y0:y1, x0:x1] = apply_luminance_gain(patch, gain)
    return out


def _iod_px(points: np.ndarray) -> float:
    """Inter-ocular distance of a mesh, in its pixels."""
    from ned.morph.topology import inter_ocular_distance

    return float(inter_ocular_distance(np.asarray(points, np.float64)[:468, :2]))
