"""DECA's encoders (Feng et al., SIGGRAPH 2021): ResNet-50 features + a 2-layer regressor.

The modules' ``state_dict`` names and shapes match the ``E_flame`` / ``E_detail`` entries of
DECA's released ``deca_model.tar``: ``encoder.conv1.weight``, ``encoder.bn1.*``,
``encoder.layer{1..4}.{i}.{conv,bn}{1,2,3}.*``, ``encoder.layer{1..4}.0.downsample.{0,1}.*``,
``layers.0.{weight,bias}`` (1024 x 2048) and ``layers.2.{weight,bias}`` (outputs x 1024).
There is no classifier head (DECA's ResNet drops ``fc``) and the 7x7 average pool expects a
224x224 input.

Input convention: (B, 3, 224, 224) float32 RGB in [0, 1], no mean/std normalisation (as
DECA feeds its crops). The coarse encoder's 236 outputs split as shape 100, tex 50, exp 50,
pose 6, cam 3, light 27 (9 x 3 spherical-harmonics coefficients); the detail encoder gives
128 numbers.
"""

from __future__ import annotations

import logging
import os
from typing import Mapping

import torch
from torch import nn

from ned.errors import ModelFileError

__all__ = [
    "COARSE_OUTPUTS",
    "COARSE_SPLITS",
    "CROP_SIZE",
    "DETAIL_OUTPUTS",
    "DecaEncoder",
    "build_deca_encoder",
    "load_deca_checkpoint",
    "load_encoder_weights",
    "split_coarse_code",
]

logger = logging.getLogger(__name__)

CROP_SIZE = 224  # DECA's input crop, pixels
COARSE_SPLITS = (("shape", 100), ("tex", 50), ("exp", 50), ("pose", 6), ("cam", 3), ("light", 27))
COARSE_OUTPUTS = sum(size for _, size in COARSE_SPLITS)  # 236
DETAIL_OUTPUTS = 128
RESNET50_BLOCKS = (3, 4, 6, 3)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 convolution), expansion 4.

    Args:
        in_channels: input channels.
        planes: width of the 1x1/3x3 convolutions; the block outputs ``4 * planes``.
        stride: spatial stride of the 3x3 convolution.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetFeatures(nn.Module):
    """ResNet trunk without classifier: (B, 3, 224, 224) -> (B, 32 * width) pooled features.

    Args:
        width: channels of the stem (64 for ResNet-50; smaller only for tests).
        blocks: bottleneck blocks per stage ((3, 4, 6, 3) for ResNet-50).
    """

    def __init__(self, width: int = 64, blocks: tuple[int, int, int, int] = RESNET50_BLOCKS) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = width
        stages = []
        for index, count in enumerate(blocks):
            planes = width * 2**index
            stride = 1 if index == 0 else 2
            layers = [Bottleneck(channels, planes, stride)]
            channels = planes * Bottleneck.expansion
            layers += [Bottleneck(channels, planes) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AvgPool2d(7, stride=1)
        self.out_features = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


class DecaEncoder(nn.Module):
    """DECA's ``ResnetEncoder``: ResNet features -> Linear(1024) -> ReLU -> Linear(outputs).

    Args:
        outputs: regressed numbers (236 coarse, 128 detail).
        width: ResNet stem width (64 in DECA's checkpoint).
        blocks: bottlenecks per stage ((3, 4, 6, 3) in DECA's checkpoint).
        hidden: regressor hidden size (1024 in DECA's checkpoint).
    """

    def __init__(
        self,
        outputs: int,
        *,
        width: int = 64,
        blocks: tuple[int, int, int, int] = RESNET50_BLOCKS,
        hidden: int = 1024,
    ) -> None:
        super().__init__()
        self.encoder = ResNetFeatures(width, blocks)
        self.layers = nn.Sequential(
            nn.Linear(self.encoder.out_features, hidden), nn.ReLU(), nn.Linear(hidden, outputs)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) float32 RGB in [0, 1] -> (B, outputs).

        Raises:
            ValueError: the images are not (B, 3, 224, 224).
        """
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, CROP_SIZE, CROP_SIZE):
            raise ValueError(f"images: expected shape (B, 3, {CROP_SIZE}, {CROP_SIZE}), got {tuple(images.shape)}")
        return self.layers(self.encoder(images))


def build_deca_encoder(kind: str, **kwargs: int) -> DecaEncoder:
    """The encoder for a checkpoint entry: ``"coarse"`` (E_flame, 236) or ``"detail"`` (E_detail, 128).

    Raises:
        ValueError: an unknown kind.
    """
    outputs = {"coarse": COARSE_OUTPUTS, "detail": DETAIL_OUTPUTS}.get(kind)
    if outputs is None:
        raise ValueError(f"kind: expected 'coarse' or 'detail', got {kind!r}")
    return DecaEncoder(outputs, **kwargs)


def split_coarse_code(code: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split the coarse encoder's (B, 236) output into DECA's named parameters.

    Returns:
        ``shape`` (B, 100), ``tex`` (B, 50), ``exp`` (B, 50), ``pose`` (B, 6) axis-angle
        radians (global, jaw), ``cam`` (B, 3) (scale, tx, ty), ``light`` (B, 9, 3).

    Raises:
        ValueError: ``code`` is not (B, 236).
    """
    if code.ndim != 2 or code.shape[1] != COARSE_OUTPUTS:
        raise ValueError(f"code: expected shape (B, {COARSE_OUTPUTS}), got {tuple(code.shape)}")
    parts = dict(zip([name for name, _ in COARSE_SPLITS], code.split([size for _, size in COARSE_SPLITS], dim=1)))
    parts["light"] = parts["light"].reshape(code.shape[0], 9, 3)
    return parts


def load_deca_checkpoint(path: str | os.PathLike) -> dict:
    """Read ``deca_model.tar`` with ``torch.load(weights_only=True)`` on the CPU.

    Returns:
        The checkpoint dict (``E_flame``, and in the release ``E_detail``, ``D_detail``).

    Raises:
        ModelFileError: missing, unreadable, not a torch checkpoint, or without ``E_flame``.
    """
    try:
        checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise ModelFileError(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"cannot read {path}: it is a folder, not a file") from None
    except Exception as exc:  # torch raises many types for foreign / corrupt / unsafe files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"cannot read {path}: not a loadable DECA checkpoint ({first_line[:200]}); "
            "expected deca_model.tar from DECA's release"
        ) from None
    if not isinstance(checkpoint, Mapping) or "E_flame" not in checkpoint:
        keys = list(checkpoint)[:5] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise ModelFileError(f"{path}: no 'E_flame' entry (found {keys}); expected deca_model.tar from DECA's release")
    return dict(checkpoint)


def _strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Drop a DataParallel ``module.`` prefix, if every key has it."""
    if state_dict and all(key.startswith(prefix) for key in state_dict):
        return {key[len(prefix):]: value for key, value in state_dict.items()}
    return dict(state_dict)


def load_encoder_weights(module: nn.Module, state_dict: Mapping, *, entry: str, source: str) -> None:
    """Load ``state_dict`` strictly into ``module``, naming the first mismatch in the error.

    Missing BatchNorm ``num_batches_tracked`` counters are allowed (older checkpoints).

    Raises:
        ModelFileError: a missing, unexpected or wrongly-shaped tensor.
    """
    if not isinstance(state_dict, Mapping):
        raise ModelFileError(f"{source}: '{entry}' is a {type(state_dict).__name__}, not a state dict")
    incoming = _strip_prefix(state_dict)
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key not in incoming:
            if key.endswith("num_batches_tracked"):
                continue
            raise ModelFileError(f"{source}: '{entry}' lacks tensor '{key}' {tuple(tensor.shape)}; "
                                 "is this DECA's deca_model.tar?")
        value = incoming[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(tensor.shape):
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ModelFileError(f"{source}: '{entry}' tensor '{key}' has shape {got}, "
                                 f"expected {tuple(tensor.shape)}; is this DECA's deca_model.tar?")
    unexpected = [key for key in incoming if key not in expected]
    if unexpected:
        raise ModelFileError(f"{source}: '{entry}' has unexpected tensor '{unexpected[0]}' "
                             f"({len(unexpected)} in all); is this DECA's deca_model.tar?")
    filled = {key: incoming.get(key, expected[key]) for key in expected}
    module.load_state_dict(filled, strict=True)
