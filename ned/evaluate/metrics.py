"""Evaluation metrics: pure functions on arrays (no models, no files).

Conventions: a clip's landmarks are ``(T, 68, 2) float32`` dlib points in frame pixels,
NaN for frames without a face; per-frame curves are ``(T,)`` float with NaN where
undefined. Statistics ignore NaN frames and return NaN (never raise) when nothing is
left to measure, so that a clip with a few faceless frames still gets numbers.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ned.types import check_array

__all__ = [
    "INNER_LIP_PAIRS",
    "eye_distance",
    "mouth_aperture",
    "pearson",
    "mean_abs_diff",
    "embedding_distance",
    "argmax_rate",
    "label_rates",
    "face_region_mask",
    "masked_mse",
    "psnr_from_mse",
    "landmark_jitter",
    "face_flicker",
    "audio_envelope",
    "envelope_shift_s",
    "safe_ratio",
]

# Inner-lip point pairs (upper, lower) of dlib's 68 points: 61-67, 62-66, 63-65.
INNER_LIP_PAIRS: tuple[tuple[int, int], ...] = ((61, 67), (62, 66), (63, 65))
_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)


def eye_distance(landmarks: np.ndarray) -> np.ndarray:
    """Inter-ocular distance: between the centres of the two eyes' 6 points.

    Args:
        landmarks: ``(..., 68, 2)`` pixels.

    Returns:
        ``(...)`` float64 pixels (NaN where landmarks are NaN).
    """
    check_array(landmarks, "* 68 2", name="landmarks")
    pts = landmarks.astype(np.float64)
    left = pts[..., _LEFT_EYE, :].mean(axis=-2)
    right = pts[..., _RIGHT_EYE, :].mean(axis=-2)
    return np.linalg.norm(right - left, axis=-1)


def mouth_aperture(landmarks: np.ndarray) -> np.ndarray:
    """Mouth opening: mean inner-lip gap (61-67, 62-66, 63-65) over the eye distance.

    Scale-free, so it compares clips of different resolution; about 0 for closed lips
    and 0.3-0.6 for a wide-open mouth.

    Args:
        landmarks: ``(..., 68, 2)`` pixels.

    Returns:
        ``(...)`` float64 (NaN where landmarks are NaN or the eye distance is 0).
    """
    check_array(landmarks, "* 68 2", name="landmarks")
    pts = landmarks.astype(np.float64)
    gaps = [np.linalg.norm(pts[..., a, :] - pts[..., b, :], axis=-1) for a, b in INNER_LIP_PAIRS]
    iod = eye_distance(landmarks)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(iod > 0, np.mean(gaps, axis=0) / iod, np.nan)


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two equally long 1-D float arrays restricted to positions where both are finite."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"curves must have equal length, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two curves over the frames where both are finite.

    When exactly one curve is constant (e.g. a frozen mouth against a talking one) the
    result is 0: nothing of the varying curve is followed. NaN with fewer than 3 common
    frames or when both curves are constant (nothing to correlate).

    Raises:
        ValueError: different lengths.
    """
    x, y = _paired(a, b)
    if x.size < 3:
        return math.nan
    x = x - x.mean()
    y = y - y.mean()
    var_x, var_y = float(np.dot(x, x)), float(np.dot(y, y))
    flat_x, flat_y = var_x <= 1e-12 * x.size, var_y <= 1e-12 * y.size
    if flat_x or flat_y:
        return math.nan if flat_x and flat_y else 0.0
    denom = math.sqrt(var_x * var_y)
    return float(np.clip(np.dot(x, y) / denom, -1.0, 1.0))


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean ``|a - b|`` over the frames where both are finite (NaN if none).

    Raises:
        ValueError: different lengths.
    """
    x, y = _paired(a, b)
    return float(np.mean(np.abs(x - y))) if x.size else math.nan


def embedding_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between paired face embeddings.

    Args:
        a, b: ``(N, D)`` embeddings (NaN rows allowed).

    Returns:
        ``(N,)`` float64 (NaN where a row is NaN).
    """
    check_array(a, "N D", name="a")
    check_array(b, "N D", name="b")
    return np.linalg.norm(a.astype(np.float64) - b.astype(np.float64), axis=-1)


def argmax_rate(probs: np.ndarray, label: int) -> float:
    """Fraction of frames whose most likely class is ``label``.

    Args:
        probs: ``(T, K)`` class probabilities, NaN rows for frames without a face
            (excluded from the count).
        label: class index.

    Returns:
        Rate in [0, 1], NaN when no frame has a face.
    """
    check_array(probs, "T K", name="probs")
    valid = np.all(np.isfinite(probs), axis=1)
    if not valid.any():
        return math.nan
    return float(np.mean(np.argmax(probs[valid], axis=1) == label))


def label_rates(probs: np.ndarray) -> np.ndarray:
    """Argmax rate of every class: ``(K,)`` float64 summing to 1 (NaN if no face)."""
    check_array(probs, "T K", name="probs")
    return np.array([argmax_rate(probs, k) for k in range(probs.shape[1])])


def face_region_mask(
    landmarks: np.ndarray, shape: tuple[int, int], dilate_fraction: float = 0.15
) -> np.ndarray:
    """The face region: the landmarks' convex hull dilated by a fraction of the face size.

    The 68 points stop at the brows, so the hull is also extended upwards by the
    brow-to-chin distance times 0.3 (the forehead) before dilating.

    Args:
        landmarks: ``(68, 2)`` pixels (all NaN: empty mask).
        shape: ``(H, W)`` of the frame.
        dilate_fraction: dilation radius as a fraction of ``sqrt(hull area)``.

    Returns:
        ``(H, W) bool``, True inside the face region.
    """
    check_array(landmarks, "68 2", name="landmarks")
    mask = np.zeros(shape, np.uint8)
    if not np.all(np.isfinite(landmarks)):
        return mask.astype(bool)
    pts = landmarks.astype(np.float64)
    brows = pts[17:27]
    chin = pts[8]
    lift = 0.3 * (chin[1] - brows[:, 1].mean())
    forehead = brows - np.array([0.0, max(lift, 0.0)])
    hull = cv2.convexHull(np.vstack([pts, forehead]).astype(np.float32)).reshape(-1, 2)
    radius = dilate_fraction * math.sqrt(max(cv2.contourArea(hull), 1.0))
    if radius > 0:
        # The dilation of a convex polygon by a disc is convex: the hull of the vertices
        # moved along 32 directions (exact up to the disc's polygonisation).
        angles = np.linspace(0.0, 2.0 * math.pi, 32, endpoint=False)
        ring = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
        hull = cv2.convexHull((hull[:, None, :] + ring[None]).reshape(-1, 2)).reshape(-1, 2)
    cv2.fillConvexPoly(mask, np.round(hull * 16).astype(np.int32), 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def masked_mse(a: np.ndarray, b: np.ndarray, keep: np.ndarray) -> tuple[float, int]:
    """Sum of squared differences and pixel count inside a mask (for pooled PSNR).

    Args:
        a, b: ``(H, W, 3) uint8`` frames.
        keep: ``(H, W) bool``, True where pixels count.

    Returns:
        ``(sum of squared differences over all channels, number of values)``.
    """
    check_array(a, "H W 3", np.uint8, name="a")
    check_array(b, "H W 3", np.uint8, name="b")
    check_array(keep, "H W", bool, name="keep")
    if a.shape != b.shape or keep.shape != a.shape[:2]:
        raise ValueError(f"shapes differ: {a.shape}, {b.shape}, mask {keep.shape}")
    count = int(np.count_nonzero(keep)) * a.shape[2]
    if count == 0:
        return 0.0, 0
    sse = cv2.norm(a, b, cv2.NORM_L2SQR, mask=keep.view(np.uint8))
    return float(round(sse)), count  # a sum of integer squares


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """PSNR in dB of a mean squared error (inf for 0, NaN for NaN)."""
    if not math.isfinite(mse):
        return math.nan
    if mse <= 0.0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def landmark_jitter(landmarks: np.ndarray) -> float:
    """Temporal jitter: mean norm of the landmarks' second difference over the eye distance.

    ``mean_t mean_k |p[t+1,k] - 2 p[t,k] + p[t-1,k]| / iod[t]`` over the triples of
    consecutive frames that all have a face. It measures acceleration, so smooth motion
    (speech, head turns) counts little and frame-to-frame shaking counts a lot; compare
    an output's value with its input's (the ratio), not with a fixed number.

    Args:
        landmarks: ``(T, 68, 2)`` pixels, NaN frames allowed.

    Returns:
        Jitter (fraction of the eye distance per frame^2), NaN with no valid triple.
    """
    check_array(landmarks, "T 68 2", name="landmarks")
    if landmarks.shape[0] < 3:
        return math.nan
    pts = landmarks.astype(np.float64)
    second = pts[2:] - 2.0 * pts[1:-1] + pts[:-2]
    norms = np.linalg.norm(second, axis=-1).mean(axis=-1)  # (T-2,)
    iod = eye_distance(landmarks)[1:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_frame = norms / iod
    per_frame = per_frame[np.isfinite(per_frame)]
    return float(per_frame.mean()) if per_frame.size else math.nan


def face_flicker(previous: np.ndarray, current: np.ndarray, region: np.ndarray) -> float:
    """Frame-to-frame change inside the face region: mean ``|grey_t - grey_{t-1}|``.

    Deliberately simple: no motion compensation, so real motion (speech, head movement)
    counts too; it is meant for the ratio output / input measured with the same region,
    where the shared motion cancels and added flicker (blending that pumps, texture
    that boils) shows as a ratio above 1.

    Args:
        previous, current: ``(H, W, 3) uint8`` consecutive frames.
        region: ``(H, W) bool`` pixels to measure.

    Returns:
        Mean absolute grey difference in grey levels (0-255), NaN for an empty region.
    """
    check_array(previous, "H W 3", np.uint8, name="previous")
    check_array(current, "H W 3", np.uint8, name="current")
    check_array(region, "H W", bool, name="region")
    if not region.any():
        return math.nan
    g0 = cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY)
    g1 = cv2.cvtColor(current, cv2.COLOR_RGB2GRAY)
    return float(np.mean(cv2.absdiff(g0, g1)[region]))


def audio_envelope(samples: np.ndarray, sample_rate: int, hop_s: float = 0.01) -> np.ndarray:
    """RMS envelope of a mono signal in windows of ``hop_s``.

    Args:
        samples: ``(N,)`` float samples.
        sample_rate: samples per second.
        hop_s: window (and hop) length in seconds.

    Returns:
        ``(N // hop,) float64`` RMS values.
    """
    check_array(samples, "N", name="samples")
    hop = max(1, int(round(sample_rate * hop_s)))
    count = samples.size // hop
    blocks = samples[: count * hop].astype(np.float64).reshape(count, hop)
    return np.sqrt(np.mean(blocks * blocks, axis=1))


def envelope_shift_s(reference: np.ndarray, other: np.ndarray, hop_s: float, max_lag_s: float = 1.0) -> float:
    """Delay of ``other`` relative to ``reference`` by normalised cross-correlation.

    Both envelopes are on the same clock (sample 0 = the video's first frame). A positive
    result means ``other``'s sound comes later. The peak is refined to sub-hop precision
    by a parabola through the three best lags.

    Args:
        reference, other: ``(N,)``/``(M,)`` envelopes (:func:`audio_envelope`).
        hop_s: envelope sample spacing in seconds.
        max_lag_s: largest shift searched.

    Returns:
        Shift in seconds, NaN if either envelope is (nearly) constant, e.g. silence.
    """
    check_array(reference, "N", name="reference")
    check_array(other, "M", name="other")
    n = min(reference.size, other.size)
    max_lag = int(round(max_lag_s / hop_s))
    if n < 4:
        return math.nan
    a = reference[:n] - reference[:n].mean()
    b = other[:n] - other[:n].mean()
    if a.std() < 1e-9 or b.std() < 1e-9:
        return math.nan
    lags = np.arange(-min(max_lag, n - 2), min(max_lag, n - 2) + 1)
    scores = np.empty(lags.size)
    for i, lag in enumerate(lags):
        x, y = (a[: n - lag], b[lag:]) if lag >= 0 else (a[-lag:], b[: n + lag])
        denom = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
        scores[i] = float(np.dot(x, y)) / denom if denom > 0 else -np.inf
    best = int(np.argmax(scores))
    offset = 0.0
    if 0 < best < lags.size - 1 and np.all(np.isfinite(scores[best - 1:best + 2])):
        s0, s1, s2 = scores[best - 1:best + 2]
        curvature = s0 - 2 * s1 + s2
        if curvature < 0:
            offset = 0.5 * (s0 - s2) / curvature
    return float((lags[best] + offset) * hop_s)


def safe_ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; 1 when both are 0, NaN when undefined."""
    if not (math.isfinite(numerator) and math.isfinite(denominator)):
        return math.nan
    if denominator == 0.0:
        return 1.0 if numerator == 0.0 else math.inf
    return numerator / denominator
