"""``ned train-renderer``: train the per-actor neural face renderer.

Examples::

    ned preprocess <celeb_path> --mode train
    ned train-renderer <celeb_path> --checkpoints_dir ckpt/renderer          # 256 px, GPU if present
    ned train-renderer --celeb <celeb_path> --checkpoints_dir ck --size 64 --steps 2000 --device cpu
    ned train-renderer <celeb_path> --checkpoints_dir ck --resume --steps 40000
    ned train-renderer <celeb_path> --checkpoints_dir ck --load_pretrain generic/step_0100000.pt
    torchrun --nproc_per_node 2 -m ned.commands.train_renderer <celeb_path> --checkpoints_dir ck

The VGG19 perceptual loss needs ``--vgg_weights`` (a torchvision vgg19 state dict);
without it the renderer trains on the other losses and the log says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from ned.errors import InputError, NedError
from ned.render.dataset import WARP_PROVIDERS
from ned.render.networks import list_renderers
from ned.render.train import TrainOptions, train_renderer

__all__ = ["register", "add_arguments", "run", "main"]

logger = logging.getLogger(__name__)


NAME = "train-renderer"
HELP = "train the per-actor neural face renderer (optional refinement)"

def _default(name: str) -> Any:
    """The :class:`TrainOptions` field's default (argparse defaults are never retyped)."""
    return next(f.default for f in dataclasses.fields(TrainOptions) if f.name == name)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``train-renderer`` (shared by ``ned`` and ``python -m``)."""
    p.add_argument("celeb_path", nargs="?", type=Path, help="actor folder preprocessed with --mode train")
    p.add_argument("--celeb", type=Path, help="same as the positional celeb_path")
    p.add_argument("--checkpoints_dir", type=Path, required=True,
                   help="where step_<n>.pt checkpoints, log.csv and images/ grids go")
    p.add_argument("--size", type=int, default=_default("size"), help="crop side in px (256 as NED; 64/128 on CPU)")
    p.add_argument("--arch", choices=list_renderers(), default=_default("arch"), help="generator variant")
    p.add_argument("--no_warp", action="store_true",
                   help="plain generator (no warp-guided input; the paper's setting, slower to converge)")
    p.add_argument("--warp_provider", choices=WARP_PROVIDERS, default=_default("warp_provider"),
                   help="warped input in training: the training-free renderer on face3d meshes, or NMFC matching")
    p.add_argument("--steps", type=int, default=_default("steps"), help="total steps (a resumed run continues to it)")
    p.add_argument("--batch_size", type=int, default=_default("batch_size"), help="windows per step and process")
    p.add_argument("--window", type=int, default=_default("window"), help="consecutive frames per window")
    p.add_argument("--lr_g", type=float, default=_default("lr_g"))
    p.add_argument("--lr_d", type=float, default=_default("lr_d"))
    for name in ("gan", "mouth", "feat", "vgg", "l1"):
        p.add_argument(f"--lambda_{name}", type=float, default=_default(f"lambda_{name}"),
                       help=f"weight of the {name} loss")
    p.add_argument("--holdout_fraction", type=float, default=_default("holdout_fraction"),
                   help="hold the last fraction of each clip out and report PSNR/SSIM on it at the end")
    p.add_argument("--seed", type=int, default=_default("seed"))
    p.add_argument("--checkpoint_every", type=int, default=_default("checkpoint_every"),
                   help="steps between checkpoints (0: every epoch)")
    p.add_argument("--keep_checkpoints", type=int, default=_default("keep_checkpoints"))
    p.add_argument("--log_every", type=int, default=_default("log_every"), help="steps between log.csv rows")
    p.add_argument("--image_every", type=int, default=_default("image_every"),
                   help="steps between PNG grids (input | output | target)")
    p.add_argument("--num_workers", type=int, default=_default("num_workers"), help="data loader processes")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --checkpoints_dir")
    p.add_argument("--load_pretrain", type=Path, help="initialise from a generic renderer checkpoint (fine-tune)")
    p.add_argument("--vgg_weights", type=Path, help="torchvision-layout VGG19 state dict for the perceptual loss")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no_amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train-renderer`` parser."""
    p = subparsers.add_parser(
        NAME,
        help=HELP,
        description="Train a video-to-video face renderer for one actor on footage preprocessed with "
                    "`ned preprocess --mode train`. Use it with `--renderer neural --renderer_checkpoint <dir>`.")
    add_arguments(p)
    p.set_defaults(func=run)


def _options(args: argparse.Namespace) -> TrainOptions:
    names = {f.name for f in dataclasses.fields(TrainOptions)}
    given = {k: v for k, v in vars(args).items() if k in names}
    return TrainOptions(**given, use_warp=not args.no_warp, amp=not args.no_amp)


def run(args: argparse.Namespace) -> int:
    """Build the options, train, print a summary.

    Raises:
        InputError: no or two different celeb paths, or invalid option values (and
            whatever training raises).
    """
    if args.celeb_path and args.celeb and Path(args.celeb_path) != Path(args.celeb):
        raise InputError(f"two celeb paths given ({args.celeb_path} and --celeb {args.celeb}); give one")
    celeb = args.celeb_path or args.celeb
    if celeb is None:
        raise InputError("no celeb path: give <celeb_path> or --celeb <celeb_path>")
    try:
        options = _options(args)
    except ValueError as err:
        raise InputError(str(err)) from None
    report = train_renderer(celeb, args.checkpoints_dir, options, device=args.device, resume=args.resume,
                            load_pretrain=args.load_pretrain, vgg_weights=args.vgg_weights, quiet=args.quiet)
    if report.rank != 0:
        return 0
    print(f"trained steps {report.start_step}..{report.end_step} ({report.steps_per_s:.2f} steps/s"
          f"{'' if report.used_vgg else ', without VGG perceptual loss'}); checkpoint: {report.checkpoint}; "
          f"losses: {Path(args.checkpoints_dir) / 'log.csv'}")
    if report.holdout:
        before = report.initial_holdout
        line = f"held-out PSNR {report.holdout['psnr']:.2f} dB, SSIM {report.holdout['ssim']:.4f}"
        if before:
            line += f" (before training {before['psnr']:.2f} dB / {before['ssim']:.4f})"
        if "warp_psnr" in report.holdout:
            line += f"; warp input alone {report.holdout['warp_psnr']:.2f} dB / {report.holdout['warp_ssim']:.4f}"
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ned.commands.train_renderer`` (what ``torchrun -m`` launches)."""
    parser = argparse.ArgumentParser(prog="ned train-renderer", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s: %(message)s")
    try:
        return run(args)
    except NedError as err:
        print(f"ned train-renderer: error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
