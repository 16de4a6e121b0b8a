"""``ned edit <input> -o <output.mp4> --emotion happy [...]``: the whole pipeline, streamed."""

from __future__ import annotations

import argparse
from pathlib import Path

from ned.commands._common import (
    add_backend_arguments,
    add_exemplars_argument,
    add_manipulation_arguments,
    add_quiet,
    add_render_arguments,
    appearance_options,
    deca_dir,
    manipulation_spec,
    render_options,
)
from ned.media import EncodeOptions
from ned.pipeline import EditOptions, edit_video

ENCODE = EncodeOptions()


NAME = "edit"
HELP = "change the emotion in a video in one go (no intermediate folders)"

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help=HELP,
        description=(
            "Change the emotion of the person in INPUT and write OUTPUT (H.264 mp4), keeping the "
            "source's fps, frame count, resolution, audio, lip motion, identity, pose and background. "
            "Label-driven (--emotion happy, several for consecutive equal parts, 'happy:0.5' for an "
            "intensity) or reference-driven (--ref clip.mp4: act like that clip). The output carries "
            "the provenance tag 'edited by ned <version>: <what>' in its mp4 comment."
        ),
    )
    p.add_argument("input", type=Path, help="the video to edit")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .mp4 (its folder is created)")
    add_manipulation_arguments(p)
    add_render_arguments(p)
    add_exemplars_argument(p, "edit")
    p.add_argument("--own-frames", action="store_true",
                   help="label mode: frames of INPUT that already show the target emotion lend their real detail "
                        "(creases, shading) to the rest of the clip")
    p.add_argument("--crf", type=int, default=ENCODE.crf, help=f"H.264 quality, 0-51, lower is better (default {ENCODE.crf})")
    p.add_argument("--preset", default=ENCODE.preset, help=f"x264 speed preset (default {ENCODE.preset})")
    add_backend_arguments(p)
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = EditOptions(manipulation=manipulation_spec(args), render=render_options(args),
                          appearance=appearance_options(args), exemplars=args.exemplars, own_frames=args.own_frames,
                          encode=EncodeOptions(crf=args.crf, preset=args.preset), quiet=args.quiet)
    folder = deca_dir(args)
    if folder is not None:  # DECA expressions through the learned manipulator, bridged to our landmarks
        from ned.deca.stages import edit_video_deca

        report = edit_video_deca(args.input, args.output, options, folder)
    else:
        report = edit_video(args.input, args.output, options)
    print(f"wrote {report.output} ({report.frames} frames at {float(report.fps):.3f} fps, "
          f"{report.edited_frames} with an edited face, {report.seconds:.1f} s)")
    return 0
