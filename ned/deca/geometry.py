"""DECA's crop and orthographic camera, as pure numpy functions.

Conventions:
- Crop: a square of side ``scale * 1.1 * (w + h) / 2`` around the centre of the face
  points' bounding box (DECA's rule for 68 landmarks), mapped onto a 224x224 crop so that
  the square's corners land on pixel centres 0 and 223 (as DECA's ``estimate_transform``).
  ``crop_from_frame`` is a (3, 3) similarity in pixels, origin top-left.
- Camera: DECA's ``cam = (s, tx, ty)`` maps a FLAME point (x, y, z) to normalised crop
  coordinates ``u = s (x + tx)``, ``v = -s (y + ty)`` in [-1, 1] (v down); pixels are
  ``(u + 1) * size / 2 - 0.5`` (pixel centres at integer coordinates, as the rasteriser of
  DECA's renderer; DECA's landmark code omits the -0.5). Depth ``z_px = -s z size / 2``:
  in pixel scale, larger = farther from the camera (FLAME's z points to the viewer).
"""

from __future__ import annotations

import cv2
import numpy as np

from ned.types import check_array

__all__ = [
    "DECA_BOX_FACTOR",
    "crop_from_points",
    "frame_from_crop_points",
    "project_to_crop",
    "warp_to_crop",
]

DECA_BOX_FACTOR = 1.1  # DECA enlarges the 68-landmark box by this before applying `scale`


def crop_from_points(points: np.ndarray, *, scale: float = 1.25, crop_size: int = 224) -> np.ndarray:
    """The similarity that maps the frame onto DECA's face crop.

    Args:
        points: (N, 2) face landmarks (x, y) in frame pixels (N >= 2).
        scale: enlargement of the landmark box (DECA: 1.25).
        crop_size: crop side in pixels (DECA: 224).

    Returns:
        (3, 3) float64 ``crop_from_frame``.

    Raises:
        ValueError: bad points (shape, non-finite, zero extent) or scale.
    """
    check_array(points, "N 2", name="points")
    if points.shape[0] < 2 or not np.isfinite(points).all():
        raise ValueError(f"points: expected >= 2 finite points, got {points.shape[0]} (non-finite: "
                         f"{int((~np.isfinite(points)).any(axis=1).sum())})")
    if scale <= 0:
        raise ValueError(f"scale: expected > 0, got {scale}")
    low, high = points.min(axis=0).astype(np.float64), points.max(axis=0).astype(np.float64)
    side = int((high - low).sum() / 2 * DECA_BOX_FACTOR * scale)
    if side <= 0:
        raise ValueError(f"points: the face box is empty ({high - low})")
    corner = (low + high) / 2 - side / 2
    k = (crop_size - 1) / side
    return np.array([[k, 0.0, -k * corner[0]], [0.0, k, -k * corner[1]], [0.0, 0.0, 1.0]])


def warp_to_crop(frame: np.ndarray, crop_from_frame: np.ndarray, *, crop_size: int = 224) -> np.ndarray:
    """Cut DECA's input crop out of a frame (bilinear, black outside the frame).

    Args:
        frame: (H, W, 3) uint8 RGB.
        crop_from_frame: (3, 3) similarity from :func:`crop_from_points`.

    Returns:
        (crop_size, crop_size, 3) uint8 RGB.

    Raises:
        ValueError: wrong shapes or dtype.
    """
    check_array(frame, "H W 3", np.uint8, name="frame")
    check_array(crop_from_frame, "3 3", name="crop_from_frame")
    return cv2.warpAffine(
        np.ascontiguousarray(frame), np.asarray(crop_from_frame, np.float64)[:2], (crop_size, crop_size),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
    )


def project_to_crop(vertices: np.ndarray, cam: np.ndarray, *, crop_size: int = 224) -> np.ndarray:
    """DECA's orthographic projection of FLAME vertices into crop pixels.

    Args:
        vertices: (N, 3) FLAME model-space points.
        cam: (3,) scale, tx, ty.
        crop_size: crop side in pixels.

    Returns:
        (N, 3) float32 (x, y, z) in crop pixels; z larger = farther.

    Raises:
        ValueError: wrong shapes.
    """
    check_array(vertices, "N 3", name="vertices")
    cam = check_array(np.asarray(cam, dtype=np.float64).reshape(-1), "3", name="cam")
    scale, tx, ty = cam
    half = crop_size / 2.0
    v = vertices.astype(np.float64)
    out = np.empty_like(v)
    out[:, 0] = (scale * (v[:, 0] + tx) + 1.0) * half - 0.5
    out[:, 1] = (1.0 - scale * (v[:, 1] + ty)) * half - 0.5
    out[:, 2] = -scale * v[:, 2] * half
    return out.astype(np.float32)


def frame_from_crop_points(points: np.ndarray, crop_from_frame: np.ndarray) -> np.ndarray:
    """Map (N, 3) crop-pixel points back to frame pixels (z scaled by the similarity's scale).

    Returns:
        (N, 3) float32 frame pixels.

    Raises:
        ValueError: wrong shapes or a singular transform.
    """
    check_array(points, "N 3", name="points")
    check_array(crop_from_frame, "3 3", name="crop_from_frame")
    linear = np.asarray(crop_from_frame, np.float64)
    det = np.linalg.det(linear[:2, :2])
    if not np.isfinite(det) or abs(det) < 1e-12:
        raise ValueError("crop_from_frame: singular transform")
    frame_from_crop = np.linalg.inv(linear)
    xy = points[:, :2].astype(np.float64) @ frame_from_crop[:2, :2].T + frame_from_crop[:2, 2]
    z = points[:, 2:3].astype(np.float64) / np.sqrt(abs(det))
    return np.concatenate([xy, z], axis=1).astype(np.float32)
