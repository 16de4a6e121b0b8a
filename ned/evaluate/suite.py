"""`ned evaluate-suite`: edit every actor's neutral clip to each emotion and score it
against the same classifier on the actor's real acted clips.

Clips are found by MEAD-style names (``<actor>_<view>_<emotion>_level<k>_<nnn>.mp4``)
or in a MEAD tree (``<actor>/video/<view>/<emotion>/level_<k>/<nnn>.mp4``), see :mod:`ned.labels`. For each
actor with a neutral clip and each target emotion E:

- label-driven: ``ned edit --emotion E`` on the neutral clip;
- reference-driven (with ``--ref-clips``): ``ned edit --ref <other actor's E clip>
  --ref-neutral <that actor's neutral clip>`` (when it has one);
- real: the actor's own acted E clip, if present.

The rate is the fraction of frames (with a dlib face) whose FER2013 argmax is E; the
score of a mode is ``sum(edited rate) / sum(real rate)`` over the emotions that have a
real clip. Speech (mouth-aperture r) and identity (embedding distance) of every edit
come from :func:`ned.evaluate.evaluate_videos`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ned.errors import InputError
from ned.labels import discover_clips
from ned.evaluate.evaluate import EvaluateOptions, evaluate_videos
from ned.evaluate.models import FaceFinder, fer_label, load_emotion_classifier, load_face_models
from ned.manipulate.emotions import canonical_emotion
from ned.media import iter_frames

logger = logging.getLogger(__name__)

SUITE_EMOTIONS = ("angry", "disgusted", "fear", "happy", "sad", "surprised")


def fer_rate(path: Path, emotion: str, *, max_side: int = 640) -> float:
    """Fraction of frames with a dlib face whose FER2013 argmax is ``emotion`` (NaN when
    the emotion has no FER class or no face is found)."""
    label = fer_label(emotion)
    if label is None:
        return float("nan")
    from ned.evaluate.models import FER_LABELS

    target = FER_LABELS.index(label)
    finder = FaceFinder(load_face_models(), max_side=max_side)
    classifier = load_emotion_classifier()
    hits = seen = 0
    for frame in iter_frames(path):
        face = finder(frame.rgb)
        if face is None:
            continue
        seen += 1
        hits += int(np.argmax(classifier.classify(frame.rgb, face.box)) == target)
    return hits / seen if seen else float("nan")


@dataclass(frozen=True)
class SuiteRow:
    """One edit (or real clip) of the suite."""

    actor: str
    emotion: str
    mode: str  # "label", "reference" or "real"
    rate: float
    mouth_r: float | None = None
    identity: float | None = None
    video: str = ""
    reference: str = ""


def _edit_row(actor: str, emotion: str, mode: str, source: Path, edited: Path, reference: str = "") -> SuiteRow:
    result = evaluate_videos(source, edited, EvaluateOptions(emotion=emotion, contact_frames=0, quiet=True))
    return SuiteRow(actor, emotion, mode, float(result.emotion.accuracy_out), float(result.speech.aperture_r),
                    float(result.identity.mean_distance), str(edited), reference)


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
                rows.append(SuiteRow(actor, emotion, "real", fer_rate(real[0].path, emotion), video=str(real[0].path)))
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
    """Per actor and overall: ``score_<mode> = sum(edited rate) / sum(real rate)`` over
    the (actor, emotion) pairs that have a real clip and a finite rate."""
    real = {(r.actor, r.emotion): r.rate for r in rows if r.mode == "real" and np.isfinite(r.rate)}
    out: dict[str, dict[str, float]] = {}
    for scope in sorted({r.actor for r in rows}) + ["overall"]:
        entry = {}
        for mode in ("label", "reference"):
            pairs = [(r.rate, real[(r.actor, r.emotion)]) for r in rows
                     if r.mode == mode and (r.actor, r.emotion) in real and np.isfinite(r.rate)
                     and scope in (r.actor, "overall")]
            if pairs:
                edited, truth = (sum(p[i] for p in pairs) for i in (0, 1))
                entry[f"score_{mode}"] = edited / truth if truth > 0 else float("nan")
        out[scope] = entry
    return out


def format_suite(rows: list[SuiteRow]) -> str:
    """Plain-text table: per actor and emotion, the real rate and each mode's rate, r, identity."""
    lines = [f"{'actor':<8} {'emotion':<10} {'real':>6} {'label':>6} {'ref':>6} {'mouth r':>8} {'ident':>6}",
             "-" * 56]
    keys = sorted({(r.actor, r.emotion) for r in rows})
    for actor, emotion in keys:
        by = {r.mode: r for r in rows if (r.actor, r.emotion) == (actor, emotion)}

        def rate(mode: str) -> str:
            return f"{by[mode].rate:6.2f}" if mode in by else f"{'-':>6}"

        lab = by.get("label")
        lines.append(f"{actor:<8} {emotion:<10} {rate('real')} {rate('label')} {rate('reference')} "
                     f"{(lab.mouth_r if lab else float('nan')):8.3f} {(lab.identity if lab else float('nan')):6.3f}")
    for scope, entry in suite_scores(rows).items():
        parts = ", ".join(f"{k} {v:.2f}" for k, v in entry.items())
        lines.append(f"{scope}: {parts}")
    return "\n".join(lines)
