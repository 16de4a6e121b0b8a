"""Un-aligning a rendered face crop back into its frame (the staged ``postprocess`` path).

The staged commands keep faces as aligned ``S x S`` crops (``faces_aligned/``), made with
``crop_from_frame`` (``ned.face.align``). A renderer that works on those crops (the neural
renderer, or the warp renderer run on a crop) hands back a crop and a crop-space mask;
:func:`unalign` resamples both into frame pixels over the crop's footprint only, and
:func:`composite_crop` blends the result into the frame (``faces/`` and ``full_frames/``).
"""

from __future__ import annotations

import cv2
import numpy as np

from ned.render.blend import BlendOptions, blend
from ned.render.warp_renderer import RenderedFace
from ned.types import check_array

__all__ = ["composite_crop", "footprint_box", "unalign"]

_INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


def footprint_box(crop_from_frame: np.ndarray, crop_size: int,
                  frame_shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Frame-pixel box ``(x0, y0, x1, y1)`` (exclusive ends) covered by an ``S x S`` crop,
    clipped to the frame, or None if the crop lies outside it.

    Raises:
        ValueError: on a bad or singular matrix.
    """
    m = check_array(np.asarray(crop_from_frame, np.float64), "2 3", name="crop_from_frame")
    if abs(np.linalg.det(m[:, :2])) < 1e-12:
        raise ValueError("crop_from_frame is singular")
    frame_from_crop = cv2.invertAffineTransform(m)
    corners = np.array([[-0.5, -0.5], [crop_size - 0.5, -0.5], [-0.5, crop_size - 0.5],
                        [crop_size - 0.5, crop_size - 0.5]])
    xy = corners @ frame_from_crop[:, :2].T + frame_from_crop[:, 2]
    height, width = int(frame_shape[0]), int(frame_shape[1])
    x0, y0 = max(0, int(np.floor(xy[:, 0].min())) - 1), max(0, int(np.floor(xy[:, 1].min())) - 1)
    x1, y1 = min(width, int(np.ceil(xy[:, 0].max())) + 2), min(height, int(np.ceil(xy[:, 1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def unalign(crop: np.ndarray, crop_mask: np.ndarray, crop_from_frame: np.ndarray,
            frame_shape: tuple[int, int], *, interpolation: str = "cubic"
            ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int] | None]:
    """Resample an aligned crop and its mask into frame pixels over the crop's footprint.

    Args:
        crop: ``(S, S, 3) uint8`` rendered aligned face.
        crop_mask: ``(S, S) float32`` in ``[0, 1]``, where the crop should be used.
        crop_from_frame: ``(2, 3)`` similarity the crop was made with.
        frame_shape: ``(height, width)`` of the frame.
        interpolation: ``"cubic"`` or ``"linear"`` for the image (the mask is bilinear).

    Returns:
        ``(face, mask, box)``: ``face`` ``(h, w, 3) uint8`` and ``mask`` ``(h, w) float32``
        over ``box = (x0, y0, x1, y1)`` of the frame (0 outside the crop); all None-sized
        (``(0, 0, 3)``, ``(0, 0)``, None) when the crop misses the frame.

    Raises:
        ValueError: on bad shapes, dtypes, matrix or interpolation.
    """
    check_array(crop, "S S 3", np.uint8, name="crop")
    check_array(crop_mask, f"{crop.shape[0]} {crop.shape[1]}", np.float32, name="crop_mask")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {interpolation!r}")
    box = footprint_box(crop_from_frame, crop.shape[0], frame_shape)
    if box is None:
        return np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.float32), None
    x0, y0, x1, y1 = box
    # crop_from_box = crop_from_frame o frame_from_box (a translation by the box origin).
    m = np.asarray(crop_from_frame, np.float64)
    crop_from_box = np.concatenate([m[:, :2], (m[:, :2] @ [x0, y0] + m[:, 2])[:, None]], axis=1)
    size = (x1 - x0, y1 - y0)
    flags = _INTERPOLATIONS[interpolation] | cv2.WARP_INVERSE_MAP
    face = cv2.warpAffine(crop, crop_from_box, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(crop_mask, crop_from_box, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    np.clip(mask, 0.0, 1.0, out=mask)
    return face, mask, box


def composite_crop(frame: np.ndarray, crop: np.ndarray, crop_mask: np.ndarray, crop_from_frame: np.ndarray,
                   options: BlendOptions = BlendOptions(), *, interpolation: str = "cubic") -> RenderedFace:
    """Un-align a rendered crop and blend it into ``frame``.

    Args:
        frame: ``(H, W, 3) uint8`` the original frame.
        crop, crop_mask, crop_from_frame, interpolation: as in :func:`unalign`.
        options: blending.

    Returns:
        :class:`~ned.render.warp_renderer.RenderedFace` (frame bit-identical where its mask
        is 0).

    Raises:
        ValueError: on bad shapes, dtypes or matrix.
    """
    check_array(frame, "H W 3", np.uint8, name="frame")
    face, mask, box = unalign(crop, crop_mask, crop_from_frame, frame.shape[:2], interpolation=interpolation)
    full_mask = np.zeros(frame.shape[:2], np.float32)
    if box is None:
        return RenderedFace(frame=frame.copy(), mask=full_mask, box=np.zeros(4, np.int32))
    x0, y0, x1, y1 = box
    out = frame.copy()
    out[y0:y1, x0:x1] = blend(frame[y0:y1, x0:x1], face, mask, options)
    full_mask[y0:y1, x0:x1] = mask
    return RenderedFace(frame=out, mask=full_mask, box=np.array(box, np.int32))
