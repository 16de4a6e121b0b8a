"""Soft face masks and eye landmarks from the face mesh.

Points are ``(x, y[, z])`` pixels of the image the mask is drawn for (a frame or an
aligned crop: transform the landmarks with :func:`ned.face.align.transform_points`
first); pixel centres at integer coordinates. Masks are ``(H, W) float32`` in ``[0, 1]``.
"""

from __future__ import annotations

import cv2
import numpy as np

from ned.face.landmarks import FACE_OVAL, MESH_POINTS, NUM_LANDMARKS, MeshPoint

__all__ = ["face_mask", "eye_landmarks", "EYE_LANDMARKS_68", "EYE_LANDMARKS_DENSE"]

# Eyelid points in the iBUG-68 order of indices 36..47 (dlib / face-alignment, as used by
# NED's eye_landmarks): image-left eye (the person's right) outer corner, upper lid x2,
# inner corner, lower lid x2; then the other eye from its inner corner.
EYE_LANDMARKS_68 = np.array([33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380],
                            dtype=np.int64)
# Dense eyelid loops (16 points per eye, same start and direction as above).
EYE_LANDMARKS_DENSE = np.array(
    [33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7,
     362, 398, 384, 385, 386, 387, 388, 466, 263, 249, 390, 373, 374, 380, 381, 382],
    dtype=np.int64,
)
_PUPILS = np.array([MeshPoint.RIGHT_IRIS_CENTER, MeshPoint.LEFT_IRIS_CENTER], dtype=np.int64)
_SUBPIXEL_BITS = 4


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    pts = np.asarray(landmarks)
    if pts.ndim != 2 or pts.shape[0] not in (MESH_POINTS, NUM_LANDMARKS) or pts.shape[1] not in (2, 3):
        raise ValueError(f"landmarks: expected shape (468|478, 2|3), got {pts.shape}")
    return pts


def face_mask(landmarks: np.ndarray, size: tuple[int, int], feather_px: float = 8.0,
              grow_px: float = 0.0) -> np.ndarray:
    """Soft mask of the face: the mesh's face-oval loop filled, edges feathered.

    The transition from 1 to 0 is centred on the (grown) oval and about ``feather_px``
    wide (a Gaussian blur with sigma ``feather_px / 4``). Work is limited to the face's
    bounding region, so it is cheap on large frames.

    Args:
        landmarks: ``(468|478, 2|3)`` pixels of the target image. All-NaN (a "missing"
            frame) gives an all-zero mask.
        size: ``(H, W)`` of the mask.
        feather_px: width of the soft edge in pixels, >= 0 (0: hard edge, anti-aliased).
        grow_px: move the oval outwards (> 0) or inwards (< 0) by this many pixels,
            along the direction from the face centre.

    Returns:
        ``(H, W) float32`` in ``[0, 1]``.

    Raises:
        ValueError: bad shapes, negative ``feather_px`` or non-positive ``size``.
    """
    pts = _check_landmarks(landmarks)
    h, w = (int(v) for v in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive (H, W), got {size}")
    if feather_px < 0:
        raise ValueError(f"feather_px must be >= 0, got {feather_px}")
    mask = np.zeros((h, w), np.float32)
    oval = pts[FACE_OVAL, :2].astype(np.float64)
    if not np.isfinite(oval).all():
        return mask
    if grow_px:
        centre = oval.mean(axis=0)
        d = oval - centre
        oval = oval + d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6) * grow_px
    sigma = feather_px / 4.0
    margin = int(np.ceil(3 * sigma)) + 2
    x0 = max(int(np.floor(oval[:, 0].min())) - margin, 0)
    y0 = max(int(np.floor(oval[:, 1].min())) - margin, 0)
    x1 = min(int(np.ceil(oval[:, 0].max())) + margin + 1, w)
    y1 = min(int(np.ceil(oval[:, 1].max())) + margin + 1, h)
    if x1 <= x0 or y1 <= y0:
        return mask
    region = np.zeros((y1 - y0, x1 - x0), np.uint8)
    poly = np.round((oval - [x0, y0]) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(region, [poly], 255, lineType=cv2.LINE_AA, shift=_SUBPIXEL_BITS)
    soft = region.astype(np.float32) * (1.0 / 255.0)
    if sigma > 0:
        soft = cv2.GaussianBlur(soft, (0, 0), sigmaX=sigma, sigmaY=sigma,
                                borderType=cv2.BORDER_CONSTANT)
    mask[y0:y1, x0:x1] = np.clip(soft, 0.0, 1.0)
    return mask


def eye_landmarks(landmarks: np.ndarray, dense: bool = False) -> np.ndarray:
    """Eyelid contours and pupils, the content of the ``eye_landmarks/`` folders.

    Format (``dense=False``, 14 points, NED's layout): rows 0-11 are the eyelids in the
    iBUG-68 order of indices 36-47 (:data:`EYE_LANDMARKS_68`): the eye on the image's
    left (the person's right) from its outer corner: corner, two upper-lid points,
    inner corner, two lower-lid points; then the other eye from its inner corner the
    same way; rows 12-13 are the pupils (iris centres) of the image-left eye, then the
    image-right eye (for a non-mirrored frontal face).

    With ``dense=True`` (34 points): two 16-point eyelid loops
    (:data:`EYE_LANDMARKS_DENSE`, same start and direction), then the two pupils.

    Args:
        landmarks: ``(478, 2|3)`` (468 mesh + 10 iris) pixels of any image.
        dense: return the 16-point loops instead of the 68-style points.

    Returns:
        ``(14, 2)`` or ``(34, 2) float32`` in the same pixels (NaN for a missing face).

    Raises:
        ValueError: ``landmarks`` is not ``(478, 2|3)`` (the pupils need the iris points).
    """
    pts = _check_landmarks(landmarks)
    if pts.shape[0] != NUM_LANDMARKS:
        raise ValueError(f"landmarks: expected shape (478, 2|3) with iris points, got {pts.shape}")
    lids = EYE_LANDMARKS_DENSE if dense else EYE_LANDMARKS_68
    return pts[np.concatenate([lids, _PUPILS]), :2].astype(np.float32)
