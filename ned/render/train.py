"""Per-actor training of the neural face renderer (StarGAN-v2-style compact trainer).

:class:`Trainer` owns the networks, optimisers, AMP scalers and the generator's EMA copy;
:meth:`Trainer.train_step` runs one discriminator step then one generator step on a
batch and returns a dict of floats. :func:`train_renderer` wires data, trainer,
checkpoints, CSV log and image grids, and is what ``ned train-renderer`` calls.

- Determinism: one ``seed``. Networks are initialised under it, the batch of step ``s``
  is a pure function of ``(seed, s, rank)`` (:class:`StepSampler`) and the dataset
  draws from ``np.random.default_rng((seed, epoch, index))``, so a resumed run continues
  exactly as an uninterrupted one (the global RNG states are checkpointed too, see
  :mod:`ned.seeding`).
- Devices: ``"auto"`` picks CUDA when present. On CUDA the forward passes run under
  autocast (bf16 where supported, else fp16 with gradient scaling); the CPU path is fp32.
- DDP: launched with ``torchrun`` (``RANK``/``WORLD_SIZE`` set) the trainer joins a
  process group (NCCL on CUDA, gloo on CPU), wraps G, D and the mouth D in
  ``DistributedDataParallel`` and gives each rank its own slice of every step's samples.
  The generator's replicas are compared across ranks at the end (a checksum all-gather).
- Checkpoints: one file per save, ``step_<step>.pt``, holding ``version``, ``step``,
  ``options`` (a plain dict), the networks, EMA, optimisers, scalers and RNG states;
  written to a temporary name then ``os.replace``d; the newest ``keep_checkpoints`` kept.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Mapping

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ned import __version__
from ned.checkpoint_io import CsvLog, atomic_torch_save, atomic_write_bytes
from ned.distributed import (  # DistInfo and resolve_device are re-exported
    DistInfo,
    autocast,
    autocast_dtype,
    barrier,
    distributed_session,
    load_scaler_state,
    resolve_device,
    unwrap,
    wrap_ddp,
)
from ned.errors import ModelFileError, OutputError
from ned.render.dataset import WARP_PROVIDERS, CelebFrames, RendererDataset, WarpProvider, make_warp_provider
from ned.render.losses import LossWeights, VGG19Features, discriminator_loss, generator_loss, load_vgg19_features
from ned.render.networks import (
    FrameGenerator,
    MultiscaleDiscriminator,
    NetworkOptions,
    RendererNets,
    SequenceGenerator,
    build_networks,
    crop_mouth,
)
from ned.seeding import capture_rng_state, numpy_generator, restore_rng_state, seed_everything

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_KIND",
    "CHECKPOINT_VERSION",
    "TrainOptions",
    "TrainReport",
    "DistInfo",
    "StepSampler",
    "Trainer",
    "train_renderer",
    "find_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "reconstruction_metrics",
    "evaluate_reconstruction",
    "resolve_device",
    "seed_everything",
]

CHECKPOINT_KIND = "ned-neural-renderer"
CHECKPOINT_VERSION = 1
LOSS_KEYS = ("D_real", "D_fake", "Dm_real", "Dm_fake", "G_gan", "G_mouth", "G_feat", "G_vgg", "G_l1", "G_total")
#: Columns of ``log.csv``.
LOG_COLUMNS = ("step", "epoch", "elapsed_s", "steps_per_s", *LOSS_KEYS)
# Options that define the networks: a checkpoint only resumes / fine-tunes with equal values.
ARCH_FIELDS = ("arch", "size", "use_warp", "n_cond_frames", "d_channels", "d_layers", "d_scales",
               "mouth_fraction", "mouth_scales")


@dataclass(frozen=True)
class TrainOptions:
    """Everything that shapes a training run (stored in every checkpoint as a dict).

    Attributes:
        size: crop side the renderer trains and renders at, px (power of two; 256 as NED,
            64/128 for CPU runs).
        arch: generator variant (``ned.render.networks.list_renderers()``).
        use_warp: warp-guided generator (the training-free renderer's warp in, residual out).
        warp_provider: what makes the warped input during training: ``"mesh"`` (the
            training-free renderer on the tracked meshes of ``face3d/``, as at inference)
            or ``"nmfc"`` (NMFC colour correspondences; needs no ``face3d/``).
        n_cond_frames: conditioning frames per output frame (current + previous), 1..4.
        window: consecutive frames per training sample, >= 1 (2: the second frame is fed
            the generated first one).
        warp_max_offset: largest frame distance between a target and the frame warped
            onto it, 0 = anywhere in the clip.
        holdout_fraction: the last fraction of every clip is held out of training and
            used for the final evaluation, [0, 0.5].
        steps: total optimisation steps (a resumed run continues to this number).
        batch_size: samples per step and rank.
        lr_g, lr_d: Adam learning rates (> 0).
        beta1, beta2: Adam betas, [0, 1).
        ema_decay: generator EMA decay, [0, 1); warmed up as ``min(decay, (1+s)/(10+s))``.
        lambda_gan, lambda_mouth, lambda_feat, lambda_vgg, lambda_l1: loss weights (>= 0).
        d_channels, d_layers, d_scales: image discriminator (and mouth D) width, depth, scales.
        mouth_fraction: mouth crop side / ``size``; mouth_scales: its pyramid levels (0: off).
        seed: the one seed of the run.
        checkpoint_every: steps between checkpoints (0: once per epoch); one is always
            written at the end.
        keep_checkpoints: newest checkpoints kept (>= 1).
        log_every: steps between CSV log rows (>= 1).
        image_every: steps between PNG image grids (0: only at the end).
        num_workers: DataLoader worker processes (>= 0).
        amp: mixed precision on CUDA (ignored on CPU).
    """

    size: int = 256
    arch: str = "unet_256"
    use_warp: bool = True
    warp_provider: str = "mesh"
    n_cond_frames: int = 2
    window: int = 2
    warp_max_offset: int = 0
    holdout_fraction: float = 0.0
    steps: int = 20000
    batch_size: int = 4
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    ema_decay: float = 0.999
    lambda_gan: float = 1.0
    lambda_mouth: float = 1.0
    lambda_feat: float = 10.0
    lambda_vgg: float = 10.0
    lambda_l1: float = 10.0
    d_channels: int = 32
    d_layers: int = 3
    d_scales: int = 2
    mouth_fraction: float = 0.3125
    mouth_scales: int = 1
    seed: int = 0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 10
    image_every: int = 500
    num_workers: int = 0
    amp: bool = True

    def __post_init__(self) -> None:
        self.network_options()  # validates the architecture fields
        self.loss_weights()  # validates the lambdas
        checks = {
            "warp_provider": self.warp_provider in WARP_PROVIDERS,
            "window": self.window >= 1,
            "warp_max_offset": self.warp_max_offset >= 0,
            "holdout_fraction": 0.0 <= self.holdout_fraction <= 0.5,
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "lr_g": self.lr_g > 0,
            "lr_d": self.lr_d > 0,
            "beta1": 0.0 <= self.beta1 < 1.0,
            "beta2": 0.0 <= self.beta2 < 1.0,
            "ema_decay": 0.0 <= self.ema_decay < 1.0,
            "checkpoint_every": self.checkpoint_every >= 0,
            "keep_checkpoints": self.keep_checkpoints >= 1,
            "log_every": self.log_every >= 1,
            "image_every": self.image_every >= 0,
            "num_workers": self.num_workers >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError("invalid TrainOptions: " + ", ".join(f"{n}={getattr(self, n)!r}" for n in bad))

    def network_options(self) -> NetworkOptions:
        """The architecture part, as :class:`NetworkOptions`."""
        return NetworkOptions(
            arch=self.arch, size=self.size, use_warp=self.use_warp, n_cond_frames=self.n_cond_frames,
            d_channels=self.d_channels, d_layers=self.d_layers, d_scales=self.d_scales,
            mouth_fraction=self.mouth_fraction, mouth_scales=self.mouth_scales,
        )

    def loss_weights(self) -> LossWeights:
        """The loss weights, as :class:`LossWeights`."""
        return LossWeights(gan=self.lambda_gan, mouth=self.lambda_mouth, feat=self.lambda_feat,
                           vgg=self.lambda_vgg, l1=self.lambda_l1)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (what checkpoints store)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainOptions":
        """Rebuild from :meth:`to_dict`; unknown keys raise (a newer file), missing keep defaults.

        Raises:
            ValueError: unknown keys or invalid values.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}")
        return cls(**dict(data))


# --------------------------------------------------------------------------- run plumbing


class StepSampler(torch.utils.data.Sampler):
    """Yields dataset keys ``(epoch, index)`` so that step ``s`` always gets the same samples.

    The global sample stream is the concatenation of per-epoch permutations
    (``np.random.default_rng((seed, epoch)).permutation(n)``); step ``s`` on rank ``r``
    takes positions ``(s * world + r) * batch .. + batch``. Starting at ``start_step``
    skips exactly what earlier steps consumed, which makes resuming exact.

    Args:
        n_items: dataset length (>= 1).
        batch_size: samples per step and rank.
        seed: the run's seed.
        start_step: first step to yield; stop_step: one past the last.
        rank, world_size: this process's slice.
    """

    def __init__(self, n_items: int, batch_size: int, seed: int, start_step: int, stop_step: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if n_items < 1 or batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler arguments: n={n_items}, batch={batch_size}, rank={rank}/{world_size}")
        self.n, self.batch, self.seed = n_items, batch_size, seed
        self.start, self.stop, self.rank, self.world = start_step, stop_step, rank, world_size
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return max(self.stop - self.start, 0) * self.batch

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, numpy_generator(self.seed, epoch).permutation(self.n))
        return self._perm[1]

    def keys(self, step: int) -> list[tuple[int, int]]:
        """The ``(epoch, index)`` keys of step ``step`` on this rank."""
        first = (step * self.world + self.rank) * self.batch
        out = []
        for pos in range(first, first + self.batch):
            epoch, j = divmod(pos, self.n)
            out.append((epoch, int(self._permutation(epoch)[j])))
        return out

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for step in range(self.start, self.stop):
            yield from self.keys(step)


def _split_halves(outputs: list[list[torch.Tensor]]) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
    """Split batched discriminator outputs ``cat([a, b])`` into those of ``a`` and ``b``."""
    first = [[f[: f.shape[0] // 2] for f in scale] for scale in outputs]
    second = [[f[f.shape[0] // 2 :] for f in scale] for scale in outputs]
    return first, second


# --------------------------------------------------------------------------- trainer


class Trainer:
    """Networks, optimisers and one training step.

    Args:
        options: the run's options.
        nets: networks from :func:`ned.render.networks.build_networks` (moved to ``device``).
        device: where to train.
        vgg: frozen VGG19 features for the perceptual loss, or None to leave it out.
        dist_info: DDP position; with ``world_size > 1`` a process group must be initialised.
    """

    def __init__(self, options: TrainOptions, nets: RendererNets, device: torch.device,
                 vgg: VGG19Features | None = None, dist_info: DistInfo = DistInfo()) -> None:
        self.options = options
        self.device = device
        self.dist = dist_info
        self.weights = options.loss_weights()
        self.mouth_crop = options.network_options().mouth_crop
        self.generator: FrameGenerator = nets.generator.to(device)
        self.discriminator: MultiscaleDiscriminator = nets.discriminator.to(device)
        self.mouth_discriminator = nets.mouth_discriminator.to(device) if nets.mouth_discriminator else None
        self.generator_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        self.vgg = vgg.to(device) if vgg is not None else None
        seq: nn.Module = SequenceGenerator(self.generator)
        disc: nn.Module = self.discriminator
        mouth: nn.Module | None = self.mouth_discriminator
        if dist_info.enabled:
            seq, disc = wrap_ddp(seq, device), wrap_ddp(disc, device)
            if mouth is not None:
                mouth = wrap_ddp(mouth, device)
        self.seq, self.disc, self.mouth = seq, disc, mouth
        betas = (options.beta1, options.beta2)
        d_params = list(self.discriminator.parameters())
        if self.mouth_discriminator is not None:
            d_params += list(self.mouth_discriminator.parameters())
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=options.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(d_params, lr=options.lr_d, betas=betas)
        self.amp_dtype = autocast_dtype(device, options.amp)  # None: full precision
        self.use_amp = self.amp_dtype is not None
        scale = self.amp_dtype == torch.float16  # bf16 needs no loss scaling
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=scale)
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=scale)
        self.step = 0
        self.last_visuals: dict[str, torch.Tensor] = {}

    def _autocast(self):
        return autocast(self.device, self.amp_dtype)

    def _mouth_pair(self, real_in: torch.Tensor, fake_in: torch.Tensor, centers: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        return crop_mouth(real_in, centers, self.mouth_crop), crop_mouth(fake_in, centers, self.mouth_crop)

    def train_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """One discriminator step, then one generator step, then the EMA update.

        Args:
            batch: ``"cond"`` ``(B, T, 9, S, S)``, ``"image"`` ``(B, T, 3, S, S)``,
                ``"mouth"`` ``(B, T, 2)`` px, and ``"warp"`` ``(B, T, 3, S, S)`` when the
                generator is warp-guided; images in ``[0, 1]``.

        Returns:
            the loss terms (:data:`LOSS_KEYS`) as floats.

        Raises:
            ValueError: a missing or mis-shaped batch entry.
        """
        cond = batch["cond"].to(self.device, non_blocking=True)
        real = batch["image"].to(self.device, non_blocking=True)
        centers = batch["mouth"].to(self.device).flatten(0, 1).float()
        warp = batch["warp"].to(self.device, non_blocking=True) if self.generator.use_warp else None
        if cond.ndim != 5 or real.shape[:2] != cond.shape[:2]:
            raise ValueError(f"batch: cond (B, T, C, H, W) and image (B, T, 3, H, W) expected, got "
                             f"{tuple(cond.shape)}, {tuple(real.shape)}")
        self.seq.train()
        with self._autocast():
            fake = self.seq(cond, warp)  # (B, T, 3, S, S)
        cond_f, real_f, fake_f = cond.flatten(0, 1), real.flatten(0, 1), fake.flatten(0, 1)
        real_in = torch.cat([cond_f, real_f], dim=1)

        # ---- discriminators: real vs detached fake, one batched forward each (DDP-safe)
        fake_in_d = torch.cat([cond_f, fake_f.detach().to(cond_f.dtype)], dim=1)
        with self._autocast():
            d_real, d_fake = _split_halves(self.disc(torch.cat([real_in, fake_in_d])))
            m_real = m_fake = None
            if self.mouth is not None:
                mr, mf = self._mouth_pair(real_in, fake_in_d, centers)
                m_real, m_fake = _split_halves(self.mouth(torch.cat([mr, mf])))
        loss_d, logs_d = discriminator_loss(d_real, d_fake, m_real, m_fake)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(loss_d).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()

        # ---- generator: the discriminators are fixed here (unwrapped: no DDP sync needed)
        disc, mouth = unwrap(self.disc), (unwrap(self.mouth) if self.mouth is not None else None)
        for net in (disc, mouth):
            if net is not None:
                net.requires_grad_(False)
        try:
            fake_in = torch.cat([cond_f, fake_f.to(cond_f.dtype)], dim=1)
            with self._autocast():
                g_fake = disc(fake_in)
                with torch.no_grad():
                    g_real = disc(real_in)
                gm_fake = None
                if mouth is not None:
                    gm_fake = mouth(crop_mouth(fake_in, centers, self.mouth_crop))
            loss_g, logs_g = generator_loss(fake_f.float(), real_f, g_fake, g_real, self.weights, gm_fake, self.vgg)
            self.opt_g.zero_grad(set_to_none=True)
            self.scaler_g.scale(loss_g).backward()
            self.scaler_g.step(self.opt_g)
            self.scaler_g.update()
        finally:
            for net in (disc, mouth):
                if net is not None:
                    net.requires_grad_(True)

        self._update_ema()
        self.step += 1
        last = -1  # visuals: the last frame of each window (it was fed a generated frame)
        self.last_visuals = {
            "cond": cond[:, last].detach(),
            "fake": fake[:, last].detach().float(),
            "real": real[:, last].detach(),
        }
        if warp is not None:
            self.last_visuals["warp"] = warp[:, last].detach()
        return {**logs_d, **logs_g}

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = min(self.options.ema_decay, (1.0 + self.step) / (10.0 + self.step))
        for p_ema, p in zip(self.generator_ema.parameters(), self.generator.parameters()):
            p_ema.lerp_(p.detach(), 1.0 - decay)
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
            b_ema.copy_(b)

    # ---- state

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs (networks, EMA, optimisers, scalers, RNG, step)."""
        return {
            "kind": CHECKPOINT_KIND,
            "version": CHECKPOINT_VERSION,
            "ned_version": __version__,
            "step": self.step,
            "options": self.options.to_dict(),
            "generator_hparams": dict(self.generator.hparams),
            "nets": {
                "generator": self.generator.state_dict(),
                "generator_ema": self.generator_ema.state_dict(),
                "discriminator": self.discriminator.state_dict(),
                "mouth_discriminator": (
                    self.mouth_discriminator.state_dict() if self.mouth_discriminator is not None else None
                ),
            },
            "optim": {"g": self.opt_g.state_dict(), "d": self.opt_d.state_dict()},
            "scaler": {"g": self.scaler_g.state_dict(), "d": self.scaler_d.state_dict()},
            "rng": capture_rng_state(),
            "world_size": self.dist.world_size,
        }

    def load_state_dict(self, state: Mapping[str, Any], *, weights_only: bool = False) -> None:
        """Restore :meth:`state_dict` (``weights_only``: networks only, for fine-tuning).

        Raises:
            ModelFileError: the networks in ``state`` do not fit these.
        """
        nets = state["nets"]
        try:
            self.generator.load_state_dict(nets["generator"])
            self.generator_ema.load_state_dict(nets.get("generator_ema") or nets["generator"])
            self.discriminator.load_state_dict(nets["discriminator"])
            if self.mouth_discriminator is not None and nets.get("mouth_discriminator") is not None:
                self.mouth_discriminator.load_state_dict(nets["mouth_discriminator"])
        except RuntimeError as err:
            raise ModelFileError(f"checkpoint networks do not match this renderer: {str(err).splitlines()[0]}") from err
        if weights_only:
            return
        self.opt_g.load_state_dict(state["optim"]["g"])
        self.opt_d.load_state_dict(state["optim"]["d"])
        load_scaler_state(self.scaler_g, state["scaler"]["g"])
        load_scaler_state(self.scaler_d, state["scaler"]["d"])
        self.step = int(state["step"])
        restore_rng_state(state.get("rng", {}))

    def replicas_in_sync(self) -> bool:
        """True when every rank holds bit-identical generator parameters (True without DDP)."""
        if not self.dist.enabled:
            return True
        digest = _params_digest(self.generator)
        gathered: list[Any] = [None] * self.dist.world_size
        dist.all_gather_object(gathered, digest)
        return len(set(gathered)) == 1


def _params_digest(module: nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- checkpoints


@contextmanager
def _output_error(path: Path, what: str) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` into an :class:`OutputError`."""
    try:
        yield
    except OSError as err:
        raise OutputError(f"{path}: cannot write{what} ({err.strerror or err})") from err


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` to a temporary name, then ``os.replace`` it
    (:func:`ned.checkpoint_io.atomic_torch_save`).

    Raises:
        OutputError: the folder cannot be written.
    """
    with _output_error(Path(path), " checkpoint"):
        return atomic_torch_save(path, state)


def list_checkpoints(checkpoints_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the ``step_<n>.pt`` files in a folder, oldest first."""
    folder = Path(checkpoints_dir)
    found = []
    for p in folder.glob("step_*.pt") if folder.is_dir() else []:
        try:
            found.append((int(p.stem.split("_", 1)[1]), p))
        except ValueError:
            continue
    return sorted(found)


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file itself, or the newest ``step_<n>.pt`` in a folder.

    Raises:
        ModelFileError: nothing there.
    """
    path = Path(path)
    if path.is_file():
        return path
    found = list_checkpoints(path)
    if not found:
        raise ModelFileError(f"{path}: no neural renderer checkpoint (step_<n>.pt); train one with "
                             f"`ned train-renderer <celeb_path> --checkpoints_dir {path}`")
    return found[-1][1]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a renderer checkpoint safely (``weights_only=True``, on the CPU) and check its kind.

    Raises:
        ModelFileError: missing, unreadable, not a renderer checkpoint, or a newer version.
    """
    path = find_checkpoint(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a bad file
        raise ModelFileError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or state.get("kind") != CHECKPOINT_KIND:
        raise ModelFileError(f"{path}: not a NED neural renderer checkpoint")
    if int(state.get("version", 0)) > CHECKPOINT_VERSION:
        raise ModelFileError(f"{path}: checkpoint version {state.get('version')} is newer than this ned "
                             f"({CHECKPOINT_VERSION}); upgrade ned")
    return state


def check_compatible(saved: Mapping[str, Any], options: TrainOptions, path: Path, action: str) -> None:
    """Refuse a checkpoint whose architecture differs from ``options``.

    Raises:
        ModelFileError: naming the differing options, the size first.
    """
    want = options.to_dict()
    diffs = [k for k in ARCH_FIELDS if k in saved and saved[k] != want[k]]
    if "size" in diffs:
        raise ModelFileError(f"{path}: trained at size {saved['size']}, cannot {action} at size {options.size}; "
                             f"use --size {saved['size']} or train a new renderer")
    if diffs:
        raise ModelFileError(f"{path}: cannot {action}: architecture differs in "
                             + ", ".join(f"{k} ({saved[k]!r} vs {want[k]!r})" for k in diffs))


# --------------------------------------------------------------------------- logs and grids


def image_grid(visuals: Mapping[str, torch.Tensor], max_rows: int = 4) -> np.ndarray:
    """Rows of ``NMFC | eyes | shape | [warp] | output | target`` for up to ``max_rows`` samples.

    Args:
        visuals: ``"cond"`` ``(B, 9, S, S)``, ``"fake"``/``"real"``/``"warp"`` ``(B, 3, S, S)``, ``[0, 1]``.

    Returns:
        ``(rows * S, cols * S, 3) uint8`` RGB.
    """
    cond = visuals["cond"][:max_rows].float().cpu()
    tiles = [cond[:, 0:3], cond[:, 3:6], cond[:, 6:9]]
    if "warp" in visuals:
        tiles.append(visuals["warp"][:max_rows].float().cpu())
    tiles += [visuals["fake"][:max_rows].float().cpu(), visuals["real"][:max_rows].float().cpu()]
    grid = torch.cat([torch.cat(list(t), dim=1) for t in tiles], dim=2)  # (3, rows*S, cols*S)
    return (grid.clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).numpy()


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then ``os.replace`` it.

    Raises:
        OutputError: the folder cannot be written.
    """
    with _output_error(path, ""):
        atomic_write_bytes(path, data)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OutputError(f"{path}: could not encode PNG")
    _write_bytes(path, buf.tobytes())


# --------------------------------------------------------------------------- evaluation


def reconstruction_metrics(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """PSNR (dB) and SSIM of ``pred`` vs ``target`` over a face mask.

    Args:
        pred, target: ``(H, W, 3) uint8``.
        mask: ``(H, W) float32`` in ``[0, 1]`` weighting pixels (None: all).

    Returns:
        ``{"psnr": ..., "ssim": ...}``; SSIM is the mask-weighted mean of the SSIM map of
        the grey images (Gaussian window, sigma 1.5).
    """
    from skimage.metrics import structural_similarity

    a, b = pred.astype(np.float64), target.astype(np.float64)
    w = np.ones(a.shape[:2]) if mask is None else np.asarray(mask, np.float64)
    if w.sum() <= 0:
        w = np.ones(a.shape[:2])
    mse = float((((a - b) ** 2).mean(axis=-1) * w).sum() / w.sum())
    psnr = 10.0 * math.log10(255.0**2 / max(mse, 1e-10))
    ga, gb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float64) for x in (pred, target))
    _, smap = structural_similarity(ga, gb, data_range=255.0, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, full=True)
    return {"psnr": psnr, "ssim": float((smap * w).sum() / w.sum())}


@torch.no_grad()
def evaluate_reconstruction(generator: FrameGenerator, dataset: RendererDataset, device: torch.device,
                            frames: CelebFrames | None = None) -> dict[str, float]:
    """Mean face-region PSNR/SSIM of the generator (and of the warp input) on a dataset.

    Each window is rendered as a sequence (the last frame fed the generated previous one)
    and the last frame is scored against the real crop inside ``masks/`` (resized; the
    whole crop when there is no mask).

    Returns:
        ``{"psnr", "ssim", "n"}`` and, with a warp-guided dataset, ``{"warp_psnr", "warp_ssim"}``.
    """
    generator.eval()
    seq = SequenceGenerator(generator).to(device)
    sums: dict[str, float] = {}
    n = 0
    for i in range(len(dataset)):
        item = dataset[(0, i)]
        warp = item["warp"][None].to(device) if generator.use_warp else None
        out = seq(item["cond"][None].to(device), warp)[0, -1]
        target = _to_uint8(item["image"][-1])
        mask = None
        if frames is not None:
            m = frames.mask(int(item["frame"][-1]))
            if m is not None:
                mask = cv2.resize(m, target.shape[1::-1], interpolation=cv2.INTER_AREA)
        scores = {k: v for k, v in reconstruction_metrics(_to_uint8(out), target, mask).items()}
        if "warp" in item:
            scores.update({f"warp_{k}": v for k, v in
                           reconstruction_metrics(_to_uint8(item["warp"][-1]), target, mask).items()})
        for k, v in scores.items():
            sums[k] = sums.get(k, 0.0) + v
        n += 1
    return {**{k: v / max(n, 1) for k, v in sums.items()}, "n": float(n)}


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    """``(3, H, W) [0, 1] -> (H, W, 3) uint8``."""
    return (t.detach().float().clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).cpu().numpy()


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class TrainReport:
    """What a training run did.

    Attributes:
        checkpoint: the last checkpoint written.
        start_step, end_step: the step counter before and after this run.
        seconds: wall time of the optimisation loop.
        steps_per_s: optimisation steps per second (this rank).
        losses: the last step's loss terms.
        used_vgg: whether the VGG19 perceptual loss was on.
        holdout: held-out reconstruction metrics (EMA generator, and the warp input), or None.
        initial_holdout: the same metrics before the first step of a fresh run, or None.
        rank: this process's DDP rank (0 without DDP).
    """

    checkpoint: Path
    start_step: int
    end_step: int
    seconds: float
    steps_per_s: float
    losses: dict[str, float]
    used_vgg: bool
    holdout: dict[str, float] | None = None
    initial_holdout: dict[str, float] | None = None
    rank: int = 0


def _split_frames(frames: CelebFrames, fraction: float) -> tuple[list[int], list[int]]:
    """Train / held-out frame ids: the last ``fraction`` of every clip is held out."""
    train, held = [], []
    for a, b in frames.clip_ranges:
        cut = b - int(round((b - a) * fraction))
        train += list(range(a, cut))
        held += list(range(cut, b))
    return train, held


def train_renderer(
    celeb_path: str | Path,
    checkpoints_dir: str | Path,
    options: TrainOptions = TrainOptions(),
    *,
    device: str = "auto",
    resume: bool = False,
    load_pretrain: str | Path | None = None,
    vgg_weights: str | Path | None = None,
    warp_provider: WarpProvider | None = None,
    quiet: bool = False,
) -> TrainReport:
    """Train (or resume / fine-tune) a neural renderer for the actor in ``celeb_path``.

    Args:
        celeb_path: folder preprocessed with ``ned preprocess --mode train``.
        checkpoints_dir: where checkpoints, ``log.csv``, ``images/`` and ``options.json`` go.
        options: the run's options. With ``resume`` the architecture must equal the
            checkpoint's; ``steps`` may extend it.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:<n>``.
        resume: continue from the newest checkpoint in ``checkpoints_dir`` (a fresh start
            when there is none, logged).
        load_pretrain: a generic renderer checkpoint (file or folder) whose networks
            initialise this run (optimisers and step start afresh); same architecture.
        vgg_weights: torchvision-layout VGG19 state dict; None trains without the
            perceptual loss (logged).
        warp_provider: a custom warp-guided input; None uses ``options.warp_provider``.
        quiet: no progress bar.

    Returns:
        :class:`TrainReport`.

    Raises:
        InputError: bad celeb folder or device.
        ModelFileError: a checkpoint or VGG file that is missing, corrupt or of another size.
        OutputError: ``checkpoints_dir`` cannot be written.
    """
    with distributed_session(device) as (dist_info, dev):
        return _train(celeb_path, Path(checkpoints_dir), options, dev, dist_info, resume, load_pretrain,
                      vgg_weights, warp_provider, quiet)


def _train(celeb_path: str | Path, out_dir: Path, options: TrainOptions, dev: torch.device, dist_info: DistInfo,
           resume: bool, load_pretrain: str | Path | None, vgg_weights: str | Path | None,
           warp_provider: WarpProvider | None, quiet: bool) -> TrainReport:
    """The body of :func:`train_renderer` inside its process group."""
    from tqdm import tqdm

    if dist_info.is_main:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"{out_dir}: cannot create checkpoints folder ({err.strerror or err})") from err

    resume_state, resume_path = None, None
    if resume:
        if list_checkpoints(out_dir):
            resume_path = find_checkpoint(out_dir)
            resume_state = read_checkpoint(resume_path)
            check_compatible(resume_state["options"], options, resume_path, "resume")
            logger.info("resuming from %s (step %d)", resume_path, resume_state["step"])
        else:
            logger.info("--resume: no checkpoint in %s yet, starting afresh", out_dir)
    if resume_state is not None and int(resume_state["step"]) >= options.steps:
        logger.info("checkpoint is at step %d >= --steps %d: nothing to do", resume_state["step"], options.steps)

    frames = CelebFrames(celeb_path)
    if options.use_warp and warp_provider is None:
        if options.warp_provider == "mesh":
            frames.landmarks(0)  # fail early, with the fix in the message, when face3d/ is missing
        warp_provider = make_warp_provider(options.warp_provider)

    seed_everything(options.seed)
    nets = build_networks(options.network_options())
    vgg = None
    if vgg_weights:
        vgg = load_vgg19_features(vgg_weights)
    else:
        logger.warning("no VGG19 weights given (--vgg_weights): training without the perceptual loss")
    trainer = Trainer(options, nets, dev, vgg=vgg, dist_info=dist_info)
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
    elif load_pretrain is not None:
        pre_path = find_checkpoint(load_pretrain)
        pre = read_checkpoint(pre_path)
        check_compatible(pre["options"], options, pre_path, "fine-tune")
        trainer.load_state_dict(pre, weights_only=True)
        logger.info("initialised the networks from %s (step %d)", pre_path, pre["step"])

    train_ids, held_ids = _split_frames(frames, options.holdout_fraction)

    def make_dataset(ids: list[int], sources: list[int]) -> RendererDataset:
        return RendererDataset(
            frames, options.size, window=options.window, use_warp=options.use_warp, warp_provider=warp_provider,
            warp_max_offset=options.warp_max_offset, seed=options.seed, frame_ids=ids, source_ids=sources,
            cache_frames=options.size <= 128,
        )

    dataset = make_dataset(train_ids, train_ids)
    holdout = make_dataset(held_ids, train_ids) if held_ids else None
    per_epoch = max(1, math.ceil(len(dataset) / (options.batch_size * dist_info.world_size)))
    ckpt_every = options.checkpoint_every or per_epoch
    start = trainer.step
    initial_holdout = None
    if holdout is not None and dist_info.is_main and start == 0:
        initial_holdout = evaluate_reconstruction(trainer.generator_ema, holdout, dev, frames)
        logger.info("held-out frames before training: %s", _fmt(initial_holdout))

    sampler = StepSampler(len(dataset), options.batch_size, options.seed, start, options.steps,
                          dist_info.rank, dist_info.world_size)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=options.batch_size, sampler=sampler, num_workers=options.num_workers,
        pin_memory=dev.type == "cuda", drop_last=False,
    )
    log = None
    if dist_info.is_main:
        log = CsvLog(out_dir / "log.csv", LOG_COLUMNS, resume_step=start if resume_state is not None else None)
        _write_bytes(out_dir / "options.json", (json.dumps(options.to_dict(), indent=2, sort_keys=True) + "\n").encode())
    logger.info("training %s at %dx%d on %s: %d frames (%d held out), %d windows, steps %d..%d, batch %d x %d rank(s)",
                options.arch, options.size, options.size, dev, len(frames), len(held_ids), len(dataset), start,
                options.steps, options.batch_size, dist_info.world_size)

    losses: dict[str, float] = {}
    last_ckpt: Path | None = resume_path
    bad_steps = 0  # consecutive non-finite losses (fp16 overflow steps are skipped by the scaler)
    t0 = time.perf_counter()
    bar = tqdm(total=options.steps - start, disable=quiet or not dist_info.is_main, desc="train-renderer", unit="step")
    for batch in loader:
        losses = trainer.train_step(batch)
        step = trainer.step
        bar.update(1)
        bad_steps = 0 if all(math.isfinite(v) for v in losses.values()) else bad_steps + 1
        if bad_steps >= 10:
            raise FloatingPointError(f"non-finite losses for 10 steps up to step {step}: {losses}; "
                                     f"lower the learning rates or use --no_amp")
        elapsed = time.perf_counter() - t0
        if dist_info.is_main and (step % options.log_every == 0 or step == options.steps):
            log.append({"step": step, "epoch": (step * options.batch_size * dist_info.world_size) // len(dataset),
                        "elapsed_s": elapsed, "steps_per_s": (step - start) / max(elapsed, 1e-9), **losses})
            bar.set_postfix(G=f"{losses['G_total']:.3f}", L1=f"{losses['G_l1']:.3f}")
        if dist_info.is_main and options.image_every and step % options.image_every == 0:
            _write_png(out_dir / "images" / f"step_{step:07d}.png", image_grid(trainer.last_visuals))
        if step % ckpt_every == 0 and step != options.steps:
            last_ckpt = _save(trainer, out_dir, options, dist_info)
    bar.close()
    seconds = time.perf_counter() - t0
    if trainer.step > start or last_ckpt is None:
        if dist_info.is_main and trainer.last_visuals:
            _write_png(out_dir / "images" / f"step_{trainer.step:07d}.png", image_grid(trainer.last_visuals))
        last_ckpt = _save(trainer, out_dir, options, dist_info)
    if dist_info.enabled:
        if not trainer.replicas_in_sync():
            raise RuntimeError("DDP: generator parameters differ across ranks")
        logger.info("DDP: generator parameters identical across %d ranks", dist_info.world_size)
    held_metrics = None
    if holdout is not None and dist_info.is_main:
        held_metrics = evaluate_reconstruction(trainer.generator_ema, holdout, dev, frames)
        logger.info("held-out frames after step %d: %s", trainer.step, _fmt(held_metrics))
    steps_done = trainer.step - start
    return TrainReport(
        checkpoint=last_ckpt, start_step=start, end_step=trainer.step, seconds=seconds,
        steps_per_s=steps_done / seconds if seconds > 0 else 0.0, losses=losses, used_vgg=vgg is not None,
        holdout=held_metrics, initial_holdout=initial_holdout, rank=dist_info.rank,
    )


def _fmt(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())


def _save(trainer: Trainer, out_dir: Path, options: TrainOptions, dist_info: DistInfo) -> Path:
    """Rank 0 writes ``step_<n>.pt`` and prunes old ones; every rank gets the path."""
    path = out_dir / f"step_{trainer.step:07d}.pt"
    if dist_info.is_main:
        save_checkpoint(path, trainer.state_dict())
        for _, old in list_checkpoints(out_dir)[: -options.keep_checkpoints]:
            old.unlink(missing_ok=True)
        logger.info("saved %s", path)
    barrier(dist_info)
    return path
