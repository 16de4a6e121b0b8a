"""``ned train-manipulator``: train the learned NED manipulator on labelled clips.

Examples::

    ned train-manipulator --data MEAD --checkpoints_dir ckpt --val_actors M023
    torchrun --nproc_per_node 4 -m ned.cli train-manipulator --data MEAD --checkpoints_dir ckpt
    ned train-manipulator --data MEAD --checkpoints_dir ckpt --resume
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from ned.errors import InputError
from ned.manipulate.backends import BACKENDS, get_extractor
from ned.manipulate.dataset import DataOptions
from ned.manipulate.networks import list_archs
from ned.manipulate.train import LossWeights, TrainOptions, train_manipulator

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


NAME = "train-manipulator"
HELP = "train the learned (NED) emotion manipulator on labelled clips"

def _default(cls: type, name: str) -> Any:
    """The dataclass field's default (argparse defaults are never retyped)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                return f.default_factory()  # type: ignore[misc]
    raise KeyError(name)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train-manipulator`` parser."""
    t, w, d = TrainOptions, LossWeights, DataOptions
    p = subparsers.add_parser(
        NAME,
        help=HELP,
        description="Train the StarGAN-v2-style NED manipulator on per-frame expression vectors of labelled "
                    "clips (MEAD layout, MEAD-style names, or a labels CSV). Expression vectors are extracted "
                    "once and cached; checkpoints are written every epoch as {epoch:02d}_nets.pth.")
    p.add_argument("--data", type=Path, required=True,
                   help="training clips: MEAD root, folder of MEAD-style names, or folder with labels.csv")
    p.add_argument("--checkpoints_dir", type=Path, required=True, help="where checkpoints and loss_log.csv go")
    p.add_argument("--labels", type=Path, default=_default(d, "labels_csv"),
                   help="CSV of labels with columns path,emotion[,actor]")
    p.add_argument("--cache_dir", type=Path, default=_default(d, "cache_dir"),
                   help="expression cache (default: <checkpoints_dir>/expressions/<backend>-<face model hash>)")
    p.add_argument("--views", nargs="+", default=list(_default(d, "views")), help="MEAD camera views to use")
    p.add_argument("--workers", type=int, default=_default(d, "workers"), help="extraction processes")
    p.add_argument("--hop", type=int, default=_default(d, "hop"), help="frames between training windows")
    p.add_argument("--backend", choices=BACKENDS, default=_default(t, "backend"),
                   help="expression vectors: our face model (face3d) or DECA's 51 numbers (deca)")
    p.add_argument("--deca_dir", type=Path, default=None,
                   help="DECA/FLAME files (deca_model.tar, generic_model.pkl) for --backend deca")
    p.add_argument("--arch", choices=list_archs(), default=_default(t, "arch"), help="network sizes")
    p.add_argument("--window", type=int, default=_default(t, "window"), help="frames per window")
    p.add_argument("--epochs", type=int, default=_default(t, "epochs"))
    p.add_argument("--max_steps", type=int, default=_default(t, "max_steps"), help="stop after N steps (0: no limit)")
    p.add_argument("--batch_size", type=int, default=_default(t, "batch_size"), help="windows per process per step")
    p.add_argument("--lr", type=float, default=_default(t, "lr"))
    p.add_argument("--f_lr", type=float, default=_default(t, "f_lr"), help="mapping network learning rate")
    p.add_argument("--betas", type=float, nargs=2, default=list(_default(t, "betas")))
    p.add_argument("--lr_decay_epochs", type=int, default=_default(t, "lr_decay_epochs"))
    for name in ("adv", "sty", "cyc", "mouth", "r1", "ds"):
        p.add_argument(f"--lambda_{name}", type=float, default=_default(w, name), help=f"weight of the {name} loss")
    p.add_argument("--ds_decay_steps", type=int, default=_default(t, "ds_decay_steps"))
    p.add_argument("--mouth_indices", type=int, nargs="+", default=_default(t, "mouth_indices"),
                   help="speech dimensions of the mouth loss (default: the backend's)")
    p.add_argument("--ema_beta", type=float, default=_default(t, "ema_beta"))
    p.add_argument("--no_normalize", action="store_true", help="feed raw values (no per-dimension standardising)")
    p.add_argument("--seed", type=int, default=_default(t, "seed"))
    p.add_argument("--device", default=_default(t, "device"), help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no_amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--threads", type=int, default=0,
                   help="PyTorch CPU threads per process (0: PyTorch's default; 1 is best on a busy machine)")
    p.add_argument("--val_actors", nargs="*", default=list(_default(t, "val_actors")),
                   help="actors held out for validation")
    p.add_argument("--val_batches", type=int, default=_default(t, "val_batches"), help="0: all")
    p.add_argument("--init_from", type=Path, default=_default(t, "init_from"),
                   help="start from these weights (e.g. the original release's) and save *_finetuned.pth")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the options, train, print a summary.

    Raises:
        InputError: for invalid option values (and whatever training raises).
    """
    try:
        data = DataOptions(root=args.data, labels_csv=args.labels, cache_dir=args.cache_dir, views=tuple(args.views),
                           workers=args.workers, hop=args.hop)
        weights = LossWeights(**{n: getattr(args, f"lambda_{n}") for n in ("adv", "sty", "cyc", "mouth", "r1", "ds")})
        options = TrainOptions(
            checkpoints_dir=args.checkpoints_dir, backend=args.backend, arch=args.arch, window=args.window,
            epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr, f_lr=args.f_lr,
            betas=tuple(args.betas), lr_decay_epochs=args.lr_decay_epochs, weights=weights,
            ds_decay_steps=args.ds_decay_steps,
            mouth_indices=tuple(args.mouth_indices) if args.mouth_indices else None, ema_beta=args.ema_beta,
            normalize=not args.no_normalize, seed=args.seed, device=args.device, amp=not args.no_amp,
            val_actors=tuple(args.val_actors), val_batches=args.val_batches, init_from=args.init_from,
            resume=args.resume)
        if args.threads < 0:
            raise ValueError(f"--threads must be >= 0, got {args.threads}")
    except ValueError as err:
        raise InputError(str(err)) from None
    if args.threads:
        torch.set_num_threads(args.threads)
    report = train_manipulator(data, options, extractor=get_extractor(args.backend, deca_dir=args.deca_dir),
                               quiet=args.quiet)
    if report.rank != 0:  # torchrun: one summary
        return 0
    last = report.checkpoints[-1] if report.checkpoints else None
    print(f"trained {report.steps} steps ({report.epochs} epochs, {report.train_windows} windows, "
          f"{report.steps_per_s:.2f} steps/s); last checkpoint: {last}; losses: {report.log_path}")
    if report.val_losses:
        mouth = report.val_losses.get("G/latent_mouth")
        print(f"validation: G/latent_cyc={report.val_losses.get('G/latent_cyc', float('nan')):.4f} "
              f"G/latent_mouth={mouth if mouth is not None else float('nan'):.4f}")
    return 0
