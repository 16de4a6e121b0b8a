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

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from ned.appearance.exemplars import load_bank
from ned.appearance.hook import AppearanceFrame, ExpressionAppearance, ReferenceFrame, emotion_delta
from ned.appearance.options import AppearanceOptions
from ned.manipulate.label import segment_weights
from ned.manipulate.reference import reference_positions
from ned.media import iter_frames

MAX_REFERENCE_FRAMES = 300  # reference crops kept in memory (about 200 KB each at 256 px)
NEUTRAL_FRAMES = 5
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
    norms = np.linalg.norm(np.stack([emotion_delta(np.zeros_like(e), e) for e in expressions[valid]]), axis=1)
    neutral_ids = set(valid[np.argsort(norms)[:NEUTRAL_FRAMES]].tolist())
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
) -> tuple[ExpressionAppearance | None, Callable[[int], AppearanceFrame] | None]:
    """The appearance function and payloads of an edit (``(None, None)`` when off).

    Args:
        source_expressions, new_expressions: ``(T, K)`` weights before and after the edit.
        emotions: the label segments' emotions (empty in reference mode).
        references: one :class:`ReferenceClip` per reference segment (reference mode).

    Raises:
        ModelFileError: a bad exemplar bank.
    """
    if options.mode == "off":
        return None, None
    n = len(source_expressions)
    segments = max(1, len(references) or len(emotions))
    segment_of = np.argmax(segment_weights(n, segments, fps, transition_s), axis=1)
    positions = [reference_positions(n, s, segments, r.valid_count) for s, r in enumerate(references)]
    appearance = ExpressionAppearance(options, bank=load_bank(exemplars) if exemplars else None,
                                      reference_neutral=references[0].neutral if references else ())

    def payload(t: int) -> AppearanceFrame:
        s = int(segment_of[t])
        reference = references[s].at(positions[s][t]) if references else None
        emotion = emotions[s] if emotions and not references else None
        return AppearanceFrame(source_expressions[t], new_expressions[t], t, emotion, reference)

    return appearance, payload
