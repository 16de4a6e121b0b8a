"""``ned postprocess <celeb_path> --exp_name <name>`` and the seed's ``./postprocess.sh``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ned.commands._common import (
    add_backend_arguments,
    add_celeb_argument,
    add_exemplars_argument,
    add_quiet,
    add_render_arguments,
    appearance_options,
    celeb_path,
    render_options,
)

NAME = "postprocess"
HELP = "render a manipulated <celeb_path>/<exp_name> into videos"

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help=HELP,
        description=(
            "Warp each face of <celeb_path>/videos/* onto its edited mesh from `ned manipulate`, blend it "
            "into the frame and write <exp_name>/full_frames/, images/, faces/, faces_aligned/ and "
            "<celeb_path>/<exp_name>/<video name>.mp4 (source fps, frame count, resolution and audio kept; "
            "provenance tag in the mp4 comment)."
        ),
    )
    add_celeb_argument(p)
    p.add_argument("--exp_name", required=True, help="the folder written by `ned manipulate`")
    add_render_arguments(p)
    add_exemplars_argument(p, "postprocess")
    p.add_argument("--renderer", choices=("warp", "neural"), default="warp",
                   help="warp: training-free (default); neural: a trained per-actor renderer")
    p.add_argument("--renderer_checkpoint", default=None, help="checkpoint folder of `ned train-renderer`")
    p.add_argument("--device", default="auto", help="neural renderer device: auto, cpu, cuda[:N]")
    add_backend_arguments(p)
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ned.errors import InputError
    from ned.postprocess import PostprocessOptions, postprocess_celeb

    if args.renderer == "neural" and not args.renderer_checkpoint:
        raise InputError("--renderer neural needs --renderer_checkpoint <dir> (train one with `ned train-renderer`)")
    checkpoint = Path(args.renderer_checkpoint) if args.renderer == "neural" else None
    if args.backend == "deca":  # same rendering (from <exp_name>/face3d/); --deca_dir is not needed
        from ned.deca.stages import check_deca_manipulation

        check_deca_manipulation(celeb_path(args), args.exp_name)
    outputs = postprocess_celeb(celeb_path(args), args.exp_name,
                                PostprocessOptions(render=render_options(args), renderer_checkpoint=checkpoint,
                                                   appearance=appearance_options(args), exemplars=args.exemplars,
                                                   device=args.device, quiet=args.quiet))
    for out in outputs:
        print(f"wrote {out}")
    return 0
