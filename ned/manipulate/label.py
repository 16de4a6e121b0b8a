"""The training-free, label-driven manipulator: expression weights -> edited weights.

Given the source clip's fitted weights ``(T, K)`` (:class:`ned.morph.rig.Blendshape`)
and target segments ``[(emotion, intensity), ...]``:

1. the clip is split into consecutive equal parts, one per segment, blended by raised-
   cosine crossfades of ``transition_s`` centred on the boundaries (a partition of unity
   over time, so there is no pop);
2. the emotion part's *neutral baseline* is the face model's neutral, weight 0: the
   identity is the actor's neutral face with any clip-long lip-corner expression taken
   out (:func:`ned.morph.fit.estimate_identity`), so a smile held through the whole clip
   shows in the weights and "neutral" removes it (brows or lids held through the whole
   clip stay in the identity: their neutral position varies too much between faces to
   tell). With ``baseline_percentile`` set, the baseline is instead that per-weight
   percentile of the source clip (for weights measured against an identity that is not
   the clip's own neutral face);
3. each segment's target is ``baseline + offset``, plus ``keep_dynamics`` times the
   source's fast emotion motion (its deviation from a ``dynamics_window_s`` moving
   average), so the face keeps its life (brow flicks while talking) but settles in the new
   emotion. The packaged offsets are the calibrated signatures
   (:mod:`ned.manipulate.emotions`, the mean expression of real acted clips) made
   :data:`LABEL_GAIN` times stronger, their lower/mid face softly limited to
   :data:`LABEL_LIMIT_IOD` (:func:`label_targets`): an edit can take only the emotion part
   of an expression, not the open mouth and teeth that speak with it, and the mean
   expression rendered reads far weaker than the real clips;
4. with intensity ``a``, the output is ``source + a * (target - source)``: 0 returns the
   source exactly, 1 the target, up to 1.5 extrapolates; results are clipped to the
   rig's bounds. "neutral" has a zero offset, so it removes the actor's own expression.
5. speech shapes and blinks (:data:`ned.morph.rig.KEPT_SHAPES`) are copied from the
   source unchanged, always; the targets' held lid narrowing (calibrated or an exemplar
   bank's) is laid over the blinks (:func:`ned.manipulate.lids.narrow_lids`), scaled like
   the rest.

Deterministic: no randomness is drawn (``seed`` is recorded for provenance only).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ned.errors import InputError
from ned.manipulate.emotions import MAX_INTENSITY, EmotionSpec, EmotionTargets, load_emotion_targets
from ned.manipulate.envelope import DEFAULT_TRANSFER_LIMIT_IOD, limit_emotion_motion
from ned.manipulate.lids import DEFAULT_CLOSURE_LIMIT, narrow_lids, soft_limit
from ned.morph.rig import EMOTION_SHAPES, Rig, load_rig, shape_mask
from ned.types import check_array

__all__ = [
    "ManipulateOptions",
    "MIN_FRAMES",
    "segment_weights",
    "neutral_baseline",
    "split_dynamics",
    "blend_towards",
    "manipulate_labels",
    "LABEL_GAIN",
    "LABEL_LIMIT_IOD",
    "strengthen_targets",
    "label_targets",
]

logger = logging.getLogger(__name__)

#: Fewer frames than this cannot be manipulated (baseline and transitions need a clip).
MIN_FRAMES = 10
#: Label mode's offsets are the calibrated mean expressions times this. Measured with
#: ``ned evaluate-suite`` on the MEAD crops: at 1 the edits read as their emotion
#: 0.53 / 0.51 times as often as the real clips (FER2013 / second classifier), at 1.5 (with
#: :data:`LABEL_LIMIT_IOD`) 0.69 / 0.62, no emotion lower on either, identity distance at
#: most 0.33 and mouth r at least 0.92.
LABEL_GAIN = 1.5
#: Soft limit (IOD) of the strengthened offsets' lower/mid-face motion
#: (:func:`ned.manipulate.envelope.limit_emotion_motion`). Unlimited, W009's angry moved
#: dlib's identity embedding 0.39 from her face (0.30 at gain 1, 0.33 with this limit); at
#: the 0.58 of reference mode the smile lost most of its gain (FER2013 0.71 -> 0.59 overall).
LABEL_LIMIT_IOD = 0.8


@dataclass(frozen=True)
class ManipulateOptions:
    """Options of the training-free manipulators (label and reference).

    Attributes:
        intensity: global multiplier of every segment's intensity, in [0, 1.5].
        transition_s: length of the raised-cosine crossfade between segments (seconds, >= 0).
        baseline_percentile: per-weight percentile of a clip taken as its neutral
            baseline, in [0, 50]; None uses the calibration's setting (the face model's
            neutral, weight 0, unless the targets say otherwise).
        keep_dynamics: fraction of the source's fast emotion motion kept, in [0, 1].
        dynamics_window_s: moving-average window that separates the slow emotion state
            from fast motion (seconds, > 0).
        seed: recorded for provenance; the training-free manipulators draw nothing.
        transfer_limit_iod: soft limit (IOD) of the lower/mid-face motion taken from another
            actor (a reference clip, an exemplar bank's targets;
            :func:`ned.manipulate.envelope.limit_lower_face`); None: no limit. The packaged
            targets of label mode have their own (:data:`LABEL_LIMIT_IOD`).
        lid_closure_limit: the most held lid narrowing (blink-weight units, in (0, 1]) laid
            over the target's own blinks, from the targets (calibrated or an exemplar bank's)
            or a reference (:mod:`ned.manipulate.lids`); None: none (the eyes as in the source).
    """

    intensity: float = 1.0
    transition_s: float = 0.5
    baseline_percentile: float | None = None
    keep_dynamics: float = 1.0
    dynamics_window_s: float = 1.0
    seed: int = 0
    transfer_limit_iod: float | None = DEFAULT_TRANSFER_LIMIT_IOD
    lid_closure_limit: float | None = DEFAULT_CLOSURE_LIMIT

    def __post_init__(self) -> None:
        if not 0.0 <= self.intensity <= MAX_INTENSITY:
            raise ValueError(f"intensity must be in [0, {MAX_INTENSITY}], got {self.intensity}")
        if not self.transition_s >= 0:
            raise ValueError(f"transition_s must be >= 0, got {self.transition_s}")
        if self.baseline_percentile is not None and not 0.0 <= self.baseline_percentile <= 50.0:
            raise ValueError(f"baseline_percentile must be in [0, 50] or None, got {self.baseline_percentile}")
        if not 0.0 <= self.keep_dynamics <= 1.0:
            raise ValueError(f"keep_dynamics must be in [0, 1], got {self.keep_dynamics}")
        if not self.dynamics_window_s > 0:
            raise ValueError(f"dynamics_window_s must be > 0, got {self.dynamics_window_s}")
        if not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.transfer_limit_iod is not None and not self.transfer_limit_iod > 0:
            raise ValueError(f"transfer_limit_iod must be > 0 or None, got {self.transfer_limit_iod}")
        if self.lid_closure_limit is not None and not 0 < self.lid_closure_limit <= 1:
            raise ValueError(f"lid_closure_limit must be in (0, 1] or None, got {self.lid_closure_limit}")


def segment_weights(num_frames: int, num_segments: int, fps: float, transition_s: float) -> np.ndarray:
    """Per-frame blend weights of consecutive equal segments.

    Segment ``s`` covers frames ``[s T / S, (s + 1) T / S)``; at each inner boundary the
    weights cross over with a raised cosine of ``transition_s`` seconds centred on it
    (shortened to fit the segments). Rows sum to 1.

    Args:
        num_frames: T >= 1. num_segments: S >= 1. fps: frames per second (> 0).
        transition_s: crossfade length in seconds (>= 0; 0 = hard cut).

    Returns:
        (T, S) float64.

    Raises:
        ValueError: on bad arguments.
    """
    if num_frames < 1 or num_segments < 1:
        raise ValueError(f"need num_frames >= 1 and num_segments >= 1, got {num_frames}, {num_segments}")
    if not fps > 0 or not transition_s >= 0:
        raise ValueError(f"need fps > 0 and transition_s >= 0, got {fps}, {transition_s}")
    t = np.arange(num_frames, dtype=np.float64) + 0.5  # frame centres, in frames
    part = num_frames / num_segments
    half = min(transition_s * fps / 2.0, part / 2.0)
    # cumulative "progress" through the segments: a smooth step at each boundary
    progress = np.zeros(num_frames)
    for s in range(1, num_segments):
        b = s * part
        if half <= 0:
            step = (t >= b).astype(np.float64)
        else:
            x = np.clip((t - (b - half)) / (2.0 * half), 0.0, 1.0)
            step = 0.5 - 0.5 * np.cos(np.pi * x)
        progress += step
    weights = np.zeros((num_frames, num_segments))
    for s in range(num_segments):
        weights[:, s] = np.clip(1.0 - np.abs(progress - s), 0.0, 1.0)
    return weights


def neutral_baseline(expression: np.ndarray, percentile: float | None) -> np.ndarray:
    """A clip's neutral baseline: (K,) float64.

    Args:
        expression: (T, K) weights.
        percentile: per-weight percentile of the clip in [0, 100], or None for the face
            model's neutral (zeros: weights are measured from the actor's neutral face).
    """
    x = np.asarray(expression, np.float64)
    if percentile is None:
        return np.zeros(x.shape[-1])
    return np.percentile(x, percentile, axis=0)


def split_dynamics(expression: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``(T, K)`` weights into a centred moving average (slow) and the rest (fast).

    The average uses edge-replicated padding; ``window`` frames (>= 1, made odd).
    """
    x = np.asarray(expression, np.float64)
    window = max(1, int(window) | 1)
    if window == 1 or len(x) == 1:
        return x.copy(), np.zeros_like(x)
    pad = window // 2
    padded = np.concatenate([np.repeat(x[:1], pad, 0), x, np.repeat(x[-1:], pad, 0)])
    csum = np.cumsum(np.concatenate([np.zeros((1, x.shape[1])), padded]), axis=0)
    slow = (csum[window:] - csum[:-window]) / window
    return slow, x - slow


def blend_towards(
    source: np.ndarray, targets: Sequence[np.ndarray], weights: np.ndarray, intensities: Sequence[float],
    rig: Rig,
) -> np.ndarray:
    """``source + sum_s weights[:, s] * a_s * (targets[s] - source)`` on the emotion part.

    Args:
        source: (T, K). targets: S arrays (T, K) (only emotion columns are read).
        weights: (T, S) segment weights. intensities: S values.
        rig: for the bounds.

    Returns:
        (T, K) float32; kept (speech/blink) columns and frames whose total intensity is
        0 are the source, bit for bit.
    """
    src = np.asarray(source, np.float32)
    emo = shape_mask(EMOTION_SHAPES)
    step = np.zeros(src.shape, np.float64)
    for s, target in enumerate(targets):
        step += (weights[:, s] * float(intensities[s]))[:, None] * (np.asarray(target, np.float64) - src)
    moved = np.clip(src + step, rig.lower, rig.upper).astype(np.float32)
    out = src.copy()
    alpha = (weights * np.asarray(intensities, np.float64)[None, :]).sum(1)
    rows = alpha != 0
    out[np.ix_(rows, emo)] = moved[np.ix_(rows, emo)]
    return out


def _check_source(source: np.ndarray, rig: Rig) -> np.ndarray:
    source = np.asarray(source)
    check_array(source, f"T {rig.num_shapes}", name="source expressions")
    if len(source) < MIN_FRAMES:
        raise InputError(f"the clip has {len(source)} frames; manipulation needs at least {MIN_FRAMES}")
    if not np.isfinite(source).all():
        raise InputError("source expressions contain NaN (frames without a face): interpolate or drop them first")
    return source


def manipulate_labels(
    source: np.ndarray,
    segments: Sequence[EmotionSpec],
    fps: float,
    options: ManipulateOptions = ManipulateOptions(),
    targets: EmotionTargets | None = None,
    rig: Rig | None = None,
) -> np.ndarray:
    """Label-driven manipulation of a clip's expression weights (see the module doc).

    Args:
        source: (T, K) fitted weights of the source clip, T >= :data:`MIN_FRAMES`.
        segments: one or more :class:`EmotionSpec` (consecutive equal parts).
        fps: the clip's frame rate (> 0), for the transition and dynamics windows.
        options: manipulation options.
        targets: the targets (default :func:`label_targets`).
        rig: default the packaged rig (for bounds).

    Returns:
        (T, K) float32 edited weights.

    Raises:
        InputError: too few frames, NaN rows, or no segment.
        ValueError: bad shapes or fps.
    """
    rig = rig or load_rig()
    src = _check_source(source, rig)
    if not segments:
        raise InputError("no target emotion given")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    targets = targets or label_targets()
    intensities = [float(seg.intensity) * options.intensity for seg in segments]
    if not any(intensities):
        return np.asarray(src, np.float32).copy()
    pct = targets.baseline_percentile if options.baseline_percentile is None else options.baseline_percentile
    baseline = neutral_baseline(src, pct)
    _, fast = split_dynamics(src, int(round(options.dynamics_window_s * fps)))
    rest = baseline[None, :] + options.keep_dynamics * fast
    goals = [rest + targets.offset(seg.name)[None, :] for seg in segments]
    weights = segment_weights(len(src), len(segments), fps, options.transition_s)
    logger.debug("label manipulation: %s, baseline %s", [str(s) for s in segments],
                 "zero" if pct is None else f"p{pct:g}")
    closures = soft_limit([targets.closure(seg.name) for seg in segments], options.lid_closure_limit)
    held = (weights * np.asarray(intensities) * closures[None, :]).sum(1, keepdims=True)  # (T, 1): both eyes
    return narrow_lids(blend_towards(src, goals, weights, intensities, rig), src, held, rig)


def strengthen_targets(targets: EmotionTargets, gain: float = LABEL_GAIN,
                       limit_iod: float | None = LABEL_LIMIT_IOD) -> EmotionTargets:
    """Targets whose offsets are ``gain`` times stronger, their lower/mid-face motion softly
    limited to ``limit_iod`` (None: not limited); lid closure unchanged.

    Raises:
        ValueError: ``gain`` <= 0 or a bad limit.
    """
    if not gain > 0:
        raise ValueError(f"gain must be > 0, got {gain}")
    offsets = {e: limit_emotion_motion(np.float32(gain) * o, e, limit_iod) for e, o in targets.offsets.items()}
    meta = {**targets.meta, "label_gain": float(gain), "label_limit_iod": limit_iod}
    return dataclasses.replace(targets, offsets=offsets, meta=meta)


@functools.lru_cache(maxsize=1)
def label_targets() -> EmotionTargets:
    """Label mode's targets: the packaged calibrated ones, strengthened
    (:func:`strengthen_targets` with :data:`LABEL_GAIN` and :data:`LABEL_LIMIT_IOD`)."""
    return strengthen_targets(load_emotion_targets())
