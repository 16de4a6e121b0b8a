"""The expression rig: named FACS-like blendshapes as displacement fields on the canonical mesh.

A weight vector ``w (K,)`` indexed by :class:`Blendshape` deforms a neutral face
``identity (468, 3)`` (canonical space, see :mod:`ned.morph.topology`) into
``identity + sum_k w[k] * basis[k]``. Weight 1 is a strong, clearly visible action;
bounds allow a little beyond (``lower``/``upper``). The fields are authored in the
project (``scripts/build_rig.py``, smooth biharmonic deformations driven by control
landmarks) and stored in ``ned/data/expression_rig.npz``.

Subsets are named, never index ranges:

- :data:`SPEECH_SHAPES` (jaw open, lips part, funnel, pucker, mouth shift): lip motion of
  speech, always kept from the source;
- :data:`BLINK_SHAPES` (eye blink L/R): kept from the source too, so blinks survive;
- :data:`GAZE_SHAPES` (eyes look up/down): the lids follow vertical gaze (which also
  compensates head pitch); kept from the source, and keeping it out of the emotion part
  stops gaze from reading as "lids up + lids tightened";
- :data:`EMOTION_SHAPES`: everything else (brows, lids, cheeks, nose, lip corners,
  stretch, tighten, chin). By construction none of them changes the inner-lip aperture
  (the gaps of :data:`ned.morph.topology.INNER_LIP_PAIRS`; tested).

Sides are the person's own: ``_L`` acts on the person's left (image right, ``x > 0``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import IntEnum
from importlib import resources
from pathlib import Path

import numpy as np

from ned.errors import ModelFileError
from ned.types import check_array

__all__ = [
    "Blendshape",
    "FACS_UNITS",
    "SPEECH_SHAPES",
    "BLINK_SHAPES",
    "EDIT_KEPT_SHAPES",
    "GAZE_SHAPES",
    "KEPT_SHAPES",
    "EMOTION_SHAPES",
    "MOUTH_EMOTION_SHAPES",
    "Rig",
    "load_rig",
    "rig_path",
    "shape_mask",
]


class Blendshape(IntEnum):
    """Index of each expression weight (the order of the rig's ``basis``)."""

    BROW_INNER_UP_L = 0  # AU1
    BROW_INNER_UP_R = 1
    BROW_OUTER_UP_L = 2  # AU2
    BROW_OUTER_UP_R = 3
    BROW_DOWN_L = 4  # AU4
    BROW_DOWN_R = 5
    UPPER_LID_UP_L = 6  # AU5
    UPPER_LID_UP_R = 7
    LID_TIGHTEN_L = 8  # AU7
    LID_TIGHTEN_R = 9
    EYE_BLINK_L = 10  # AU43/45 (kept from the source)
    EYE_BLINK_R = 11
    CHEEK_RAISE_L = 12  # AU6
    CHEEK_RAISE_R = 13
    NOSE_WRINKLE = 14  # AU9
    UPPER_LIP_RAISE = 15  # AU10 (upper lip's outer border; the lip line stays)
    LIP_CORNER_PULL_L = 16  # AU12
    LIP_CORNER_PULL_R = 17
    LIP_CORNER_DEPRESS_L = 18  # AU15
    LIP_CORNER_DEPRESS_R = 19
    LIP_STRETCH_L = 20  # AU20
    LIP_STRETCH_R = 21
    CHIN_RAISE = 22  # AU17
    LIP_TIGHTEN = 23  # AU23/24 (tighten and press: the lip red narrows)
    JAW_OPEN = 24  # AU26/27 (speech)
    LIPS_PART = 25  # AU25 (speech: inner-lip aperture without the jaw)
    LIP_FUNNEL = 26  # AU22 (speech)
    LIP_PUCKER = 27  # AU18 (speech)
    MOUTH_SHIFT = 28  # speech; +1 = lips towards the person's left, -1 = right
    EYES_LOOK_UP = 29  # gaze (kept): both lids follow the eyes up (+) or down (-)


#: FACS action unit(s) each blendshape stands for (for reports and docs).
FACS_UNITS: dict[Blendshape, str] = {
    Blendshape.BROW_INNER_UP_L: "AU1", Blendshape.BROW_INNER_UP_R: "AU1",
    Blendshape.BROW_OUTER_UP_L: "AU2", Blendshape.BROW_OUTER_UP_R: "AU2",
    Blendshape.BROW_DOWN_L: "AU4", Blendshape.BROW_DOWN_R: "AU4",
    Blendshape.UPPER_LID_UP_L: "AU5", Blendshape.UPPER_LID_UP_R: "AU5",
    Blendshape.LID_TIGHTEN_L: "AU7", Blendshape.LID_TIGHTEN_R: "AU7",
    Blendshape.EYE_BLINK_L: "AU45", Blendshape.EYE_BLINK_R: "AU45",
    Blendshape.CHEEK_RAISE_L: "AU6", Blendshape.CHEEK_RAISE_R: "AU6",
    Blendshape.NOSE_WRINKLE: "AU9", Blendshape.UPPER_LIP_RAISE: "AU10",
    Blendshape.LIP_CORNER_PULL_L: "AU12", Blendshape.LIP_CORNER_PULL_R: "AU12",
    Blendshape.LIP_CORNER_DEPRESS_L: "AU15", Blendshape.LIP_CORNER_DEPRESS_R: "AU15",
    Blendshape.LIP_STRETCH_L: "AU20", Blendshape.LIP_STRETCH_R: "AU20",
    Blendshape.CHIN_RAISE: "AU17", Blendshape.LIP_TIGHTEN: "AU23/24",
    Blendshape.JAW_OPEN: "AU26/27", Blendshape.LIPS_PART: "AU25",
    Blendshape.LIP_FUNNEL: "AU22", Blendshape.LIP_PUCKER: "AU18",
    Blendshape.MOUTH_SHIFT: "AD30/AU13-like",
    Blendshape.EYES_LOOK_UP: "AU63/64",
}

SPEECH_SHAPES: tuple[Blendshape, ...] = (
    Blendshape.JAW_OPEN, Blendshape.LIPS_PART, Blendshape.LIP_FUNNEL, Blendshape.LIP_PUCKER,
    Blendshape.MOUTH_SHIFT,
)
BLINK_SHAPES: tuple[Blendshape, ...] = (Blendshape.EYE_BLINK_L, Blendshape.EYE_BLINK_R)
#: Vertical gaze: the lids follow the eyes (and a head pitched away from the camera).
GAZE_SHAPES: tuple[Blendshape, ...] = (Blendshape.EYES_LOOK_UP,)
#: Copied from the source by every manipulator: speech, blinks and gaze.
KEPT_SHAPES: tuple[Blendshape, ...] = SPEECH_SHAPES + BLINK_SHAPES + GAZE_SHAPES
#: What edited landmarks take from the fit whatever the edited weights say: speech and
#: gaze. Blinks come from the edited weights, where the manipulators keep the source's
#: and may lay a reference's held lid narrowing over them (:mod:`ned.manipulate.lids`).
EDIT_KEPT_SHAPES: tuple[Blendshape, ...] = SPEECH_SHAPES + GAZE_SHAPES
EMOTION_SHAPES: tuple[Blendshape, ...] = tuple(b for b in Blendshape if b not in KEPT_SHAPES)
#: Emotion shapes around the mouth: they also move with speech (a talking face's lip
#: corners stretch and pull at syllable rate), so their fast motion belongs to the speaker.
MOUTH_EMOTION_SHAPES: tuple[Blendshape, ...] = (
    Blendshape.UPPER_LIP_RAISE, Blendshape.LIP_CORNER_PULL_L, Blendshape.LIP_CORNER_PULL_R,
    Blendshape.LIP_CORNER_DEPRESS_L, Blendshape.LIP_CORNER_DEPRESS_R, Blendshape.LIP_STRETCH_L,
    Blendshape.LIP_STRETCH_R, Blendshape.CHIN_RAISE, Blendshape.LIP_TIGHTEN,
)


def shape_mask(shapes: tuple[Blendshape, ...]) -> np.ndarray:
    """(K,) bool mask of ``shapes`` over :class:`Blendshape`."""
    m = np.zeros(len(Blendshape), bool)
    m[[int(s) for s in shapes]] = True
    return m


@dataclass(frozen=True, eq=False)
class Rig:
    """Displacement fields of the blendshapes.

    Attributes:
        basis: (K, 468, 3) float32, canonical units (IOD) per unit weight.
        lower: (K,) float32 lower bound of each weight.
        upper: (K,) float32 upper bound of each weight.
        canonical: (468, 3) float32, the neutral mesh the fields were authored on.
    """

    basis: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    canonical: np.ndarray

    @property
    def num_shapes(self) -> int:
        """K, the number of weights."""
        return int(self.basis.shape[0])

    def displacement(self, weights: np.ndarray) -> np.ndarray:
        """Canonical displacement of weights ``(*, K)``: ``(*, 468, 3)`` float32.

        Raises:
            ValueError: when the last axis is not K.
        """
        w = np.asarray(weights, dtype=np.float32)
        check_array(w, f"* {self.num_shapes}", name="weights")
        flat = self.basis.reshape(self.num_shapes, -1)
        return (w @ flat).reshape(*w.shape[:-1], *self.basis.shape[1:])

    def clip(self, weights: np.ndarray) -> np.ndarray:
        """Weights clipped to the rig's bounds (same shape, float32)."""
        return np.clip(np.asarray(weights, dtype=np.float32), self.lower, self.upper)


def rig_path() -> Path:
    """Path of the packaged ``expression_rig.npz``."""
    return Path(str(resources.files("ned") / "data" / "expression_rig.npz"))


@functools.lru_cache(maxsize=4)
def load_rig(path: str | Path | None = None) -> Rig:
    """Load the rig data file (cached).

    Args:
        path: an ``.npz`` written by ``scripts/build_rig.py``; default the packaged one.

    Raises:
        ModelFileError: when missing, malformed, or built for other blendshape names.
    """
    p = Path(path) if path is not None else rig_path()
    if not p.is_file():
        raise ModelFileError(f"{p}: expression rig missing; run `python scripts/build_rig.py`")
    try:
        with np.load(p, allow_pickle=False) as z:
            names = [str(n) for n in z["names"]]
            rig = Rig(basis=z["basis"].astype(np.float32), lower=z["lower"].astype(np.float32),
                      upper=z["upper"].astype(np.float32), canonical=z["canonical"].astype(np.float32))
    except KeyError as err:
        raise ModelFileError(f"{p}: not an expression rig (missing {err}); rebuild it with "
                             "`python scripts/build_rig.py`") from err
    expected = [b.name for b in Blendshape]
    if names != expected:
        raise ModelFileError(f"{p}: blendshapes {names} do not match ned.morph.Blendshape; "
                             "rebuild it with `python scripts/build_rig.py`")
    for arr in (rig.basis, rig.lower, rig.upper, rig.canonical):
        arr.setflags(write=False)
    return rig
