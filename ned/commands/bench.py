"""``ned bench``: whole-run speed and memory of each stage vs a plain decode + re-encode."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ned.bench import STAGES, format_table, results_json, run_bench
from ned.layout import atomic_write_json


NAME = "bench"
HELP = "measure speed and peak memory of tracking, preprocessing, manipulation, rendering and edit"

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help=HELP,
        description=(
            "Run each stage on a clip (default: the built-in sample) in a fresh process and report "
            "frames/s, CPU seconds, the ratio of its time to a plain decode + re-encode of the same clip "
            "(same encoder settings, audio copied, measured in the same run; 'baseline' goes through RGB "
            "as ned's own frames do, 'transcode' passes the decoded YUV straight to the encoder) and its "
            "peak memory, also on the clip looped 4 times (a streaming stage's peak does not grow with "
            "length). Prints a table, then the figures as JSON."
        ),
    )
    p.add_argument("--clip", type=Path, default=None, help="video to measure on (default: the built-in sample)")
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                   help="stages to run (baseline and transcode give the ratios)")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs per stage, round-robin; the table shows medians and the wall-clock range")
    p.add_argument("--no-loop", action="store_true", help="skip the 4x-looped memory runs")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.repeat < 1:
        from ned.errors import InputError

        raise InputError(f"--repeat must be >= 1, got {args.repeat}")
    progress = None if args.quiet else (lambda message: print(f"bench: {message}", file=sys.stderr, flush=True))
    results = run_bench(args.clip, stages=tuple(args.stages), loop_memory=not args.no_loop, repeat=args.repeat,
                        progress=progress)
    figures = results_json(results, args.clip)
    print(format_table(results))
    print(json.dumps(figures, indent=2))
    if args.out is not None:
        atomic_write_json(args.out, figures)
        print(f"wrote {args.out}")
    return 0
