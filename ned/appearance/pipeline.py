"""Wiring of the appearance step into a streamed edit.

:func:`plan_appearance` turns an edit's request (label or reference mode, an optional
exemplar bank) into the renderer's appearance function and its per-frame payloads
(:class:`~ned.appearance.hook.AppearanceFrame`): the source and edited weights of the
frame, the segment's emotion, and in reference mode the reference frame that drives it
(the same frame the reference manipulator reads, see
:func:`ned.manipulate.reference.reference_positions`) with the reference's least
expressive frames as its neutral.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from ned.appearance.exemplars import ExemplarBank, bank_from_frames, concat_banks, load_bank, select_frames
from ned.appearance.hook import AppearanceFrame, ExpressionAppearance, ReferenceFrame, emotion_delta
from ned.appearance.options import AppearanceOptions
from ned.manipulate.label import segment_weights
from ned.manipulate.reference import reference_positions
from ned.media import iter_frames

logger = logging.getLogger(__name__)

MAX_REFERENCE_FRAMES = 300  # reference crops kept in memory (about 200 KB each at 256 px)
NEUTRAL_FRAMES = 5
OWN_EXEMPLARS = 8  # own frames kept per segment
OWN_MIN_SHARE = 0.5  # a frame lends its detail when it shows at least half the requested change
#: ... and its expression points the way of the change: on the MEAD crops M030's smiling
#: frames score 0.72-0.85 against "happy", his neutral speech 0.33-0.46; the winks and
#: frowns of an exaggerated-expressions clip (talking/d3) 0.54-0.68
OWN_MIN_COSINE = 0.7
CROP = 256


@dataclass(frozen=True)
class ReferenceClip:
    """A reference clip's face crops and fits, as the appearance step reads them.

    Attributes:
        frames: reference frames (crops around the face, mesh in crop pixels, weights),
            one per kept valid frame, in time order.
        positions: ``(V,)`` index into the clip's valid frames of each kept frame.
        neutral: its least expressive frames.
        valid_count: number of valid frames of the clip (the reference manipulator's length).
    """

    frames: tuple[ReferenceFrame, ...]
    positions: np.ndarray
    neutral: tuple[ReferenceFrame, ...]
    valid_count: int

    def at(self, valid_position: float) -> ReferenceFrame:
        """The kept frame nearest to a (fractional) position among the valid frames."""
        k = int(np.argmin(np.abs(self.positions - valid_position)))
        return self.frames[k]


def calmest_frames(expressions: np.ndarray, count: int = NEUTRAL_FRAMES) -> np.ndarray:
    """Indices of the ``count`` frames with the smallest emotion part (NaN rows skipped): ``(n,) int64``."""
    x = np.asarray(expressions)
    valid = np.flatnonzero(np.isfinite(x).all(axis=1))
    norms = np.linalg.norm(emotion_delta(np.zeros_like(x[valid]), x[valid]), axis=1)
    return valid[np.argsort(norms, kind="stable")[:count]].astype(np.int64)


def _crop_face(rgb: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ``CROP x CROP`` crop of a square box 1.6x the mesh's extent, and the points in it."""
    pts = landmarks[:, :2]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre, side = (lo + hi) / 2, float((hi - lo).max()) * 1.6
    scale = CROP / side
    m = np.array([[scale, 0, CROP / 2 - scale * centre[0]], [0, scale, CROP / 2 - scale * centre[1]]])
    crop = cv2.warpAffine(rgb, m, (CROP, CROP), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    out = landmarks.copy()
    out[:, :2] = pts @ m[:, :2].T + m[:, 2]
    return crop, out.astype(np.float32)


def load_reference_clip(path: Path, landmarks: np.ndarray, expressions: np.ndarray, *,
                        neutral_only: bool = False) -> ReferenceClip:
    """Decode a reference clip's face crops (at most :data:`MAX_REFERENCE_FRAMES`).

    Args:
        landmarks: ``(T, 478, 3)`` the clip's tracked landmarks (NaN where no face).
        expressions: ``(T, K)`` its fitted weights (NaN where no face).
        neutral_only: keep only its calmest frames (``frames`` left empty).
    """
    valid = np.flatnonzero(np.isfinite(expressions).all(axis=1))
    stride = max(1, int(np.ceil(len(valid) / MAX_REFERENCE_FRAMES)))
    keep = set() if neutral_only else set(valid[::stride].tolist())
    neutral_ids = set(calmest_frames(expressions).tolist())
    frames, positions, neutral = [], [], []
    for frame in iter_frames(path):
        t = frame.index
        if t in keep or t in neutral_ids:
            crop, pts = _crop_face(frame.rgb, landmarks[t])
            ref = ReferenceFrame(crop, pts, expressions[t].astype(np.float32))
            if t in keep:
                frames.append(ref)
                positions.append(int(np.searchsorted(valid, t)))
            if t in neutral_ids:
                neutral.append(ref)
    return ReferenceClip(tuple(frames), np.asarray(positions, np.float64), tuple(neutral), len(valid))


def own_exemplar_frames(source_expressions: np.ndarray, new_expressions: np.ndarray, segment_of: np.ndarray,
                        *, count: int = OWN_EXEMPLARS, min_share: float = OWN_MIN_SHARE,
                        min_cosine: float = OWN_MIN_COSINE, min_gap: int = 5) -> dict[int, np.ndarray]:
    """Frames of the clip itself that already show a segment's requested emotion change.

    The clip's neutral is the mean of its :data:`NEUTRAL_FRAMES` calmest frames (smallest
    emotion part). Per segment, the requested change is the mean over its frames of
    ``new - source`` on the emotion part; a frame qualifies when its own expression over
    the neutral projects onto that change by at least ``min_share`` of it *and* points the
    same way (cosine >= ``min_cosine``: a wink or a frown that happens to carry some cheek
    raise must not lend its creases to a smile). The ``count`` strongest qualifying
    frames, ``min_gap`` frames apart, are kept.

    Args:
        source_expressions, new_expressions: ``(T, K)`` weights (NaN rows: no face).
        segment_of: ``(T,) int`` each frame's segment.

    Returns:
        ``{segment: (n,) int64 frame indices}`` for segments with at least one frame.
    """
    src = np.asarray(source_expressions, np.float64)
    valid = np.isfinite(src).all(axis=1) & np.isfinite(new_expressions).all(axis=1)
    if not valid.any():
        return {}
    known = np.where(valid[:, None], src, 0.0)
    own = emotion_delta(np.zeros_like(known), known).astype(np.float64)
    own -= own[calmest_frames(np.where(valid[:, None], src, np.nan))].mean(axis=0)
    out = {}
    for s in np.unique(segment_of[valid]):
        rows = valid & (segment_of == s)
        asked = emotion_delta(src[rows], np.asarray(new_expressions)[rows]).mean(axis=0)
        norm2 = float(asked @ asked)
        if norm2 < 1e-6:
            continue
        share = np.where(valid, own @ asked / norm2, np.nan)
        cosine = own @ asked / np.maximum(np.linalg.norm(own, axis=1) * np.sqrt(norm2), 1e-12)
        share[(share < min_share) | (cosine < min_cosine)] = np.nan
        if np.isfinite(share).any():
            out[int(s)] = select_frames(share, count, min_gap)
    return out


def load_own_exemplars(path: Path, landmarks: np.ndarray, source_expressions: np.ndarray,
                       new_expressions: np.ndarray, segment_of: np.ndarray, emotions: Sequence[str],
                       options: AppearanceOptions) -> ExemplarBank | None:
    """A bank of the clip's own frames that show the requested emotions (see
    :func:`own_exemplar_frames`), relative to its calmest frames; None when none does.

    Decodes the clip once more, keeping only those frames' face crops.
    """
    picks = own_exemplar_frames(source_expressions, new_expressions, segment_of)
    if not picks:
        return None
    calm = calmest_frames(source_expressions)
    wanted = set(calm.tolist()).union(*[set(v.tolist()) for v in picks.values()])
    crops = {}
    for frame in iter_frames(path):
        if frame.index in wanted:
            crops[frame.index] = _crop_face(frame.rgb, landmarks[frame.index])
    neutral = [crops[t] for t in calm if t in crops]
    if not neutral:
        return None
    base = source_expressions[calm].mean(axis=0)
    banks = [bank_from_frames(neutral, [(*crops[t], source_expressions[t]) for t in idx if t in crops],
                              emotions[s] if s < len(emotions) else None, base, options)
             for s, idx in sorted(picks.items())]
    logger.info("own footage: %s", ", ".join(f"{len(b)} frame(s) for {b.emotions[0]}" for b in banks if len(b)))
    return concat_banks(banks)


def plan_appearance(
    source_expressions: np.ndarray,
    new_expressions: np.ndarray,
    *,
    fps: float,
    emotions: Sequence[str],
    transition_s: float,
    options: AppearanceOptions,
    exemplars: Path | None = None,
    references: Sequence[ReferenceClip] = (),
    own_footage: tuple[Path, np.ndarray] | None = None,
) -> tuple[ExpressionAppearance | None, Callable[[int], AppearanceFrame] | None]:
    """The appearance function and payloads of an edit (``(None, None)`` when off).

    Args:
        source_expressions, new_expressions: ``(T, K)`` weights before and after the edit.
        emotions: the label segments' emotions (empty in reference mode).
        references: one :class:`ReferenceClip` per reference segment (reference mode).
        own_footage: ``(clip path, (T, 478, 3) landmarks)`` of the edited clip: in label
            mode its own frames that already show the requested emotion lend their detail
            (:func:`load_own_exemplars`), with the bank's exemplars when both are given.

    Raises:
        ModelFileError: a bad exemplar bank.
    """
    if options.mode == "off":
        return None, None
    n = len(source_expressions)
    segments = max(1, len(references) or len(emotions))
    segment_of = np.argmax(segment_weights(n, segments, fps, transition_s), axis=1)
    positions = [reference_positions(n, s, segments, r.valid_count) for s, r in enumerate(references)]
    banks = [load_bank(exemplars)] if exemplars else []
    if own_footage is not None and emotions and not references and options.mode in ("auto", "reference"):
        own = load_own_exemplars(own_footage[0], own_footage[1], source_expressions, new_expressions, segment_of,
                                 emotions, options)
        banks += [own] if own is not None else []
    appearance = ExpressionAppearance(options, bank=concat_banks(banks) if banks else None,
                                      reference_neutral=references[0].neutral if references else ())

    def payload(t: int) -> AppearanceFrame:
        s = int(segment_of[t])
        reference = references[s].at(positions[s][t]) if references else None
        emotion = emotions[s] if emotions and not references else None
        return AppearanceFrame(source_expressions[t], new_expressions[t], t, emotion, reference)

    return appearance, payload
