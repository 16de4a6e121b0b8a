"""`ned evaluate-suite`: edit every actor's neutral clip to each emotion and score it
against the same classifier on the actor's real acted clips.

Clips are found by MEAD-style names (``<actor>_<view>_<emotion>_level<k>_<nnn>.mp4``)
or in a MEAD tree (``<actor>/video/<view>/<emotion>/level_<k>/<nnn>.mp4``), see :mod:`ned.labels`. For each
actor with a neutral clip and each target emotion E:

- label-driven: ``ned edit --emotion E`` on the neutral clip;
- reference-driven (with ``--ref-clips``): ``ned edit --ref <other actor's E clip>
  --ref-neutral <that actor's neutral clip>`` (when it has one);
- real: the actor's own acted E clip, if present;
- unedited: the neutral clip itself (how often E is read before any edit).

The rate is the fraction of frames (with a dlib face) whose FER2013 argmax is E; the
score of a mode is ``sum(edited rate) / sum(real rate)`` over the emotions that have a
real clip. Every clip is also rated by a second, independent classifier
(:mod:`ned.evaluate.second`), scored the same way against its own real rates, so that a
gain only one classifier sees shows as such. Speech (mouth-aperture r) and identity
(embedding distance) of every edit come from :func:`ned.evaluate.evaluate_videos`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ned.errors import InputError
from ned.labels import discover_clips
from ned.evaluate.evaluate import EvaluateOptions, evaluate_videos
from ned.evaluate.models import FER_LABELS, FaceFinder, fer_label, load_emotion_classifier, load_face_models
from ned.manipulate.emotions import canonical_emotion
from ned.media import iter_frames

logger = logging.getLogger(__name__)

SUITE_EMOTIONS = ("angry", "disgusted", "fear", "happy", "sad", "surprised")


def clip_votes(path: str | Path, max_side: int = 640) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's winning class, by FER2013 and by the second classifier (cached per
    file version: the neutral clip is rated once for every emotion).

    Args:
        path: a video; max_side: dlib finds faces on frames scaled to this longer side.

    Returns:
        Two ``(N,) int64`` arrays of :data:`ned.evaluate.models.FER_LABELS` indices, one
        entry per frame with a dlib face.
    """
    st = Path(path).stat()
    return _clip_votes(str(path), st.st_mtime_ns, st.st_size, max_side)


@functools.lru_cache(maxsize=32)
def _clip_votes(path: str, mtime_ns: int, size: int, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    from ned.evaluate.second import load_second_classifier

    finder = FaceFinder(load_face_models(), max_side=max_side)
    fer, second = load_emotion_classifier(), load_second_classifier()
    votes: list[tuple[int, int]] = []
    for frame in iter_frames(path):
        face = finder(frame.rgb)
        if face is not None:
            votes.append((int(np.argmax(fer.classify(frame.rgb, face.box))),
                          int(np.argmax(second.classify(frame.rgb, face.box)))))
    both = np.array(votes, np.int64).reshape(-1, 2)
    return both[:, 0], both[:, 1]


def clip_rates(path: Path, emotion: str) -> tuple[float, float]:
    """Fractions of the frames with a dlib face that FER2013 and the second classifier
    read as ``emotion`` (NaN when it has no FER class or no face is found)."""
    label = fer_label(emotion)
    if label is None:
        return float("nan"), float("nan")
    target = FER_LABELS.index(label)
    rates = [float(np.mean(v == target)) if len(v) else float("nan") for v in clip_votes(path)]
    return rates[0], rates[1]


@dataclass(frozen=True)
class SuiteRow:
    """One edit (or real clip) of the suite."""

    actor: str
    emotion: str
    mode: str  # "label", "reference", "real" or "unedited" (the neutral clip itself)
    rate: float  # FER2013 recognition rate of ``emotion``
    mouth_r: float | None = None
    identity: float | None = None
    video: str = ""
    reference: str = ""
    second_rate: float = float("nan")  # the second classifier's (:mod:`ned.evaluate.second`)


def _edit_row(actor: str, emotion: str, mode: str, source: Path, edited: Path, reference: str = "") -> SuiteRow:
    result = evaluate_videos(source, edited, EvaluateOptions(emotion=emotion, contact_frames=0, quiet=True))
    return SuiteRow(actor, emotion, mode, float(result.emotion.accuracy_out), float(result.speech.aperture_r),
                    float(result.identity.mean_distance), str(edited), reference, clip_rates(edited, emotion)[1])


def _clip_row(actor: str, emotion: str, mode: str, clip: Path) -> SuiteRow:
    rate, second = clip_rates(clip, emotion)
    return SuiteRow(actor, emotion, mode, rate, video=str(clip), second_rate=second)


def run_suite(clips_dir: Path, out_dir: Path, *, emotions: Iterable[str] = SUITE_EMOTIONS,
              ref_clips_dir: Path | None = None, exemplars: Path | None = None, edit_options=None,
              name_references: bool = False, quiet: bool = True) -> list[SuiteRow]:
    """Run the suite; edited clips go to ``out_dir/<actor>/``.

    Args:
        exemplars: an exemplar bank for the label-driven edits (``ned exemplars build``).
        name_references: reference-driven edits also name the reference's labelled emotion
            (``ned edit --ref <clip> --emotion E``), as a user who knows what it acts would.

    Raises:
        InputError: no labelled clips, or no actor with a neutral clip.
    """
    from ned.manipulate.plan import ManipulationSpec
    from ned.pipeline import EditOptions, analyse_clip, edit_analysed

    emotions = tuple(canonical_emotion(e) for e in emotions)
    clips = discover_clips(clips_dir)
    refs = discover_clips(ref_clips_dir) if ref_clips_dir is not None else []
    neutral = {}
    for c in clips:
        if c.emotion == "neutral":
            neutral.setdefault(c.actor, c)
    if not neutral:
        raise InputError(f"{clips_dir}: no actor has a neutral clip to edit")
    base = edit_options or EditOptions(quiet=quiet)
    base = dataclasses.replace(base, exemplars=exemplars) if exemplars is not None else base
    rows: list[SuiteRow] = []
    for actor, src in sorted(neutral.items()):
        analysis = analyse_clip(src.path, base.track, quiet=quiet)
        for emotion in emotions:
            real = [c for c in clips if c.actor == actor and c.emotion == emotion]
            if real:
                rows.append(_clip_row(actor, emotion, "real", real[0].path))
            rows.append(_clip_row(actor, emotion, "unedited", src.path))
            out = out_dir / actor / f"label_{emotion}.mp4"
            opts = dataclasses.replace(base, manipulation=ManipulationSpec.from_strings([emotion], exemplars=exemplars))
            edit_analysed(analysis, src.path, out, opts)
            rows.append(_edit_row(actor, emotion, "label", src.path, out))
            for ref in [r for r in refs if r.actor != actor and r.emotion == emotion][:1]:
                out = out_dir / actor / f"ref_{emotion}_{ref.actor}.mp4"
                ref_neutral = next((r for r in refs if r.actor == ref.actor and r.emotion == "neutral"), None)
                calm = analyse_clip(ref_neutral.path, base.track, quiet=quiet, what="reference neutral") \
                    if ref_neutral is not None else None
                ref_analysis = analyse_clip(ref.path, base.track, quiet=quiet, what="reference",
                                            identity=calm.model.identity if calm is not None else None)
                spec = ManipulationSpec.from_strings([emotion] if name_references else (), references=[ref.path],
                                                     reference_neutral=ref_neutral.path if ref_neutral else None)
                edit_analysed(analysis, src.path, out, dataclasses.replace(base, manipulation=spec), [ref_analysis],
                              reference_neutral=calm)
                rows.append(_edit_row(actor, emotion, "reference", src.path, out, str(ref.path)))
    return rows


def suite_scores(rows: list[SuiteRow]) -> dict[str, dict[str, float]]:
    """Per actor and overall: ``score_<mode> = sum(rate) / sum(real rate)`` over the
    (actor, emotion) pairs that have a real clip and a finite rate, for the edits
    (``label``, ``reference``) and the unedited neutral clip; ``second_score_<mode>`` the
    same with the second classifier's rates."""
    out: dict[str, dict[str, float]] = {}
    for prefix, value in (("", lambda r: r.rate), ("second_", lambda r: r.second_rate)):
        real = {(r.actor, r.emotion): value(r) for r in rows if r.mode == "real" and np.isfinite(value(r))}
        for scope in sorted({r.actor for r in rows}) + ["overall"]:
            entry = out.setdefault(scope, {})
            for mode in ("label", "reference", "unedited"):
                pairs = [(value(r), real[(r.actor, r.emotion)]) for r in rows
                         if r.mode == mode and (r.actor, r.emotion) in real and np.isfinite(value(r))
                         and scope in (r.actor, "overall")]
                if pairs:
                    edited, truth = (sum(p[i] for p in pairs) for i in (0, 1))
                    entry[f"{prefix}score_{mode}"] = edited / truth if truth > 0 else float("nan")
    return out


def format_suite(rows: list[SuiteRow]) -> str:
    """Plain-text table: per actor and emotion, the rates of the real clip, the unedited
    neutral clip and each mode (FER2013 / second classifier), the label edit's mouth r and
    identity distance; then the scores."""
    modes = ("real", "unedited", "label", "reference")
    lines = [f"{'actor':<8} {'emotion':<10} " + " ".join(f"{m[:9]:>11}" for m in modes) + f" {'mouth r':>8} {'ident':>6}",
             "-" * 88]
    keys = sorted({(r.actor, r.emotion) for r in rows})
    for actor, emotion in keys:
        by = {r.mode: r for r in rows if (r.actor, r.emotion) == (actor, emotion)}

        def rate(mode: str) -> str:
            return f"{by[mode].rate:5.2f}/{by[mode].second_rate:<5.2f}" if mode in by else f"{'-':>11}"

        lab = by.get("label")
        lines.append(f"{actor:<8} {emotion:<10} " + " ".join(rate(m) for m in modes) + " "
                     f"{(lab.mouth_r if lab else float('nan')):8.3f} {(lab.identity if lab else float('nan')):6.3f}")
    lines.append("rates: FER2013/second classifier")
    for scope, entry in suite_scores(rows).items():
        parts = ", ".join(f"{k} {v:.2f}" for k, v in entry.items())
        lines.append(f"{scope}: {parts}")
    return "\n".join(lines)
