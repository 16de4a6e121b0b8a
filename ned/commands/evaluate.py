"""``ned evaluate <input> <edited>``: measure an edit the way a reviewer would.

Prints the summary table and a verdict line (warnings go to the log, on stderr); writes
JSON (``--json``), a self-contained HTML report (``--report``) and a PNG summary
(``--png``) on request.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ned.commands._common import add_quiet
from ned.evaluate.evaluate import EvaluateOptions

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(EvaluateOptions)}


NAME = "evaluate"
HELP = "measure an edited video against its input (speech, identity, emotion, background, stability)"

def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    parser = subparsers.add_parser(
        NAME,
        help=HELP,
        description=(
            "Compare an edited video with its input using models independent of the editor: "
            "dlib landmarks (mouth aperture, jitter) and face embeddings (identity), the FER2013 "
            "classifier (emotion), PSNR outside the face (background), and container/audio checks. "
            "Prints a table; --json/--report/--png write the results."
        ),
    )
    parser.add_argument("input", type=Path, help="the original video")
    parser.add_argument("edited", type=Path, help="the edited video")
    parser.add_argument("--emotion", default=_DEFAULTS["emotion"],
                        help="target emotion: neutral happy angry sad surprised fear disgusted contempt (or an alias); "
                             "contempt has no FER2013 class and is reported as n/a")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="write all numbers as JSON")
    parser.add_argument("--report", type=Path, default=None, metavar="OUT.html",
                        help="write a self-contained HTML report")
    parser.add_argument("--png", type=Path, default=None, metavar="OUT.png", help="write the report as one PNG")
    parser.add_argument("--max-frames", type=int, default=_DEFAULTS["max_frames"], metavar="N",
                        help="evaluate only the first N frames")
    parser.add_argument("--stride", type=int, default=_DEFAULTS["stride"], metavar="K",
                        help="analyse every K-th frame (default: %(default)s)")
    parser.add_argument("--identity-samples", type=int, default=_DEFAULTS["identity_samples"], metavar="N",
                        help="frames used for face embeddings (default: %(default)s)")
    parser.add_argument("--detect-upsample", type=int, default=_DEFAULTS["detect_upsample"], choices=(0, 1, 2),
                        help="dlib detector upsampling; 1 finds smaller faces, slower (default: %(default)s)")
    add_quiet(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write the requested files; returns the exit code."""
    from ned.evaluate import evaluate_videos
    from ned.evaluate.report import format_table, summary_rows, verdict, write_html, write_json, write_png

    options = EvaluateOptions(
        emotion=args.emotion,
        max_frames=args.max_frames,
        stride=args.stride,
        identity_samples=args.identity_samples,
        detect_upsample=args.detect_upsample,
        quiet=args.quiet,
    )
    result = evaluate_videos(args.input, args.edited, options)
    rows = summary_rows(result)
    print(format_table(rows))
    print(f"guides: {verdict(rows)}")
    written = []
    if args.json is not None:
        written.append(write_json(result, args.json))
    if args.report is not None:
        written.append(write_html(result, args.report))
    if args.png is not None:
        written.append(write_png(result, args.png))
    for path in written:
        print(f"wrote {path}")
    return 0
