"""Losses of the neural face renderer, as pure functions returning ``(total, dict)``.

The NED / Head2Head / pix2pixHD recipe: multi-scale LSGAN on the full crop and on mouth
crops, discriminator feature matching, VGG19 perceptual loss, plus an L1 term that
speeds up the short per-actor runs this project aims at.

Perceptual weights cannot be downloaded here: :func:`load_vgg19_features` reads a
torchvision-layout VGG19 state dict from a path (``weights_only=True``) into our own
:class:`VGG19Features`; torchvision is never imported. Without weights the trainer
leaves the perceptual term out and says so in its log.

Convention: images are ``(B, 3, H, W) float32`` in ``[0, 1]``; discriminator outputs
are, per scale, a list of feature maps whose last entry holds the patch scores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ned.errors import ModelFileError

logger = logging.getLogger(__name__)

__all__ = [
    "LossWeights",
    "VGG19Features",
    "load_vgg19_features",
    "lsgan_loss",
    "feature_matching_loss",
    "perceptual_loss",
    "l1_loss",
    "discriminator_loss",
    "generator_loss",
]

DiscOutput = Sequence[Sequence[torch.Tensor]]  # per scale: feature maps, scores last


@dataclass(frozen=True)
class LossWeights:
    """Weights of the generator loss terms (NED's defaults for GAN, feature matching, VGG).

    Attributes:
        gan: LSGAN term of the image discriminator (>= 0).
        mouth: LSGAN term of the mouth discriminator (>= 0).
        feat: discriminator feature matching (>= 0; NED: 10).
        vgg: VGG19 perceptual (>= 0; NED: 10); ignored when no VGG weights are loaded.
        l1: pixel L1 (>= 0).
    """

    gan: float = 1.0
    mouth: float = 1.0
    feat: float = 10.0
    vgg: float = 10.0
    l1: float = 10.0

    def __post_init__(self) -> None:
        for name in ("gan", "mouth", "feat", "vgg", "l1"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {getattr(self, name)}")


# --------------------------------------------------------------------------- VGG19

# torchvision's vgg19 "features" indices: conv layers and the max-pools between blocks.
_VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
# relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 and their pix2pixHD weights.
_VGG_TAPS = (1, 6, 11, 20, 29)
_VGG_TAP_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """The first 30 layers of VGG19 (up to relu5_1), parameter names as torchvision's.

    ``features.<i>.weight`` / ``.bias`` match ``torchvision.models.vgg19().state_dict()``,
    so such a file loads without renaming. Frozen (no gradients to its weights).

    Input ``(B, 3, H, W)`` in ``[0, 1]`` (ImageNet normalisation is applied inside);
    output: the five relu<k>_1 feature maps.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = 3
        for v in _VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(ch, int(v), 3, 1, 1), nn.ReLU(inplace=False)]
                ch = int(v)
        self.features = nn.Sequential(*layers[: _VGG_TAPS[-1] + 1])
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGG19Features":  # always frozen, always eval
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _VGG_TAPS:
                taps.append(x)
        return taps


def load_vgg19_features(path: str | Path) -> VGG19Features:
    """Load VGG19 weights (torchvision layout state dict) from a file, safely.

    Accepts the plain state dict of ``torchvision.models.vgg19`` (classifier keys are
    ignored), a dict holding it under ``"state_dict"``, and ``module.`` prefixes.

    Args:
        path: a ``.pth`` file, loaded with ``torch.load(weights_only=True)``.

    Returns:
        a frozen :class:`VGG19Features` on the CPU.

    Raises:
        ModelFileError: missing file, not a state dict, or missing / mis-shaped keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(
            f"{path}: VGG19 weights not found; pass a torchvision vgg19 state dict or omit --vgg_weights"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a bad file
        raise ModelFileError(f"{path}: not a loadable PyTorch state dict ({type(err).__name__}: {err})") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = VGG19Features()
    wanted = model.state_dict()
    picked = {k: state[k] for k in wanted if k in state}
    missing = sorted(set(wanted) - set(picked))
    if missing:
        raise ModelFileError(
            f"{path}: not a torchvision vgg19 state dict (missing {len(missing)} keys, e.g. {missing[0]})"
        )
    for k, v in picked.items():
        if not isinstance(v, torch.Tensor) or v.shape != wanted[k].shape:
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ModelFileError(f"{path}: {k} has shape {got}, expected {tuple(wanted[k].shape)} (not vgg19?)")
    model.load_state_dict(picked)
    logger.info("loaded VGG19 perceptual weights from %s", path)
    return model


# --------------------------------------------------------------------------- terms


def lsgan_loss(preds: DiscOutput, target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN loss, averaged over scales: ``mean((score - target)^2)``.

    Args:
        preds: discriminator output (per scale, feature maps with scores last).
        target_is_real: target 1 (real) or 0 (fake).

    Returns:
        scalar tensor.
    """
    target = 1.0 if target_is_real else 0.0
    losses = [F.mse_loss(scale[-1].float(), torch.full_like(scale[-1].float(), target)) for scale in preds]
    return torch.stack(losses).mean()


def feature_matching_loss(fake: DiscOutput, real: DiscOutput) -> torch.Tensor:
    """pix2pixHD feature matching: L1 between discriminator features of fake and real.

    Every intermediate feature map (scores excluded) of every scale contributes, weighted
    ``1 / (layers * scales)``; ``real`` is detached.

    Returns:
        scalar tensor.

    Raises:
        ValueError: the two outputs have different structure.
    """
    if len(fake) != len(real) or any(len(f) != len(r) for f, r in zip(fake, real)):
        raise ValueError("fake and real discriminator outputs differ in scales or layers")
    terms = [
        F.l1_loss(f.float(), r.detach().float())
        for f_scale, r_scale in zip(fake, real)
        for f, r in zip(f_scale[:-1], r_scale[:-1])
    ]
    return torch.stack(terms).mean()


def perceptual_loss(vgg: VGG19Features, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """VGG19 perceptual loss: weighted L1 of relu1_1..relu5_1 features (pix2pixHD weights).

    Args:
        vgg: frozen feature extractor.
        fake, real: ``(B, 3, H, W)`` in ``[0, 1]``.

    Returns:
        scalar tensor.
    """
    f_feats = vgg(fake.float())
    with torch.no_grad():
        r_feats = vgg(real.float())
    return sum(w * F.l1_loss(f, r) for w, f, r in zip(_VGG_TAP_WEIGHTS, f_feats, r_feats))


def l1_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between ``(B, 3, H, W)`` images."""
    return F.l1_loss(fake.float(), real.float())


# --------------------------------------------------------------------------- compound


def discriminator_loss(
    real: DiscOutput,
    fake: DiscOutput,
    mouth_real: DiscOutput | None = None,
    mouth_fake: DiscOutput | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """LSGAN loss of the image (and mouth) discriminators.

    Args:
        real, fake: image discriminator outputs on real and generated (detached) frames.
        mouth_real, mouth_fake: mouth discriminator outputs, or None.

    Returns:
        ``(total, {"D_real", "D_fake", "Dm_real", "Dm_fake"})`` (mouth entries 0 without it).
    """
    d_real = lsgan_loss(real, True)
    d_fake = lsgan_loss(fake, False)
    total = 0.5 * (d_real + d_fake)
    logs = {"D_real": d_real.item(), "D_fake": d_fake.item(), "Dm_real": 0.0, "Dm_fake": 0.0}
    if mouth_real is not None and mouth_fake is not None:
        m_real = lsgan_loss(mouth_real, True)
        m_fake = lsgan_loss(mouth_fake, False)
        total = total + 0.5 * (m_real + m_fake)
        logs.update(Dm_real=m_real.item(), Dm_fake=m_fake.item())
    return total, logs


def generator_loss(
    fake_img: torch.Tensor,
    real_img: torch.Tensor,
    fake: DiscOutput,
    real: DiscOutput,
    weights: LossWeights,
    mouth_fake: DiscOutput | None = None,
    vgg: VGG19Features | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Generator loss: LSGAN + mouth LSGAN + feature matching + VGG + L1.

    Args:
        fake_img, real_img: ``(B, 3, H, W)`` in ``[0, 1]``.
        fake: image discriminator output on ``fake_img`` (with gradients to G).
        real: image discriminator output on ``real_img`` (features for matching).
        weights: term weights.
        mouth_fake: mouth discriminator output on the fake mouth crops, or None.
        vgg: perceptual network, or None to leave the term out (logged as 0).

    Returns:
        ``(total, {"G_gan", "G_mouth", "G_feat", "G_vgg", "G_l1", "G_total"})``.
    """
    g_gan = lsgan_loss(fake, True)
    g_feat = feature_matching_loss(fake, real)
    g_l1 = l1_loss(fake_img, real_img)
    zero = g_gan.new_zeros(())
    g_mouth = lsgan_loss(mouth_fake, True) if mouth_fake is not None else zero
    g_vgg = perceptual_loss(vgg, fake_img, real_img) if vgg is not None else zero
    total = (
        weights.gan * g_gan
        + weights.mouth * g_mouth
        + weights.feat * g_feat
        + (weights.vgg * g_vgg if vgg is not None else zero)
        + weights.l1 * g_l1
    )
    logs = {
        "G_gan": g_gan.item(),
        "G_mouth": g_mouth.item(),
        "G_feat": g_feat.item(),
        "G_vgg": g_vgg.item(),
        "G_l1": g_l1.item(),
        "G_total": total.item(),
    }
    return total, logs
