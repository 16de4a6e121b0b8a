"""Emotion names, the ``happy:0.5`` syntax, and each emotion's target expression pattern.

Emotions are NED's seven (neutral, happy, angry, sad, surprised, fear, disgusted) plus
contempt; the usual aliases (surprise, fearful, disgust, ...) are accepted. A segment is
written ``name`` or ``name:intensity`` with intensity in ``[0, MAX_INTENSITY]`` (0 leaves
the clip unchanged, 1 is the calibrated emotion, up to 1.5 exaggerates it).

Target patterns, in :class:`ned.morph.rig.Blendshape` weights of the emotion part:

- :data:`EMFACS`: Ekman's EMFACS prototypes (happy 6+12, sad 1+4+15, surprised 1+2+5,
  fear 1+2+4+5+7+20, angry 4+5+7+23, disgusted 9+10+15, contempt unilateral 12+14
  (the rig has no separate AU14: in a frontal mesh a dimpler is a unilateral corner
  pull), unit weights; a fallback and a reference for reports.
- calibrated targets (``ned/data/emotion_targets.json``, written by
  ``scripts/calibrate_emotions.py``): each emotion's offset from the actor's neutral
  (weight 0: the face model's identity is the actor's neutral face), measured on real
  acted footage (MEAD, two actors): per actor, the offset that turns the actor's neutral
  clip into one whose mean emotion part equals the real emotion clip's; clipped at 0
  (EMFACS actions are one-signed); actors pooled with weights inverse to the square of
  their neutral-to-emotion distance, so an expressive actor does not dominate. These are
  what the manipulators use by default. They follow the footage, not the prototypes:
  the actors use actions outside the prototypes (nose wrinkle and lip stretch in angry,
  stretch in sad and fear), and leaving those out moves the conversion away from real
  acted emotion (see the script for the measurements, and the calibration report in the
  JSON file, ``"check"``, for how close each actor's conversion comes).
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable

import numpy as np

from ned.errors import InputError, ModelFileError
from ned.morph.rig import EMOTION_SHAPES, Blendshape

B = Blendshape

__all__ = [
    "EMOTIONS",
    "NED_EMOTIONS",
    "ALIASES",
    "MAX_INTENSITY",
    "EMFACS",
    "EmotionSpec",
    "EmotionTargets",
    "canonical_emotion",
    "parse_emotion",
    "parse_emotions",
    "emfacs_pattern",
    "SMILE_SHAPES",
    "without_stray_smile",
    "smiles",
    "load_emotion_targets",
    "emotion_targets_path",
]

logger = logging.getLogger(__name__)

#: NED's seven emotions, in its order.
NED_EMOTIONS: tuple[str, ...] = ("neutral", "happy", "angry", "sad", "surprised", "fear", "disgusted")
#: Every emotion this project knows (NED's seven + contempt).
EMOTIONS: tuple[str, ...] = NED_EMOTIONS + ("contempt",)
ALIASES: dict[str, str] = {
    "surprise": "surprised", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "disgust": "disgusted", "happiness": "happy", "joy": "happy", "anger": "angry",
    "sadness": "sad", "contemptuous": "contempt", "calm": "neutral",
}
MAX_INTENSITY = 1.5

#: EMFACS prototypes as unit weights on the rig (contempt on the person's left side).
EMFACS: dict[str, dict[Blendshape, float]] = {
    "neutral": {},
    "happy": {B.CHEEK_RAISE_L: 1, B.CHEEK_RAISE_R: 1, B.LIP_CORNER_PULL_L: 1, B.LIP_CORNER_PULL_R: 1},
    "sad": {B.BROW_INNER_UP_L: 1, B.BROW_INNER_UP_R: 1, B.BROW_DOWN_L: 1, B.BROW_DOWN_R: 1,
            B.LIP_CORNER_DEPRESS_L: 1, B.LIP_CORNER_DEPRESS_R: 1},
    "surprised": {B.BROW_INNER_UP_L: 1, B.BROW_INNER_UP_R: 1, B.BROW_OUTER_UP_L: 1, B.BROW_OUTER_UP_R: 1,
                  B.UPPER_LID_UP_L: 1, B.UPPER_LID_UP_R: 1},
    "fear": {B.BROW_INNER_UP_L: 1, B.BROW_INNER_UP_R: 1, B.BROW_OUTER_UP_L: 1, B.BROW_OUTER_UP_R: 1,
             B.BROW_DOWN_L: 1, B.BROW_DOWN_R: 1, B.UPPER_LID_UP_L: 1, B.UPPER_LID_UP_R: 1,
             B.LID_TIGHTEN_L: 1, B.LID_TIGHTEN_R: 1, B.LIP_STRETCH_L: 1, B.LIP_STRETCH_R: 1},
    "angry": {B.BROW_DOWN_L: 1, B.BROW_DOWN_R: 1, B.UPPER_LID_UP_L: 1, B.UPPER_LID_UP_R: 1,
              B.LID_TIGHTEN_L: 1, B.LID_TIGHTEN_R: 1, B.LIP_TIGHTEN: 1},
    "disgusted": {B.NOSE_WRINKLE: 1, B.UPPER_LIP_RAISE: 1, B.LIP_CORNER_DEPRESS_L: 1, B.LIP_CORNER_DEPRESS_R: 1},
    "contempt": {B.LIP_CORNER_PULL_L: 1},
}


@dataclass(frozen=True)
class EmotionSpec:
    """One segment's emotion.

    Attributes:
        name: a canonical name from :data:`EMOTIONS`.
        intensity: 0 = unchanged, 1 = full, up to :data:`MAX_INTENSITY`.
    """

    name: str
    intensity: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in EMOTIONS:
            raise ValueError(f"unknown emotion {self.name!r}; valid: {', '.join(EMOTIONS)}")
        if not 0.0 <= float(self.intensity) <= MAX_INTENSITY:
            raise ValueError(f"intensity must be in [0, {MAX_INTENSITY}], got {self.intensity}")

    def __str__(self) -> str:
        return self.name if self.intensity == 1.0 else f"{self.name}:{self.intensity:g}"


def canonical_emotion(name: str) -> str:
    """The canonical name of an emotion or alias (case-insensitive).

    Raises:
        InputError: for an unknown name, listing the valid ones.
    """
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in EMOTIONS:
        raise InputError(f"unknown emotion {name!r}; valid emotions: {', '.join(EMOTIONS)} "
                         f"(aliases: {', '.join(sorted(ALIASES))})")
    return key


def parse_emotion(text: str, intensity: float = 1.0) -> EmotionSpec:
    """Parse ``name`` or ``name:intensity`` (e.g. ``happy:0.5``).

    Args:
        text: the segment text.
        intensity: the intensity when the text gives none.

    Raises:
        InputError: unknown emotion, unparsable or out-of-range intensity.
    """
    name, sep, value = str(text).partition(":")
    emotion = canonical_emotion(name)
    if sep:
        try:
            intensity = float(value)
        except ValueError:
            raise InputError(f"bad intensity in {text!r}: expected a number like 'happy:0.5'") from None
    if not (np.isfinite(intensity) and 0.0 <= intensity <= MAX_INTENSITY):
        raise InputError(f"intensity of {text!r} must be in [0, {MAX_INTENSITY}], got {intensity}")
    return EmotionSpec(emotion, float(intensity))


def parse_emotions(items: Iterable[str], intensity: float = 1.0) -> list[EmotionSpec]:
    """Parse several segments (``["happy", "angry:0.5"]``); see :func:`parse_emotion`.

    Raises:
        InputError: on any bad item, or when there is none.
    """
    specs = [parse_emotion(item, intensity) for item in items]
    if not specs:
        raise InputError(f"no target emotion given; valid emotions: {', '.join(EMOTIONS)}")
    return specs


def emfacs_pattern(name: str) -> np.ndarray:
    """The EMFACS prototype of an emotion as a (K,) float32 weight vector.

    Raises:
        InputError: unknown emotion.
    """
    w = np.zeros(len(Blendshape), np.float32)
    for shape, value in EMFACS[canonical_emotion(name)].items():
        w[shape] = value
    return w


#: The smile: AU12, lip corner pull. Nothing reads as happiness more surely.
SMILE_SHAPES: tuple[Blendshape, ...] = (Blendshape.LIP_CORNER_PULL_L, Blendshape.LIP_CORNER_PULL_R)


def without_stray_smile(offset: np.ndarray, name: str) -> np.ndarray:
    """An emotion's ``(..., K)`` offsets or motion without lip-corner pull unless its EMFACS
    prototype smiles (happy, contempt): float32 copy.

    The fit explains part of real actors' angry, disgusted, fearful and sad mouths (lips
    stretched sideways, upper lip raised) with the corner pull, so the calibrated targets
    and an exemplar bank's carry it (0.35-0.9 on the MEAD crops); rendered on its own it
    turns the corners up, and both classifiers then see a smile. Dropped, W009's label
    angry went from FER2013 0.13 to 0.61 (the second classifier's "happy" from 0.69 to
    0.17) and her sad from 0.48 to 0.59, her angry with M030's bank from 0.12 to 0.61;
    M030's label rates did not change.
    """
    out = np.array(offset, np.float32)
    if not smiles(name):
        out[..., list(SMILE_SHAPES)] = 0.0
    return out


def smiles(name: str) -> bool:
    """Whether the emotion's EMFACS prototype pulls the lip corners (happy, contempt)."""
    return bool((emfacs_pattern(name)[list(SMILE_SHAPES)] > 0).any())


@dataclass(frozen=True)
class EmotionTargets:
    """Per-emotion offsets of the emotion part from the actor's neutral baseline.

    Attributes:
        offsets: emotion name -> (K,) float32 (zero on speech/blink shapes).
        baseline_percentile: the per-weight percentile of a clip that defines its neutral
            baseline, as used at calibration time; None = the face model's neutral
            (weight 0), the default since identities carry no held expression.
        source: where the numbers come from (a path, or "emfacs" for the fallback).
        meta: anything else recorded with them (method, actors, check results).
        lid_closure: emotion name -> held lid narrowing in [0, 1] (blink-weight units) laid
            over the source's blinks (:mod:`ned.manipulate.lids`); emotions not listed: none.
    """

    offsets: dict[str, np.ndarray]
    baseline_percentile: float | None
    source: str
    meta: dict = field(default_factory=dict)
    lid_closure: dict[str, float] = field(default_factory=dict)

    def offset(self, name: str) -> np.ndarray:
        """(K,) offset of an emotion (zeros for neutral).

        Raises:
            InputError: unknown emotion.
        """
        key = canonical_emotion(name)
        if key == "neutral":
            return np.zeros(len(Blendshape), np.float32)
        if key not in self.offsets:
            raise InputError(f"no calibrated target for {key!r} in {self.source}; recalibrate with "
                             "`python scripts/calibrate_emotions.py`")
        return self.offsets[key]

    def closure(self, name: str) -> float:
        """Held lid narrowing of an emotion (0 when the targets carry none)."""
        return float(self.lid_closure.get(canonical_emotion(name), 0.0))


def emotion_targets_path() -> Path:
    """Path of the packaged ``emotion_targets.json``."""
    return Path(str(resources.files("ned") / "data" / "emotion_targets.json"))


def targets_from_json(data: dict, source: str) -> EmotionTargets:
    """Build :class:`EmotionTargets` from the JSON layout written by the calibration script.

    The file keeps the calibration's geometric fit; emotions that do not smile lose its
    lip-corner pull here (:func:`without_stray_smile`).

    Raises:
        ModelFileError: when a blendshape name is unknown or a field is missing.
    """
    emo_mask = np.zeros(len(Blendshape), bool)
    emo_mask[[int(s) for s in EMOTION_SHAPES]] = True
    try:
        offsets = {}
        for name, weights in data["targets"].items():
            w = np.zeros(len(Blendshape), np.float32)
            for shape, value in weights.items():
                w[Blendshape[shape]] = float(value)
            w[~emo_mask] = 0.0
            offsets[canonical_emotion(name)] = without_stray_smile(w, name)
        raw = data["baseline_percentile"]
        percentile = None if raw is None else float(raw)
        closure = {canonical_emotion(name): float(v) for name, v in data.get("lid_closure", {}).items()}
    except (KeyError, InputError, TypeError, ValueError) as err:
        raise ModelFileError(f"{source}: not an emotion-targets file ({err}); rerun "
                             "`python scripts/calibrate_emotions.py`") from err
    if not all(0.0 <= v <= 1.0 for v in closure.values()):
        raise ModelFileError(f"{source}: lid_closure values must be in [0, 1]; rerun `python scripts/calibrate_emotions.py`")
    meta = {k: v for k, v in data.items() if k not in ("targets", "lid_closure")}
    return EmotionTargets(offsets, percentile, source, meta, closure)


@functools.lru_cache(maxsize=4)
def load_emotion_targets(path: str | Path | None = None) -> EmotionTargets:
    """Calibrated targets from ``path`` (default the packaged file).

    When the default file is absent, falls back to the EMFACS prototypes scaled by 0.5
    (with a warning).

    Raises:
        ModelFileError: an explicit ``path`` is missing or malformed.
    """
    p = Path(path) if path is not None else emotion_targets_path()
    if not p.is_file():
        if path is not None:
            raise ModelFileError(f"{p}: emotion targets file not found; run `python scripts/calibrate_emotions.py`")
        logger.warning("%s missing: using EMFACS prototypes at weight 0.5 as emotion targets", p)
        return EmotionTargets({e: 0.5 * emfacs_pattern(e) for e in EMOTIONS if e != "neutral"}, None, "emfacs")
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{p}: cannot read emotion targets ({err})") from err
    return targets_from_json(data, str(p))
