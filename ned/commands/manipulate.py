"""``ned manipulate <celeb_path> --trg_emotions happy [...] --exp_name <name>`` (and the
seed's ``python manipulator/test.py --celeb ... --checkpoints_dir ... --trg_emotions ... --exp_name ...``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ned.commands._common import (
    add_backend_arguments,
    add_celeb_argument,
    add_exemplars_argument,
    add_manipulation_arguments,
    add_quiet,
    celeb_path,
    deca_dir,
    manipulation_spec,
)

NAME = "manipulate"
HELP = "edit the expression of a preprocessed <celeb_path> (label- or reference-driven)"

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help=HELP,
        description=(
            "Edit the per-frame expression of a <celeb_path> preprocessed with --mode test and write "
            "<celeb_path>/<exp_name>/ (face3d/, nmfcs/, shapes/, eye_landmarks/ and their _aligned copies) "
            "for `ned postprocess`. Label-driven: --trg_emotions happy angry (consecutive equal parts, "
            "'happy:0.5' for an intensity). Reference-driven: --ref_dirs <ref_celeb>/face3d after "
            "`ned preprocess <ref_celeb> --mode reference`. The speech part (jaw, lip aperture, funnel, "
            "pucker) and blinks are kept from the source."
        ),
    )
    add_celeb_argument(p)
    p.add_argument("--exp_name", required=True, help="name of the output folder inside <celeb_path>")
    add_manipulation_arguments(p)
    add_exemplars_argument(p, "manipulate")
    p.add_argument("--overwrite", action="store_true", help="replace an existing <exp_name> folder")
    add_backend_arguments(p)
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ned.manipulate.celeb import manipulate_celeb

    ref_dirs = tuple(Path(r) for r in args.references)
    args.references = [str(r) for r in ref_dirs]
    folder = deca_dir(args)
    if folder is not None:  # DECA vectors through the learned manipulator (--ref_dirs <ref>/DECA)
        from ned.deca.stages import manipulate_celeb_deca

        out = manipulate_celeb_deca(celeb_path(args), args.exp_name, manipulation_spec(args), folder,
                                    ref_dirs=ref_dirs, overwrite=args.overwrite, quiet=args.quiet)
    else:
        out = manipulate_celeb(celeb_path(args), args.exp_name, manipulation_spec(args), ref_dirs=ref_dirs,
                               overwrite=args.overwrite, quiet=args.quiet)
    print(f"wrote {out}")
    return 0
