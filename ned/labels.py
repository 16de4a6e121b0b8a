"""Labelled clips: actor and acted emotion from MEAD-style names, a MEAD tree, or a CSV.

- flat names: ``<actor>_<view>_<emotion>_level<k>_<nnn>.mp4`` (``level_<k>`` too);
- the MEAD tree: ``<actor>/video/<view>/<emotion>/level_<k>/<nnn>.mp4`` (the folder given
  may be inside it);
- a CSV with a header ``path,emotion[,actor]`` (paths relative to the CSV's folder).

Emotion names go through :func:`ned.manipulate.emotions.canonical_emotion` (aliases such as
``surprise``, ``disgust``, ``anger`` accepted).
"""

from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ned.errors import InputError
from ned.manipulate.emotions import canonical_emotion

__all__ = ["LabelledClip", "discover_clips", "parse_clip_path", "read_labels_csv"]

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
_MEAD_NAME = re.compile(r"^(?P<actor>[A-Za-z0-9]+)_(?P<view>.+?)_(?P<emotion>[A-Za-z]+)_level_?(?P<level>\d+)_"
                        r"(?P<take>\d+)$")


@dataclass(frozen=True)
class LabelledClip:
    """A clip and its labels.

    Attributes:
        path: the video file.
        actor: who acts in it.
        emotion: a canonical name of :data:`ned.manipulate.emotions.EMOTIONS`.
        level: intensity level when known (MEAD: 1..3), else 0.
        view: camera view when known (MEAD: ``front``, ``left_30``, ...), else None.
    """

    path: Path
    actor: str
    emotion: str
    level: int = 0
    view: str | None = None


def _emotion(name: str) -> str | None:
    try:
        return canonical_emotion(name)
    except InputError:
        return None


def parse_clip_path(path: Path, root: Path | None = None) -> LabelledClip | None:
    """Labels from a flat MEAD-style name or the MEAD tree; None when it follows neither.

    Args:
        path: the video file.
        root: the folder searched (the tree is read from the parts below it); None: all parts.
    """
    m = _MEAD_NAME.match(path.stem)
    if m:
        emotion = _emotion(m["emotion"])
        return LabelledClip(path, m["actor"], emotion, int(m["level"]), m["view"].lower()) if emotion else None
    parts = path.relative_to(root).parts if root is not None else path.parts
    for i in range(len(parts) - 2, 0, -1):
        level = re.fullmatch(r"level_?(\d+)", parts[i], re.IGNORECASE)
        if level:
            emotion = _emotion(parts[i - 1])
            if emotion is None:
                return None
            if i >= 4 and parts[i - 3].lower() in ("video", "videos"):
                actor = parts[i - 4]
            else:
                actor = parts[0] if i >= 2 else (root.name if root is not None else path.parent.name)
            view = parts[i - 2].lower() if i >= 2 else None
            return LabelledClip(path, actor, emotion, int(level[1]), view)
    return None


def read_labels_csv(csv_path: Path) -> list[LabelledClip]:
    """Clips listed in a CSV with a header ``path,emotion[,actor]`` (file order).

    Raises:
        InputError: a missing file or column, an unknown emotion, a missing clip.
    """
    if not csv_path.is_file():
        raise InputError(f"{csv_path}: label CSV not found")
    out = []
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"path", "emotion"} <= {c.strip().lower() for c in reader.fieldnames}:
            raise InputError(f"{csv_path}: needs a header with columns path,emotion[,actor]")
        for line, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
            path = Path(row["path"])
            if not path.is_absolute():
                path = csv_path.parent / path
            if not path.is_file():
                raise InputError(f"{csv_path}:{line}: {path} does not exist")
            actor = row.get("actor") or path.parent.name
            try:
                emotion = canonical_emotion(row["emotion"])
            except InputError as err:
                raise InputError(f"{csv_path}:{line}: {err}") from None
            out.append(LabelledClip(path, actor, emotion, 0))
    return out


def discover_clips(folder: str | os.PathLike, csv_path: str | os.PathLike | None = None) -> list[LabelledClip]:
    """Find labelled clips in a folder (MEAD names or tree) or listed in a CSV.

    Args:
        folder: searched recursively for videos (unlabelled ones are logged and skipped).
        csv_path: a CSV of labels; when given only its rows are used.

    Returns:
        Clips sorted by (actor, emotion, path).

    Raises:
        InputError: a missing folder / CSV, a malformed CSV row, or no labelled clip.
    """
    root = Path(folder)
    clips: list[LabelledClip] = []
    if csv_path is not None:
        clips = read_labels_csv(Path(csv_path))
    else:
        if not root.is_dir():
            raise InputError(f"{root}: not a folder of clips")
        for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()):
            clip = parse_clip_path(path, root)
            if clip is None:
                logger.info("skipping %s: no MEAD-style label in its name or folders (use a CSV)", path)
            else:
                clips.append(clip)
    if not clips:
        raise InputError(f"{csv_path or root}: no labelled clips found; name them "
                         "<actor>_<view>_<emotion>_level<k>_<nnn>.mp4, lay them out as "
                         "<actor>/video/<view>/<emotion>/level_<k>/<nnn>.mp4, or give a CSV path,emotion,actor")
    return sorted(clips, key=lambda c: (c.actor, c.emotion, str(c.path)))
