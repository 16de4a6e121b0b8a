"""Networks of the learned NED manipulator (a StarGAN-v2-style sequence translator).

The four networks of the paper's release, with explicit scalar hyperparameters:

- :class:`Generator`: a window of expression vectors ``(B, T, D)`` and a style code
  ``(B, S)`` -> translated window ``(B, T, D)`` (full parameters, not a residual).
- :class:`MappingNetwork`: a latent code ``(B, L)`` and an emotion index ``(B,)`` -> style
  ``(B, S)`` (a shared trunk and one head per emotion).
- :class:`StyleEncoder`: a window ``(B, T, D)`` -> style ``(B, S)`` (mean over time).
- :class:`Discriminator`: a window ``(B, T, D)`` and an emotion index ``(B,)`` -> one
  realness logit per sample ``(B,)`` (mean over time of per-frame logits, the logit of the
  given emotion).

``D`` is the size of the per-frame expression vector: 51 for the DECA backend (jaw
opening + 50 FLAME expression coefficients, as in the original release) or ``K``, the
number of blendshape weights of our own face model (the default ``face3d`` backend).

Sub-module names (``seq1``, ``LSTM``, ``seq2``, ``shared``, ``unshared``) are those of the
original release's checkpoints (foivospar/NED), so its ``{epoch:02d}_nets*.pth`` files load
strictly, and our own checkpoints keep the same layout. ``build_networks`` is the only
function here that reads an options object (:class:`ManipulatorArch`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Callable

import torch
from torch import nn

__all__ = [
    "EMOTIONS",
    "DECA_INPUT_DIM",
    "ManipulatorArch",
    "ManipulatorNets",
    "Generator",
    "MappingNetwork",
    "StyleEncoder",
    "Discriminator",
    "build_networks",
    "create_arch",
    "list_archs",
    "register_arch",
]

logger = logging.getLogger(__name__)

#: The emotion domains, in the order of the mapping network's heads and the
#: discriminator's outputs (the original release's order).
EMOTIONS: tuple[str, ...] = ("neutral", "angry", "disgusted", "fear", "happy", "sad", "surprised")

#: Values per frame of the DECA backend: jaw opening + 50 FLAME expression coefficients.
DECA_INPUT_DIM = 51


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of the given sizes with ReLU between them (none after the last).

    ``_mlp([a, b, c])`` is ``Linear(a, b), ReLU, Linear(b, c)``: indices 0, 2, ... are the
    linear layers, as in the original checkpoints.
    """
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


def _check_window(x: torch.Tensor, input_dim: int, name: str = "x") -> None:
    if x.ndim != 3 or x.shape[-1] != input_dim:
        raise ValueError(f"{name}: expected shape (B, T, {input_dim}), got {tuple(x.shape)}")


def _check_labels(y: torch.Tensor, batch: int, num_domains: int) -> None:
    if y.ndim != 1 or y.shape[0] != batch or y.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"y: expected an integer tensor of shape ({batch},), got {tuple(y.shape)} {y.dtype}")
    if batch and (int(y.min()) < 0 or int(y.max()) >= num_domains):
        raise ValueError(f"y: emotion indices must lie in [0, {num_domains}), got {y.tolist()}")


class Generator(nn.Module):
    """Translate a window of expression vectors to the emotion given by a style code.

    ``x (B, T, D)`` and the style repeated over time ``(B, T, S)`` are concatenated, lifted
    by a 2-layer MLP of width ``hidden_dim``, run through a 2-layer bidirectional LSTM
    (``hidden_dim`` per direction) and mapped back by a 3-layer MLP of width
    ``2 * hidden_dim`` to ``(B, T, D)``. The original release uses ``hidden_dim=512``.

    Args:
        input_dim: values per frame ``D`` (51 for DECA).
        style_dim: size ``S`` of the style code.
        hidden_dim: width of the input MLP and of each LSTM direction.
        num_layers: LSTM layers.
    """

    def __init__(self, input_dim: int = DECA_INPUT_DIM, style_dim: int = 16, hidden_dim: int = 512,
                 num_layers: int = 2) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.style_dim = style_dim
        self.seq1 = nn.Sequential(nn.Linear(input_dim + style_dim, hidden_dim), nn.ReLU(),
                                  nn.Linear(hidden_dim, hidden_dim), nn.ReLU())
        self.LSTM = nn.LSTM(hidden_dim, hidden_dim, num_layers, batch_first=True, bidirectional=True)
        self.seq2 = _mlp([2 * hidden_dim, 2 * hidden_dim, 2 * hidden_dim, input_dim])

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Args: x (B, T, D) expression windows; s (B, S) style codes. Returns (B, T, D).

        Raises:
            ValueError: on a wrong shape.
        """
        _check_window(x, self.input_dim)
        if s.ndim != 2 or s.shape != (x.shape[0], self.style_dim):
            raise ValueError(f"s: expected shape ({x.shape[0]}, {self.style_dim}), got {tuple(s.shape)}")
        s_seq = s[:, None, :].expand(-1, x.shape[1], -1)  # (B, S) -> (B, T, S)
        h, _ = self.LSTM(self.seq1(torch.cat([x, s_seq.to(x.dtype)], dim=2)))  # (B, T, 2H)
        return self.seq2(h)


class MappingNetwork(nn.Module):
    """Map a latent code and an emotion index to a style code.

    A shared 3-layer MLP (ReLU after each layer) of width ``hidden_dim``, then one head per
    emotion (``Linear, ReLU, Linear``); the head of ``y`` gives the style.

    Args:
        latent_dim: size ``L`` of the latent code (4 in the original release).
        hidden_dim: MLP width (64).
        style_dim: size ``S`` of the style code (16).
        num_domains: number of emotions (7, see :data:`EMOTIONS`).
    """

    def __init__(self, latent_dim: int = 4, hidden_dim: int = 64, style_dim: int = 16,
                 num_domains: int = len(EMOTIONS)) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.num_domains = num_domains
        self.shared = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU(),
                                    nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                                    nn.Linear(hidden_dim, hidden_dim), nn.ReLU())
        self.unshared = nn.ModuleList(_mlp([hidden_dim, hidden_dim, style_dim]) for _ in range(num_domains))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Args: z (B, L) latent codes; y (B,) int64 emotion indices. Returns (B, S).

        Raises:
            ValueError: on a wrong shape or an emotion index out of range.
        """
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z: expected shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        _check_labels(y, z.shape[0], self.num_domains)
        h = self.shared(z)
        styles = torch.stack([head(h) for head in self.unshared], dim=1)  # (B, num_domains, S)
        return styles[torch.arange(z.shape[0], device=z.device), y]


class _RecurrentEncoder(nn.Module):
    """Shared body of the style encoder and the discriminator: per-frame outputs (B, T, out).

    ``Linear(D, 4h), ReLU, Linear(4h, 2h), ReLU``, a 2-layer bidirectional LSTM with ``h``
    per direction, then ``Linear(2h, h), ReLU, Linear(h, h/2), ReLU, Linear(h/2, out)``.
    The original release uses ``h = 128``.
    """

    def __init__(self, input_dim: int, output_dim: int, hidden_dim: int, num_layers: int) -> None:
        super().__init__()
        if hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even, got {hidden_dim}")
        self.input_dim = input_dim
        self.seq1 = nn.Sequential(nn.Linear(input_dim, 4 * hidden_dim), nn.ReLU(),
                                  nn.Linear(4 * hidden_dim, 2 * hidden_dim), nn.ReLU())
        self.LSTM = nn.LSTM(2 * hidden_dim, hidden_dim, num_layers, batch_first=True, bidirectional=True)
        self.seq2 = _mlp([2 * hidden_dim, hidden_dim, hidden_dim // 2, output_dim])

    def per_frame(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, T, D). Returns per-frame outputs (B, T, out)."""
        _check_window(x, self.input_dim)
        h, _ = self.LSTM(self.seq1(x))
        return self.seq2(h)


class StyleEncoder(_RecurrentEncoder):
    """Encode a window of expression vectors into a style code (mean over time).

    Args:
        input_dim: values per frame ``D``.
        style_dim: size ``S`` of the style code.
        hidden_dim: LSTM width per direction (128 in the original release).
        num_layers: LSTM layers.
    """

    def __init__(self, input_dim: int = DECA_INPUT_DIM, style_dim: int = 16, hidden_dim: int = 128,
                 num_layers: int = 2) -> None:
        super().__init__(input_dim, style_dim, hidden_dim, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, T, D). Returns style codes (B, S).

        Raises:
            ValueError: on a wrong shape.
        """
        return self.per_frame(x).mean(dim=1)


class Discriminator(_RecurrentEncoder):
    """Judge whether a window looks like a real one of the given emotion.

    Args:
        input_dim: values per frame ``D``.
        num_domains: number of emotions.
        hidden_dim: LSTM width per direction (128 in the original release).
        num_layers: LSTM layers.
    """

    def __init__(self, input_dim: int = DECA_INPUT_DIM, num_domains: int = len(EMOTIONS),
                 hidden_dim: int = 128, num_layers: int = 2) -> None:
        super().__init__(input_dim, num_domains, hidden_dim, num_layers)
        self.num_domains = num_domains

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Args: x (B, T, D); y (B,) int64 emotion indices. Returns logits (B,).

        Raises:
            ValueError: on a wrong shape or an emotion index out of range.
        """
        _check_labels(y, x.shape[0], self.num_domains)
        logits = self.per_frame(x).mean(dim=1)  # (B, num_domains)
        return logits[torch.arange(x.shape[0], device=x.device), y]


@dataclass(frozen=True)
class ManipulatorArch:
    """Hyperparameters of the four networks (the defaults are the original release's).

    Attributes:
        input_dim: values per frame D (51 = DECA jaw + 50 expression; K for face3d).
        window: frames per training window / inference window (10).
        style_dim: style code size S (16).
        latent_dim: latent code size L (4).
        num_domains: number of emotions (7, order of :data:`EMOTIONS`).
        generator_hidden: generator MLP / LSTM width (512).
        encoder_hidden: style encoder / discriminator LSTM width (128).
        mapping_hidden: mapping network width (64).
        num_layers: LSTM layers in every network (2).
    """

    input_dim: int = DECA_INPUT_DIM
    window: int = 10
    style_dim: int = 16
    latent_dim: int = 4
    num_domains: int = len(EMOTIONS)
    generator_hidden: int = 512
    encoder_hidden: int = 128
    mapping_hidden: int = 64
    num_layers: int = 2

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ManipulatorArch.{f.name} must be a positive integer, got {value!r}")
        if self.window < 2:
            raise ValueError(f"ManipulatorArch.window must be >= 2 frames, got {self.window}")
        if self.encoder_hidden % 2:
            raise ValueError(f"ManipulatorArch.encoder_hidden must be even, got {self.encoder_hidden}")

    def to_dict(self) -> dict[str, int]:
        """A plain dict (stored in checkpoints)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict) -> "ManipulatorArch":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown ManipulatorArch fields {sorted(unknown)}")
        return cls(**values)


@dataclass
class ManipulatorNets:
    """The networks of one manipulator plus the per-dimension normalisation of its inputs.

    Networks see ``(x - mean) / std``; the original release uses no normalisation
    (``mean = 0``, ``std = 1``). ``discriminator`` is None at inference.

    Attributes:
        arch: the hyperparameters the networks were built with.
        generator, mapping_network, style_encoder, discriminator: the networks.
        mean, std: (D,) float32 normalisation of the expression vectors.
    """

    arch: ManipulatorArch
    generator: Generator
    mapping_network: MappingNetwork
    style_encoder: StyleEncoder
    discriminator: Discriminator | None
    mean: torch.Tensor
    std: torch.Tensor

    def modules(self) -> dict[str, nn.Module]:
        """The networks by checkpoint key (without the discriminator when absent)."""
        out: dict[str, nn.Module] = {"generator": self.generator, "mapping_network": self.mapping_network,
                                     "style_encoder": self.style_encoder}
        if self.discriminator is not None:
            out["discriminator"] = self.discriminator
        return out

    def to(self, device: torch.device | str) -> "ManipulatorNets":
        """Move every network and the normalisation in place; returns self."""
        for module in self.modules().values():
            module.to(device)
        self.mean = self.mean.to(device)
        self.std = self.std.to(device)
        return self

    def eval(self) -> "ManipulatorNets":
        """Put every network in eval mode; returns self."""
        for module in self.modules().values():
            module.eval()
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) expression values -> network space."""
        return (x - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) network space -> expression values."""
        return x * self.std + self.mean


def build_networks(arch: ManipulatorArch, *, with_discriminator: bool = True) -> ManipulatorNets:
    """Build the networks described by ``arch`` (on the CPU, PyTorch's default init).

    Args:
        arch: the hyperparameters.
        with_discriminator: also build the discriminator (training only).

    Returns:
        The networks with identity normalisation.
    """
    generator = Generator(arch.input_dim, arch.style_dim, arch.generator_hidden, arch.num_layers)
    mapping = MappingNetwork(arch.latent_dim, arch.mapping_hidden, arch.style_dim, arch.num_domains)
    encoder = StyleEncoder(arch.input_dim, arch.style_dim, arch.encoder_hidden, arch.num_layers)
    discriminator = (Discriminator(arch.input_dim, arch.num_domains, arch.encoder_hidden, arch.num_layers)
                     if with_discriminator else None)
    return ManipulatorNets(arch=arch, generator=generator, mapping_network=mapping, style_encoder=encoder,
                           discriminator=discriminator, mean=torch.zeros(arch.input_dim),
                           std=torch.ones(arch.input_dim))


# --- a small registry of named architectures (timm-style) -----------------------------

_ARCHS: dict[str, Callable[..., ManipulatorArch]] = {}


def register_arch(fn: Callable[..., ManipulatorArch]) -> Callable[..., ManipulatorArch]:
    """Register a function ``name(**overrides) -> ManipulatorArch`` under its own name."""
    _ARCHS[fn.__name__] = fn
    return fn


@register_arch
def ned_original(**overrides: int) -> ManipulatorArch:
    """The original release's sizes (generator 12.9 M parameters)."""
    return ManipulatorArch(**overrides)


@register_arch
def ned_small(**overrides: int) -> ManipulatorArch:
    """A narrower variant (generator ~0.9 M parameters) that trains in minutes on a CPU."""
    return ManipulatorArch(**{"generator_hidden": 128, "encoder_hidden": 64, **overrides})


def list_archs() -> list[str]:
    """Names accepted by :func:`create_arch`."""
    return sorted(_ARCHS)


def create_arch(name: str, **overrides: int) -> ManipulatorArch:
    """The registered architecture ``name`` with some fields overridden (e.g. ``input_dim``).

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    if name not in _ARCHS:
        raise ValueError(f"unknown manipulator architecture {name!r}; choose one of {list_archs()}")
    return _ARCHS[name](**overrides)
