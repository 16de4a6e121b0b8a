"""Argument helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from ned.errors import InputError


def add_celeb_argument(parser: argparse.ArgumentParser) -> None:
    """``<celeb_path>`` positionally or as ``--celeb`` (the seed's form)."""
    parser.add_argument("celeb_pos", nargs="?", metavar="celeb_path",
                        help="the <celeb_path> folder (holds videos/ and the per-frame folders)")
    parser.add_argument("--celeb", dest="celeb_opt", metavar="PATH", help="same as the positional celeb_path")


def celeb_path(args: argparse.Namespace) -> Path:
    """The celeb path given either way.

    Raises:
        InputError: none given, or two different ones.
    """
    pos, opt = args.celeb_pos, args.celeb_opt
    if pos and opt and Path(pos) != Path(opt):
        raise InputError(f"two different celeb paths given: {pos} and --celeb {opt}")
    value = pos or opt
    if not value:
        raise InputError("give the <celeb_path> (positionally or with --celeb)")
    return Path(value)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars or info logs (for scripts)")
