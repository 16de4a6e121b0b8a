"""``ned bench``: whole-run speed and memory of each stage vs a plain decode + re-encode."""

from __future__ import annotations

import argparse
from pathlib import Path

from ned.bench import STAGES, format_table, results_json, run_bench
from ned.layout import atomic_write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure speed and peak memory of tracking, preprocessing, manipulation, rendering and edit",
        description=(
            "Run each stage on a clip (default: the built-in sample) in a fresh process and report "
            "frames/s, the ratio of its time to a plain decode + re-encode of the same clip (same "
            "encoder settings, measured in the same run) and its peak memory, also on the clip looped "
            "4 times (a streaming stage's peak does not grow with length)."
        ),
    )
    p.add_argument("--clip", type=Path, default=None, help="video to measure on (default: the built-in sample)")
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                   help="stages to run (baseline is always useful for the ratios)")
    p.add_argument("--no-loop", action="store_true", help="skip the 4x-looped memory runs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    results = run_bench(args.clip, stages=tuple(args.stages), loop_memory=not args.no_loop)
    print(format_table(results))
    if args.out is not None:
        atomic_write_json(args.out, results_json(results, args.clip))
        print(f"wrote {args.out}")
    return 0
