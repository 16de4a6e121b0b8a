"""Expression detail transfer with ratio images (Liu, Shan & Zhang, SIGGRAPH 2001).

A reference actor's neutral and emotion frames are brought into one geometry (the mesh's
texture space, :mod:`ned.appearance.texture`; texture -> target is the same per-triangle
map as a direct mesh-to-mesh warp), and the ratio of their luminances is the expression's
shading detail: creases, folds, bulges. Unlike the paper's full-band RGB ratio, here

- only luminance is used (the target's skin tone and make-up stay);
- small isolated spots (moles, freckles, pores, glints, and the +/- pairs that a small
  misregistration of such marks leaves) are removed by a line-preserving median
  (:func:`remove_spots`): creases and folds are long in some direction, spots in none;
- the ratio is band-limited in log space: a low-pass (``detail_low_sigma_iod``) removes
  pores, noise, moles and the dipoles that small misregistrations of marks present in both
  frames leave; subtracting a much wider low-pass (``detail_high_sigma_iod``) removes the
  very-low-frequency part (lighting and pose shading that changed between the two
  frames). Both are normalised convolutions over the skin mask, so eyes, lips, teeth,
  brows and hair neither enter nor leak;
- texels much darker than the reference's skin in either frame (hair falling on the
  forehead, stubble, glasses) are left out (:func:`ned.appearance.compose.skin_guard`);
- the result is soft-clamped to ``±detail_clamp`` and multiplied by the skin mask.

So the reference's moles, freckles, lighting and colour do not transfer; the target's stay.
"""

from __future__ import annotations

import functools
import logging
from typing import Sequence

import cv2
import numpy as np

from ned.appearance.compose import luminance, render_gain, skin_guard
from ned.appearance.options import AppearanceOptions
from ned.appearance.texture import UVRaster, image_to_uv, skin_mask_uv, uv_raster
from ned.morph.topology import Topology
from ned.types import check_array

__all__ = ["LOG_EPS", "SPOT_LENGTH_IOD", "luminance_uv", "remove_spots", "band_pass", "detail_map", "RatioTransfer"]

logger = logging.getLogger(__name__)

#: added to luminance (0..1) before the log: keeps deep shadows and noise from exploding.
LOG_EPS = 0.04
#: detail is kept this far (IOD) from texels left out for being too dark (hair casts
#: shadows next to it) and from the edges of the skin region (eyelid, lip and brow edges
#: move between two frames and leave rims in a ratio).
GUARD_ERODE_IOD = 0.05
#: length of the directional medians of :func:`remove_spots`, IOD (spots smaller than about
#: half of it vanish; lines longer than it stay).
SPOT_LENGTH_IOD = 0.14
SKIN_ERODE_IOD = 0.015


def _erode(weight: np.ndarray, radius: float) -> np.ndarray:
    """Grey-level erosion (min filter over a disk of ``radius`` texels), then a soft edge."""
    r = int(round(radius))
    if r < 1:
        return weight
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.GaussianBlur(cv2.erode(weight, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0), (0, 0), r / 2)


@functools.lru_cache(maxsize=8)
def _eroded_skin(size: int, radius: float) -> np.ndarray:
    out = _erode(skin_mask_uv(size).copy(), radius) * skin_mask_uv(size)
    out.setflags(write=False)
    return out


def luminance_uv(image: np.ndarray, points: np.ndarray, raster: UVRaster) -> np.ndarray:
    """Luminance of an image in texture space.

    Args:
        image: ``(H, W, 3) uint8`` RGB (a frame or an aligned crop).
        points: ``(>= 468, 2|3)`` its mesh in its pixels.
        raster: texture tables.

    Returns:
        ``(S, S) float32`` luminance in [0, 1]; 0 outside the mesh.

    Raises:
        ValueError: on bad shapes or non-finite points.
    """
    check_array(image, "H W 3", np.uint8, name="image")
    pts = np.asarray(points, np.float64)[:, :2]
    if pts.shape[0] < 468 or not np.isfinite(pts[:468]).all():
        raise ValueError(f"points: expected (>= 468, 2|3) finite, got {np.asarray(points).shape}")
    h, w = image.shape[:2]
    x0, y0 = max(int(np.floor(pts[:468, 0].min())) - 2, 0), max(int(np.floor(pts[:468, 1].min())) - 2, 0)
    x1, y1 = min(int(np.ceil(pts[:468, 0].max())) + 3, w), min(int(np.ceil(pts[:468, 1].max())) + 3, h)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((raster.size, raster.size), np.float32)
    y = luminance(image[y0:y1, x0:x1]) * np.float32(1.0 / 255.0)
    return image_to_uv(y, pts[:468] - np.array([x0, y0]), raster)


def remove_spots(values: np.ndarray, length: int) -> np.ndarray:
    """Line-preserving removal of small spots (greyscale morphology with line elements).

    Dark spots go with a *closing* by a line of ``length`` texels: a dark feature that does
    not contain such a line segment disappears, one along the line stays. Taking the
    darkest of the closings in four directions (horizontal, vertical, both diagonals)
    keeps dark lines of any direction (creases) and removes dark spots (moles, freckles,
    pores, one half of a misregistration pair). Bright spots go the same way with the
    brightest of four *openings*. Smooth regions are unchanged.

    Args:
        values: ``(S, S) float32``.
        length: line length in texels (odd, >= 3; smaller values return the input).

    Returns:
        ``(S, S) float32``.
    """
    x = np.ascontiguousarray(values, np.float32)
    if length < 3:
        return x.copy()
    kernels = _line_kernels(int(length))
    dark = np.min([cv2.morphologyEx(x, cv2.MORPH_CLOSE, k, borderType=cv2.BORDER_REPLICATE) for k in kernels],
                  axis=0)
    return np.max([cv2.morphologyEx(dark, cv2.MORPH_OPEN, k, borderType=cv2.BORDER_REPLICATE) for k in kernels],
                  axis=0)


@functools.lru_cache(maxsize=8)
def _line_kernels(length: int) -> tuple[np.ndarray, ...]:
    """Horizontal, vertical and diagonal line structuring elements of ``length`` texels."""
    eye = np.eye(length, dtype=np.uint8)
    return (np.ones((1, length), np.uint8), np.ones((length, 1), np.uint8), eye, np.ascontiguousarray(eye[::-1]))


def band_pass(values: np.ndarray, weight: np.ndarray, low_sigma: float, high_sigma: float) -> np.ndarray:
    """Weighted (normalised-convolution) band-pass of a texture.

    ``lp(x, s) = G_s * (w x) / G_s * w``; returns ``lp(x, low) - lp(x, high)`` where the
    weight has support, 0 elsewhere.

    Args:
        values: ``(S, S) float32``.
        weight: ``(S, S) float32`` >= 0 (where ``values`` are valid and wanted).
        low_sigma, high_sigma: Gaussian sigmas in texels, ``0 <= low < high``.

    Returns:
        ``(S, S) float32``.

    Raises:
        ValueError: on mismatched shapes or bad sigmas.
    """
    if values.shape != weight.shape or values.ndim != 2:
        raise ValueError(f"values and weight must be equal (S, S) arrays, got {values.shape} and {weight.shape}")
    if not 0 <= low_sigma < high_sigma:
        raise ValueError(f"need 0 <= low_sigma < high_sigma, got {low_sigma}, {high_sigma}")
    w = weight.astype(np.float32)
    wx = w * values.astype(np.float32)

    def lp(sigma: float) -> np.ndarray:
        if sigma < 0.3:
            num, den = wx, w
        elif sigma > 8.0:  # wide: blur a 4x smaller copy (same result within ~1e-3, 10x faster)
            h, wd = w.shape
            small = cv2.resize(np.dstack([wx, w]), (max(wd // 4, 1), max(h // 4, 1)), interpolation=cv2.INTER_AREA)
            small = cv2.GaussianBlur(small, (0, 0), sigma / 4.0, borderType=cv2.BORDER_CONSTANT)
            big = cv2.resize(small, (wd, h), interpolation=cv2.INTER_LINEAR)
            num, den = big[..., 0], big[..., 1]
        else:
            num = cv2.GaussianBlur(wx, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
            den = cv2.GaussianBlur(w, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
        return num / np.maximum(den, 1e-3)

    out = lp(low_sigma) - lp(high_sigma)
    out[w <= 1e-3] = 0.0
    return out


def detail_map(neutral: np.ndarray | Sequence[np.ndarray], emotion: np.ndarray, raster: UVRaster,
               options: AppearanceOptions = AppearanceOptions()) -> np.ndarray:
    """Band-limited log-luminance ratio of an emotion texture over a neutral one.

    Args:
        neutral: ``(S, S)`` luminance texture (:func:`luminance_uv`) of the reference's
            neutral face, or several (their per-texel median is used).
        emotion: ``(S, S)`` luminance texture of the reference's emotion frame.
        raster: texture tables of size ``S``.
        options: ``detail_low_sigma_iod``, ``detail_high_sigma_iod``, ``detail_clamp``.

    Returns:
        ``(S, S) float32`` log gain, soft-clamped to ``±detail_clamp``, times the skin mask.

    Raises:
        ValueError: on mismatched shapes.
    """
    s = raster.size
    neutral_stack = [np.asarray(n, np.float32) for n in
                     ([neutral] if isinstance(neutral, np.ndarray) and neutral.ndim == 2 else neutral)]
    if not neutral_stack:
        raise ValueError("neutral: give at least one neutral texture")
    for n in (*neutral_stack, emotion):
        check_array(np.asarray(n), f"{s} {s}", name="texture")
    n = neutral_stack[0] if len(neutral_stack) == 1 else np.median(np.stack(neutral_stack), axis=0)
    e = np.asarray(emotion, np.float32)
    skin = skin_mask_uv(s)
    sigma = options.guard_sigma_iod * raster.iod_texels
    valid = ((n > 0) & (e > 0)).astype(np.float32)
    valid *= skin_guard(n, skin, tuple(options.skin_guard), sigma) * skin_guard(e, skin, tuple(options.skin_guard), sigma)
    # keep away from whatever was left out (hair edges cast shadows, lid and lip edges move)
    valid = _erode(valid, GUARD_ERODE_IOD * raster.iod_texels)
    skin = _eroded_skin(s, SKIN_ERODE_IOD * raster.iod_texels)
    ratio = np.log(e + LOG_EPS) - np.log(n + LOG_EPS)
    ratio = remove_spots(np.where(valid > 0, ratio, 0.0).astype(np.float32),
                         int(round(SPOT_LENGTH_IOD * raster.iod_texels)) | 1)
    weight = skin * valid
    band = band_pass(ratio, weight, options.detail_low_sigma_iod * raster.iod_texels,
                     options.detail_high_sigma_iod * raster.iod_texels)
    c = options.detail_clamp
    return (c * np.tanh(band / c) * weight).astype(np.float32)


class RatioTransfer:
    """Reference-driven expression detail, one pair of reference frames at a time.

    Args:
        options: appearance options.
        topology: default the packaged one.

    Example:
        >>> rt = RatioTransfer()                                                 # doctest: +SKIP
        >>> out = rt.apply(crop, mesh, ref_neutral, ref_neutral_mesh, ref_emotion,
        ...                ref_emotion_mesh, weight=1.0)                         # doctest: +SKIP
    """

    def __init__(self, options: AppearanceOptions = AppearanceOptions(), topology: Topology | None = None) -> None:
        if not isinstance(options, AppearanceOptions):
            raise ValueError(f"options must be an AppearanceOptions, got {type(options).__name__}")
        self.options = options
        self.raster = uv_raster(options.texture_size, topology)

    def texture(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """:func:`luminance_uv` at this transfer's texture size."""
        return luminance_uv(image, points, self.raster)

    def detail(self, neutral_images: Sequence[np.ndarray], neutral_points: Sequence[np.ndarray],
               emotion_image: np.ndarray, emotion_points: np.ndarray) -> np.ndarray:
        """The band-limited detail map ``(S, S) float32`` of a reference emotion frame
        relative to one or more of the reference's neutral frames (:func:`detail_map`).

        Raises:
            ValueError: on bad shapes or mismatched lists.
        """
        if len(neutral_images) != len(neutral_points) or not neutral_images:
            raise ValueError("give as many neutral images as neutral meshes (at least one)")
        neutral = [self.texture(im, pt) for im, pt in zip(neutral_images, neutral_points)]
        return detail_map(neutral, self.texture(emotion_image, emotion_points), self.raster, self.options)

    def apply(self, target_crop: np.ndarray, target_mesh: np.ndarray,
              ref_neutral_crop: np.ndarray | Sequence[np.ndarray], ref_neutral_mesh: np.ndarray | Sequence[np.ndarray],
              ref_emotion_crop: np.ndarray, ref_emotion_mesh: np.ndarray, weight: float = 1.0) -> np.ndarray:
        """Transfer the reference's expression detail onto a target face.

        Args:
            target_crop: ``(H, W, 3) uint8`` the target face (already warped to the edited
                geometry).
            target_mesh: ``(>= 468, 2|3)`` that geometry, ``target_crop`` pixels.
            ref_neutral_crop: ``(h, w, 3) uint8`` reference neutral face (or a list).
            ref_neutral_mesh: its mesh in its pixels (or a list, one per image).
            ref_emotion_crop: ``(h', w', 3) uint8`` reference emotion face.
            ref_emotion_mesh: its mesh in its pixels.
            weight: how much of the detail to apply, [0, 4] (1 = all of it; scaled by
                ``options.detail_strength``).

        Returns:
            ``(H, W, 3) uint8``; equal to ``target_crop`` for ``weight == 0``.

        Raises:
            ValueError: on bad shapes or a weight out of range.
        """
        if not 0.0 <= float(weight) <= 4.0:
            raise ValueError(f"weight must be in [0, 4], got {weight}")
        check_array(target_crop, "H W 3", np.uint8, name="target_crop")
        if float(weight) == 0.0 or self.options.detail_strength == 0.0 or self.options.mode == "off":
            return target_crop.copy()
        if isinstance(ref_neutral_crop, np.ndarray) and ref_neutral_crop.ndim == 3:
            ref_neutral_crop, ref_neutral_mesh = [ref_neutral_crop], [ref_neutral_mesh]
        detail = self.detail(list(ref_neutral_crop), list(ref_neutral_mesh), ref_emotion_crop, ref_emotion_mesh)
        gain = detail * np.float32(float(weight) * self.options.detail_strength)
        return render_gain(target_crop, target_mesh, gain, self.raster, self.options)
