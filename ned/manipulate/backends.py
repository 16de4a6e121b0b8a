"""Expression backends of the learned manipulator: what one frame's vector means.

- ``face3d`` (default): our face model's blendshape weights, ``K`` values per frame
  (``ned.morph``), fitted to the tracked MediaPipe mesh (``ned.face``).
- ``deca``: the original release's 51 numbers per frame, jaw opening then 50 FLAME
  expression coefficients. Extracting them needs the DECA/FLAME files, which cannot ship
  with this package; precomputed ``(T, 51)`` arrays can be placed in the cache instead
  (see :mod:`ned.manipulate.dataset`).

An extractor is any callable ``extract(video_path) -> (T, D) float32``; rows of frames
without a face are NaN (the dataset drops windows touching them).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ned.errors import InputError, ModelFileError
from ned.manipulate.networks import DECA_INPUT_DIM

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "Extractor",
    "backend_input_dim",
    "backend_mouth_indices",
    "backend_kept_indices",
    "backend_for_input_dim",
    "backend_fingerprint",
    "get_extractor",
    "DecaExtractor",
    "face3d_extract",
    "deca_extract",
]

logger = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("face3d", "deca")
DEFAULT_BACKEND = "face3d"

#: ``extract(video_path) -> (T, D) float32``
Extractor = Callable[[Path], np.ndarray]

# Names a face model may give its speech blendshapes (jaw / lip aperture first).
_SPEECH_NAMES = ("JAW_OPEN", "LIPS_PART", "LIP_FUNNEL", "LIP_PUCKER", "MOUTH_SHIFT")


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown expression backend {backend!r}; choose one of {list(BACKENDS)}")


def _rig_module():
    """The face model's rig module (``Blendshape``, ``SPEECH_SHAPES``) or None when absent."""
    for name in ("ned.morph", "ned.morph.rig"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "Blendshape"):
            return module
    return None


def _blendshape_enum():
    """``Blendshape`` of the face model when installed, else None."""
    module = _rig_module()
    return getattr(module, "Blendshape", None) if module is not None else None


def backend_input_dim(backend: str) -> int | None:
    """Values per frame of ``backend`` (51 for ``deca``; ``K`` for ``face3d``, or None while
    the face model is not available).

    Raises:
        ValueError: for an unknown backend.
    """
    _check_backend(backend)
    if backend == "deca":
        return DECA_INPUT_DIM
    enum = _blendshape_enum()
    return len(enum) if enum is not None else None


def backend_mouth_indices(backend: str) -> tuple[int, ...]:
    """Dimensions of the mouth aperture in ``backend``'s vectors (the training mouth term).

    ``deca``: ``(0,)`` (jaw opening, as the original release). ``face3d``: ``JAW_OPEN`` and
    ``LIPS_PART``; ``(0,)`` with a warning while the face model is not available.

    Raises:
        ValueError: for an unknown backend.
    """
    _check_backend(backend)
    if backend == "deca":
        return (0,)
    enum = _blendshape_enum()
    if enum is None:
        logger.warning("face model (ned.morph Blendshape) not available: mouth indices default to (0,)")
        return (0,)
    found = tuple(int(enum[name]) for name in ("JAW_OPEN", "LIPS_PART") if name in enum.__members__)
    return found or (0,)


def backend_kept_indices(backend: str) -> tuple[int, ...]:
    """Dimensions copied from the source after translation when speech is kept.

    ``deca``: ``(0,)`` (jaw opening). ``face3d``: the face model's ``KEPT_SHAPES`` (speech
    and blinks), else its ``SPEECH_SHAPES``, else the names ``JAW_OPEN, LIPS_PART, ...``.

    Raises:
        ValueError: for an unknown backend; ModelFileError: face model not available.
    """
    _check_backend(backend)
    if backend == "deca":
        return (0,)
    module = _rig_module()
    if module is None:
        raise ModelFileError("the face3d backend's face model (ned.morph) is not available")
    shapes = getattr(module, "KEPT_SHAPES", None) or getattr(module, "SPEECH_SHAPES", None)
    if shapes:
        return tuple(sorted(int(b) for b in shapes))
    enum = module.Blendshape
    return tuple(int(enum[name]) for name in _SPEECH_NAMES if name in enum.__members__)


def backend_fingerprint(backend: str) -> str:
    """A short name of the exact expression space: ``deca``, or ``face3d-<8 hex>`` from the
    face model's rig file (a new rig changes the meaning of the weights).

    Used to name the expression cache and recorded in checkpoints.

    Raises:
        ValueError: for an unknown backend.
    """
    _check_backend(backend)
    if backend == "deca":
        return "deca"
    module = _rig_module()
    rig_path = getattr(module, "rig_path", None) if module is not None else None
    if rig_path is None:
        try:
            rig_path = importlib.import_module("ned.morph.rig").rig_path
        except (ImportError, AttributeError):
            return "face3d"
    try:
        digest = hashlib.sha1(Path(rig_path()).read_bytes()).hexdigest()[:8]
    except OSError:
        return "face3d"
    return f"face3d-{digest}"


def backend_for_input_dim(input_dim: int) -> str:
    """The backend a checkpoint with ``input_dim`` values per frame was made for."""
    return "deca" if input_dim == DECA_INPUT_DIM else "face3d"


def _track(video_path: Path) -> list:
    """Tracked face observations of every frame (``ned.face.track_video``).

    Raises:
        ModelFileError: when the tracker is not available.
    """
    try:
        face = importlib.import_module("ned.face")
    except ImportError as err:
        raise ModelFileError(f"the face tracker (ned.face) is not available ({err})") from err
    return face.track_video(Path(video_path))


def _fit_expressions(landmarks: np.ndarray) -> np.ndarray:
    """(T, 468|478, 3) tracked points (NaN rows for missing faces) -> (T, K) expression weights.

    As the ``preprocess`` stage: the identity is estimated over the clip's frames with a
    face (``FaceModel.from_sequence``, projected out of the rig's span, so weights are
    comparable across clips and actors), then every such frame is fitted; missing frames
    give NaN rows.

    Raises:
        ModelFileError: when the face model (``ned.morph.fit``) is not available.
        InputError: when no frame has a face.
    """
    try:
        fit = importlib.import_module("ned.morph.fit")
        model_cls = fit.FaceModel
    except (ImportError, AttributeError) as err:
        raise ModelFileError(f"the face3d backend's face model (ned.morph.fit.FaceModel) is not available ({err}); "
                             "use precomputed expression arrays in the cache or --backend deca") from err
    valid = np.isfinite(landmarks.reshape(len(landmarks), -1)).all(axis=1)
    if not valid.any():
        raise InputError("no frame with a face")
    model = model_cls.from_sequence(landmarks[valid])
    out = np.full((len(landmarks), model.num_shapes), np.nan, np.float32)
    out[valid] = model.fit_batch(landmarks[valid]).expression
    return out


def face3d_extract(video_path: Path) -> np.ndarray:
    """Our face model's per-frame expression vectors of a video.

    Tracks the face mesh (``ned.face``) and fits the face model (``ned.morph``). Frames
    without a face give a NaN row.

    Args:
        video_path: the clip.

    Returns:
        (T, K) float32, one row per decoded frame.

    Raises:
        ModelFileError: when the face tracker or face model is not available.
        InputError: when the video cannot be read or shows no face.
    """
    observations = _track(video_path)
    if not observations:
        raise InputError(f"{video_path}: no frames")
    landmarks = np.stack([obs.landmarks[:468] for obs in observations]).astype(np.float32)
    try:
        return _fit_expressions(landmarks)
    except InputError as err:
        raise InputError(f"{video_path}: {err}") from None


_DECA_BACKENDS: dict[str, object] = {}


@dataclass(frozen=True)
class DecaExtractor:
    """Extractor of the original release's 51 numbers per frame (picklable).

    Decodes and tracks the clip (``ned.face``), runs DECA on each frame's face crop
    (``ned.deca.DecaBackend``, needs the user's DECA/FLAME files) and keeps
    ``[jaw opening, 50 expression coefficients]``. Frames without a face give NaN rows.

    Attributes:
        deca_dir: folder with DECA's ``deca_model.tar`` and FLAME's ``generic_model.pkl``.
    """

    deca_dir: Path

    def __call__(self, video_path: Path) -> np.ndarray:
        """Returns (T, 51) float32.

        Raises:
            ModelFileError: missing DECA files; InputError: unreadable video.
        """
        deca = importlib.import_module("ned.deca")
        media = importlib.import_module("ned.media")
        key = str(self.deca_dir)
        if key not in _DECA_BACKENDS:  # one backend per process
            _DECA_BACKENDS[key] = deca.DecaBackend(self.deca_dir)
        backend = _DECA_BACKENDS[key]
        observations = _track(video_path)
        rows = []
        for frame, obs in zip(media.iter_frames(Path(video_path)), observations):
            points = obs.landmarks[:468, :2]
            if obs.status == "missing" or not np.isfinite(points).all():
                rows.append(np.full(DECA_INPUT_DIM, np.nan, np.float32))
            else:
                rows.append(deca.to_manipulator_input(backend.encode_frame(frame.rgb, points)))
        return np.stack(rows).astype(np.float32)


def deca_extract(video_path: Path) -> np.ndarray:
    """DECA extraction without a DECA folder: always raises.

    Raises:
        ModelFileError: saying how to provide the DECA files or precomputed parameters.
    """
    raise ModelFileError(
        f"{video_path}: the deca backend needs the DECA/FLAME model files: pass --deca_dir <folder with "
        "deca_model.tar and generic_model.pkl>, or put the clip's (T, 51) float32 array [jaw opening, 50 FLAME "
        "expression coefficients] in the expression cache as <cache_dir>/<clip path relative to the data root>.npy")


def get_extractor(backend: str, *, deca_dir: str | Path | None = None) -> Extractor:
    """The extractor of ``backend`` (picklable, for the process pool).

    Args:
        backend: face3d or deca.
        deca_dir: DECA/FLAME files for the deca backend (None: an extractor that explains
            how to provide them).

    Raises:
        ValueError: for an unknown backend.
    """
    _check_backend(backend)
    if backend == "face3d":
        return face3d_extract
    return DecaExtractor(Path(deca_dir)) if deca_dir is not None else deca_extract
