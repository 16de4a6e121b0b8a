"""A soft limit on the lower- and mid-face motion an expression takes from another actor.

Actors act with very different strength around the mouth: on the MEAD crops M030's sad
is a grimace that moves the lower face by 1.07 IOD (root-sum-square over the mesh
vertices, see :func:`lower_face_motion`), W009's sad by 0.22. Copied onto another face,
such a grimace changes the lower face's proportions (mouth width, lip shape, nasolabial
region, cheek volume), and those are what make a face look like somebody else: W009
acting like M030's sad moved dlib's identity embedding 0.48 from her own face, with the
brows and lids alone 0.21. The reference manipulator and exemplar-bank targets therefore
pass the motion of :data:`LIMITED_SHAPES` through :func:`limit_lower_face`, which keeps
motion up to 80 % of the limit, then bends smoothly (``tanh``) towards the limit. Brows
and lids keep the reference's full motion.

Measured with ``ned evaluate-suite`` on the MEAD crops (limit 0.62 IOD, knee 0.8;
reference mode with the reference's neutral clip). W009 acting like M030: identity
distance angry 0.36 -> 0.25, disgusted 0.48 -> 0.27, happy 0.44 -> 0.23, sad 0.48 -> 0.34;
FER2013 recognition sad 0.79 -> 0.91 and angry 0.13 -> 0.18 (the grimace read as another
emotion), happy 0.98 -> 0.56. M030 acting like W009 (whose lower face moves less): happy
0.66 -> 0.56, identity <= 0.25 before and after. One number for the whole lower face
cannot tell a smile's corner pull (cheap in identity) from lip stretch and press (costly);
when the emotion is named, :func:`limit_emotion_motion` can, and counts a smile's pull less.
The default became 0.58 when reference and bank edits began to take the brows' shape too
(:mod:`ned.appearance.brows`), which moves the identity embedding as well: W009 acting like
M030's sad went 0.345 -> 0.359 with the brows at 0.62, 0.343 at 0.58 (FER2013 0.92 -> 0.95).
"""

from __future__ import annotations

import functools

import numpy as np

from ned.manipulate.emotions import SMILE_SHAPES, smiles, without_stray_smile
from ned.morph.fit import corner_elevation
from ned.morph.rig import MOUTH_EMOTION_SHAPES, Blendshape, Rig, load_rig, shape_mask

__all__ = ["LIMITED_SHAPES", "DEFAULT_TRANSFER_LIMIT_IOD", "lower_face_motion", "limit_lower_face",
           "limit_emotion_motion", "SMILE_LIMIT_WEIGHT", "SMILE_RISE_IOD", "NO_SMILE_RISE_IOD", "corner_rise",
           "infer_smile"]

#: The emotion shapes of the lower and mid face: the mouth's, the nose wrinkle, the cheeks.
LIMITED_SHAPES: tuple[Blendshape, ...] = MOUTH_EMOTION_SHAPES + (
    Blendshape.NOSE_WRINKLE, Blendshape.CHEEK_RAISE_L, Blendshape.CHEEK_RAISE_R)
DEFAULT_TRANSFER_LIMIT_IOD = 0.58
#: motion up to this fraction of the limit passes unchanged
KNEE_FRACTION = 0.8
#: how much a named smile's lip-corner pull counts towards the limit (see limit_emotion_motion)
SMILE_LIMIT_WEIGHT = 0.6
#: an unnamed motion whose lip corners rise at least this much (median over its frames,
#: IOD) smiles; at most :data:`NO_SMILE_RISE_IOD`, it does not (see :func:`infer_smile`)
SMILE_RISE_IOD = 0.04
NO_SMILE_RISE_IOD = 0.03
_LIMITED = shape_mask(LIMITED_SHAPES)


@functools.lru_cache(maxsize=4)
def _gram(rig: Rig) -> np.ndarray:
    """``(L, L) float64`` Gram matrix of the limited shapes' displacement fields."""
    b = rig.basis[_LIMITED].reshape(int(_LIMITED.sum()), -1).astype(np.float64)
    return b @ b.T


def lower_face_motion(delta: np.ndarray, rig: Rig | None = None) -> np.ndarray:
    """Size of the lower/mid-face part of weight changes, IOD.

    Args:
        delta: ``(..., K)`` weight changes.
        rig: default the packaged rig.

    Returns:
        ``(...)`` float64: root-sum-square over the mesh's vertices of the displacement
        that the :data:`LIMITED_SHAPES` part of ``delta`` makes (canonical units, IOD).
    """
    rig = rig or load_rig()
    d = np.asarray(delta, np.float64)[..., _LIMITED]
    return np.sqrt(np.maximum(np.einsum("...k,kl,...l->...", d, _gram(rig), d), 0.0))


def limit_lower_face(delta: np.ndarray, limit_iod: float | None = DEFAULT_TRANSFER_LIMIT_IOD,
                     rig: Rig | None = None, *, smile_weight: float = 1.0) -> np.ndarray:
    """Softly limit the lower/mid-face motion of weight changes (see the module doc).

    The :data:`LIMITED_SHAPES` part of each row is scaled so that its size
    (:func:`lower_face_motion`) ``n`` stays ``n`` up to the knee ``k = KNEE_FRACTION x
    limit`` and becomes ``k + (limit - k) tanh((n - k) / (limit - k))`` above: never more
    than ``limit``, continuous with a continuous slope. Other shapes are unchanged.

    Args:
        delta: ``(..., K)`` weight changes relative to a neutral face.
        limit_iod: the limit, IOD (> 0); None: no limit.
        rig: default the packaged rig.
        smile_weight: how much the lip-corner pull counts towards the size (1: fully; less
            for a reference the user names as smiling, see :func:`limit_emotion_motion`).

    Returns:
        ``(..., K)`` float32.

    Raises:
        ValueError: a limit <= 0.
    """
    out = np.array(delta, np.float32)
    if limit_iod is None:
        return out
    if not limit_iod > 0:
        raise ValueError(f"the transfer limit must be > 0 IOD (or None), got {limit_iod}")
    counted = out.copy()
    counted[..., list(SMILE_SHAPES)] *= smile_weight
    n = lower_face_motion(counted, rig)
    knee = KNEE_FRACTION * float(limit_iod)
    room = float(limit_iod) - knee
    bent = np.where(n <= knee, n, knee + room * np.tanh((n - knee) / room))
    scale = np.where(n > knee, bent / np.maximum(n, 1e-12), 1.0).astype(np.float32)
    out[..., _LIMITED] *= scale[..., None]
    return out


def corner_rise(delta: np.ndarray, rig: Rig | None = None) -> np.ndarray:
    """How far weight changes ``(..., K)`` raise the lip corners above the lip line, mean of
    both corners (:func:`ned.morph.fit.corner_elevation` of their displacement; IOD, + = up,
    whatever the identity): ``(...,) float64``."""
    rig = rig or load_rig()
    return corner_elevation(rig.displacement(np.asarray(delta, np.float32)), rig).mean(-1)


def infer_smile(delta: np.ndarray, rig: Rig | None = None) -> bool | None:
    """Whether an unnamed motion ``(T, K)``, weight changes from the actor's own neutral
    clip (fitted with that clip's identity), smiles.

    The fit puts part of real angry, disgusted and sad mouths into lip-corner pull, so pull
    alone cannot tell a smile from a grimace; where the corners go can: their median rise
    (:func:`corner_rise`) is at least :data:`SMILE_RISE_IOD` for a smile, at most
    :data:`NO_SMILE_RISE_IOD` for the rest. On the MEAD crops (reference mode's relative
    motion against the reference's neutral clip): happy 0.071 and 0.051; disgusted 0.028 and
    0.022, angry 0.010 and 0.012, contempt, sad, fear and surprised at most 0.006.
    Measured against a clip's own calmest frames instead, a held smile hides in the baseline
    (happy 0.026 and 0.023), so only motion from a neutral clip should be judged.

    Returns:
        True (smiles), False (does not), None (undecided, or no frames).
    """
    d = np.asarray(delta)
    if d.ndim != 2 or len(d) == 0:
        return None
    rise = float(np.median(corner_rise(d, rig)))
    if rise >= SMILE_RISE_IOD:
        return True
    if rise <= NO_SMILE_RISE_IOD:
        return False
    return None


def limit_emotion_motion(delta: np.ndarray, emotion: str | None, limit_iod: float | None = DEFAULT_TRANSFER_LIMIT_IOD,
                         rig: Rig | None = None) -> np.ndarray:
    """Another actor's emotion motion, ready to transfer, softly limited: ``(..., K) float32``.

    Args:
        delta: ``(..., K)`` weight changes from the actor's neutral face.
        emotion: what the motion acts, when known (a user's ``--emotion`` with ``--ref``, an
            exemplar bank's label, or what :func:`infer_smile` tells); None: unknown,
            :func:`limit_lower_face` alone.
        limit_iod: as in :func:`limit_lower_face`.
        rig: default the packaged rig.

    A named emotion that does not smile loses the lip-corner pull
    (:func:`ned.manipulate.emotions.without_stray_smile`). A smile's pull counts
    :data:`SMILE_LIMIT_WEIGHT` towards the limit: a smile costs less identity than a
    grimace's stretch and press. Measured on the MEAD crops (reference mode, happy named):
    M030 acting like W009's smile FER2013 0.53 -> 0.63 (identity 0.21 -> 0.23); W009 acting
    like M030's 0.55 -> 0.76 (identity 0.24 -> 0.32). Not counted at all, that went to 0.95
    but identity 0.45; at weight 0.4, 0.87 and identity 0.38.
    """
    if emotion is None:
        return limit_lower_face(delta, limit_iod, rig)
    weight = SMILE_LIMIT_WEIGHT if smiles(emotion) else 1.0
    return limit_lower_face(without_stray_smile(delta, emotion), limit_iod, rig, smile_weight=weight)
