"""Training of the learned NED manipulator (StarGAN v2 style, on expression windows).

One :meth:`Trainer.train_step` runs, as the original release:

1. D step with a latent-driven fake, 2. D step with a reference-driven fake,
3. G step (latent): generator, mapping network and style encoder are updated,
4. G step (reference): the generator is updated,
5. EMA update of generator, mapping network and style encoder (the EMA copies are what
   checkpoints give to inference and what validation uses).

Losses are pure functions returning ``(total, dict_of_floats)``: least-squares adversarial,
style reconstruction, cycle consistency, and the mouth term (Pearson correlation over time
of the speech part between real and fake and between fake and cycled, subtracted);
optional R1 and diversity terms. Schedules (learning-rate decay, diversity weight, EMA
warm-up) are functions of the step. Batches and latent codes are functions of
``(seed, step, rank)``, so a run resumed from a checkpoint continues bit-identically.

Multi-GPU / multi-process: launch with ``torchrun --nproc_per_node N``; each process takes
its share of every global batch and the networks are wrapped in
``DistributedDataParallel`` (NCCL on CUDA, gloo on CPU).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ned.checkpoint_io import CsvLog
from ned.distributed import (DistInfo, all_ok, autocast, autocast_dtype, barrier, check_device_spec, load_scaler_state,
                             distributed_session, init_distributed, wrap_ddp)
from ned.errors import InputError, ModelFileError
from ned.manipulate.backends import BACKENDS, backend_fingerprint, backend_mouth_indices, get_extractor
from ned.manipulate.checkpoint import (CHECKPOINT_VERSION, checkpoint_path, list_checkpoints, load_manipulator,
                                       load_state_strict, read_checkpoint, save_checkpoint)
from ned.manipulate.dataset import (DataOptions, WindowDataset, cache_path, discover_clips, extract_expressions,
                                    load_clips, split_by_actor)
from ned.manipulate.networks import EMOTIONS, ManipulatorNets, build_networks, create_arch, list_archs
from ned.seeding import (capture_rng_state, derive_seed, numpy_generator, restore_rng_state, seed_everything,
                         torch_generator)

__all__ = [
    "LossWeights",
    "TrainOptions",
    "Batch",
    "DistInfo",
    "TrainReport",
    "adversarial_loss",
    "r1_penalty",
    "pearson_correlation",
    "mouth_correlation",
    "discriminator_loss",
    "generator_loss",
    "learning_rate_at",
    "diversity_weight_at",
    "ema_beta_at",
    "moving_average",
    "init_distributed",
    "Trainer",
    "train_manipulator",
]

logger = logging.getLogger(__name__)


# --- options ---------------------------------------------------------------------------

@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (all >= 0).

    Attributes:
        adv: least-squares adversarial term (1).
        sty: style reconstruction (1).
        cyc: cycle consistency (1).
        mouth: mouth correlation, subtracted (1).
        r1: R1 gradient penalty on real windows (0 = off).
        ds: diversity-sensitive term, subtracted, latent mode only (0 = off).
    """

    adv: float = 1.0
    sty: float = 1.0
    cyc: float = 1.0
    mouth: float = 1.0
    r1: float = 0.0
    ds: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"LossWeights.{f.name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class TrainOptions:
    """Options of a manipulator training run.

    Attributes:
        checkpoints_dir: where ``{epoch:02d}_nets.pth`` and ``loss_log.csv`` go.
        backend: expression backend of the training vectors (face3d or deca).
        arch: registered architecture (``ned_original`` or ``ned_small``).
        window: frames per training window (>= 2; 10 as the original release).
        epochs: epochs to train (>= 1).
        max_steps: stop after this many steps in all (0 = no limit); a checkpoint is saved.
        batch_size: windows per process per step (>= 1).
        lr: Adam learning rate of generator, style encoder and discriminator (> 0).
        f_lr: Adam learning rate of the mapping network (> 0).
        betas: Adam betas, each in [0, 1).
        lr_decay_epochs: linear decay of the learning rates to 0 over the last N epochs (0 = constant).
        weights: loss weights.
        ds_decay_steps: the diversity weight decays linearly to 0 over this many steps (0 = constant).
        mouth_indices: speech dimensions of the mouth term (None: the backend's; DECA: (0,), jaw opening).
        ema_beta: EMA decay of the inference copies, in [0, 1) (warmed up over the first steps).
        normalize: standardise inputs with the training set's per-dimension mean / std.
        seed: the one seed of initialisation, batches and latent codes.
        device: auto, cpu, cuda or cuda:N (under torchrun, CUDA uses cuda:LOCAL_RANK).
        amp: automatic mixed precision on CUDA (bfloat16 when supported, else float16); ignored on CPU.
        val_actors: actors held out for validation (evaluated after every epoch).
        val_batches: validation batches per epoch (0 = all windows).
        init_from: start from these weights (a checkpoint file or folder, e.g. the original
            release's) and save ``..._nets_finetuned.pth``.
        resume: continue from the latest checkpoint in ``checkpoints_dir`` (none: start fresh).
    """

    checkpoints_dir: Path
    backend: str = "face3d"
    arch: str = "ned_original"
    window: int = 10
    epochs: int = 10
    max_steps: int = 0
    batch_size: int = 16
    lr: float = 1e-4
    f_lr: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.99)
    lr_decay_epochs: int = 0
    weights: LossWeights = field(default_factory=LossWeights)
    ds_decay_steps: int = 0
    mouth_indices: tuple[int, ...] | None = None
    ema_beta: float = 0.999
    normalize: bool = True
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    val_actors: tuple[str, ...] = ()
    val_batches: int = 0
    init_from: Path | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoints_dir", Path(self.checkpoints_dir))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "val_actors", tuple(self.val_actors))
        if self.init_from is not None:
            object.__setattr__(self, "init_from", Path(self.init_from))
        if self.mouth_indices is not None:
            object.__setattr__(self, "mouth_indices", tuple(int(i) for i in self.mouth_indices))
            if not self.mouth_indices or min(self.mouth_indices) < 0:
                raise ValueError(f"TrainOptions.mouth_indices must be non-empty and >= 0, got {self.mouth_indices}")
        if self.backend not in BACKENDS:
            raise ValueError(f"TrainOptions.backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        if self.arch not in list_archs():
            raise ValueError(f"TrainOptions.arch must be one of {list_archs()}, got {self.arch!r}")
        for name, low in (("window", 2), ("epochs", 1), ("batch_size", 1), ("max_steps", 0),
                          ("lr_decay_epochs", 0), ("ds_decay_steps", 0), ("val_batches", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"TrainOptions.{name} must be an integer >= {low}, got {value!r}")
        if self.lr_decay_epochs > self.epochs:
            raise ValueError(f"TrainOptions.lr_decay_epochs ({self.lr_decay_epochs}) exceeds epochs ({self.epochs})")
        for name in ("lr", "f_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TrainOptions.{name} must be > 0, got {getattr(self, name)}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"TrainOptions.betas must be two numbers in [0, 1), got {self.betas}")
        if not 0 <= self.ema_beta < 1:
            raise ValueError(f"TrainOptions.ema_beta must be in [0, 1), got {self.ema_beta}")
        check_device_spec(self.device)

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (stored in checkpoints)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, LossWeights):
                value = dataclasses.asdict(value)
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return out


# --- losses (pure functions) -----------------------------------------------------------

def adversarial_loss(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Least-squares GAN loss ``mean((logits - target)^2)``. logits (B,) -> scalar."""
    return torch.mean((logits.float() - target) ** 2)


def r1_penalty(d_out: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
    """R1 penalty ``0.5 * mean_b |d D(x_b) / d x_b|^2`` on real inputs.

    Args:
        d_out: (B,) discriminator outputs on ``x_in``.
        x_in: (B, T, D) real windows with ``requires_grad``.
    """
    (grad,) = torch.autograd.grad(d_out.float().sum(), x_in, create_graph=True)
    return 0.5 * grad.float().pow(2).reshape(len(grad), -1).sum(dim=1).mean()


def pearson_correlation(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Pearson correlation over the last axis. a, b (..., T) -> (...)."""
    a = a.float() - a.float().mean(dim=-1, keepdim=True)
    b = b.float() - b.float().mean(dim=-1, keepdim=True)
    return (a * b).mean(-1) * torch.rsqrt(a.pow(2).mean(-1) + eps) * torch.rsqrt(b.pow(2).mean(-1) + eps)


def mouth_correlation(x_a: torch.Tensor, x_b: torch.Tensor, indices: Sequence[int]) -> torch.Tensor:
    """Mean correlation over time of the speech dimensions of two window batches.

    Args:
        x_a, x_b: (B, T, D).
        indices: speech dimensions (e.g. ``(0,)``, DECA's jaw opening).

    Returns:
        Scalar in [-1, 1].
    """
    idx = list(indices)
    return pearson_correlation(x_a[..., idx].transpose(1, 2), x_b[..., idx].transpose(1, 2)).mean()


def discriminator_loss(discriminator: Callable, x_real: torch.Tensor, y_org: torch.Tensor, x_fake: torch.Tensor,
                       y_trg: torch.Tensor, *, r1_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """D loss: real windows towards 1, fakes towards 0, optional R1.

    Args:
        discriminator: ``D(x (B, T, D), y (B,)) -> (B,)``.
        x_real, y_org: real windows and their emotions.
        x_fake, y_trg: generated windows (no gradient needed) and their target emotions.
        r1_weight: weight of the R1 penalty (0 = off).

    Returns:
        ``(total, {"real", "fake", "r1"})``.
    """
    if r1_weight > 0:
        x_real = x_real.detach().requires_grad_(True)
    out_real = discriminator(x_real, y_org)
    loss_real = adversarial_loss(out_real, 1.0)
    loss_fake = adversarial_loss(discriminator(x_fake.detach(), y_trg), 0.0)
    loss_r1 = r1_penalty(out_real, x_real) if r1_weight > 0 else torch.zeros((), device=x_real.device)
    total = loss_real + loss_fake + r1_weight * loss_r1
    return total, {"real": loss_real.item(), "fake": loss_fake.item(), "r1": loss_r1.item()}


def generator_loss(generator: Callable, discriminator: Callable, style_encoder: Callable, x_real: torch.Tensor,
                   y_trg: torch.Tensor, s_trg: torch.Tensor, *, weights: LossWeights,
                   mouth_indices: Sequence[int], s_trg2: torch.Tensor | None = None,
                   ds_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """G loss of one translation ``x_real -> style s_trg``.

    ``adv * LS(D(G(x, s), y), 1) + sty * |E(G(x, s)) - s| + cyc * |G(G(x, s), E(x)) - x|
    - mouth * (corr(x, G(x, s)) + corr(G(x, s), G(G(x, s), E(x)))) - ds_weight * |G(x, s) - G(x, s2)|``
    (means over all elements; correlations over time of the speech dimensions).

    Args:
        generator, discriminator, style_encoder: the networks (callables).
        x_real: (B, T, D) source windows.
        y_trg: (B,) target emotions.
        s_trg: (B, S) target styles.
        weights: loss weights (``weights.ds`` is ignored in favour of ``ds_weight``).
        mouth_indices: speech dimensions.
        s_trg2: (B, S) a second style of the same emotions for the diversity term.
        ds_weight: weight of the diversity term at this step.

    Returns:
        ``(total, {"adv", "sty", "cyc", "mouth", "ds"})``; ``mouth`` is the sum of the two
        correlations (at most 2).
    """
    x_fake = generator(x_real, s_trg)
    loss_adv = adversarial_loss(discriminator(x_fake, y_trg), 1.0)
    loss_sty = torch.mean(torch.abs(style_encoder(x_fake).float() - s_trg.float()))
    s_org = style_encoder(x_real)
    x_rec = generator(x_fake, s_org)
    loss_cyc = torch.mean(torch.abs(x_rec.float() - x_real.float()))
    mouth = mouth_correlation(x_real, x_fake, mouth_indices) + mouth_correlation(x_fake, x_rec, mouth_indices)
    if s_trg2 is not None and ds_weight > 0:
        loss_ds = torch.mean(torch.abs(x_fake.float() - generator(x_real, s_trg2).detach().float()))
    else:
        loss_ds = torch.zeros((), device=x_real.device)
    total = (weights.adv * loss_adv + weights.sty * loss_sty + weights.cyc * loss_cyc
             - weights.mouth * mouth - ds_weight * loss_ds)
    return total, {"adv": loss_adv.item(), "sty": loss_sty.item(), "cyc": loss_cyc.item(),
                   "mouth": mouth.item(), "ds": loss_ds.item()}


# --- schedules (functions of the step) ------------------------------------------------

def learning_rate_at(step: int, base_lr: float, total_steps: int, decay_steps: int) -> float:
    """``base_lr``, decaying linearly to 0 over the last ``decay_steps`` of ``total_steps``."""
    if decay_steps <= 0 or step < total_steps - decay_steps:
        return base_lr
    return base_lr * max(0.0, (total_steps - step) / decay_steps)


def diversity_weight_at(step: int, weight: float, decay_steps: int) -> float:
    """Diversity weight decaying linearly from ``weight`` to 0 over ``decay_steps`` (0: constant)."""
    if decay_steps <= 0:
        return weight
    return weight * max(0.0, 1.0 - step / decay_steps)


def ema_beta_at(step: int, beta: float) -> float:
    """EMA decay with warm-up: ``min(beta, (1 + step) / (10 + step))``."""
    return min(beta, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def moving_average(model: nn.Module, model_ema: nn.Module, beta: float) -> None:
    """``ema <- beta * ema + (1 - beta) * model``, parameter by parameter."""
    for param, param_ema in zip(model.parameters(), model_ema.parameters()):
        param_ema.copy_(torch.lerp(param.detach(), param_ema, beta))


def _he_init(module: nn.Module) -> None:
    """He (Kaiming) normal init of linear layers, zero biases; LSTMs keep PyTorch's init."""
    if isinstance(module, nn.Linear):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(module.bias)


# --- trainer -----------------------------------------------------------------------------

@dataclass
class Batch:
    """One step's inputs (this process's share).

    Attributes:
        x_real: (B, W, D) source windows; y_org (B,) their emotions.
        x_ref: (B, W, D) reference windows; y_trg (B,) their emotions (the targets).
        z_trg, z_trg2: (B, L) latent codes.
    """

    x_real: torch.Tensor
    y_org: torch.Tensor
    x_ref: torch.Tensor
    y_trg: torch.Tensor
    z_trg: torch.Tensor
    z_trg2: torch.Tensor

    def to(self, device: torch.device) -> "Batch":
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})


@dataclass
class TrainReport:
    """Summary of a training run."""

    checkpoints: list[Path]
    steps: int
    epochs: int
    train_losses: dict[str, float]
    val_losses: dict[str, float]
    elapsed_s: float
    steps_per_s: float
    log_path: Path
    train_windows: int = 0
    val_windows: int = 0
    rank: int = 0


_MODULES = ("generator", "mapping_network", "style_encoder", "discriminator")
_EMA = ("generator", "mapping_network", "style_encoder")
LOSS_KEYS: tuple[str, ...] = tuple(
    [f"D/{m}_{k}" for m in ("latent", "ref") for k in ("real", "fake", "r1")]
    + [f"G/{m}_{k}" for m in ("latent", "ref") for k in ("adv", "sty", "cyc", "mouth", "ds")])
#: Columns of ``loss_log.csv``.
LOG_FIELDS: tuple[str, ...] = ("phase", "epoch", "step", "time_s") + LOSS_KEYS


class Trainer:
    """Owns the networks, EMA copies, optimisers and the step counter of one run.

    Args:
        options: training options.
        train_set: training windows (``train_set.window`` frames).
        val_set: validation windows (held-out actors), or None.
        device: where to train (resolved once by the caller).
        dist_info: this process's rank (single process by default).

    Raises:
        ValueError: when ``mouth_indices`` fall outside the vectors.
    """

    def __init__(self, options: TrainOptions, train_set: WindowDataset, val_set: WindowDataset | None = None, *,
                 device: torch.device | str = "cpu", dist_info: DistInfo = DistInfo()) -> None:
        self.options = options
        self.train_set, self.val_set = train_set, val_set
        self.device = torch.device(device)
        self.dist = dist_info
        self.arch = create_arch(options.arch, input_dim=train_set.input_dim, window=train_set.window)
        self.mouth_indices = options.mouth_indices or backend_mouth_indices(options.backend)
        if max(self.mouth_indices) >= self.arch.input_dim:
            raise ValueError(f"mouth_indices {self.mouth_indices} outside {self.arch.input_dim} values per frame")
        seed_everything(options.seed)  # same initial weights on every rank
        self.nets: ManipulatorNets = build_networks(self.arch)
        for module in self.nets.modules().values():
            module.apply(_he_init)
        if options.normalize:
            self.nets.mean, self.nets.std = train_set.statistics()
        self.ema = {name: copy.deepcopy(getattr(self.nets, name)).eval().requires_grad_(False) for name in _EMA}
        self.nets.to(self.device)
        for module in self.ema.values():
            module.to(self.device)
        self.raw: dict[str, nn.Module] = self.nets.modules()
        self.optimizers = {name: torch.optim.Adam(module.parameters(), betas=options.betas,
                                                  lr=options.f_lr if name == "mapping_network" else options.lr)
                           for name, module in self.raw.items()}
        self.amp_dtype = autocast_dtype(self.device, options.amp)
        use_scaler = self.amp_dtype == torch.float16
        self.scalers = {k: torch.amp.GradScaler("cuda", enabled=use_scaler) for k in ("d", "g")}
        if dist_info.enabled:
            self.run: dict[str, nn.Module] = {n: wrap_ddp(m, self.device) for n, m in self.raw.items()}
        else:
            self.run = dict(self.raw)
        self.step = 0
        self.finetuned = False
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    # -- batches --------------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        """Steps per pass over the training windows (all processes together)."""
        return max(1, len(self.train_set) // (self.options.batch_size * self.dist.world_size))

    @property
    def total_steps(self) -> int:
        total = self.options.epochs * self.steps_per_epoch
        return min(total, self.options.max_steps) if self.options.max_steps else total

    def _permutation(self, epoch: int, stream: int) -> np.ndarray:
        key = (epoch, stream)
        if key not in self._perm_cache:
            if len(self._perm_cache) > 4:
                self._perm_cache.clear()
            rng = numpy_generator(self.options.seed, epoch, stream)
            self._perm_cache[key] = rng.permutation(len(self.train_set))
        return self._perm_cache[key]

    def batch_at(self, step: int) -> Batch:
        """This process's batch of a step: a function of ``(seed, step, rank)`` only."""
        bsz, n = self.options.batch_size, len(self.train_set)
        epoch, i = divmod(step, self.steps_per_epoch)
        pos = (i * bsz * self.dist.world_size + self.dist.rank * bsz + np.arange(bsz)) % n
        x_real, y_org = self.train_set.gather(self._permutation(epoch, 0)[pos])
        x_ref, y_trg = self.train_set.gather(self._permutation(epoch, 1)[pos])
        gen = torch_generator(derive_seed(self.options.seed, step, self.dist.rank, 7))
        z = torch.randn(2, bsz, self.arch.latent_dim, generator=gen)
        return Batch(x_real, y_org, x_ref, y_trg, z[0], z[1])

    # -- one step -------------------------------------------------------------------------
    def _autocast(self):
        return autocast(self.device, self.amp_dtype)

    def _set_learning_rates(self) -> None:
        decay = self.options.lr_decay_epochs * self.steps_per_epoch
        total = self.options.epochs * self.steps_per_epoch
        for name, opt in self.optimizers.items():
            base = self.options.f_lr if name == "mapping_network" else self.options.lr
            for group in opt.param_groups:
                group["lr"] = learning_rate_at(self.step, base, total, decay)

    def _zero_grad(self) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

    def _update(self, loss: torch.Tensor, names: Sequence[str], scaler: torch.amp.GradScaler) -> None:
        self._zero_grad()
        scaler.scale(loss).backward()
        for name in names:
            scaler.step(self.optimizers[name])
        scaler.update()

    def _d_step(self, x_real: torch.Tensor, y_org: torch.Tensor, y_trg: torch.Tensor,
                s_trg: torch.Tensor) -> dict[str, float]:
        run, r1 = self.run, self.options.weights.r1
        no_cudnn = r1 > 0 and self.device.type == "cuda"  # cuDNN RNNs have no double backward
        with torch.backends.cudnn.flags(enabled=False) if no_cudnn else nullcontext():
            with self._autocast():
                with torch.no_grad():
                    x_fake = run["generator"](x_real, s_trg)
                loss, parts = discriminator_loss(run["discriminator"], x_real, y_org, x_fake, y_trg, r1_weight=r1)
            self._update(loss, ["discriminator"], self.scalers["d"])
        return parts

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One D-then-G step on a batch; returns every loss term as a float.

        Keys: ``D/{latent,ref}_{real,fake,r1}`` and ``G/{latent,ref}_{adv,sty,cyc,mouth,ds}``.
        """
        for module in self.raw.values():
            module.train()
        self._set_learning_rates()
        b = batch.to(self.device)
        x_real, x_ref = self.nets.normalize(b.x_real), self.nets.normalize(b.x_ref)
        run, w = self.run, self.options.weights
        out: dict[str, float] = {}
        # discriminator: latent-driven then reference-driven fakes
        with torch.no_grad(), self._autocast():
            s_lat = run["mapping_network"](b.z_trg, b.y_trg)
            s_ref = run["style_encoder"](x_ref)
        out.update({f"D/latent_{k}": v for k, v in self._d_step(x_real, b.y_org, b.y_trg, s_lat).items()})
        out.update({f"D/ref_{k}": v for k, v in self._d_step(x_real, b.y_org, b.y_trg, s_ref).items()})
        # generator, latent-driven: G, F and E are updated
        ds_weight = diversity_weight_at(self.step, w.ds, self.options.ds_decay_steps)
        with self._autocast():
            s_trg = run["mapping_network"](b.z_trg, b.y_trg)
            s_trg2 = run["mapping_network"](b.z_trg2, b.y_trg) if ds_weight > 0 else None
            loss, parts = generator_loss(run["generator"], run["discriminator"], run["style_encoder"], x_real,
                                         b.y_trg, s_trg, weights=w, mouth_indices=self.mouth_indices,
                                         s_trg2=s_trg2, ds_weight=ds_weight)
        self._update(loss, ["generator", "mapping_network", "style_encoder"], self.scalers["g"])
        out.update({f"G/latent_{k}": v for k, v in parts.items()})
        # generator, reference-driven: G is updated
        with self._autocast():
            with torch.no_grad():
                s_trg = run["style_encoder"](x_ref)
            loss, parts = generator_loss(run["generator"], run["discriminator"], run["style_encoder"], x_real,
                                         b.y_trg, s_trg, weights=w, mouth_indices=self.mouth_indices)
        self._update(loss, ["generator"], self.scalers["g"])
        out.update({f"G/ref_{k}": v for k, v in parts.items()})
        beta = ema_beta_at(self.step, self.options.ema_beta)
        for name in _EMA:
            moving_average(self.raw[name], self.ema[name], beta)
        self.step += 1
        return out

    # -- validation -----------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean losses over the validation windows with the EMA networks (no R1 / diversity).

        Batches are deterministic (seeded by ``seed`` only); empty dict without a val set.
        """
        if self.val_set is None or len(self.val_set) == 0:
            return {}
        data, bsz = self.val_set, self.options.batch_size
        n_batches = math.ceil(len(data) / bsz)
        if self.options.val_batches:
            n_batches = min(n_batches, self.options.val_batches)
        rng = numpy_generator(self.options.seed, 99)
        order, ref_order = rng.permutation(len(data)), rng.permutation(len(data))
        gen = torch_generator(derive_seed(self.options.seed, 99))
        disc = self.raw["discriminator"]
        disc.eval()
        totals: dict[str, float] = {}
        for i in range(n_batches):
            pos = np.arange(i * bsz, min((i + 1) * bsz, len(data)))
            x_real, y_org = data.gather(order[pos])
            x_ref, y_trg = data.gather(ref_order[pos])
            z = torch.randn(len(pos), self.arch.latent_dim, generator=gen)
            x_real, y_org, x_ref, y_trg, z = (t.to(self.device) for t in (x_real, y_org, x_ref, y_trg, z))
            x_real, x_ref = self.nets.normalize(x_real), self.nets.normalize(x_ref)
            with self._autocast():
                styles = {"latent": self.ema["mapping_network"](z, y_trg), "ref": self.ema["style_encoder"](x_ref)}
                for mode, s_trg in styles.items():
                    x_fake = self.ema["generator"](x_real, s_trg)
                    _, parts = discriminator_loss(disc, x_real, y_org, x_fake, y_trg)
                    for k, v in parts.items():
                        totals[f"D/{mode}_{k}"] = totals.get(f"D/{mode}_{k}", 0.0) + v * len(pos)
                    _, parts = generator_loss(self.ema["generator"], disc, self.ema["style_encoder"], x_real, y_trg,
                                              s_trg, weights=self.options.weights, mouth_indices=self.mouth_indices)
                    for k, v in parts.items():
                        totals[f"G/{mode}_{k}"] = totals.get(f"G/{mode}_{k}", 0.0) + v * len(pos)
        count = sum(min(bsz, len(data) - i * bsz) for i in range(n_batches))
        disc.train()
        return {k: v / count for k, v in totals.items()}

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self, epoch: int) -> dict[str, Any]:
        """Everything needed to resume, in the original release's layout plus our keys."""
        payload: dict[str, Any] = {name: self.ema[name].state_dict() for name in _EMA}
        payload["discriminator"] = self.raw["discriminator"].state_dict()
        payload["train_nets"] = {name: self.raw[name].state_dict() for name in _EMA}
        payload["optimizers"] = {name: opt.state_dict() for name, opt in self.optimizers.items()}
        payload["scalers"] = {name: s.state_dict() for name, s in self.scalers.items()}
        payload["normalization"] = {"mean": self.nets.mean.detach().cpu(), "std": self.nets.std.detach().cpu()}
        payload["rng"] = capture_rng_state()
        payload.update(version=CHECKPOINT_VERSION, epoch=epoch, step=self.step, backend=self.options.backend,
                       backend_fingerprint=backend_fingerprint(self.options.backend),
                       arch=self.arch.to_dict(), options=self.options.to_dict(),
                       mouth_indices=tuple(self.mouth_indices), emotions=EMOTIONS, finetuned=self.finetuned)
        return payload

    def save(self, epoch: int) -> Path:
        """Write ``{epoch:02d}_nets[_finetuned].pth`` (temp file, then ``os.replace``)."""
        path = checkpoint_path(self.options.checkpoints_dir, epoch, finetuned=self.finetuned)
        save_checkpoint(path, self.state_dict(epoch))
        logger.info("saved %s (step %d)", path, self.step)
        return path

    def load_state_dict(self, data: Mapping[str, Any], *, path: Path | str = "checkpoint") -> None:
        """Restore a :meth:`state_dict` (networks, EMA, optimisers, scalers, step, RNG).

        Raises:
            ModelFileError: when the file is not one of our training checkpoints or does not
                match this run's architecture / backend.
        """
        name = Path(path).name
        if data.get("version") is None or not isinstance(data.get("train_nets"), Mapping):
            raise ModelFileError(f"{name}: not a resumable checkpoint (no training state); "
                                 "use --init_from to start from its weights")
        if data.get("arch") != self.arch.to_dict():
            raise ModelFileError(f"{name}: architecture {data.get('arch')} differs from this run's "
                                 f"{self.arch.to_dict()}; use the same --arch / --backend / data")
        if data.get("backend") != self.options.backend:
            raise ModelFileError(f"{name}: trained with backend {data.get('backend')!r}, this run uses "
                                 f"{self.options.backend!r}; run with --backend {data.get('backend')}")
        for key in _EMA:
            load_state_strict(self.raw[key], data["train_nets"][key], key=key, path=name)
            load_state_strict(self.ema[key], data[key], key=key, path=name)
        load_state_strict(self.raw["discriminator"], data["discriminator"], key="discriminator", path=name)
        for key, opt in self.optimizers.items():
            opt.load_state_dict(data["optimizers"][key])
        for key, scaler in self.scalers.items():
            load_scaler_state(scaler, data.get("scalers", {}).get(key, {}))
        norm = data["normalization"]
        self.nets.mean, self.nets.std = norm["mean"].to(self.device), norm["std"].to(self.device)
        restore_rng_state(data.get("rng", {}))
        self.step = int(data["step"])
        self.finetuned = bool(data.get("finetuned", False))

    def init_weights_from(self, source: Path) -> None:
        """Start from another checkpoint's weights (e.g. the original release's), keeping
        fresh optimisers; later saves are named ``..._nets_finetuned.pth``.

        Raises:
            ModelFileError: when the checkpoint does not fit this run.
        """
        nets, info = load_manipulator(source, backend=self.options.backend, input_dim=self.arch.input_dim,
                                      with_discriminator=True)
        if info.arch != self.arch:
            raise ModelFileError(f"{info.path.name}: architecture {info.arch.to_dict()} differs from this run's "
                                 f"{self.arch.to_dict()}; pick the matching --arch")
        for name, module in nets.modules().items():
            self.raw[name].load_state_dict(module.state_dict())
            if name in self.ema:
                self.ema[name].load_state_dict(module.state_dict())
        if info.version is not None:  # our checkpoint: keep its normalisation
            self.nets.mean, self.nets.std = nets.mean.to(self.device), nets.std.to(self.device)
        else:
            self.nets.mean = torch.zeros_like(self.nets.mean)
            self.nets.std = torch.ones_like(self.nets.std)
        self.finetuned = True
        logger.info("initialised from %s", info.path)

    # -- the loop -------------------------------------------------------------------------
    def fit(self, *, quiet: bool = False) -> TrainReport:
        """Train until ``epochs`` (or ``max_steps``) are done, validating and saving after
        every epoch; appends every loss to ``<checkpoints_dir>/loss_log.csv``."""
        opts, spe = self.options, self.steps_per_epoch
        log = None
        if self.dist.is_main:  # a resumed run rewrites the rows after its step; step 0 starts afresh
            log = CsvLog(opts.checkpoints_dir / "loss_log.csv", LOG_FIELDS, resume_step=self.step or None)
        saved: list[Path] = []
        train_losses: dict[str, float] = {}
        val_losses: dict[str, float] = {}
        start, start_step = time.perf_counter(), self.step
        bar = tqdm(total=self.total_steps, initial=self.step, desc="training", unit="step",
                   disable=quiet or not self.dist.is_main)
        while self.step < self.total_steps:
            epoch = self.step // spe
            end = min((epoch + 1) * spe, self.total_steps)
            while self.step < end:
                train_losses = self.train_step(self.batch_at(self.step))
                if log is not None:
                    log.append(_log_row("train", epoch + 1, self.step, time.perf_counter() - start, train_losses))
                bar.update()
            if self.dist.is_main:
                val_losses = self.validate()
                if val_losses and log is not None:
                    log.append(_log_row("val", epoch + 1, self.step, time.perf_counter() - start, val_losses))
                    logger.info("epoch %d validation: %s", epoch + 1,
                                " ".join(f"{k}={v:.4f}" for k, v in sorted(val_losses.items())))
                saved.append(self.save(epoch + 1))
            barrier(self.dist)
        bar.close()
        elapsed = time.perf_counter() - start
        steps = self.step - start_step
        return TrainReport(checkpoints=saved, steps=self.step, epochs=math.ceil(self.step / spe),
                           train_losses=train_losses, val_losses=val_losses, elapsed_s=elapsed,
                           steps_per_s=steps / elapsed if elapsed > 0 else 0.0,
                           log_path=opts.checkpoints_dir / "loss_log.csv", train_windows=len(self.train_set),
                           val_windows=len(self.val_set) if self.val_set is not None else 0, rank=self.dist.rank)


def _log_row(phase: str, epoch: int, step: int, time_s: float, losses: Mapping[str, float]) -> dict[str, Any]:
    """One row of ``loss_log.csv``: ``phase, epoch, step, time_s`` then the losses."""
    return {"phase": phase, "epoch": epoch, "step": step, "time_s": f"{time_s:.3f}",
            **{k: float(v) for k, v in losses.items()}}


def _latest_resumable(checkpoints_dir: Path) -> Path | None:
    found = list_checkpoints(checkpoints_dir)
    return found[-1][2] if found else None


def train_manipulator(data: DataOptions, options: TrainOptions, *, extractor: Callable | None = None,
                      quiet: bool = False) -> TrainReport:
    """Extract (cached), split by actor, and train; the library call behind
    ``ned train-manipulator``. Works under ``torchrun`` (extraction is shared out by rank).

    Args:
        data: where the labelled clips are.
        options: training options.
        extractor: ``extract(video_path) -> (T, D)``; None uses the backend's.
        quiet: no progress bars.

    Returns:
        The run's report.

    Raises:
        InputError: no usable clips / actors; ModelFileError: extractor or checkpoint problems.
    """
    with distributed_session(options.device) as (info, device):
        return _train(data, options, info, device, extractor, quiet)


def _train(data: DataOptions, options: TrainOptions, info: DistInfo, device: torch.device,
           extractor: Callable | None, quiet: bool) -> TrainReport:
    extractor = extractor or get_extractor(options.backend)
    cache_dir = data.cache_dir or options.checkpoints_dir / "expressions" / backend_fingerprint(options.backend)
    clips = discover_clips(data.root, data.labels_csv, views=data.views)
    logger.info("%d labelled clips of %d actors under %s", len(clips), len({c.actor for c in clips}), data.root)
    error: Exception | None = None
    try:  # each process extracts its share of the clips
        extract_expressions(clips[info.rank::info.world_size], extractor, cache_dir, workers=data.workers,
                            quiet=quiet or not info.is_main, require_any=info.world_size == 1)
    except (InputError, ModelFileError) as err:
        error = err
    if not all_ok(info, device, error is None):
        raise error or InputError("another training process failed to extract expressions (see its log)")
    cached = [c for c in clips if cache_path(cache_dir, c).is_file()]
    if not cached:
        raise InputError(f"{data.root}: no clip could be turned into expression vectors (see the log)")
    clip_data = load_clips(cached, cache_dir)
    train_clips, val_clips = split_by_actor(clip_data, options.val_actors)
    try:
        train_set = WindowDataset(train_clips, options.window, data.hop)
        val_set = WindowDataset(val_clips, options.window, data.hop) if val_clips else None
    except ValueError as err:
        raise InputError(f"{data.root}: {err}") from None
    missing = [EMOTIONS[i] for i in range(len(EMOTIONS)) if i not in set(train_set.labels.tolist())]
    if missing:
        logger.warning("no training windows for %s: those emotions will not be learned", missing)
    trainer = Trainer(options, train_set, val_set, device=device, dist_info=info)
    if options.resume and (path := _latest_resumable(options.checkpoints_dir)) is not None:
        trainer.load_state_dict(read_checkpoint(path), path=path)
        logger.info("resumed from %s at step %d", path, trainer.step)
    elif options.resume:
        logger.warning("--resume: no checkpoint in %s, starting from scratch", options.checkpoints_dir)
    elif options.init_from is not None:
        trainer.init_weights_from(options.init_from)
    logger.info("training on %s: %d windows (%d steps/epoch), %d validation windows", device, len(train_set),
                trainer.steps_per_epoch, len(val_set) if val_set else 0)
    return trainer.fit(quiet=quiet)
