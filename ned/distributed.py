"""Device, precision and process-group plumbing shared by the trainers.

The device is chosen once: :func:`resolve_device` for inference, :func:`init_distributed`
(or the :func:`distributed_session` context) for a training process, and the result is
passed down. Mixed precision is chosen once with :func:`autocast_dtype` and entered with
:func:`autocast`.

Launched by ``torchrun`` (``WORLD_SIZE > 1`` in the environment) a training process joins
the process group (NCCL on CUDA, gloo on CPU) and trains on ``cuda:LOCAL_RANK``; without
it everything here is a no-op for a single process.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ned.errors import DeviceError

__all__ = [
    "DistInfo",
    "check_device_spec",
    "resolve_device",
    "init_distributed",
    "distributed_session",
    "cleanup_distributed",
    "barrier",
    "all_ok",
    "wrap_ddp",
    "unwrap",
    "autocast_dtype",
    "load_scaler_state",
    "autocast",
]

#: How long a collective waits for the other ranks (rank 0 validates and saves meanwhile).
DEFAULT_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a (possibly one-process) DDP job.

    Attributes:
        rank: global rank, ``[0, world_size)``.
        world_size: number of processes (1 without DDP).
        local_rank: rank on this machine (picks the GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that logs, validates and saves)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True in a multi-process job."""
        return self.world_size > 1


# --------------------------------------------------------------------------- device and precision


def check_device_spec(spec: str) -> None:
    """Validate a device spelling without touching the hardware.

    Raises:
        DeviceError: for anything but ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """
    if spec in ("auto", "cpu", "cuda") or (spec.startswith("cuda:") and spec[5:].isdigit()):
        return
    raise DeviceError(f"device must be auto, cpu, cuda or cuda:N, got {spec!r}")


def resolve_device(spec: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:1"`` as given.

    Raises:
        DeviceError: (an ``InputError`` and a ``ValueError``) for an unknown or unsupported
            spec, or CUDA requested but not available.
    """
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError, TypeError) as err:
        raise DeviceError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from err
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"unsupported device {spec!r}; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {spec!r} requested but no CUDA GPU is available; use --device cpu or auto")
    return device


def load_scaler_state(scaler: torch.amp.GradScaler, state: dict) -> None:
    """Restore a gradient scaler from a checkpoint; an empty state (saved by a disabled
    scaler: a CPU, bf16 or full-precision run) leaves the scaler as it starts."""
    if state:
        scaler.load_state_dict(state)


def autocast_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The mixed-precision dtype for ``device``: bfloat16 on CUDA when supported, else
    float16; None (full precision) on the CPU or when not ``enabled``.

    float16 needs gradient scaling (``GradScaler(enabled=dtype == torch.float16)``).
    """
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``; a no-op context when ``dtype`` is None."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------- process group


def init_distributed(device_spec: str = "auto", *, timeout: timedelta = DEFAULT_TIMEOUT
                     ) -> tuple[DistInfo, torch.device]:
    """Resolve the training device once and, under ``torchrun`` (``WORLD_SIZE > 1``), join
    the process group (NCCL on CUDA, gloo on CPU) unless it is already initialised.

    Args:
        device_spec: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        timeout: how long collectives wait for the other ranks.

    Returns:
        ``(dist_info, device)``. A CUDA device always carries an index: the one asked for,
        ``cuda:0`` for a plain ``cuda`` in a single process, and ``cuda:LOCAL_RANK`` (made
        the current device) under DDP.

    Raises:
        DeviceError: for a bad or unavailable device, or more processes on this machine
            (``LOCAL_WORLD_SIZE``) than CUDA GPUs.
    """
    device = resolve_device(device_spec)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", 0)
        return DistInfo(), device
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        per_node, gpus = int(os.environ.get("LOCAL_WORLD_SIZE", "1")), torch.cuda.device_count()
        if per_node > gpus:
            raise DeviceError(f"torchrun started {per_node} processes on this machine but it has {gpus} CUDA "
                              f"GPU(s); NCCL needs one GPU per process: use --nproc_per_node {gpus} "
                              "(or --device cpu for gloo)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world,
                                timeout=timeout)
    return DistInfo(rank=rank, world_size=world, local_rank=local), device


def cleanup_distributed() -> None:
    """Destroy the default process group, if there is one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed_session(device_spec: str = "auto") -> Iterator[tuple[DistInfo, torch.device]]:
    """:func:`init_distributed` for the duration of a ``with`` block; a process group
    created here is destroyed on the way out, after a barrier when the block ended
    normally (one that already existed is left alone).

    Yields:
        ``(dist_info, device)``.
    """
    owns_group = not (dist.is_available() and dist.is_initialized())
    info, device = init_distributed(device_spec)
    try:
        yield info, device
        if owns_group:
            # every rank reaches the teardown together: a rank tearing down gloo while
            # another still talks to it can abort ("terminate called without an active
            # exception") after the work is done
            barrier(info)
    finally:
        if owns_group:
            cleanup_distributed()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()


def all_ok(info: DistInfo, device: torch.device, ok: bool) -> bool:
    """True when ``ok`` holds on every process (a barrier that also carries a verdict)."""
    if not info.enabled or not dist.is_initialized():
        return ok
    flag = torch.tensor([0.0 if ok else 1.0], device=device)
    dist.all_reduce(flag)
    return float(flag.item()) == 0.0


def wrap_ddp(module: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``DistributedDataParallel`` around ``module`` (already on ``device``)."""
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (``module`` itself otherwise)."""
    return module.module if isinstance(module, DistributedDataParallel) else module
