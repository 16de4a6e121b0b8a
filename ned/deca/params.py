"""DECA's per-frame parameters, NED's ``DECA/<frame>.pkl`` files and the manipulator's 51 numbers.

NED (foivospar/NED, ``preprocessing/reconstruct.py``) writes one pickle per frame holding a
dict with these keys (arrays are float32, batch of 1):

=================  ==========  ===============================================================
key                shape       meaning
=================  ==========  ===============================================================
``shape``          (1, 100)    FLAME identity coefficients
``tex``            (1, 50)     albedo coefficients
``exp``            (1, 50)     FLAME expression coefficients
``pose``           (1, 6)      axis-angle radians: global rotation (3), jaw (3)
``cam``            (1, 3)      orthographic camera: scale, tx, ty (normalised crop units)
``light``          (1, 9, 3)   spherical-harmonics lighting
``detail``         (1, 128)    detail code (zeros here when no detail encoder is used)
``tform``          object      scikit-image ``SimilarityTransform``: frame px -> 224 crop px
``original_size``  (w, h)      the frame's width and height in pixels
=================  ==========  ===============================================================

NED's manipulator reads ``[pose[0, 3], exp[0, :]]`` (jaw opening + 50 expression numbers) and
writes files with only ``exp`` (1, 50) and ``pose`` (1, 6) (zeros except ``pose[0, 3]``); NED's
renderer then takes ``exp`` and ``pose[0, 3]`` from them and everything else from the source.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ned.errors import InputError, ModelFileError
from ned.deca.safe_pickle import TransformRecord, load_pickle, save_ned_pickle
from ned.types import check_array

__all__ = [
    "DECA_KEYS",
    "DecaParams",
    "MANIPULATOR_INPUTS",
    "deca_file_name",
    "from_manipulator_output",
    "list_deca_files",
    "load_deca_params",
    "read_manipulator_input",
    "save_deca_params",
    "save_manipulated",
    "to_manipulator_input",
]

MANIPULATOR_INPUTS = 51  # jaw opening (pose[0, 3]) + 50 expression coefficients
JAW_OPEN_INDEX = 3  # index in the 6 pose numbers: first jaw axis-angle component (mouth opening)
_ARRAY_FIELDS = (("shape", "1 100"), ("tex", "1 50"), ("exp", "1 50"), ("pose", "1 6"),
                 ("cam", "1 3"), ("light", "1 9 3"), ("detail", "1 128"))
DECA_KEYS = tuple(name for name, _ in _ARRAY_FIELDS) + ("tform", "original_size")


@dataclass(frozen=True)
class DecaParams:
    """DECA's reconstruction of one frame (arrays keep NED's batch dimension of 1).

    Attributes:
        shape: (1, 100) float32 FLAME identity coefficients.
        tex: (1, 50) float32 albedo coefficients.
        exp: (1, 50) float32 FLAME expression coefficients.
        pose: (1, 6) float32 axis-angle radians: global rotation (3), jaw (3).
        cam: (1, 3) float32 orthographic camera (scale, tx, ty) in normalised crop units.
        light: (1, 9, 3) float32 spherical-harmonics lighting.
        detail: (1, 128) float32 detail code (zeros when no detail encoder ran).
        crop_from_frame: (3, 3) float64 similarity, frame pixels -> 224x224 crop pixels
            (NED's ``tform``).
        original_size: (width, height) of the frame in pixels.

    Raises:
        ValueError: an array has the wrong shape or ``original_size`` is not two positive ints.
    """

    shape: np.ndarray
    tex: np.ndarray
    exp: np.ndarray
    pose: np.ndarray
    cam: np.ndarray
    light: np.ndarray
    detail: np.ndarray
    crop_from_frame: np.ndarray
    original_size: tuple[int, int]

    def __post_init__(self) -> None:
        for name, shape in _ARRAY_FIELDS:
            value = np.asarray(getattr(self, name), dtype=np.float32)
            check_array(value, shape, name=name)
            object.__setattr__(self, name, value)
        matrix = check_array(np.asarray(self.crop_from_frame, dtype=np.float64), "3 3", name="crop_from_frame")
        object.__setattr__(self, "crop_from_frame", matrix)
        size = tuple(int(v) for v in self.original_size)
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"original_size: expected (width, height) > 0, got {self.original_size}")
        object.__setattr__(self, "original_size", size)

    def replace(self, **changes: Any) -> "DecaParams":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_ned_dict(self) -> dict[str, Any]:
        """NED's per-frame dict (``tform`` as a scikit-image-compatible transform record)."""
        out: dict[str, Any] = {name: getattr(self, name).copy() for name, _ in _ARRAY_FIELDS}
        out["tform"] = TransformRecord(self.crop_from_frame)
        out["original_size"] = self.original_size
        return out

    @classmethod
    def from_ned_dict(cls, values: Mapping[str, Any], *, source: str = "DECA file") -> "DecaParams":
        """Build from a dict read from a NED ``DECA/*.pkl`` file.

        ``tform`` may be a (3, 3) matrix (how :func:`~ned.deca.safe_pickle.load_pickle`
        returns scikit-image transforms); ``detail`` defaults to zeros when absent.

        Raises:
            InputError: keys missing (e.g. a manipulator output file, which holds only
                ``exp`` and ``pose``) or arrays of the wrong shape.
        """
        if not isinstance(values, Mapping):
            raise InputError(f"{source}: expected a dict of DECA parameters, got {type(values).__name__}")
        values = dict(values)
        values.setdefault("detail", np.zeros((1, 128), np.float32))
        missing = [key for key in DECA_KEYS if key not in values]
        if missing:
            raise InputError(f"{source}: missing {', '.join(missing)}; expected a DECA file written by "
                             "preprocessing (manipulator outputs hold only exp and pose)")
        try:
            tform = getattr(values["tform"], "params", values["tform"])  # a live skimage transform too
            return cls(**{name: values[name] for name, _ in _ARRAY_FIELDS},
                       crop_from_frame=tform, original_size=values["original_size"])
        except (ValueError, TypeError) as exc:
            raise InputError(f"{source}: {exc}") from None


def deca_file_name(frame_index: int) -> str:
    """NED's per-frame file name, ``000042.pkl``.

    Raises:
        ValueError: a negative index.
    """
    if frame_index < 0:
        raise ValueError(f"frame_index: expected >= 0, got {frame_index}")
    return f"{frame_index:06d}.pkl"


def list_deca_files(folder: str | os.PathLike) -> list[Path]:
    """The ``*.pkl`` files of a ``DECA/`` folder in name (= frame) order.

    Raises:
        InputError: the folder does not exist or holds no ``.pkl`` file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder; run preprocessing with --backend deca first")
    files = sorted(path for path in folder.iterdir() if path.suffix == ".pkl" and path.is_file())
    if not files:
        raise InputError(f"{folder}: no .pkl files; run preprocessing with --backend deca first")
    return files


def _read_dict(path: str | os.PathLike) -> dict:
    """Read a DECA pickle with the restricted loader; errors become InputError (user data)."""
    try:
        values = load_pickle(path)
    except ModelFileError as exc:
        raise InputError(str(exc)) from None
    if not isinstance(values, dict):
        raise InputError(f"{path}: expected a dict of DECA parameters, got {type(values).__name__}")
    return values


def save_deca_params(path: str | os.PathLike, params: DecaParams) -> None:
    """Write one frame's parameters as NED does (atomic; readable by NED's own scripts).

    Raises:
        OutputError: the file cannot be written.
    """
    save_ned_pickle(path, params.to_ned_dict())


def load_deca_params(path: str | os.PathLike) -> DecaParams:
    """Read a full ``DECA/<frame>.pkl`` (ours or NED's) with the restricted unpickler.

    Raises:
        InputError: missing, unreadable or unsafe file, or keys / shapes that do not match.
    """
    return DecaParams.from_ned_dict(_read_dict(path), source=str(path))


def to_manipulator_input(params: DecaParams) -> np.ndarray:
    """The learned manipulator's per-frame input: ``[pose[0, 3], exp[0, 0:50]]``.

    Returns:
        (51,) float32: jaw opening (radians), then 50 expression coefficients.
    """
    return np.concatenate([params.pose[0, JAW_OPEN_INDEX:JAW_OPEN_INDEX + 1], params.exp[0]]).astype(np.float32)


def from_manipulator_output(params: DecaParams, values: np.ndarray) -> DecaParams:
    """Put the manipulator's 51 numbers back: ``exp`` and ``pose[0, 3]`` replaced, rest kept.

    Args:
        params: the source frame's parameters.
        values: (51,) jaw opening then 50 expression coefficients.

    Returns:
        New parameters (as NED's renderer combines source and manipulated files).

    Raises:
        ValueError: ``values`` is not (51,).
    """
    values = check_array(np.asarray(values, dtype=np.float32), str(MANIPULATOR_INPUTS), name="values")
    pose = params.pose.copy()
    pose[0, JAW_OPEN_INDEX] = values[0]
    return params.replace(exp=values[None, 1:], pose=pose)


def read_manipulator_input(path: str | os.PathLike) -> np.ndarray:
    """The (51,) manipulator vector of a DECA file: a full frame file or a manipulator output.

    Raises:
        InputError: unreadable / unsafe file, or ``exp`` (1, 50) / ``pose`` (1, 6) missing.
    """
    values = _read_dict(path)
    try:
        exp = check_array(np.asarray(values["exp"], dtype=np.float32), "1 50", name="exp")
        pose = check_array(np.asarray(values["pose"], dtype=np.float32), "1 6", name="pose")
    except KeyError as exc:
        raise InputError(f"{path}: missing {exc.args[0]}; expected a DECA file") from None
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None
    return np.concatenate([pose[0, JAW_OPEN_INDEX:JAW_OPEN_INDEX + 1], exp[0]])


def save_manipulated(path: str | os.PathLike, values: np.ndarray) -> None:
    """Write a manipulator output file as NED's ``manipulator/test.py`` does.

    The file holds ``exp`` (1, 50) and ``pose`` (1, 6) float32, zeros except ``pose[0, 3]``.

    Raises:
        ValueError: ``values`` is not (51,).
        OutputError: the file cannot be written.
    """
    values = check_array(np.asarray(values, dtype=np.float32), str(MANIPULATOR_INPUTS), name="values")
    pose = np.zeros((1, 6), np.float32)
    pose[0, JAW_OPEN_INDEX] = values[0]
    save_ned_pickle(path, {"exp": values[None, 1:].copy(), "pose": pose})
