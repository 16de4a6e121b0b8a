"""Manipulator checkpoints: the original release's files and our own, one format.

File names are the original release's: ``<checkpoints_dir>/{epoch:02d}_nets.pth``, or
``{epoch:02d}_nets_finetuned.pth`` after fine-tuning. A file is a ``torch.save``-d dict
with one state dict per network under ``generator``, ``mapping_network``,
``style_encoder`` and (training only) ``discriminator``. Our own files add keys that the
original release ignores:

- ``version`` (int), ``epoch``, ``step``, ``backend``, ``arch`` (plain dict),
  ``options`` (plain dict of the training options);
- ``normalization``: ``{"mean": (D,), "std": (D,)}`` applied to the inputs;
- ``train_nets``: the raw (non-EMA) weights being trained (the top-level network keys hold
  the EMA weights used for inference), ``optimizers``, ``scalers``, ``rng``.

Files are read with ``torch.load(..., weights_only=True, map_location="cpu")`` and written
to a temporary name, then ``os.replace``-d.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ned.checkpoint_io import atomic_torch_save
from ned.errors import ModelFileError
from ned.manipulate.backends import BACKENDS, backend_fingerprint, backend_for_input_dim, backend_input_dim
from ned.manipulate.networks import ManipulatorArch, ManipulatorNets, build_networks

__all__ = [
    "CHECKPOINT_VERSION",
    "NET_KEYS",
    "CheckpointInfo",
    "checkpoint_path",
    "list_checkpoints",
    "find_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "filter_state_dict",
    "load_state_strict",
    "infer_input_dim",
    "load_manipulator",
]

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
#: Networks needed at inference, in the order they are checked.
NET_KEYS: tuple[str, ...] = ("generator", "mapping_network", "style_encoder")
_NAME = re.compile(r"^(\d+)_nets(_finetuned)?\.pth$")


@dataclass(frozen=True)
class CheckpointInfo:
    """What was loaded.

    Attributes:
        path: the file.
        epoch: its epoch (from the file, else from the name; -1 if unknown).
        step: training step for our checkpoints, None for the original release's.
        backend: the expression backend it was made for.
        arch: the network hyperparameters.
        version: our checkpoint version, None for the original release's files.
    """

    path: Path
    epoch: int
    step: int | None
    backend: str
    arch: ManipulatorArch
    version: int | None


def checkpoint_path(checkpoints_dir: str | Path, epoch: int, finetuned: bool = False) -> Path:
    """``<dir>/{epoch:02d}_nets.pth`` or ``..._nets_finetuned.pth``."""
    return Path(checkpoints_dir) / f"{epoch:02d}_nets{'_finetuned' if finetuned else ''}.pth"


def list_checkpoints(checkpoints_dir: str | Path) -> list[tuple[int, bool, Path]]:
    """Checkpoint files in a folder as ``(epoch, finetuned, path)``, sorted by epoch then
    plain before fine-tuned. A missing folder gives an empty list."""
    folder = Path(checkpoints_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), match.group(2) is not None, path))
    return sorted(found, key=lambda t: (t[0], t[1]))


def find_checkpoint(checkpoints: str | Path, which_epoch: int | None = None) -> tuple[Path, int]:
    """Pick the checkpoint file to load.

    Args:
        checkpoints: a folder of ``{epoch:02d}_nets[_finetuned].pth`` files, or one file.
        which_epoch: the epoch to load; None takes the latest. At equal epochs the
            fine-tuned file wins (the original ``test.py`` loads fine-tuned files).

    Returns:
        ``(path, epoch)``; epoch -1 when a file with another name was given.

    Raises:
        ModelFileError: when the folder or file is missing or holds no such epoch.
    """
    path = Path(checkpoints)
    if path.is_file():
        match = _NAME.match(path.name)
        return path, int(match.group(1)) if match else -1
    if not path.is_dir():
        raise ModelFileError(f"{path}: no such checkpoint folder or file; pass --checkpoints_dir with "
                             "{epoch:02d}_nets.pth / {epoch:02d}_nets_finetuned.pth files")
    found = list_checkpoints(path)
    if not found:
        raise ModelFileError(f"{path}: no manipulator checkpoints (expected files named like "
                             "02_nets_finetuned.pth or 10_nets.pth); train one with `ned train-manipulator`")
    if which_epoch is None:
        epoch, _, file = found[-1]
        return file, epoch
    matches = [file for epoch, _, file in found if epoch == which_epoch]
    if not matches:
        epochs = sorted({epoch for epoch, _, _ in found})
        raise ModelFileError(f"{path}: no checkpoint for epoch {which_epoch}; available epochs: {epochs}")
    return matches[-1], which_epoch


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a manipulator checkpoint safely (``weights_only=True``, on the CPU).

    Raises:
        ModelFileError: when the file is missing, is not a PyTorch file, holds something
            other than tensors and plain values, or lacks the network keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: checkpoint file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to parse means "not a checkpoint"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelFileError(f"{path}: not a NED manipulator checkpoint (cannot be read as a PyTorch "
                             f"weights file: {reason[:200]})") from None
    if not isinstance(data, Mapping):
        raise ModelFileError(f"{path}: not a NED manipulator checkpoint (holds a {type(data).__name__}, "
                             f"expected a dict with keys {list(NET_KEYS)})")
    missing = [key for key in NET_KEYS if not isinstance(data.get(key), Mapping)]
    if missing:
        raise ModelFileError(f"{path}: not a NED manipulator checkpoint (missing {missing}; found keys "
                             f"{sorted(map(str, data))[:10]})")
    return dict(data)


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` with ``torch.save`` to a temporary name, then ``os.replace`` it
    (:func:`ned.checkpoint_io.atomic_torch_save`).

    Raises:
        OSError: when the folder cannot be written (the temporary file is removed).
    """
    return atomic_torch_save(path, payload)


def filter_state_dict(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Convert a foreign state dict at the door: drop ``module.`` prefixes left by
    ``DataParallel`` / ``DistributedDataParallel``; keep tensors only."""
    out = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[key[len("module."):] if key.startswith("module.") else key] = value
    return out


def _shape(t: torch.Size | tuple[int, ...]) -> str:
    return "[" + ", ".join(str(int(d)) for d in t) + "]"


def load_state_strict(module: nn.Module, state: Mapping[str, Any], *, key: str, path: Path | str) -> None:
    """Load ``state`` into ``module`` strictly, with an error that names the first
    mismatching tensor.

    Raises:
        ModelFileError: on a missing, unexpected or wrongly shaped tensor, e.g.
            ``02_nets.pth: tensor generator.LSTM.weight_hh_l1 has shape [2048, 100], expected [2048, 512]``.
    """
    state = filter_state_dict(state)
    name = Path(path).name
    for tensor_name, expected in module.state_dict().items():
        if tensor_name not in state:
            raise ModelFileError(f"{name}: tensor {key}.{tensor_name} is missing (expected shape "
                                 f"{_shape(expected.shape)}); the checkpoint does not match this network")
        found = state[tensor_name]
        if tuple(found.shape) != tuple(expected.shape):
            raise ModelFileError(f"{name}: tensor {key}.{tensor_name} has shape {_shape(found.shape)}, "
                                 f"expected {_shape(expected.shape)}; the checkpoint does not match this network")
    unexpected = sorted(set(state) - set(module.state_dict()))
    if unexpected:
        raise ModelFileError(f"{name}: unexpected tensor {key}.{unexpected[0]} (and {len(unexpected) - 1} more); "
                             "the checkpoint does not match this network")
    module.load_state_dict(state, strict=True)


def infer_input_dim(data: Mapping[str, Any]) -> int | None:
    """Values per frame of a checkpoint, by majority of the generator's output layer and
    the style encoder's / discriminator's input layers (None when none is present)."""
    votes = []
    for key, tensor_name, axis in (("generator", "seq2.4.bias", 0), ("style_encoder", "seq1.0.weight", 1),
                                   ("discriminator", "seq1.0.weight", 1)):
        state = data.get(key)
        if isinstance(state, Mapping):
            tensor = filter_state_dict(state).get(tensor_name)
            if tensor is not None and tensor.ndim > axis:
                votes.append(int(tensor.shape[axis]))
    return Counter(votes).most_common(1)[0][0] if votes else None


def _infer_num_domains(data: Mapping[str, Any]) -> int | None:
    heads = {int(m.group(1)) for k in filter_state_dict(data["mapping_network"])
             if (m := re.match(r"unshared\.(\d+)\.", k))}
    return len(heads) or None


def _backend_error(path: Path, ckpt_dim: int, ckpt_backend: str, backend: str, want_dim: int | None) -> ModelFileError:
    if ckpt_backend == "deca":
        what = "DECA parameters (51 values per frame: jaw opening + 50 FLAME expression coefficients)"
    else:
        what = f"our face model's expression vectors ({ckpt_dim} values per frame)"
    have = f" ({want_dim} values per frame)" if want_dim else ""
    return ModelFileError(f"{path.name} was trained on {what} and needs the {ckpt_backend!r} backend; the selected "
                          f"backend is {backend!r}{have}: run with --backend {ckpt_backend}, or train a checkpoint "
                          f"for {backend!r} with `ned train-manipulator --backend {backend}`")


def load_manipulator(checkpoints: str | Path, which_epoch: int | None = None, *, backend: str = "face3d",
                     input_dim: int | None = None, with_discriminator: bool = False,
                     ) -> tuple[ManipulatorNets, CheckpointInfo]:
    """Load a manipulator checkpoint (the original release's or ours) for a backend.

    Args:
        checkpoints: folder of checkpoint files, or one file (see :func:`find_checkpoint`).
        which_epoch: epoch to load, None for the latest.
        backend: the expression backend the caller will feed (``face3d`` or ``deca``).
        input_dim: values per frame the caller will feed; None asks the backend.
        with_discriminator: also load the discriminator (must then be present).

    Returns:
        ``(nets, info)``: the networks in eval mode on the CPU (the top-level weights,
        which are the EMA weights for our checkpoints) and what was loaded.

    Raises:
        ModelFileError: missing file, not a checkpoint, wrong backend (naming the one it
            needs), or a tensor that does not match (naming it with both shapes).
        ValueError: for an unknown backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown expression backend {backend!r}; choose one of {list(BACKENDS)}")
    path, epoch = find_checkpoint(checkpoints, which_epoch)
    data = read_checkpoint(path)
    ckpt_dim = infer_input_dim(data)
    if ckpt_dim is None:
        raise ModelFileError(f"{path.name}: tensor generator.seq2.4.bias and style_encoder.seq1.0.weight are "
                             "missing; not a NED manipulator checkpoint")
    ckpt_backend = data.get("backend") if data.get("backend") in BACKENDS else backend_for_input_dim(ckpt_dim)
    want_dim = input_dim if input_dim is not None else backend_input_dim(backend)
    if ckpt_backend != backend or (want_dim is not None and want_dim != ckpt_dim):
        raise _backend_error(path, ckpt_dim, ckpt_backend, backend, want_dim)

    if isinstance(data.get("arch"), Mapping):
        try:
            arch = ManipulatorArch.from_dict(dict(data["arch"]))
        except (TypeError, ValueError) as err:
            raise ModelFileError(f"{path.name}: bad 'arch' entry ({err})") from None
    else:  # the original release: its sizes, with the per-frame size and emotion count of the file
        arch = ManipulatorArch(input_dim=ckpt_dim, num_domains=_infer_num_domains(data) or 7)
    if with_discriminator and not isinstance(data.get("discriminator"), Mapping):
        raise ModelFileError(f"{path.name}: has no discriminator (needed to continue training)")
    nets = build_networks(arch, with_discriminator=with_discriminator)
    for key, module in nets.modules().items():
        load_state_strict(module, data[key], key=key, path=path)
    norm = data.get("normalization")
    if isinstance(norm, Mapping):
        mean, std = norm.get("mean"), norm.get("std")
        if not (isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor)
                and mean.shape == (arch.input_dim,) and std.shape == (arch.input_dim,)):
            raise ModelFileError(f"{path.name}: normalization must hold mean and std of shape ({arch.input_dim},)")
        nets.mean, nets.std = mean.float(), std.float()
    recorded = data.get("backend_fingerprint")
    if isinstance(recorded, str) and recorded != backend_fingerprint(backend):
        logger.warning("%s was trained on expression space %s but the installed face model is %s: "
                       "results may be off; retrain on the current face model", path.name, recorded,
                       backend_fingerprint(backend))
    info = CheckpointInfo(path=path, epoch=int(data.get("epoch", epoch)), step=data.get("step"),
                          backend=ckpt_backend, arch=arch, version=data.get("version"))
    logger.info("loaded manipulator %s (epoch %d, backend %s, %d values per frame)", path, info.epoch,
                info.backend, arch.input_dim)
    return nets.eval(), info
