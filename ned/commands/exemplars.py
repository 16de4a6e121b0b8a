"""``ned exemplars build <folder> -o <bank dir> [--csv labels.csv]``: an exemplar bank.

The bank holds real expression detail from the user's own labelled emotion footage
(MEAD tree, MEAD-style names or a CSV of labels); ``--exemplars <bank dir>`` on the
editing commands then uses it in label mode. The bank stays on the user's disk.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ned.appearance.exemplars import BankOptions

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(BankOptions) if f.name != "appearance"}


NAME = "exemplars"
HELP = "build an exemplar bank of real expression detail from labelled emotion clips"

def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``exemplars`` sub-command (with its ``build`` action)."""
    parser = subparsers.add_parser(
        NAME,
        help=HELP,
        description=(
            "Build a bank of expression exemplars (aligned face crops, meshes, expression weights, "
            "band-limited detail maps and brow shapes relative to each actor's neutral frames) from a folder of labelled "
            "emotion clips: a MEAD tree (<actor>/video/<view>/<emotion>/level_<k>/<nnn>.mp4), MEAD-style "
            "names (<actor>_<view>_<emotion>_level<k>_<nnn>.mp4) or a CSV with columns path,emotion[,actor]. "
            "Each actor needs a neutral clip. Use the bank with --exemplars <bank dir>."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="<action>")
    actions.required = True
    build = actions.add_parser("build", help="build a bank from a folder of labelled clips")
    build.add_argument("folder", type=Path, help="folder of labelled clips (searched recursively)")
    build.add_argument("-o", "--out", type=Path, required=True, metavar="BANK_DIR", help="the bank folder to write")
    build.add_argument("--csv", type=Path, default=None, metavar="LABELS.csv",
                       help="labels as a CSV with header path,emotion[,actor] (paths relative to the CSV)")
    build.add_argument("--per-emotion", type=int, default=_DEFAULTS["per_emotion"], metavar="N",
                       help="exemplars per actor and emotion (default: %(default)s)")
    build.add_argument("--neutral-frames", type=int, default=_DEFAULTS["neutral_frames"], metavar="N",
                       help="neutral frames per actor (default: %(default)s)")
    build.add_argument("--max-frames", type=int, default=_DEFAULTS["max_frames"], metavar="N",
                       help="frames read per clip at most (default: %(default)s)")
    build.add_argument("--quiet", "-q", action="store_true", help="only warnings")
    build.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the bank and print a summary; returns the exit code."""
    from ned.appearance.exemplars import build_bank
    from ned.errors import InputError

    try:
        options = BankOptions(per_emotion=args.per_emotion, neutral_frames=args.neutral_frames,
                              max_frames=args.max_frames)
    except ValueError as err:
        raise InputError(str(err)) from err
    summary = build_bank(args.folder, args.out, csv_path=args.csv, options=options)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.per_emotion.items()))
    print(f"wrote {summary.root}: {summary.exemplars} exemplars ({counts}), {summary.neutral} neutral frames")
    for path, reason in summary.skipped:
        print(f"skipped {path}: {reason}")
    return 0
