"""The ``ned`` command: parse arguments, call one library function, report.

Each sub-command lives in ``ned/commands/<name>.py`` and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func`` (a callable
taking the parsed namespace and returning an exit code). Known errors
(:class:`ned.errors.NedError`) print one line and exit with their code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from ned import __version__
from ned.errors import NedError

# Order is the order shown in `ned --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "preprocess",
    "manipulate",
    "postprocess",
    "edit",
    "evaluate",
    "exemplars",
    "evaluate_suite",
    "train_manipulator",
    "train_renderer",
    "bench",
    "sample",
)


def command_name(module: str) -> str:
    """The command-line name of a command module (``train_renderer`` -> ``train-renderer``)."""
    return module.replace("_", "-")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser.

    When ``argv`` names a command, only that command's module is imported and
    registered (the training commands import PyTorch, which takes seconds); otherwise
    (``ned --help``, a typo) every command is registered.
    """
    parser = argparse.ArgumentParser(
        prog="ned",
        description=(
            "Change the emotion of the person in a video while their speech (lip motion), "
            "identity, head pose, background and audio stay as they were. "
            "Outputs are manipulated media and carry provenance metadata."
        ),
    )
    parser.add_argument("--version", action="version", version=f"ned {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    names = {command_name(m) for m in COMMAND_MODULES}
    chosen = next((a for a in (argv or ()) if a in names), None)
    for module_name in COMMAND_MODULES:
        if chosen is None or command_name(module_name) == chosen:
            importlib.import_module(f"ned.commands.{module_name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ned`` console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    level = logging.WARNING if getattr(args, "quiet", False) else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except NedError as err:
        print(f"ned {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"ned {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
