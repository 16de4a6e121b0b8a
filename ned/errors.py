"""User-facing errors.

Library code raises these with a one-line message that names the file or value and
the reason, and says what to do next. The CLI prints the message (no traceback) and
exits with ``exit_code``.
"""

from __future__ import annotations


class NedError(Exception):
    """Base class of errors caused by user input or the environment, not by a bug."""

    exit_code = 2


class InputError(NedError):
    """A bad input file, folder or value (not a video, corrupt, missing preprocessing, ...)."""


class DeviceError(InputError, ValueError):
    """An unknown or unavailable device (``--device``). Also a ``ValueError``: callers that
    validate option values catch it as one."""


class OutputError(NedError):
    """The output cannot be written (unwritable folder, disk full, output equals input)."""

    exit_code = 3


class ModelFileError(NedError):
    """A model or checkpoint file is missing, of the wrong kind or does not match."""

    exit_code = 4
