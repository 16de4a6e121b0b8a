"""``ned demo``: the main job on the built-in sample."""

from __future__ import annotations

import argparse
from pathlib import Path

from ned.commands._common import add_quiet
from ned.demo import run_demo


NAME = "demo"
HELP = "edit the built-in sample clip to six emotions and write a grid video"

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help=HELP,
        description=(
            "Generate the built-in sample clip (scikit-image's astronaut photo with small head motion "
            "and a synthesised voice), edit it to happy, angry, sad, surprised, fear and disgusted, and "
            "write one clip per emotion plus grid.mp4 (input and all six side by side) to --out."
        ),
    )
    p.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default demo_output)")
    p.add_argument("--input", type=Path, default=None, help="edit this clip instead of the built-in sample")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    outputs = run_demo(args.out, source=args.input, quiet=args.quiet)
    print("demo outputs:")
    for name, path in outputs.items():
        print(f"  {name:<10} {path}")
    print(f"open {outputs['grid']} to compare the input with every emotion side by side")
    return 0
