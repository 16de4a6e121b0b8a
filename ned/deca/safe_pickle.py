"""A restricted pickle reader (and a NED-compatible writer) for FLAME and DECA files.

FLAME's ``generic_model.pkl`` is a Python 2 pickle that holds chumpy ``Ch`` objects and
``scipy.sparse`` matrices; NED's ``DECA/<frame>.pkl`` files are Python 3 pickles of dicts of
numpy arrays plus a scikit-image ``SimilarityTransform``. Plain ``pickle.load`` on either
would run whatever callable the file names, so this module reads them with an unpickler
that resolves only an allow-list of globals:

- numpy's array / dtype / scalar reconstructors (both the ``numpy.core`` names of numpy 1
  and the ``numpy._core`` names of numpy 2);
- ``copy_reg._reconstructor`` (old-style object creation, only for the stand-ins below),
  ``set`` / ``frozenset`` / ``object`` and ``_codecs.encode`` with a latin-1 codec only;
- ``chumpy.ch.Ch`` -> a stand-in whose state ``x`` becomes a numpy array (chumpy is not
  needed, and never imported);
- ``scipy.sparse`` csc/csr/coo matrices and arrays -> stand-ins rebuilt with scipy's
  constructors from their index/data arrays;
- scikit-image's similarity/euclidean/affine/projective transforms -> their ``(3, 3)``
  ``params`` matrix.

Anything else (``os.system``, ``subprocess.Popen``, ``builtins.eval``, ``torch`` classes,
other chumpy expression classes, ...) is refused with :class:`~ned.errors.ModelFileError`
``refusing to load <file>: it references <module.name>`` before it is ever called.

The writer (:func:`dump_ned_pickle`) emits protocol-4 pickles that name numpy's
reconstructor ``numpy.core.multiarray._reconstruct`` and the crop transform
``skimage.transform._geometric.SimilarityTransform``, so the original NED code (Python 3.8,
numpy 1.19, scikit-image 0.18) can read the folders this package writes.
"""

from __future__ import annotations

import copyreg
import io
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ned.errors import ModelFileError, OutputError

__all__ = [
    "RestrictedUnpickler",
    "TransformRecord",
    "dump_ned_pickle",
    "load_pickle",
    "loads_pickle",
    "save_ned_pickle",
]

logger = logging.getLogger(__name__)

# numpy's own reconstructors, looked up from live objects so that numpy 1 and 2 both work.
_NP_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_NP_SCALAR = np.float64(0.0).__reduce__()[0]


class _ReadOnlyType(type):
    """Metaclass of the stand-ins: a pickle's BUILD opcode cannot rebind class attributes."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise AttributeError(f"{cls.__name__} is read-only")


class _StandIn(metaclass=_ReadOnlyType):
    """Base of objects that a pickle may create; each keeps only its ``state`` dict."""

    __slots__ = ("state",)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
            state = state[0]  # (dict_state, slot_state) form
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(
                f"unexpected state of type {type(state).__name__} for {type(self).__name__}"
            )
        object.__setattr__(self, "state", state)

    def resolve(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError


class _ChumpyArray(_StandIn):
    """chumpy ``Ch``: the array lives in the state's ``x`` entry."""

    __slots__ = ()

    def resolve(self) -> np.ndarray:
        state = getattr(self, "state", None)
        if state is None or "x" not in state:
            raise pickle.UnpicklingError("a chumpy Ch object without its 'x' array")
        return np.asarray(_resolve(state["x"]))


class _SparseMatrix(_StandIn):
    """A ``scipy.sparse`` matrix, rebuilt from its arrays with scipy's own constructor."""

    __slots__ = ()
    fmt = ""

    def resolve(self) -> Any:
        import scipy.sparse as sp

        state = {k: _resolve(v) for k, v in getattr(self, "state", {}).items()}
        shape = state.get("_shape", state.get("shape"))
        if shape is None:
            raise pickle.UnpicklingError(f"a scipy.sparse {self.fmt} matrix without a shape")
        shape = tuple(int(s) for s in shape)
        try:
            if self.fmt == "coo":
                row = state.get("row", state.get("coords", (None, None))[0])
                col = state.get("col", state.get("coords", (None, None))[1])
                return sp.coo_matrix((np.asarray(state["data"]), (np.asarray(row), np.asarray(col))), shape=shape)
            build = sp.csc_matrix if self.fmt == "csc" else sp.csr_matrix
            arrays = (np.asarray(state["data"]), np.asarray(state["indices"]), np.asarray(state["indptr"]))
            return build(arrays, shape=shape)
        except KeyError as exc:
            raise pickle.UnpicklingError(f"a scipy.sparse {self.fmt} matrix without {exc}") from None


class _CscMatrix(_SparseMatrix):
    __slots__ = ()
    fmt = "csc"


class _CsrMatrix(_SparseMatrix):
    __slots__ = ()
    fmt = "csr"


class _CooMatrix(_SparseMatrix):
    __slots__ = ()
    fmt = "coo"


class TransformRecord(_StandIn):
    """A 2-D homogeneous transform as scikit-image pickles it (state ``{'params': (3, 3)}``).

    Reading resolves it to its ``(3, 3) float64`` matrix. Writing one with
    :func:`dump_ned_pickle` names ``skimage.transform._geometric.SimilarityTransform``, so
    NED's scripts get the object they expect (``warp(img, tform)``, ``tform.inverse``).
    """

    __slots__ = ()

    def __init__(self, params: np.ndarray) -> None:
        matrix = np.asarray(params, dtype=np.float64)
        if matrix.shape != (3, 3):
            raise ValueError(f"params: expected shape (3, 3), got {matrix.shape}")
        object.__setattr__(self, "state", {"params": matrix})

    def __reduce__(self) -> tuple:
        return (copyreg.__newobj__, (type(self),), {"params": self.state["params"]})

    def resolve(self) -> np.ndarray:
        params = _resolve(getattr(self, "state", {}).get("params"))
        matrix = np.asarray(params, dtype=np.float64) if params is not None else None
        if matrix is None or matrix.shape != (3, 3):
            raise pickle.UnpicklingError("a scikit-image transform without a (3, 3) 'params' matrix")
        return matrix


class _Reconstructor(metaclass=_ReadOnlyType):
    """``copy_reg._reconstructor(cls, object, None)``, for the stand-in classes only."""

    __slots__ = ()

    def __call__(self, cls: Any, base: Any, state: Any = None) -> Any:
        if not (isinstance(cls, type) and issubclass(cls, _StandIn)) or base is not object or state is not None:
            raise pickle.UnpicklingError("copy_reg._reconstructor is allowed only for plain objects")
        return cls.__new__(cls)


class _Latin1Encode(metaclass=_ReadOnlyType):
    """``_codecs.encode(text, 'latin1')``: how protocol-2 pickles written by Python 3 store bytes."""

    __slots__ = ()

    def __call__(self, text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        if not isinstance(text, str) or encoding.replace("-", "").lower() not in ("latin1", "iso88591"):
            raise pickle.UnpicklingError("_codecs.encode is allowed only for latin-1 text")
        return text.encode("latin-1")


class _FromBuffer(metaclass=_ReadOnlyType):
    """numpy's protocol-5 ``_frombuffer(buffer, dtype, shape, order)``, copying the data."""

    __slots__ = ()

    def __call__(self, buffer: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
        if not isinstance(dtype, np.dtype) or dtype.hasobject or order not in ("C", "F"):
            raise pickle.UnpicklingError("numpy _frombuffer with an unsupported dtype or order")
        flat = np.frombuffer(bytes(memoryview(buffer)), dtype=dtype)
        return flat.reshape(tuple(shape), order=order).copy()


_SPARSE = {"csc": _CscMatrix, "csr": _CsrMatrix, "coo": _CooMatrix}
_TRANSFORMS = ("SimilarityTransform", "EuclideanTransform", "AffineTransform", "ProjectiveTransform")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The complete allow-list: ``(module, name)`` as written in the file -> object."""
    allowed: dict[tuple[str, str], Any] = {}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = _NP_RECONSTRUCT
        allowed[(f"{core}.multiarray", "scalar")] = _NP_SCALAR
        allowed[(f"{core}.numeric", "_frombuffer")] = _FromBuffer()
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    for builtins in ("__builtin__", "builtins"):
        allowed[(builtins, "set")] = set
        allowed[(builtins, "frozenset")] = frozenset
        allowed[(builtins, "object")] = object
    for copyreg_name in ("copy_reg", "copyreg"):
        allowed[(copyreg_name, "_reconstructor")] = _Reconstructor()
    allowed[("_codecs", "encode")] = _Latin1Encode()
    allowed[("chumpy.ch", "Ch")] = _ChumpyArray
    allowed[("chumpy", "Ch")] = _ChumpyArray
    for fmt, stand_in in _SPARSE.items():
        for module in (f"scipy.sparse.{fmt}", f"scipy.sparse._{fmt}"):
            allowed[(module, f"{fmt}_matrix")] = stand_in
            allowed[(module, f"{fmt}_array")] = stand_in
    for name in _TRANSFORMS:
        allowed[("skimage.transform._geometric", name)] = TransformRecord
    return allowed


_ALLOWED = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the allow-listed globals of this module.

    Args:
        file: a binary file object positioned at the pickle.
        source: the file's name for messages.

    Raises (from ``load``):
        ModelFileError: the pickle references anything outside the allow-list.
    """

    def __init__(self, file: BinaryIO, *, source: str) -> None:
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            hint = ""
            if module.startswith("chumpy"):
                hint = " (a chumpy expression, not a plain Ch array; re-save the file with its arrays evaluated)"
            raise ModelFileError(f"refusing to load {self._source}: it references {module}.{name}{hint}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise ModelFileError(f"refusing to load {self._source}: it uses persistent ids")


def _resolve(obj: Any) -> Any:
    """Replace stand-ins by arrays / sparse matrices, recursively through dicts, lists, tuples."""
    if isinstance(obj, _StandIn):
        return obj.resolve()
    if isinstance(obj, dict):
        return {key: _resolve(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_resolve(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(value) for value in obj)
    return obj


def _load_from(file: BinaryIO, source: str) -> Any:
    try:
        raw = RestrictedUnpickler(file, source=source).load()
        return _resolve(raw)
    except ModelFileError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, UnicodeDecodeError, MemoryError, OverflowError, RecursionError) as exc:
        raise ModelFileError(f"cannot read {source}: not a readable pickle ({type(exc).__name__}: {exc})") from None


def load_pickle(path: str | os.PathLike) -> Any:
    """Read a FLAME / DECA pickle with the restricted unpickler.

    Args:
        path: the file (Python 2 pickles are decoded with ``encoding='latin1'``).

    Returns:
        The unpickled object with chumpy arrays as ``np.ndarray``, sparse matrices as
        ``scipy.sparse`` matrices and scikit-image transforms as ``(3, 3) float64`` arrays.

    Raises:
        ModelFileError: the file is missing, unreadable, not a pickle, or references
            anything outside the allow-list (``refusing to load <file>: it references <name>``).
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            return _load_from(file, str(path))
    except FileNotFoundError:
        raise ModelFileError(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"cannot read {path}: it is a folder, not a file") from None
    except PermissionError:
        raise ModelFileError(f"cannot read {path}: permission denied") from None


def loads_pickle(data: bytes, *, source: str = "<bytes>") -> Any:
    """:func:`load_pickle` for bytes in memory. Raises ModelFileError as it does."""
    return _load_from(io.BytesIO(data), source)


# ---------------------------------------------------------------------------------------
# Writing


_WRITE_ALIASES: dict[int, tuple[str, str]] = {
    id(_NP_RECONSTRUCT): ("numpy.core.multiarray", "_reconstruct"),
    id(_NP_SCALAR): ("numpy.core.multiarray", "scalar"),
    id(TransformRecord): ("skimage.transform._geometric", "SimilarityTransform"),
}


class _NedPickler(pickle._Pickler):  # the pure-Python pickler lets us choose global names
    """Protocol-4 pickler that writes numpy-1 / scikit-image names for a few globals."""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        alias = _WRITE_ALIASES.get(id(obj))
        if alias is None:
            super().save_global(obj, name)
            return
        self.save(alias[0])
        self.save(alias[1])
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)


def dump_ned_pickle(obj: Any) -> bytes:
    """Serialise ``obj`` (dicts of numpy arrays, tuples, :class:`TransformRecord`) as NED does.

    Returns:
        Protocol-4 pickle bytes readable by numpy 1 and 2, and by :func:`loads_pickle`.
    """
    buffer = io.BytesIO()
    _NedPickler(buffer, protocol=4).dump(obj)
    return buffer.getvalue()


def save_ned_pickle(path: str | os.PathLike, obj: Any) -> None:
    """Write :func:`dump_ned_pickle` bytes atomically (temporary file, then ``os.replace``).

    Raises:
        OutputError: the folder does not exist or cannot be written.
    """
    path = Path(path)
    data = dump_ned_pickle(obj)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None

