"""Networks of the neural face renderer: generator, PatchGAN discriminators, registry.

The NED paper renders each actor with a Head2Head-style video-to-video generator
(about 71 M parameters, ResNet encoder/decoder, 17 GPU-hours per actor). This module
holds a cheaper U-Net with the same conditioning and one addition:

- conditioning per frame: NMFC image (3) + eye image (3) + shape image (3) = 9 channels,
  for the current frame and ``n_cond_frames - 1`` previous frames;
- temporal feedback: the previously generated frame (3 channels);
- warp-guided option (``use_warp``): the training-free renderer's warped crop (3 channels)
  is an extra input and the output is ``warp + residual``; the last layer starts at
  zero, so an untrained network returns the warp exactly and training only learns
  the correction.

Convention: every tensor entering or leaving a module here is ``float32`` in ``[0, 1]``
(images ``(B, 3, H, W)``, conditioning ``(B, C, H, W)``); ``[-1, 1]`` exists only inside.

Hyperparameters are explicit constructor arguments. :func:`create_renderer` is the one
way to build a generator by name (a small registry as in timm), and
:func:`build_networks` is the only function here that reads an options object.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "COND_CHANNELS",
    "FrameGenerator",
    "SequenceGenerator",
    "PatchDiscriminator",
    "MultiscaleDiscriminator",
    "NetworkOptions",
    "RendererNets",
    "build_networks",
    "create_renderer",
    "list_renderers",
    "register_renderer",
    "crop_mouth",
    "initial_previous",
]

COND_CHANNELS = 9  # NMFC (3) + eye image (3) + shape image (3), per frame


def _to_signed(x: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` -> ``[-1, 1]`` (network boundary)."""
    return x * 2.0 - 1.0


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    """``[-1, 1]`` -> ``[0, 1]`` (network boundary)."""
    return (x + 1.0) * 0.5


class ConvNormAct(nn.Sequential):
    """3x3 (or ``kernel``) conv, instance norm (affine), LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, padding_mode="reflect"),
            nn.InstanceNorm2d(out_channels, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
        )


class ResBlock(nn.Module):
    """``x + conv-norm-act-conv-norm(x)``, same shape in and out."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels),
            nn.Conv2d(channels, channels, 3, 1, 1, padding_mode="reflect"),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DownBlock(nn.Sequential):
    """Stride-2 conv then a 3x3 conv: ``(B, Cin, H, W) -> (B, Cout, H/2, W/2)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(ConvNormAct(in_channels, out_channels, 3, 2), ConvNormAct(out_channels, out_channels))


class UpBlock(nn.Module):
    """Nearest 2x upsampling, concatenation with the skip, two 3x3 convs.

    ``(B, Cin, H, W), skip (B, Cskip, 2H, 2W) -> (B, Cout, 2H, 2W)``. Upsample-then-conv
    instead of a transposed conv avoids checkerboard artefacts.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.fuse = nn.Sequential(
            ConvNormAct(in_channels + skip_channels, out_channels), ConvNormAct(out_channels, out_channels)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        return self.fuse(torch.cat([x, skip], dim=1))


class FrameGenerator(nn.Module):
    """U-Net that renders one frame from conditioning images and temporal feedback.

    Args:
        size: side of the square crops in pixels (a power of two, 32..1024). The network
            is fully convolutional, but the checkpoint records the size it was trained at
            and inference refuses another one.
        cond_channels: channels of one frame's conditioning (9: NMFC + eye + shape).
        n_cond_frames: frames of conditioning given (current + previous), >= 1.
        use_warp: take the training-free renderer's warped crop as an extra input and
            return ``clamp(warp + residual)`` (the residual layer starts at zero).
        base_channels: channels at full resolution (>= 4).
        max_channels: cap on channels at coarse levels (>= base_channels).
        n_down: stride-2 levels; ``size / 2**n_down`` must be >= 4.
        n_res_blocks: residual blocks at the coarsest level (>= 0).

    Raises:
        ValueError: a hyperparameter out of range.
    """

    def __init__(
        self,
        size: int = 256,
        cond_channels: int = COND_CHANNELS,
        n_cond_frames: int = 2,
        use_warp: bool = True,
        base_channels: int = 32,
        max_channels: int = 256,
        n_down: int = 5,
        n_res_blocks: int = 2,
    ) -> None:
        super().__init__()
        if size < 32 or size > 1024 or size & (size - 1):
            raise ValueError(f"size must be a power of two in [32, 1024], got {size}")
        if n_down < 1 or size >> n_down < 4:
            raise ValueError(f"n_down must be >= 1 with size / 2**n_down >= 4, got n_down={n_down} for size {size}")
        if cond_channels < 1 or n_cond_frames < 1:
            raise ValueError(f"cond_channels and n_cond_frames must be >= 1, got {cond_channels}, {n_cond_frames}")
        if base_channels < 4 or max_channels < base_channels:
            raise ValueError(f"need 4 <= base_channels <= max_channels, got {base_channels}, {max_channels}")
        if n_res_blocks < 0:
            raise ValueError(f"n_res_blocks must be >= 0, got {n_res_blocks}")
        self.hparams: dict[str, Any] = dict(
            size=size,
            cond_channels=cond_channels,
            n_cond_frames=n_cond_frames,
            use_warp=bool(use_warp),
            base_channels=base_channels,
            max_channels=max_channels,
            n_down=n_down,
            n_res_blocks=n_res_blocks,
        )
        self.size = size
        self.cond_channels = cond_channels
        self.n_cond_frames = n_cond_frames
        self.use_warp = bool(use_warp)
        in_channels = cond_channels * n_cond_frames + 3 + (3 if use_warp else 0)
        widths = [min(base_channels * 2**i, max_channels) for i in range(n_down + 1)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 7, 1, 3, padding_mode="reflect"),
            nn.InstanceNorm2d(widths[0], affine=True),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.down = nn.ModuleList(DownBlock(widths[i], widths[i + 1]) for i in range(n_down))
        self.middle = nn.Sequential(*(ResBlock(widths[-1]) for _ in range(n_res_blocks)))
        self.up = nn.ModuleList(UpBlock(widths[i + 1], widths[i], widths[i]) for i in reversed(range(n_down)))
        self.head = nn.Conv2d(widths[0], 3, 3, 1, 1, padding_mode="reflect")
        if self.use_warp:  # start as the identity on the warp: learn only the correction
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    @property
    def in_channels(self) -> int:
        return self.cond_channels * self.n_cond_frames + 3 + (3 if self.use_warp else 0)

    def forward(self, cond: torch.Tensor, prev: torch.Tensor, warp: torch.Tensor | None = None) -> torch.Tensor:
        """Render one frame.

        Args:
            cond: ``(B, cond_channels * n_cond_frames, H, W)`` in ``[0, 1]``, the current
                frame's conditioning first, then the previous frames' (newest first).
            prev: ``(B, 3, H, W)`` in ``[0, 1]``, the previously generated frame (see
                :func:`initial_previous` for the first frame of a clip).
            warp: ``(B, 3, H, W)`` in ``[0, 1]``, the warped crop; required iff ``use_warp``.

        Returns:
            ``(B, 3, H, W)`` in ``[0, 1]``.

        Raises:
            ValueError: wrong channel counts, or ``warp`` given/missing against ``use_warp``.
        """
        if cond.ndim != 4 or cond.shape[1] != self.cond_channels * self.n_cond_frames:
            raise ValueError(
                f"cond: expected (B, {self.cond_channels * self.n_cond_frames}, H, W), got {tuple(cond.shape)}"
            )
        if prev.shape[1] != 3 or prev.shape[-2:] != cond.shape[-2:]:
            raise ValueError(f"prev: expected (B, 3, {cond.shape[-2]}, {cond.shape[-1]}), got {tuple(prev.shape)}")
        if self.use_warp != (warp is not None):
            raise ValueError("warp must be given exactly when the generator was built with use_warp=True")
        inputs = [cond, prev] + ([warp] if warp is not None else [])
        x = self.stem(_to_signed(torch.cat(inputs, dim=1)))
        skips = [x]
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.middle(skips.pop())
        for block in self.up:
            x = block(x, skips.pop())
        out = self.head(x)
        if warp is not None:
            out = (_to_signed(warp) + out).clamp(-1.0, 1.0)
        else:
            out = torch.tanh(out)
        return _to_unit(out)


def initial_previous(warp: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """The "previously generated frame" fed for the first frame of a clip.

    The warped crop when there is one (the best guess of the previous frame), else zeros.

    Args:
        warp: ``(B, 3, H, W)`` in ``[0, 1]`` or None.
        like: a ``(B, C, H, W)`` tensor giving batch, size, dtype and device.

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]``.
    """
    if warp is not None:
        return warp
    return like.new_zeros((like.shape[0], 3, like.shape[-2], like.shape[-1]))


class SequenceGenerator(nn.Module):
    """Rolls a :class:`FrameGenerator` over consecutive frames (one forward for DDP).

    Frame ``t`` sees the conditioning of frames ``t, t-1, ...`` (clamped at the first
    frame of the window, so the first frame sees its own conditioning repeated) and the
    output of frame ``t-1`` (:func:`initial_previous` for ``t = 0``). Gradients flow
    through the feedback, as in vid2vid within a sequence.
    """

    def __init__(self, generator: FrameGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, cond: torch.Tensor, warp: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
            cond: ``(B, T, cond_channels, H, W)`` in ``[0, 1]``.
            warp: ``(B, T, 3, H, W)`` in ``[0, 1]`` or None.

        Returns:
            ``(B, T, 3, H, W)`` in ``[0, 1]``.

        Raises:
            ValueError: ``cond`` not 5-D.
        """
        if cond.ndim != 5:
            raise ValueError(f"cond: expected (B, T, C, H, W), got {tuple(cond.shape)}")
        k = self.generator.n_cond_frames
        outputs: list[torch.Tensor] = []
        for t in range(cond.shape[1]):
            stacked = torch.cat([cond[:, max(t - j, 0)] for j in range(k)], dim=1)
            w = warp[:, t] if warp is not None else None
            prev = outputs[-1] if outputs else initial_previous(w, cond[:, t])
            outputs.append(self.generator(stacked, prev, w))
        return torch.stack(outputs, dim=1)


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pixHD layout) returning every layer's features.

    Args:
        in_channels: input channels (conditioning + image).
        base_channels: channels of the first layer (>= 4); doubled per layer up to 8x.
        n_layers: stride-2 layers (>= 1).

    Input ``(B, in_channels, H, W)``; output: a list of ``n_layers + 2`` feature maps,
    the last ``(B, 1, h, w)`` holding the per-patch real/fake scores.
    """

    def __init__(self, in_channels: int, base_channels: int = 32, n_layers: int = 3) -> None:
        super().__init__()
        if in_channels < 1 or base_channels < 4 or n_layers < 1:
            raise ValueError(f"bad discriminator hyperparameters: {in_channels}, {base_channels}, {n_layers}")
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, base_channels, 4, 2, 2), nn.LeakyReLU(0.2, inplace=True))
        ]
        ch = base_channels
        for i in range(1, n_layers + 1):
            out = min(ch * 2, base_channels * 8)
            stride = 2 if i < n_layers else 1
            layers.append(
                nn.Sequential(
                    nn.Conv2d(ch, out, 4, stride, 2), nn.InstanceNorm2d(out, affine=True), nn.LeakyReLU(0.2, True)
                )
            )
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, 1, 2))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """PatchGANs on an image pyramid (pix2pixHD / NED's ``MultiscaleDiscriminator``).

    Args:
        in_channels: channels of the conditioning plus the image.
        base_channels: first-layer channels of each PatchGAN.
        n_layers: stride-2 layers of each PatchGAN.
        n_scales: pyramid levels (>= 1); level ``k`` sees the input downsampled ``2**k``.

    Input ``(B, in_channels, H, W)`` in ``[0, 1]``; output: per scale, the list of
    feature maps of :class:`PatchDiscriminator` (scores last).
    """

    def __init__(self, in_channels: int, base_channels: int = 32, n_layers: int = 3, n_scales: int = 2) -> None:
        super().__init__()
        if n_scales < 1:
            raise ValueError(f"n_scales must be >= 1, got {n_scales}")
        self.hparams: dict[str, Any] = dict(
            in_channels=in_channels, base_channels=base_channels, n_layers=n_layers, n_scales=n_scales
        )
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, base_channels, n_layers) for _ in range(n_scales))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        x = _to_signed(x)
        results = []
        for k, disc in enumerate(self.scales):
            if k:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            results.append(disc(x))
        return results


def crop_mouth(images: torch.Tensor, centers: torch.Tensor, crop: int) -> torch.Tensor:
    """Cut a ``crop x crop`` window around each mouth centre (integer pixels, kept inside).

    Args:
        images: ``(B, C, H, W)``.
        centers: ``(B, 2)`` float ``(x, y)`` mouth centres in pixels of ``images``.
        crop: window side in pixels, ``1 <= crop <= min(H, W)``.

    Returns:
        ``(B, C, crop, crop)``; a window that would leave the image is shifted inside.

    Raises:
        ValueError: bad shapes or crop size.
    """
    if images.ndim != 4 or centers.shape != (images.shape[0], 2):
        raise ValueError(f"expected images (B, C, H, W) and centers (B, 2), got {tuple(images.shape)}, "
                         f"{tuple(centers.shape)}")
    h, w = images.shape[-2:]
    if not 1 <= crop <= min(h, w):
        raise ValueError(f"crop must be in [1, {min(h, w)}], got {crop}")
    out = []
    for img, (cx, cy) in zip(images, centers.tolist()):
        x0 = int(min(max(round(cx - crop / 2), 0), w - crop))
        y0 = int(min(max(round(cy - crop / 2), 0), h - crop))
        out.append(img[:, y0 : y0 + crop, x0 : x0 + crop])
    return torch.stack(out)


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Callable[..., FrameGenerator]] = {}


def register_renderer(fn: Callable[..., FrameGenerator]) -> Callable[..., FrameGenerator]:
    """Decorator: register a generator variant under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_renderers() -> list[str]:
    """Names accepted by :func:`create_renderer`, sorted."""
    return sorted(_REGISTRY)


def create_renderer(name: str, **kwargs: Any) -> FrameGenerator:
    """Build a registered generator variant; ``kwargs`` override its defaults.

    Example: ``create_renderer("unet_256")``, ``create_renderer("unet_64", use_warp=False)``.

    Raises:
        ValueError: unknown name (the message lists the known ones) or unknown argument.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown renderer {name!r}; known: {', '.join(list_renderers())}")
    return _REGISTRY[name](**kwargs)


def _create_unet(defaults: dict[str, Any], overrides: dict[str, Any]) -> FrameGenerator:
    """Merge a variant's defaults with overrides; a new ``size`` re-derives ``n_down`` (to 8x8)."""
    valid = set(inspect.signature(FrameGenerator.__init__).parameters) - {"self"}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown generator argument(s) {unknown}; valid: {sorted(valid)}")
    merged = {**defaults, **overrides}
    if "n_down" not in overrides:
        merged["n_down"] = max(1, int(math.log2(max(int(merged["size"]), 2))) - 3)
    return FrameGenerator(**merged)


@register_renderer
def unet_256(**kwargs: Any) -> FrameGenerator:
    """The default: 32..256 channels, down to 8x8, 2 residual blocks (10.2 M params; NED's G: 70.8 M)."""
    return _create_unet(dict(size=256, base_channels=32, max_channels=256, n_res_blocks=2), kwargs)


@register_renderer
def unet_small(**kwargs: Any) -> FrameGenerator:
    """CPU-friendly: 16..128 channels, down to 8x8, 1 residual block (1.5 M params at 128 px)."""
    return _create_unet(dict(size=128, base_channels=16, max_channels=128, n_res_blocks=1), kwargs)


@register_renderer
def unet_tiny(**kwargs: Any) -> FrameGenerator:
    """Tests and smoke runs: 8..32 channels, 1 residual block; 64 px default."""
    return _create_unet(dict(size=64, base_channels=8, max_channels=32, n_res_blocks=1), kwargs)


# --------------------------------------------------------------------------- build from options


@dataclass(frozen=True)
class NetworkOptions:
    """Which networks to build (the only options :func:`build_networks` reads).

    Attributes:
        arch: generator variant, one of :func:`list_renderers`.
        size: crop side the networks work at, pixels (power of two, 32..1024).
        use_warp: warp-guided generator (warped crop in, residual out).
        n_cond_frames: conditioning frames per generated frame (current + previous), 1..4.
        d_channels: first-layer channels of both discriminators (>= 4).
        d_layers: stride-2 layers per PatchGAN (1..5).
        d_scales: pyramid levels of the image discriminator (1..4).
        mouth_fraction: mouth crop side as a fraction of ``size`` (0.1..1; NED: 72/256).
        mouth_scales: pyramid levels of the mouth discriminator (0 disables it, ..4).
    """

    arch: str = "unet_256"
    size: int = 256
    use_warp: bool = True
    n_cond_frames: int = 2
    d_channels: int = 32
    d_layers: int = 3
    d_scales: int = 2
    mouth_fraction: float = 0.3125
    mouth_scales: int = 1

    def __post_init__(self) -> None:
        if self.arch not in _REGISTRY:
            raise ValueError(f"unknown renderer arch {self.arch!r}; known: {', '.join(list_renderers())}")
        if self.size < 32 or self.size > 1024 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two in [32, 1024], got {self.size}")
        if not 1 <= self.n_cond_frames <= 4:
            raise ValueError(f"n_cond_frames must be in [1, 4], got {self.n_cond_frames}")
        if self.d_channels < 4 or not 1 <= self.d_layers <= 5 or not 1 <= self.d_scales <= 4:
            raise ValueError(f"bad discriminator options: channels={self.d_channels}, layers={self.d_layers}, "
                             f"scales={self.d_scales}")
        if not 0.1 <= self.mouth_fraction <= 1.0 or not 0 <= self.mouth_scales <= 4:
            raise ValueError(f"mouth_fraction must be in [0.1, 1] and mouth_scales in [0, 4], got "
                             f"{self.mouth_fraction}, {self.mouth_scales}")

    @property
    def mouth_crop(self) -> int:
        """Mouth crop side in pixels at ``size`` (even, >= 8)."""
        return max(8, int(round(self.size * self.mouth_fraction / 2)) * 2)


@dataclass
class RendererNets:
    """The networks of one training run (``mouth_discriminator`` None when disabled)."""

    generator: FrameGenerator
    discriminator: MultiscaleDiscriminator
    mouth_discriminator: MultiscaleDiscriminator | None


def build_networks(options: NetworkOptions, *, generator_only: bool = False) -> RendererNets | FrameGenerator:
    """Build the generator and discriminators described by ``options``.

    Args:
        options: the architecture.
        generator_only: return just the :class:`FrameGenerator` (inference).

    Returns:
        :class:`RendererNets`, or the generator alone.

    Raises:
        ValueError: an option the variant rejects.
    """
    generator = create_renderer(
        options.arch, size=options.size, use_warp=options.use_warp, n_cond_frames=options.n_cond_frames
    )
    if generator_only:
        return generator
    d_in = COND_CHANNELS + 3  # current frame's conditioning + image, as in NED
    disc = MultiscaleDiscriminator(d_in, options.d_channels, options.d_layers, options.d_scales)
    mouth = (
        MultiscaleDiscriminator(d_in, options.d_channels, options.d_layers, options.mouth_scales)
        if options.mouth_scales
        else None
    )
    return RendererNets(generator, disc, mouth)
