"""The training-free, reference-driven manipulator: act like another clip.

The reference actor's *emotion part relative to its own neutral* is transferred onto the
target actor's neutral baseline; the target's speech and blinks stay, with the reference's
held lid narrowing laid over the blinks (:mod:`ned.manipulate.lids`). For each
reference clip (one per segment, as with several labels):

1. the reference's neutral baseline is its face model's neutral (weight 0: its identity
   is its own neutral face with any clip-long lip-corner expression taken out, see
   :func:`ned.morph.fit.estimate_identity`), or the per-weight 20th percentile of
   ``reference_neutral`` weights when given (a neutral clip of the same reference actor,
   fitted with the same identity: more faithful when the reference is expressive all the
   way through, since only held lip-corner expressions are kept out of an identity). The
   target's baseline is its own neutral, weight 0, likewise. ``baseline_percentile``, when
   set, replaces both zeros by that percentile of the clip's own weights;
2. its relative motion ``ref(t) - baseline_ref`` is mapped onto the target's timeline:
   ``"loop"`` plays it at its own speed, back and forth (ping-pong, no jump) when it is
   shorter than its segment; ``"stretch"`` resamples it linearly to the segment length;
3. the segment's target is ``baseline_target + relative motion``, where around the mouth
   (:data:`ned.morph.rig.MOUTH_EMOTION_SHAPES`) the reference's motion is its
   ``dynamics_window_s`` moving average plus ``keep_dynamics`` x the target's own fast
   motion: lip corners also move with speech, and the reference's speech-rate corner
   motion belongs to *its* speech (``keep_dynamics = 0`` transfers it frame by frame
   instead). Brows, lids, cheeks and nose follow the reference frame by frame. Measured on
   the MEAD crops (M030 neutral acting like W009 happy): dlib mouth-aperture r 0.87 -> 0.94.
   The lower/mid-face part of the relative motion is then softly limited to
   ``transfer_limit_iod`` (:func:`ned.manipulate.envelope.limit_emotion_motion`): another
   actor's strong grimace would change who the target looks like. A reference that does
   not smile loses its lip-corner pull (the fit explains part of grimaces with it), one that
   smiles has its pull count less towards the limit: the emotion a user names, or, measured
   from the reference actor's neutral face, what the corners do
   (:func:`ned.manipulate.envelope.infer_smile`);
4. segments are blended as in :mod:`ned.manipulate.label` (raised-cosine transitions,
   intensity, bounds, kept shapes).
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ned.errors import InputError
from ned.manipulate.emotions import MAX_INTENSITY
from ned.manipulate.envelope import infer_smile, limit_emotion_motion
from ned.manipulate.lids import BLINK, closure_over_baseline, narrow_lids
from ned.manipulate.label import (
    ManipulateOptions,
    _check_source,
    blend_towards,
    neutral_baseline,
    segment_weights,
    split_dynamics,
)
from ned.morph.rig import MOUTH_EMOTION_SHAPES, Rig, load_rig, shape_mask
from ned.types import check_array

__all__ = ["TIME_MODES", "time_map", "manipulate_reference"]

logger = logging.getLogger(__name__)

TIME_MODES = ("loop", "stretch")
_DEFAULT_PERCENTILE = 20.0
_MOUTH = shape_mask(MOUTH_EMOTION_SHAPES)


def time_map(num_out: int, num_in: int, mode: str = "loop") -> np.ndarray:
    """Fractional source-frame positions for ``num_out`` output frames.

    Args:
        num_out: frames to produce (>= 1). num_in: frames available (>= 1).
        mode: ``"loop"`` (own speed, ping-pong when short) or ``"stretch"`` (resample).

    Returns:
        (num_out,) float64 positions in ``[0, num_in - 1]``.

    Raises:
        ValueError: bad mode or sizes.
    """
    if mode not in TIME_MODES:
        raise ValueError(f"time mode must be one of {TIME_MODES}, got {mode!r}")
    if num_out < 1 or num_in < 1:
        raise ValueError(f"need num_out >= 1 and num_in >= 1, got {num_out}, {num_in}")
    if num_in == 1:
        return np.zeros(num_out)
    if mode == "stretch":
        return np.linspace(0.0, num_in - 1.0, num_out) if num_out > 1 else np.zeros(1)
    return _pingpong(np.arange(num_out), num_in)


def reference_positions(num_frames: int, segment: int, num_segments: int, ref_len: int,
                        time_mode: str = "loop") -> np.ndarray:
    """Which reference frame (fractional) drives each target frame, for one segment.

    The segment's own frames read the reference from its start; the crossfade margins
    before and after simply continue the mapping (``loop``: ping-pong at the reference's
    own speed, even in time so frames before the segment mirror its start; ``stretch``:
    the reference resampled to the segment's length).

    Returns:
        ``(num_frames,) float64`` positions in ``[0, ref_len - 1]``.
    """
    part = num_frames / num_segments
    start = int(np.floor(segment * part))
    if time_mode == "loop":
        return _pingpong(np.abs(np.arange(num_frames) - start), ref_len)
    seg_len = max(1, int(round(part)))
    local = np.clip(np.arange(num_frames) - start, 0, seg_len - 1)
    return time_map(seg_len, ref_len, "stretch")[local]


def _pingpong(k: np.ndarray, num_in: int) -> np.ndarray:
    """Back-and-forth positions of integer times ``k >= 0`` over ``num_in`` frames."""
    if num_in == 1:
        return np.zeros(len(k))
    period = 2 * (num_in - 1)
    k = np.asarray(k) % period
    return np.where(k < num_in, k, period - k).astype(np.float64)


def _sample(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, len(x) - 1)
    f = (pos - i0)[:, None]
    return (1.0 - f) * x[i0] + f * x[i1]


def manipulate_reference(
    source: np.ndarray,
    references: Sequence[np.ndarray],
    fps: float,
    options: ManipulateOptions = ManipulateOptions(),
    *,
    intensities: Sequence[float] | None = None,
    reference_neutral: Sequence[np.ndarray | None] | None = None,
    emotions: Sequence[str | None] | None = None,
    time_mode: str = "loop",
    infer_smiles: bool | None = None,
    rig: Rig | None = None,
) -> np.ndarray:
    """Reference-driven manipulation of a clip's expression weights (see the module doc).

    Args:
        source: (T, K) target clip weights, T >= :data:`ned.manipulate.label.MIN_FRAMES`.
        references: one (T_r, K) weight array per segment, T_r >= 1.
        fps: the target clip's frame rate (> 0).
        options: manipulation options (``keep_dynamics`` and ``dynamics_window_s`` as
            in step 3 of the module doc).
        intensities: per-reference intensity in [0, 1.5] (default 1 each).
        reference_neutral: per reference, optional (T_n, K) weights of a neutral clip of
            the same reference actor (its baseline), or None.
        emotions: per reference, the emotion it acts when the user names it, or None: a
            named emotion that does not smile drops the reference's lip-corner pull
            (:func:`ned.manipulate.emotions.without_stray_smile`); unnamed, with its
            neutral face, the corners' rise decides (``infer_smiles``).
        time_mode: see :func:`time_map`.
        infer_smiles: whether an unnamed reference's weights are measured from its actor's
            neutral face (fitted with a neutral clip's identity, or given
            ``reference_neutral``), so that where its corners go tells a smile
            (:func:`ned.manipulate.envelope.infer_smile`); None: when ``reference_neutral`` is given.
        rig: default the packaged rig.

    Returns:
        (T, K) float32 edited weights.

    Raises:
        InputError: too few frames, NaN rows, no reference, empty reference, bad intensity.
        ValueError: bad shapes, fps or time mode.
    """
    rig = rig or load_rig()
    src = _check_source(source, rig)
    if time_mode not in TIME_MODES:
        raise ValueError(f"time_mode must be one of {TIME_MODES}, got {time_mode!r}")
    if not references:
        raise InputError("no reference given")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    n = len(references)
    intensities = [1.0] * n if intensities is None else [float(a) for a in intensities]
    if len(intensities) != n or not all(0.0 <= a <= MAX_INTENSITY for a in intensities):
        raise InputError(f"need one intensity in [0, {MAX_INTENSITY}] per reference, got {intensities}")
    neutrals = list(reference_neutral) if reference_neutral is not None else [None] * n
    if len(neutrals) != n:
        raise ValueError(f"reference_neutral: expected {n} entries, got {len(neutrals)}")
    named = list(emotions) if emotions is not None else [None] * n
    if len(named) != n:
        raise ValueError(f"emotions: expected {n} entries, got {len(named)}")
    alphas = [a * options.intensity for a in intensities]
    if not any(alphas):
        return np.asarray(src, np.float32).copy()
    pct = options.baseline_percentile
    base_target = neutral_baseline(src, pct)
    weights = segment_weights(len(src), n, fps, options.transition_s)
    window = int(round(options.dynamics_window_s * fps))
    _, fast = split_dynamics(src, window)
    goals, closures = [], []
    for s, (ref, neu, emotion) in enumerate(zip(references, neutrals, named)):
        ref = np.asarray(ref)
        check_array(ref, f"T {rig.num_shapes}", name=f"reference {s}")
        if len(ref) == 0 or not np.isfinite(ref).all():
            raise InputError(f"reference {s} has no usable frames (empty or NaN rows)")
        if neu is not None:
            check_array(np.asarray(neu), f"T {rig.num_shapes}", name=f"reference_neutral {s}")
            base_ref = neutral_baseline(neu, _DEFAULT_PERCENTILE if pct is None else pct)
        else:
            base_ref = neutral_baseline(ref, pct)
        relative = ref.astype(np.float64) - base_ref
        if options.keep_dynamics > 0:  # around the mouth: the reference's slow expression only
            slow, _ = split_dynamics(relative, window)
            relative = np.where(_MOUTH, slow, relative)
        if emotion is None and (neu is not None if infer_smiles is None else infer_smiles):
            smile = infer_smile(relative, rig)  # a smile or a grimace's pull: the user need not name it
            emotion = None if smile is None else ("happy" if smile else "neutral")
        relative = limit_emotion_motion(relative, emotion, options.transfer_limit_iod, rig)
        closure = closure_over_baseline(ref[:, BLINK], base_ref[BLINK], fps, options.lid_closure_limit)
        # the segment's own frames read the reference from its start; the crossfade
        # margins before/after simply continue the mapping
        pos = reference_positions(len(src), s, n, len(ref), time_mode)
        goals.append(base_target[None, :] + _sample(relative, pos) + options.keep_dynamics * fast * _MOUTH)
        closures.append(_sample(closure, pos))
    logger.debug("reference manipulation: %d reference(s), baseline %s", n, "zero" if pct is None else f"p{pct:g}")
    held = sum(weights[:, s, None] * alphas[s] * closures[s] for s in range(n))
    return narrow_lids(blend_towards(src, goals, weights, alphas, rig), src, held, rig)
