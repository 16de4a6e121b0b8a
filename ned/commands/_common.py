"""Argument helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from ned.errors import InputError


def add_celeb_argument(parser: argparse.ArgumentParser) -> None:
    """``<celeb_path>`` positionally or as ``--celeb`` (the seed's form)."""
    parser.add_argument("celeb_pos", nargs="?", metavar="celeb_path",
                        help="the <celeb_path> folder (holds videos/ and the per-frame folders)")
    parser.add_argument("--celeb", dest="celeb_opt", metavar="PATH", help="same as the positional celeb_path")


def celeb_path(args: argparse.Namespace) -> Path:
    """The celeb path given either way.

    Raises:
        InputError: none given, or two different ones.
    """
    pos, opt = args.celeb_pos, args.celeb_opt
    if pos and opt and Path(pos) != Path(opt):
        raise InputError(f"two different celeb paths given: {pos} and --celeb {opt}")
    value = pos or opt
    if not value:
        raise InputError("give the <celeb_path> (positionally or with --celeb)")
    return Path(value)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars or info logs (for scripts)")


def add_manipulation_arguments(parser: argparse.ArgumentParser) -> None:
    """``--emotion/--trg_emotions``, ``--intensity``, ``--ref``, manipulator choice, ``--seed``."""
    from ned.manipulate.emotions import EMOTIONS
    from ned.manipulate.plan import MANIPULATORS, ManipulationSpec

    d = ManipulationSpec()
    g = parser.add_argument_group("what to change")
    g.add_argument("--emotion", "--trg_emotions", dest="emotions", nargs="+", action="extend", default=[],
                   metavar="EMOTION",
                   help=f"target emotion(s): {', '.join(EMOTIONS)} (aliases surprise, fearful, disgust); "
                        "several split the clip into consecutive equal parts; 'happy:0.5' sets that part's intensity")
    g.add_argument("--intensity", type=float, default=d.intensity,
                   help="0 = unchanged, 1 = full (label mode: 1.5 times the calibrated mean expression of real acted "
                        "clips, the lower face held), up to 1.5 (multiplies per-part intensities)")
    g.add_argument("--ref", "--ref_dirs", dest="references", nargs="+", action="extend", default=[],
                   metavar="CLIP", help="reference clip(s) whose expressive style to copy (reference-driven); "
                   "with one --emotion naming what they act (e.g. --emotion angry:0.8) their lip-corner pull is dropped "
                   "unless that emotion smiles (a named smile passes the transfer limit more fully), and its intensity "
                   "applies")
    g.add_argument("--ref-neutral", "--ref_neutral", dest="reference_neutral", type=Path, default=None, metavar="CLIP",
                   help="a neutral clip of the reference actor (for `manipulate`: its folder preprocessed with "
                        "--mode reference): the reference's expression is measured from it (without it, from the "
                        "reference clip's own calmest frames), and unless --emotion names what the reference acts, where its lip "
                        "corners go tells a smile (pull kept) from a grimace (pull dropped)")
    g.add_argument("--transfer-limit", type=_limit, default=d.transfer_limit, metavar="IOD",
                   help="soft limit of the lower-face motion (mouth, nose, cheeks) taken from a reference clip or an "
                        f"exemplar bank, in inter-ocular distances (default {d.transfer_limit}; 0 = no limit): "
                        "another actor's strong grimace would make the person look like somebody else")
    g.add_argument("--lid-closure", type=_closure, default=d.lid_closure, metavar="AMOUNT",
                   help="the most held eyelid narrowing (1 = closed) an edit adds: the emotion's calibrated one, a "
                        f"reference clip's or an exemplar bank's, e.g. drooping lids in sadness (default "
                        f"{d.lid_closure}; 0 = none); the person's own blinks always stay")
    g.add_argument("--transition", type=float, default=d.transition_s,
                   help=f"seconds of crossfade between consecutive parts (default {d.transition_s})")
    g.add_argument("--seed", type=int, default=d.seed, help="seed of every random draw (results are reproducible)")
    g.add_argument("--manipulator", choices=MANIPULATORS, default=d.manipulator,
                   help="auto: the learned NED manipulator when --checkpoints_dir holds a checkpoint, else training-free")
    g.add_argument("--checkpoints_dir", type=Path, default=None, help="learned-manipulator checkpoints folder")
    g.add_argument("--which_epoch", type=int, default=None, help="checkpoint epoch (default: the latest)")


def manipulation_spec(args: argparse.Namespace):
    """The :class:`ned.manipulate.plan.ManipulationSpec` of parsed arguments."""
    from ned.manipulate.plan import ManipulationSpec

    return ManipulationSpec.from_strings(
        args.emotions, args.references, intensity=args.intensity, transition_s=args.transition, seed=args.seed,
        reference_neutral=getattr(args, "reference_neutral", None),
        manipulator=args.manipulator, checkpoints_dir=args.checkpoints_dir, which_epoch=args.which_epoch,
        exemplars=getattr(args, "exemplars", None), transfer_limit=args.transfer_limit,
        lid_closure=args.lid_closure)


def _zero_means_none(expected: str, valid: Callable[[float], bool], rule: str) -> Callable[[str], float | None]:
    """An argparse type: a number that ``valid`` accepts, 0 meaning None (off); errors say
    ``expected <expected>`` (not a number) or ``must be <rule>``."""

    def parse(text: str) -> float | None:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return value or None

    return parse


#: ``--transfer-limit``: a finite number >= 0 (0 = None, no limit)
_limit = _zero_means_none("a number of IODs", lambda v: 0 <= v < float("inf"), "a finite number >= 0 (0 = no limit)")
#: ``--lid-closure``: a number in [0, 1] (0 = None, none)
_closure = _zero_means_none("a number in [0, 1]", lambda v: 0 <= v <= 1, "in [0, 1] (0 = none)")


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    """Blending choice of the training-free renderer."""
    from ned.render.blend import BLEND_METHODS, BlendOptions

    from ned.appearance.options import APPEARANCE_MODES, AppearanceOptions

    g = parser.add_argument_group("rendering")
    g.add_argument("--blend", choices=BLEND_METHODS, default=BlendOptions().method,
                   help="how the edited face is composited into the frame (default laplacian)")
    g.add_argument("--appearance", choices=APPEARANCE_MODES, default=AppearanceOptions().mode,
                   help="expression appearance: auto (built-in crease/shading maps and calibrated brow shapes, or "
                        "the reference's / exemplars' detail and brow shapes), maps, reference, off (the weights' "
                        "shape only, the person's own brows)")


_EXEMPLAR_USES = {
    "edit": "its real acted expressions set the emotion targets and lend their detail (creases, shading)",
    "manipulate": "its real acted expressions set the emotion targets (give it to `ned postprocess` too "
                  "for their detail)",
    "postprocess": "lends its real expression detail (creases, shading)",
}


def add_exemplars_argument(parser: argparse.ArgumentParser, command: str) -> None:
    """``--exemplars <bank dir>`` (``ned exemplars build``), for label mode; ``command``
    (``edit``, ``manipulate`` or ``postprocess``) says what the bank does there."""
    what = _EXEMPLAR_USES[command]
    parser.add_argument("--exemplars", type=Path, default=None, metavar="BANK_DIR",
                        help=f"exemplar bank folder (ned exemplars build); in label mode {what}")


def appearance_options(args: argparse.Namespace):
    """The :class:`ned.appearance.options.AppearanceOptions` of parsed arguments."""
    from ned.appearance.options import AppearanceOptions

    return AppearanceOptions(mode=args.appearance)


def render_options(args: argparse.Namespace):
    """The :class:`ned.render.warp_renderer.RenderOptions` of parsed arguments."""
    from ned.render.blend import BlendOptions
    from ned.render.warp_renderer import RenderOptions

    return RenderOptions(blend=BlendOptions(method=args.blend))


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend {face3d,deca}`` (default face3d) and ``--deca_dir``."""
    from ned.manipulate.backends import BACKENDS, DEFAULT_BACKEND

    g = parser.add_argument_group("face model backend")
    g.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help="face3d: our face model (default, no extra files); deca: DECA/FLAME as in the paper "
                        "(needs --deca_dir)")
    g.add_argument("--deca_dir", type=Path, default=None, metavar="DIR",
                   help="folder holding FLAME's generic_model.pkl and DECA's deca_model.tar (or their data/)")


def deca_dir(args: argparse.Namespace) -> Path | None:
    """``--deca_dir`` when ``--backend deca`` is selected, None for the default backend.

    Raises:
        InputError: ``--backend deca`` without ``--deca_dir``.
    """
    if args.backend != "deca":
        return None
    if args.deca_dir is None:
        raise InputError("--backend deca needs --deca_dir <folder with FLAME's generic_model.pkl and DECA's "
                         "deca_model.tar>")
    return args.deca_dir
