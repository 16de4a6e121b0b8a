"""``ned sample [-o out.mp4]``: write the built-in sample clip (a real photo with motion and a voice)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ned import sample
from ned.commands._common import add_quiet


NAME = "sample"
HELP = "write the built-in sample clip"

def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"must be in (0, 600], got {text}")
    return value


def _fps(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 120:
        raise argparse.ArgumentTypeError(f"must be in 1..120, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sample`` sub-command."""
    parser = subparsers.add_parser(
        NAME,
        help=HELP,
        description=(
            "Write the built-in sample clip: scikit-image's public-domain 'astronaut' photo, "
            "cropped to the face, with small smooth head motion and a synthetic voice "
            f"({sample.SAMPLE_SIZE}x{sample.SAMPLE_SIZE} H.264 + AAC). Without -o, the cached copy "
            "is made if needed and its path printed."
        ),
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="output .mp4 (default: the cached copy; ./sample.mp4 when --seconds or --fps differ)",
    )
    parser.add_argument(
        "--seconds",
        type=_positive_float,
        default=sample.DEFAULT_SECONDS,
        help="length in seconds (default: %(default)s)",
    )
    parser.add_argument("--fps", type=_fps, default=sample.DEFAULT_FPS, help="frames per second (default: %(default)s)")
    add_quiet(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the clip and print its path; returns the exit code."""
    if args.output is None and (args.seconds, args.fps) == (sample.DEFAULT_SECONDS, sample.DEFAULT_FPS):
        path = sample.sample_clip_path()
    else:
        output = args.output if args.output is not None else Path("sample.mp4")
        path = sample.make_sample_clip(output, seconds=args.seconds, fps=args.fps)
    print(path)
    return 0
