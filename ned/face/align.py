"""Face alignment: a similarity from frame pixels to a fixed 256x256 face template.

Convention: points are ``(x, y[, z])`` in pixels, pixel centres at integer coordinates
(OpenCV's convention, as everywhere in :mod:`ned.face`); matrices are ``(2, 3)``
float64 pixel affines named ``<dst>_from_<src>``; a similarity has no shear and no
reflection.

The template (:data:`TEMPLATE`) places seven stable mesh points (eye corners, nose
tip, mouth corners) where a frontal face lands in the tracker's crop box
(:class:`ned.face.tracker.TrackOptions.box_scale` = 1.5): the mean of MediaPipe meshes
fitted to frontal neutral MEAD faces, made left-right symmetric. Mouth corners move
with expressions, so they weigh half as much as the rigid points.

Example:
    >>> import numpy as np
    >>> m = similarity_from_points(TEMPLATE, TEMPLATE)
    >>> np.allclose(m, [[1, 0, 0], [0, 1, 0]])
    True
"""

from __future__ import annotations

import cv2
import numpy as np

from ned.face.landmarks import MeshPoint
from ned.types import check_array

__all__ = [
    "CROP_SIZE",
    "TEMPLATE_POINTS",
    "TEMPLATE",
    "TEMPLATE_WEIGHTS",
    "similarity_from_points",
    "crop_from_frame",
    "invert_affine",
    "compose_affine",
    "transform_points",
    "warp_to_crop",
]

CROP_SIZE = 256

TEMPLATE_POINTS = np.array(
    [MeshPoint.RIGHT_EYE_OUTER, MeshPoint.RIGHT_EYE_INNER, MeshPoint.LEFT_EYE_INNER,
     MeshPoint.LEFT_EYE_OUTER, MeshPoint.NOSE_TIP, MeshPoint.MOUTH_RIGHT,
     MeshPoint.MOUTH_LEFT],
    dtype=np.int64,
)
# (7, 2) pixel positions in a CROP_SIZE x CROP_SIZE crop, in TEMPLATE_POINTS order.
TEMPLATE = np.array(
    [[80.5, 97.2], [109.4, 97.9], [145.6, 97.9], [174.5, 97.2], [127.5, 131.0],
     [102.2, 167.6], [152.8, 167.6]],
    dtype=np.float64,
)
TEMPLATE_WEIGHTS = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5])


def similarity_from_points(src: np.ndarray, dst: np.ndarray,
                           weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares similarity mapping ``src`` onto ``dst`` (weighted Umeyama, 1991).

    Args:
        src: ``(N, 2)`` points, N >= 2, not all equal.
        dst: ``(N, 2)`` points.
        weights: ``(N,)`` non-negative weights, or None for equal weights.

    Returns:
        ``(2, 3) float64`` ``dst_from_src`` (rotation, uniform scale, translation).

    Raises:
        ValueError: bad shapes, non-finite points, or degenerate ``src``.
    """
    src = check_array(np.asarray(src, dtype=np.float64), "N 2", name="src")
    dst = check_array(np.asarray(dst, dtype=np.float64), "N 2", name="dst")
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"src and dst must both be (N >= 2, 2), got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("src and dst must be finite (no NaN landmarks)")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(src),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be ({len(src)},) non-negative with a positive sum")
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    s0, d0 = src - mu_s, dst - mu_d
    var_s = float(w @ (s0**2).sum(axis=1))
    if var_s < 1e-12:
        raise ValueError("src points are all equal: the similarity is undefined")
    cov = (d0 * w[:, None]).T @ s0
    u, sig, vt = np.linalg.svd(cov)
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1.0
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(sig) @ d)) / var_s
    a = scale * rot
    return np.concatenate([a, (mu_d - a @ mu_s)[:, None]], axis=1)


def crop_from_frame(landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Similarity mapping frame pixels to the aligned ``size x size`` face crop.

    Args:
        landmarks: ``(468|478, 2|3)`` mesh in frame pixels (finite at the template
            points).
        size: crop side in pixels (the template scales with it).

    Returns:
        ``(2, 3) float64`` ``crop_from_frame``.

    Raises:
        ValueError: bad shape, or NaN template points (a "missing" frame).
    """
    landmarks = np.asarray(landmarks)
    if landmarks.ndim != 2 or landmarks.shape[0] not in (468, 478) or landmarks.shape[1] not in (2, 3):
        raise ValueError(f"landmarks: expected shape (468|478, 2|3), got {landmarks.shape}")
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    dst = (TEMPLATE + 0.5) * (size / CROP_SIZE) - 0.5
    return similarity_from_points(landmarks[TEMPLATE_POINTS, :2], dst, TEMPLATE_WEIGHTS)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a ``(2, 3)`` affine (``src_from_dst`` from ``dst_from_src``).

    Raises:
        ValueError: bad shape or singular matrix.
    """
    m = check_array(np.asarray(matrix, dtype=np.float64), "2 3", name="matrix")
    a = m[:, :2]
    if abs(np.linalg.det(a)) < 1e-12:
        raise ValueError("matrix is singular and cannot be inverted")
    inv = np.linalg.inv(a)
    return np.concatenate([inv, -inv @ m[:, 2:3]], axis=1)


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``outer`` after ``inner`` (both ``(2, 3)``): ``c_from_a = compose(c_from_b, b_from_a)``."""
    o = check_array(np.asarray(outer, dtype=np.float64), "2 3", name="outer")
    i = check_array(np.asarray(inner, dtype=np.float64), "2 3", name="inner")
    return np.concatenate([o[:, :2] @ i[:, :2], (o[:, :2] @ i[:, 2] + o[:, 2])[:, None]], axis=1)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a ``(2, 3)`` affine to ``(N, 2)`` or ``(N, 3)`` points.

    ``x, y`` are mapped; ``z`` (if present) is multiplied by the matrix's scale
    ``sqrt(|det A|)`` so that it stays in the same pixel scale as ``x, y``. NaN rows
    stay NaN.

    Returns:
        Points of the same shape, float32.

    Raises:
        ValueError: bad shapes.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise ValueError(f"points: expected shape (N, 2|3), got {pts.shape}")
    m = check_array(np.asarray(matrix, dtype=np.float64), "2 3", name="matrix")
    out = np.empty(pts.shape, np.float32)
    out[:, :2] = pts[:, :2].astype(np.float64) @ m[:, :2].T + m[:, 2]
    if pts.shape[1] == 3:
        out[:, 2] = pts[:, 2] * np.sqrt(abs(np.linalg.det(m[:, :2])))
    return out


def warp_to_crop(rgb: np.ndarray, crop_from_frame: np.ndarray, size: int = CROP_SIZE,
                 border: str = "constant") -> np.ndarray:
    """Resample a frame into the aligned crop.

    Args:
        rgb: ``(H, W, 3) uint8`` frame (or any ``(H, W[, C])`` image).
        crop_from_frame: ``(2, 3)`` from :func:`crop_from_frame`.
        size: crop side in pixels.
        border: ``"constant"`` (black outside the frame) or ``"replicate"``.

    Returns:
        ``(size, size, 3)`` image of ``rgb``'s dtype (bilinear).

    Raises:
        ValueError: bad shapes or border.
    """
    if not isinstance(rgb, np.ndarray) or rgb.ndim not in (2, 3):
        raise ValueError(f"rgb: expected an (H, W[, C]) array, got {getattr(rgb, 'shape', type(rgb))}")
    m = check_array(np.asarray(crop_from_frame, dtype=np.float64), "2 3", name="crop_from_frame")
    modes = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}
    if border not in modes:
        raise ValueError(f"border must be one of {sorted(modes)}, got {border!r}")
    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=modes[border],
                          borderValue=0)
