"""What to change, and the one function that changes a clip's expression weights.

:class:`ManipulationSpec` is the user's request (emotions with intensities, or reference
clips; which manipulator); :func:`plan_expressions` turns a clip's fitted weights
``(T, K)`` into edited weights with the training-free manipulators
(:mod:`ned.manipulate.label`, :mod:`ned.manipulate.reference`) or the learned one
(:mod:`ned.manipulate.learned`). Frames without a face (NaN rows) are filled from
their neighbours for the manipulation and stay NaN in the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ned.errors import InputError, ModelFileError
from ned.manipulate.emotions import EmotionSpec, EmotionTargets, parse_emotions
from ned.manipulate.envelope import DEFAULT_TRANSFER_LIMIT_IOD
from ned.manipulate.lids import DEFAULT_CLOSURE_LIMIT
from ned.manipulate.label import MIN_FRAMES, ManipulateOptions, label_targets, manipulate_labels, segment_weights
from ned.manipulate.reference import manipulate_reference

MANIPULATORS = ("auto", "training-free", "ned")


@dataclass(frozen=True)
class ManipulationSpec:
    """A manipulation request.

    Attributes:
        segments: target emotions, one per consecutive equal part of the clip (label mode).
        references: reference clips (reference mode; several split the clip like labels);
            when given, ``segments`` are empty or one emotion: the one the references act,
            whose intensity applies to each and which, when it does not smile, drops their
            lip-corner pull (:func:`ned.manipulate.emotions.without_stray_smile`).
        reference_neutral: optional neutral clip of the reference actor (its baseline).
        intensity: global intensity multiplier in [0, 1.5] (0 leaves the clip unchanged).
        transition_s: crossfade between consecutive segments, seconds (>= 0).
        seed: the single seed of every random draw (learned manipulator's latent code).
        manipulator: ``"auto"`` (learned when ``checkpoints_dir`` holds a checkpoint, else
            training-free), ``"training-free"`` or ``"ned"`` (the learned NED manipulator).
        checkpoints_dir: folder of learned-manipulator checkpoints (None: none).
        which_epoch: checkpoint epoch (None: the latest).
        exemplars: an exemplar bank folder (``ned exemplars build``): in label mode with the
            training-free manipulator its real acted expressions replace the calibrated
            targets (:meth:`ned.appearance.exemplars.ExemplarBank.emotion_targets`).
        transfer_limit: soft limit (IOD) of the lower/mid-face motion taken from a reference
            clip or an exemplar bank (:mod:`ned.manipulate.envelope`); None: no limit.
        lid_closure: the most held lid narrowing (blink-weight units, (0, 1]) an edit adds:
            the emotion's calibrated one, a reference clip's or an exemplar bank's
            (:mod:`ned.manipulate.lids`); None: none.
    """

    segments: tuple[EmotionSpec, ...] = (EmotionSpec("happy"),)
    references: tuple[Path, ...] = ()
    reference_neutral: Path | None = None
    intensity: float = 1.0
    transition_s: float = 0.5
    seed: int = 0
    manipulator: str = "auto"
    checkpoints_dir: Path | None = None
    which_epoch: int | None = None
    exemplars: Path | None = None
    transfer_limit: float | None = DEFAULT_TRANSFER_LIMIT_IOD
    lid_closure: float | None = DEFAULT_CLOSURE_LIMIT

    def __post_init__(self) -> None:
        self.manipulate_options()
        if self.manipulator not in MANIPULATORS:
            raise ValueError(f"manipulator must be one of {MANIPULATORS}, got {self.manipulator!r}")
        if not self.segments and not self.references:
            raise InputError("give a target emotion (--emotion happy) or a reference clip (--ref clip.mp4)")
        if self.references and len(self.segments) > 1:
            raise InputError("give either several emotions or reference clips, not both")

    @classmethod
    def from_strings(cls, emotions: Sequence[str] = (), references: Sequence[str | Path] = (), **kwargs) -> "ManipulationSpec":
        """Parse ``["happy", "angry:0.5"]`` (aliases allowed) and reference paths.

        Raises:
            InputError: unknown emotion (listing the valid ones), bad intensity, nothing given.
        """
        segments = tuple(parse_emotions(emotions)) if emotions else ()
        return cls(segments=segments, references=tuple(Path(r) for r in references), **kwargs)

    def manipulate_options(self) -> ManipulateOptions:
        return ManipulateOptions(intensity=self.intensity, transition_s=self.transition_s, seed=self.seed,
                                 transfer_limit_iod=self.transfer_limit, lid_closure_limit=self.lid_closure)

    def describe(self) -> str:
        """Human-readable request, e.g. ``happy, angry:0.5`` or ``reference ref.mp4``."""
        scale = "" if self.intensity == 1.0 else f" (intensity {self.intensity:g})"
        if self.references:
            acting = f" acting {', '.join(str(s) for s in self.segments)}" if self.segments else ""
            return "reference " + ", ".join(p.name for p in self.references) + acting + scale
        bank = f" (exemplars {Path(self.exemplars).name})" if self.exemplars is not None else ""
        return ", ".join(str(s) for s in self.segments) + scale + bank

    def label_targets(self) -> EmotionTargets | None:
        """The label manipulator's targets: the exemplar bank's, or None for the calibrated ones.

        Raises:
            ModelFileError: a missing or malformed bank.
        """
        if self.exemplars is None:
            return None
        from ned.appearance.exemplars import load_bank

        return load_bank(Path(self.exemplars)).emotion_targets(label_targets(), self.transfer_limit)


def fill_missing_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill NaN rows of ``(T, K)`` by linear interpolation over time (edges: nearest).

    Returns:
        ``(filled (T, K) float32, missing (T,) bool)``.

    Raises:
        InputError: every row is NaN.
    """
    missing = ~np.isfinite(x).all(axis=1)
    if missing.all():
        raise InputError("no frame with a face")
    if not missing.any():
        return x.astype(np.float32), missing
    t = np.arange(len(x))
    good = ~missing
    filled = np.stack([np.interp(t, t[good], x[good, k]) for k in range(x.shape[1])], axis=1)
    return filled.astype(np.float32), missing


def has_learned_checkpoint(folder: Path | None) -> bool:
    """True when ``folder`` holds a learned-manipulator checkpoint (``*_nets*.pth``).

    A missing or empty folder means the training-free manipulator.

    Raises:
        ModelFileError: ``folder`` is a file or a non-empty folder without checkpoints.
    """
    if folder is None or not Path(folder).exists():
        return False
    folder = Path(folder)
    if folder.is_file():
        return True
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if not entries:
        return False
    if any(p.suffix == ".pth" and "_nets" in p.name for p in entries):
        return True
    raise ModelFileError(f"{folder}: holds no manipulator checkpoint ({{epoch:02d}}_nets.pth); "
                         "point --checkpoints_dir at a trained manipulator, or at an empty/missing folder "
                         "for the training-free one")


def _use_learned(spec: ManipulationSpec) -> bool:
    if spec.manipulator == "training-free":
        return False
    found = has_learned_checkpoint(spec.checkpoints_dir)
    if spec.manipulator == "ned" and not found:
        raise ModelFileError("--manipulator ned needs --checkpoints_dir with a trained checkpoint "
                             "(train one with `ned train-manipulator`)")
    return found


def _learned_outputs(source: np.ndarray, spec: ManipulationSpec, references: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The learned manipulator's translation of the whole clip to each segment's target."""
    from ned.manipulate.learned import LearnedManipulator, LearnedOptions

    manip = LearnedManipulator.from_options(LearnedOptions(checkpoints_dir=spec.checkpoints_dir,
                                                           which_epoch=spec.which_epoch, seed=spec.seed,
                                                           keep_speech=True))
    targets: list = list(references) if references else [s.name for s in spec.segments]
    return [manip.manipulate(source, target) for target in targets]


def plan_expressions(source: np.ndarray, spec: ManipulationSpec, references: Sequence[np.ndarray],
                     fps: float) -> np.ndarray:
    """Edited expression weights of a clip.

    Args:
        source: ``(T, K)`` fitted weights, NaN rows where the clip has no face.
        spec: the request.
        references: ``(T_r, K)`` weights of each of ``spec.references`` (NaN rows dropped).
        fps: the clip's frame rate.

    Returns:
        ``(T, K) float32``; NaN rows stay NaN.

    Raises:
        InputError: fewer than 10 frames with a face, reference without a face.
        ModelFileError: a bad learned-manipulator checkpoint.
    """
    filled, missing = fill_missing_rows(source)
    if len(filled) < MIN_FRAMES:
        raise InputError(f"the clip has {len(filled)} frames; manipulation needs at least {MIN_FRAMES}")
    refs = [r[np.isfinite(r).all(axis=1)] for r in references]
    for path, r in zip(spec.references, refs):
        if len(r) == 0:
            raise InputError(f"no face found in the reference {path}")
    options = spec.manipulate_options()
    if _use_learned(spec):
        outs = _learned_outputs(filled, spec, refs)
        weights = segment_weights(len(filled), len(outs), fps, spec.transition_s)  # (T, S)
        learned = sum(weights[:, s, None] * o for s, o in enumerate(outs))
        out = filled + spec.intensity * (learned - filled)
    elif refs:
        named = len(spec.segments) == 1  # "--ref clip --emotion angry": the reference acts angry
        intensities = [spec.segments[0].intensity] * len(refs) if named else None
        emotions = [spec.segments[0].name] * len(refs) if named else None
        # with a reference neutral clip the references are fitted with its identity: their
        # weights are measured from the actor's neutral face, and their smiles can be told
        out = manipulate_reference(filled, refs, fps, options, intensities=intensities, emotions=emotions,
                                   infer_smiles=spec.reference_neutral is not None)
    else:
        out = manipulate_labels(filled, spec.segments, fps, options, spec.label_targets())
    out = np.asarray(out, np.float32)
    out[missing] = np.nan
    return out
