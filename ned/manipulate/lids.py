"""Held lid narrowing: the part of the eye-blink weights that is held, not blinked.

Blinks are kept from the source (:data:`ned.morph.rig.BLINK_SHAPES`), so an edit never
adds or removes one. But actors also narrow their eyes for seconds at a time, and the
fit puts that into the same weights: on the MEAD crops the median blink weight of M030's
sad clip is 0.84 (0.02 neutral), of his disgusted 0.53, happy 0.35, angry 0.27; W009's
sad 0.33. Drooping upper lids are much of what makes a face read as sad or tired, and
narrowed eyes belong to a real smile and to disgust; discarding them leaves wide-open
eyes in a frowning face. The narrowing comes from a reference clip
(:func:`ned.manipulate.reference.manipulate_reference`), an exemplar bank's or the
calibrated label targets (:attr:`ned.manipulate.emotions.EmotionTargets.lid_closure`).

:func:`held_closure` separates the held part from the blinks (a blink lasts 0.1-0.4 s):
a running 20th percentile over 0.8 s, then a moving average of the same length.
:func:`closure_over_baseline` takes a reference's held closure over its own neutral
level and softly limits it; :func:`add_closure` lays it over the target's own blink
weights so that the target's blinks still close the eye fully:
``out = src + c (1 - src)`` (weights above 1 stay).

Measured with ``ned evaluate-suite`` (FER2013 recognition, limit 0.3): with an exemplar
bank of the other actor, sad rose from 0.88 to 0.94 (W009) and from 0.74 to 0.83 (M030);
reference-mode rates moved by at most 0.03 either way, and identity distances by at most
0.01. The lids droop visibly without marks (the eye content moves rigidly,
:mod:`ned.render.eyes`).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import percentile_filter, uniform_filter1d

from ned.morph.rig import BLINK_SHAPES, Rig, shape_mask

__all__ = ["BLINK", "DEFAULT_CLOSURE_LIMIT", "HOLD_WINDOW_S", "held_closure", "soft_limit", "closure_over_baseline",
           "add_closure", "narrow_lids"]

#: at most this much held closure (blink-weight units, 1 = closed) is taken from a reference
DEFAULT_CLOSURE_LIMIT = 0.3
#: window that separates held narrowing from blinks, seconds
HOLD_WINDOW_S = 0.8
_PERCENTILE = 20.0
#: ``(K,) bool`` the blink columns of a weight vector
BLINK = shape_mask(BLINK_SHAPES)


def held_closure(blink: np.ndarray, fps: float) -> np.ndarray:
    """The held part of blink weights.

    Args:
        blink: ``(T, B)`` blink weights (B eyes), finite.
        fps: frames per second (> 0).

    Returns:
        ``(T, B) float64``: running 20th percentile over :data:`HOLD_WINDOW_S`, smoothed
        by a moving average of the same length (edges replicated).
    """
    x = np.asarray(blink, np.float64)
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    size = max(1, int(round(HOLD_WINDOW_S * fps)) | 1)
    if len(x) == 0 or size == 1:
        return x.copy()
    low = percentile_filter(x, _PERCENTILE, size=(size, 1), mode="nearest")
    return uniform_filter1d(low, size, axis=0, mode="nearest")


def soft_limit(closure: np.ndarray, limit: float | None) -> np.ndarray:
    """``limit * tanh(c / limit)`` of closure ``c >= 0`` (any shape; float64); zeros when
    ``limit`` is None or 0.

    Raises:
        ValueError: a limit outside (0, 1].
    """
    c = np.maximum(np.asarray(closure, np.float64), 0.0)
    if not limit:
        return np.zeros_like(c)
    if not 0 < limit <= 1:
        raise ValueError(f"the lid closure limit must be in (0, 1] (or None), got {limit}")
    return limit * np.tanh(c / limit)


def closure_over_baseline(blink: np.ndarray, baseline: np.ndarray, fps: float,
                          limit: float | None = DEFAULT_CLOSURE_LIMIT) -> np.ndarray:
    """A reference's held lid closure beyond its neutral level, softly limited.

    Args:
        blink: ``(T, B)`` the reference's blink weights.
        baseline: ``(B,)`` its neutral level (e.g. a percentile of a neutral clip).
        fps: the reference's frame rate (> 0).
        limit: the most closure passed on (``limit * tanh(c / limit)``, in (0, 1]);
            None or 0: none.

    Returns:
        ``(T, B) float64`` in ``[0, limit)``.
    """
    if not limit:
        return np.zeros(np.shape(blink), np.float64)
    return soft_limit(held_closure(blink, fps) - np.asarray(baseline, np.float64), limit)


def add_closure(blink: np.ndarray, closure: np.ndarray) -> np.ndarray:
    """Lay held closure ``(T, B)`` in [0, 1] over blink weights ``(T, B)``: ``src + c (1 - src)``.

    A frame whose eye is already closed (weight >= 1) is unchanged.
    """
    src = np.asarray(blink, np.float64)
    return src + np.asarray(closure, np.float64) * np.clip(1.0 - src, 0.0, None)


def narrow_lids(edited: np.ndarray, source: np.ndarray, closure: np.ndarray, rig: Rig) -> np.ndarray:
    """Write held closure into edited weights' blink columns (in place, returned).

    Args:
        edited: ``(T, K) float32`` edited weights (their blink columns are the source's).
        source: ``(T, K)`` the source weights.
        closure: ``(T, B)`` closure per frame and eye, or ``(T, 1)`` for both eyes alike
            (already weighted by segment and intensity).
        rig: for the bounds.

    Returns:
        ``edited``; rows without closure keep the source's blinks bit for bit.
    """
    held = np.clip(np.broadcast_to(np.asarray(closure, np.float64), (len(edited), int(BLINK.sum()))), 0.0, 1.0)
    rows = (held > 0).any(1)
    lids = add_closure(np.asarray(source)[rows][:, BLINK], held[rows])
    edited[np.ix_(rows, BLINK)] = np.clip(lids, rig.lower[BLINK], rig.upper[BLINK])
    return edited
