"""``ned preprocess <celeb_path> --mode {train,test,reference}``."""

from __future__ import annotations

import argparse

from ned.commands._common import add_backend_arguments, add_celeb_argument, add_quiet, celeb_path, deca_dir
from ned.layout import MODES
from ned.preprocess import PreprocessOptions, preprocess_celeb

DEFAULTS = PreprocessOptions()


NAME = "preprocess"
HELP = "track the face in <celeb_path>/videos/* and write the per-frame folders"

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help=HELP,
        description=(
            "Track the face in every clip of <celeb_path>/videos/ (name order) and write the seed's "
            "per-frame folders (images/, full_frames/, masks/, faces/, eye_landmarks/, align_transforms/, "
            "nmfcs/, shapes/, face3d/, ... numbered 000000.* across clips) plus videos/<name>.txt crop boxes. "
            "Resumable: complete clips are skipped, files are written atomically."
        ),
    )
    add_celeb_argument(p)
    p.add_argument("--mode", choices=MODES, default=DEFAULTS.mode,
                   help="train: renderer training folders; test: the clip to edit; reference: a clip to imitate "
                        f"(default {DEFAULTS.mode})")
    p.add_argument("--workers", type=int, default=DEFAULTS.workers, help="image-writing threads")
    p.add_argument("--jpeg_quality", type=int, default=DEFAULTS.jpeg_quality, help="full_frames/ JPEG quality")
    add_backend_arguments(p)
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = PreprocessOptions(mode=args.mode, workers=args.workers, jpeg_quality=args.jpeg_quality,
                                quiet=args.quiet)
    folder = deca_dir(args)
    if folder is not None:  # DECA/ per frame and FLAME nmfcs/shapes after the default preprocessing
        from ned.deca.stages import preprocess_celeb_deca

        report = preprocess_celeb_deca(celeb_path(args), folder, options)
    else:
        report = preprocess_celeb(celeb_path(args), options)
    done = sum(not c.skipped for c in report.clips)
    print(f"preprocessed {report.frame_count} frames of {len(report.clips)} clip(s) "
          f"({done} processed, {len(report.clips) - done} already complete) in {report.celeb}")
    return 0
