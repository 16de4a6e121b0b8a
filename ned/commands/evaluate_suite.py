"""``ned evaluate-suite --clips <dir> --out <dir>``: edit and score every actor's neutral clip."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from ned.commands._common import add_quiet


NAME = "evaluate-suite"
HELP = "edit each actor's neutral clip to each emotion and score it against real acted clips"

def register(sub: argparse._SubParsersAction) -> None:
    from ned.evaluate.suite import SUITE_EMOTIONS

    p = sub.add_parser(
        NAME,
        help=HELP,
        description=(
            "Find labelled clips (MEAD-style names <actor>_<view>_<emotion>_level<k>_<nnn>.mp4 or a MEAD tree), "
            "edit every actor's neutral clip to each emotion (label-driven, and reference-driven with the other "
            "actors' clips of that emotion from --ref-clips), evaluate each edit, and report per emotion the FER2013 "
            "recognition rate of the edit, of the actor's real acted clip and of the unedited neutral clip, with the "
            "score sum(rate) / sum(real rate) per mode; every clip is also rated by a second, independent classifier "
            "(facex's expression CNN), scored the same way against its own real rates."
        ),
    )
    p.add_argument("--clips", type=Path, required=True, help="folder of labelled clips (needs neutral ones)")
    p.add_argument("--out", type=Path, required=True, help="folder for the edited clips and suite.json")
    p.add_argument("--emotions", nargs="+", default=list(SUITE_EMOTIONS), help="target emotions")
    p.add_argument("--ref-clips", type=Path, default=None, help="labelled clips used as references")
    p.add_argument("--exemplars", type=Path, default=None,
                   help="exemplar bank (ned exemplars build) used by the label-driven edits")
    p.add_argument("--name-references", action="store_true",
                   help="reference-driven edits also name the reference's labelled emotion (--ref CLIP --emotion E)")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ned.evaluate.suite import format_suite, run_suite, suite_scores
    from ned.layout import atomic_write_json, ensure_writable_dir

    ensure_writable_dir(args.out)
    rows = run_suite(args.clips, args.out, emotions=args.emotions, ref_clips_dir=args.ref_clips,
                     exemplars=args.exemplars, name_references=args.name_references, quiet=args.quiet)
    atomic_write_json(args.out / "suite.json", {"rows": [asdict(r) for r in rows], "scores": suite_scores(rows),
                                                "references_named": args.name_references})
    print(format_suite(rows))
    print(f"wrote {args.out / 'suite.json'}")
    return 0
