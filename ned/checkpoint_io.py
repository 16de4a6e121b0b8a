"""Crash-safe files of a training run: atomic writes and the CSV loss log.

Every file is written to a temporary name beside its destination (``.<name>.tmp-<pid>``)
and then ``os.replace``-d, so a crash leaves the previous file or the new one, never half
of one; the temporary file is removed on any error.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ned.layout import atomic_write, atomic_write_bytes

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_torch_save", "CsvLog"]


def atomic_torch_save(path: str | Path, obj: Mapping[str, Any]) -> Path:
    """``torch.save(dict(obj))`` to ``path`` atomically (see :func:`atomic_write`)."""
    payload = dict(obj)
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


class CsvLog:
    """A CSV log with fixed columns, appended row by row.

    A fresh log (``resume_step`` None, or no file yet) starts with just the header; a
    resumed one keeps the rows up to ``resume_step`` (those after it, written before a
    crash, are dropped since the resumed run writes them again).

    Args:
        path: the CSV file (parent folders created).
        columns: column names, in order; row keys outside them are ignored, missing ones
            left empty.
        resume_step: the step a resumed run continues from, or None for a fresh log.
    """

    def __init__(self, path: str | Path, columns: Sequence[str], *, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.columns = tuple(columns)
        rows: list[dict[str, str]] = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh)
                        if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
        self._write_rows(rows)

    def _write_rows(self, rows: list[dict[str, str]]) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, self.columns, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(self.path, write)

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one row; floats are written with 6 significant digits, other values as given."""
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, self.columns, restval="", extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
