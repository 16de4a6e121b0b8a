"""Inference with the learned NED manipulator.

A clip's expression vectors ``(T, D)`` are cut into overlapping windows of
``arch.window`` frames (every ``hop`` frames; the last window is aligned to the clip's
end), each window is translated by the generator with one style code, and the
overlapping outputs are averaged with Gaussian weights over the window's frames
(normalised per frame, so the weights covering any frame sum to 1).

The style code comes from

- a label (label-driven): the mapping network's head of the emotion, applied to a latent
  code drawn from ``ned.seeding.torch_generator(seed)``;
- a reference clip (reference-driven): the geometric median (Weiszfeld) of the style
  encoder's codes of all the reference's windows.

Everything is deterministic for a given input, checkpoint and seed.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ned.distributed import resolve_device  # re-exported: the device resolution used here
from ned.errors import InputError, ModelFileError
from ned.manipulate.backends import BACKENDS, backend_for_input_dim, backend_kept_indices
from ned.manipulate.checkpoint import CheckpointInfo, load_manipulator
from ned.manipulate.networks import EMOTIONS, ManipulatorNets
from ned.seeding import torch_generator
from ned.types import check_array

__all__ = [
    "resolve_device",
    "gaussian_window_weights",
    "window_starts",
    "blend_windows",
    "geometric_median",
    "style_from_label",
    "style_from_reference",
    "translate_sequence",
    "LearnedOptions",
    "LearnedManipulator",
]

logger = logging.getLogger(__name__)


def gaussian_window_weights(window: int, sigma: float | None = None) -> np.ndarray:
    """Gaussian weights over a window's frames, summing to 1.

    Args:
        window: frames per window (>= 1).
        sigma: standard deviation in frames; None uses ``0.3 * ((window - 1) / 2 - 1) + 0.8``
            (OpenCV's default for a kernel of this size, as the original release).

    Returns:
        (window,) float64, symmetric about the window's centre.

    Raises:
        ValueError: for ``window < 1`` or ``sigma <= 0``.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if sigma is None:
        sigma = max(0.3 * ((window - 1) * 0.5 - 1) + 0.8, 0.5)
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    x = np.arange(window, dtype=np.float64) - (window - 1) / 2
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def window_starts(length: int, window: int, hop: int = 1) -> np.ndarray:
    """Start frames of the windows covering ``length`` frames.

    Starts are ``0, hop, 2 hop, ...``; a last window aligned to the end is added when the
    hop leaves frames uncovered. A clip shorter than the window gives one window ``[0]``
    (of ``length`` frames).

    Returns:
        (N,) int64.

    Raises:
        ValueError: for a non-positive length, window or hop.
    """
    if length < 1 or window < 1 or hop < 1:
        raise ValueError(f"length, window and hop must be >= 1, got {length}, {window}, {hop}")
    if length <= window:
        return np.zeros(1, np.int64)
    starts = list(range(0, length - window + 1, hop))
    if starts[-1] + window < length:
        starts.append(length - window)
    return np.asarray(starts, np.int64)


def blend_windows(outputs: np.ndarray, starts: np.ndarray, length: int, weights: np.ndarray) -> np.ndarray:
    """Average overlapping window outputs with per-frame weights.

    Frame ``t`` is ``sum_i w[t - s_i] y_i[t - s_i] / sum_i w[t - s_i]`` over the windows
    ``i`` that cover it.

    Args:
        outputs: (N, W, D) window outputs.
        starts: (N,) start frame of each window.
        length: frames T of the clip; every frame must be covered.
        weights: (W,) positive weights over a window's frames.

    Returns:
        (T, D) float32.

    Raises:
        ValueError: on inconsistent shapes or an uncovered frame.
    """
    check_array(outputs, "N W D", name="outputs")
    n, w, d = outputs.shape
    check_array(np.asarray(starts), "N", name="starts")
    if len(starts) != n or len(weights) < w or np.any(np.asarray(weights[:w]) <= 0):
        raise ValueError(f"need {n} starts and >= {w} positive weights, got {len(starts)} and {len(weights)}")
    total = np.zeros((length, d), np.float64)
    norm = np.zeros(length, np.float64)
    wts = np.asarray(weights[:w], np.float64)
    for start, out in zip(np.asarray(starts, np.int64), outputs):
        if start < 0 or start + w > length:
            raise ValueError(f"window at {start} of {w} frames does not fit {length} frames")
        total[start:start + w] += wts[:, None] * out
        norm[start:start + w] += wts
    if np.any(norm == 0):
        raise ValueError(f"frames {np.flatnonzero(norm == 0)[:5].tolist()} are covered by no window")
    return (total / norm[:, None]).astype(np.float32)


def geometric_median(points: np.ndarray, *, eps: float = 1e-7, max_iter: int = 1000) -> np.ndarray:
    """Geometric median of points by Weiszfeld's iteration (with the Vardi-Zhang step
    when the estimate lands on a data point).

    Args:
        points: (N, S) points.
        eps: stop when an update moves less than ``eps * (1 + |y|)``.
        max_iter: iteration cap.

    Returns:
        (S,) float64 minimiser of ``sum_i |x_i - y|``.

    Raises:
        ValueError: on an empty or non-finite input.
    """
    x = np.asarray(check_array(np.asarray(points), "N S", name="points"), np.float64)
    if len(x) == 0 or not np.isfinite(x).all():
        raise ValueError("points must be non-empty and finite")
    y = x.mean(axis=0)
    for _ in range(max_iter):
        dist = np.linalg.norm(x - y, axis=1)
        away = dist > 1e-12
        if not away.any():
            return y
        inv = 1.0 / dist[away]
        t = (inv[:, None] * x[away]).sum(axis=0) / inv.sum()
        n_at = int((~away).sum())
        if n_at == 0:
            y_new = t
        else:  # y coincides with data points: move only if their pull is outweighed
            r = np.linalg.norm((t - y) * inv.sum())
            gamma = 1.0 if r == 0 else min(1.0, n_at / r)
            y_new = (1.0 - gamma) * t + gamma * y
        if np.linalg.norm(y_new - y) < eps * (1.0 + np.linalg.norm(y)):
            return y_new
        y = y_new
    return y


def _net_device(nets: ManipulatorNets) -> torch.device:
    return next(nets.mapping_network.parameters()).device


def _emotion_index(nets: ManipulatorNets, emotion: str | int) -> int:
    if isinstance(emotion, (int, np.integer)):
        index = int(emotion)
    elif emotion in EMOTIONS:
        index = EMOTIONS.index(emotion)
    else:
        raise ValueError(f"unknown emotion {emotion!r}; choose one of {list(EMOTIONS)}")
    if not 0 <= index < nets.arch.num_domains:
        raise ValueError(f"emotion index {index} outside the checkpoint's {nets.arch.num_domains} emotions")
    return index


def _check_expressions(nets: ManipulatorNets, x: np.ndarray, name: str) -> np.ndarray:
    check_array(x, "T D", np.float32, name=name)
    if x.shape[0] == 0:
        raise ValueError(f"{name}: no frames")
    if x.shape[1] != nets.arch.input_dim:
        need = backend_for_input_dim(nets.arch.input_dim)
        raise ModelFileError(f"the manipulator expects {nets.arch.input_dim} values per frame ({need!r} backend) "
                             f"but {name} has {x.shape[1]}: run with --backend {need} or use a checkpoint "
                             f"trained for this backend")
    return x


def _fill_missing(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate non-finite rows (frames without a face) for the network input.

    Returns ``(filled (T, D), missing (T,) bool)``.

    Raises:
        InputError: when no row is finite.
    """
    missing = ~np.isfinite(x).all(axis=1)
    if not missing.any():
        return x, missing
    if missing.all():
        raise InputError("no frame has expression values (no face found in the clip)")
    t = np.arange(len(x))
    filled = x.copy()
    for d in range(x.shape[1]):
        filled[missing, d] = np.interp(t[missing], t[~missing], x[~missing, d])
    return filled, missing


def _windows(x: torch.Tensor, starts: np.ndarray, window: int) -> torch.Tensor:
    """(T, D) -> (N, min(window, T), D) windows at ``starts``."""
    w = min(window, x.shape[0])
    rows = torch.from_numpy(starts[:, None] + np.arange(w)[None, :]).to(x.device)
    return x[rows]


@torch.no_grad()
def style_from_label(nets: ManipulatorNets, emotion: str | int, seed: int = 0) -> np.ndarray:
    """Style code of an emotion from the mapping network and a seeded latent code.

    Args:
        nets: the networks.
        emotion: a name in :data:`EMOTIONS` or its index.
        seed: seed of the latent code ``z ~ N(0, I)``.

    Returns:
        (S,) float32.

    Raises:
        ValueError: for an unknown emotion.
    """
    index = _emotion_index(nets, emotion)
    z = torch.randn(1, nets.arch.latent_dim, generator=torch_generator(seed))
    device = _net_device(nets)
    style = nets.mapping_network(z.to(device), torch.tensor([index], device=device))
    return style[0].float().cpu().numpy()


@torch.no_grad()
def style_from_reference(nets: ManipulatorNets, reference: np.ndarray, *, hop: int = 1,
                         batch_size: int = 256) -> np.ndarray:
    """Style code of a reference clip: geometric median of its windows' style codes.

    Args:
        nets: the networks.
        reference: (T, D) float32 expression vectors of the reference clip.
        hop: frames between windows.
        batch_size: windows per network call.

    Returns:
        (S,) float32.

    Raises:
        ValueError: on a bad shape; ModelFileError: when D does not match the checkpoint.
    """
    reference = _check_expressions(nets, reference, "reference")
    filled, _ = _fill_missing(reference)
    device = _net_device(nets)
    x = nets.normalize(torch.from_numpy(filled).to(device))
    starts = window_starts(len(filled), nets.arch.window, hop)
    codes = [nets.style_encoder(_windows(x, starts[i:i + batch_size], nets.arch.window)).float().cpu()
             for i in range(0, len(starts), batch_size)]
    return geometric_median(torch.cat(codes).numpy()).astype(np.float32)


@torch.no_grad()
def translate_sequence(nets: ManipulatorNets, expressions: np.ndarray, target: str | int | np.ndarray, *,
                       seed: int = 0, hop: int = 1, sigma: float | None = None,
                       batch_size: int = 256) -> np.ndarray:
    """Translate a clip's expression vectors to a target emotion.

    Args:
        nets: the networks (eval mode).
        expressions: (T, D) float32; NaN rows (no face) are interpolated for the network
            and stay NaN in the output.
        target: an emotion name / index (label-driven) or a style code (S,) (e.g. from
            :func:`style_from_reference`).
        seed: seed of the label-driven latent code.
        hop: frames between windows (1 = every frame, as the original release).
        sigma: Gaussian blending width in frames (None: the original release's).
        batch_size: windows per network call.

    Returns:
        (T, D) float32.

    Raises:
        ValueError: on bad shapes or an unknown emotion.
        ModelFileError: when D does not match the checkpoint (naming the backend it needs).
    """
    expressions = _check_expressions(nets, expressions, "expressions")
    if isinstance(target, np.ndarray):
        style = check_array(target, "S", name="style").astype(np.float32)
        if style.shape[0] != nets.arch.style_dim:
            raise ValueError(f"style: expected ({nets.arch.style_dim},), got {style.shape}")
    else:
        style = style_from_label(nets, target, seed)
    filled, missing = _fill_missing(expressions)
    device = _net_device(nets)
    x = nets.normalize(torch.from_numpy(filled).to(device))
    s = torch.from_numpy(style).to(device)
    starts = window_starts(len(filled), nets.arch.window, hop)
    outputs = []
    for i in range(0, len(starts), batch_size):
        windows = _windows(x, starts[i:i + batch_size], nets.arch.window)  # (n, W, D)
        y = nets.generator(windows, s[None].expand(len(windows), -1))
        outputs.append(nets.denormalize(y).float().cpu())
    out = blend_windows(torch.cat(outputs).numpy(), starts, len(filled),
                        gaussian_window_weights(nets.arch.window, sigma))
    out[missing] = np.nan
    return out


@dataclass(frozen=True)
class LearnedOptions:
    """Options of the learned manipulator at inference.

    Attributes:
        checkpoints_dir: folder of ``{epoch:02d}_nets[_finetuned].pth`` files, or one file.
        which_epoch: epoch to load; None = the latest.
        backend: expression backend of the vectors fed in (face3d or deca).
        seed: seed of the label-driven latent code.
        hop: frames between translated windows (>= 1; 1 as the original release).
        sigma: Gaussian blending width in frames (> 0; None = the original release's).
        keep_speech: copy the backend's kept part from the source after translation
            (face3d: speech shapes and blinks; deca: jaw opening), so the lip motion is
            exactly the source's (the project's rule); False gives the networks' raw output,
            as the original release.
        device: auto, cpu or cuda[:N].
    """

    checkpoints_dir: Path
    which_epoch: int | None = None
    backend: str = "face3d"
    seed: int = 0
    hop: int = 1
    sigma: float | None = None
    keep_speech: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoints_dir", Path(self.checkpoints_dir))
        if self.backend not in BACKENDS:
            raise ValueError(f"LearnedOptions.backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        if self.which_epoch is not None and self.which_epoch < 0:
            raise ValueError(f"LearnedOptions.which_epoch must be >= 0, got {self.which_epoch}")
        if self.hop < 1:
            raise ValueError(f"LearnedOptions.hop must be >= 1, got {self.hop}")
        if self.sigma is not None and not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ValueError(f"LearnedOptions.sigma must be > 0, got {self.sigma}")


class LearnedManipulator:
    """Loaded networks plus the options of one manipulation run.

    Args:
        nets: the networks (moved to ``device`` and put in eval mode).
        backend: expression backend of the vectors fed in.
        seed, hop, sigma: see :class:`LearnedOptions`.
        speech_indices: indices copied from the source after translation (empty: none).
        device: where the networks run.
        info: what was loaded, if from a checkpoint.
    """

    def __init__(self, nets: ManipulatorNets, *, backend: str = "face3d", seed: int = 0, hop: int = 1,
                 sigma: float | None = None, speech_indices: tuple[int, ...] = (),
                 device: torch.device | str = "cpu", info: CheckpointInfo | None = None) -> None:
        self.nets = nets.to(device).eval()
        self.backend, self.seed, self.hop, self.sigma = backend, seed, hop, sigma
        self.speech_indices = tuple(speech_indices)
        self.info = info

    @classmethod
    def from_options(cls, options: LearnedOptions) -> "LearnedManipulator":
        """Load the checkpoint named by ``options``.

        Raises:
            ModelFileError: see :func:`ned.manipulate.checkpoint.load_manipulator`.
        """
        nets, info = load_manipulator(options.checkpoints_dir, options.which_epoch, backend=options.backend)
        speech = backend_kept_indices(options.backend) if options.keep_speech else ()
        return cls(nets, backend=options.backend, seed=options.seed, hop=options.hop, sigma=options.sigma,
                   speech_indices=speech, device=resolve_device(options.device), info=info)

    @contextmanager
    def inference_ctx(self) -> Iterator[None]:
        """No gradients; full precision (the networks are small)."""
        with torch.inference_mode():
            yield

    def style_of(self, target: str | np.ndarray) -> np.ndarray:
        """(S,) style code of an emotion name or of a reference clip's (T, D) expressions."""
        with self.inference_ctx():
            if isinstance(target, np.ndarray) and target.ndim == 2:
                return style_from_reference(self.nets, target, hop=self.hop)
            return style_from_label(self.nets, target, self.seed)

    def manipulate(self, expressions: np.ndarray, target: str | np.ndarray) -> np.ndarray:
        """Translate ``expressions`` (T, D) float32 to an emotion name, a reference clip's
        expressions (T', D), or a style code (S,). Returns (T, D) float32.

        Raises:
            ValueError, ModelFileError: see :func:`translate_sequence`.
        """
        style = self.style_of(target) if not (isinstance(target, np.ndarray) and target.ndim == 1) else target
        with self.inference_ctx():
            out = translate_sequence(self.nets, expressions, style, seed=self.seed, hop=self.hop, sigma=self.sigma)
        if self.speech_indices:
            idx = list(self.speech_indices)
            out[:, idx] = expressions[:, idx]
        return out
