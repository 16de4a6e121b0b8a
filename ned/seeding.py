"""The one owner of randomness: seeding, explicit generators and RNG-state snapshots.

Code that draws takes an explicit generator made here (:func:`numpy_generator`,
:func:`torch_generator`), keyed by the run's one ``seed`` and whatever else makes the
draw unique (epoch, step, rank, ...), so a draw is a function of those keys and never of
what ran before. :func:`seed_everything` covers what still reads the global generators
(network initialisation, third-party code). :func:`capture_rng_state`
and :func:`restore_rng_state` put the global states into checkpoints so that a resumed
run continues bit-identically.
"""

from __future__ import annotations

import random
from typing import Any, Mapping

import numpy as np
import torch

__all__ = [
    "seed_everything",
    "derive_seed",
    "numpy_generator",
    "torch_generator",
    "capture_rng_state",
    "restore_rng_state",
]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and every CUDA device).

    Args:
        seed: the run's seed, in ``[0, 2**32)``.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that is a pure function of ``keys`` (``SeedSequence`` mixing).

    ``derive_seed(seed, step, rank)`` gives unrelated, reproducible seeds per step and rank.
    """
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] >> 1)


def numpy_generator(*keys: int) -> np.random.Generator:
    """``np.random.default_rng(keys)``: a generator that is a pure function of the keys.

    ``numpy_generator(seed)`` equals ``np.random.default_rng(seed)``.
    """
    return np.random.default_rng([int(k) for k in keys])


def torch_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with exactly ``seed``.

    Combine keys first with :func:`derive_seed` (``torch_generator(derive_seed(seed, step))``).
    """
    return torch.Generator(device=device).manual_seed(int(seed))


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states as a plain dict that ``torch.load(..., weights_only=True)`` reads.

    Returns:
        ``{"python": random.getstate(), "torch": ByteTensor,
        "numpy": (kind, int64 key tensor, pos, has_gauss, cached_gaussian),
        "cuda": [ByteTensor per device] (empty without CUDA)}``.
    """
    kind, key, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, cached),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured; missing entries are left alone.

    Also reads older layouts: the Python state as a list ``[version, [ints], gauss]``.
    CUDA states are restored only when CUDA is available with as many devices as saved.
    """
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "numpy" in state:
        kind, key, *rest = state["numpy"]
        np.random.set_state((kind, np.asarray(key).astype(np.uint32), *rest))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
