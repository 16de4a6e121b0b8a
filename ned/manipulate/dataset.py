"""Training data of the learned manipulator: labelled clips -> cached expression arrays -> windows.

Three ways to name the training clips (emotion labels must be one of
:data:`ned.manipulate.networks.EMOTIONS`; other labels, e.g. MEAD's ``contempt``, are
skipped with a log line):

- MEAD layout: ``<root>/<actor>/video/<view>/<emotion>/level_<k>/<nnn>.mp4``;
- flat MEAD-style names: ``<root>/**/<actor>_<view>_<emotion>_level<k>_<nnn>.mp4``;
- a CSV of labels with a header ``path,emotion[,actor]`` (paths relative to the CSV's
  folder); without an ``actor`` column the actor is the clip's parent folder name.

Per-frame expression vectors come from a pluggable extractor
``extract(video_path) -> (T, D) float32`` (see :mod:`ned.manipulate.backends`) and are
cached as ``<cache_dir>/<clip path relative to the root>.npy``: extraction resumes where it
stopped, runs in parallel over clips (a process pool), and a precomputed array placed at
that path is used as is. Rows of NaN (frames without a face) split a clip; training windows
never cross them.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ned.labels import LabelledClip, parse_clip_path
from ned.labels import read_labels_csv as read_clip_labels
from ned.errors import InputError, ModelFileError, NedError
from ned.manipulate.backends import Extractor
from ned.manipulate.networks import EMOTIONS

__all__ = [
    "VIDEO_SUFFIXES",
    "ClipRecord",
    "ClipData",
    "DataOptions",
    "parse_mead_path",
    "read_labels_csv",
    "discover_clips",
    "cache_path",
    "extract_expressions",
    "load_clips",
    "split_by_actor",
    "WindowDataset",
    "make_synthetic_clips",
]

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")

@dataclass(frozen=True)
class ClipRecord:
    """One labelled training clip.

    Attributes:
        path: the video file.
        emotion: canonical emotion name (may be outside :data:`EMOTIONS`, e.g. contempt).
        actor: actor id (for held-out validation).
        key: cache key, the clip's path relative to the data root without suffix (posix).
        level: MEAD intensity level, None when unknown.
        view: camera view, None when unknown.
    """

    path: Path
    emotion: str
    actor: str
    key: str
    level: int | None = None
    view: str | None = None


def _key(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).with_suffix("").as_posix()
    except ValueError:  # outside the root: name plus a short hash of the full path
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
        return f"_external/{path.stem}-{digest}"


def _record(clip: LabelledClip, root: Path) -> ClipRecord:
    return ClipRecord(path=clip.path, emotion=clip.emotion, actor=clip.actor, key=_key(clip.path, root),
                      level=clip.level or None, view=clip.view)


def parse_mead_path(path: str | Path, root: str | Path) -> ClipRecord | None:
    """Labels of a clip named in the MEAD layout or with a flat MEAD-style name
    (:func:`ned.labels.parse_clip_path`).

    Args:
        path: the video file.
        root: the data root (for the cache key).

    Returns:
        The record, or None when the path follows neither naming.
    """
    path, root = Path(path), Path(root)
    inside = path.resolve().is_relative_to(root.resolve())
    clip = parse_clip_path(path, root if inside and path.is_relative_to(root) else None)
    return _record(clip, root) if clip is not None else None


def read_labels_csv(csv_path: str | Path, root: str | Path | None = None) -> list[ClipRecord]:
    """Clips listed in a CSV with a header ``path,emotion[,actor]`` (:func:`ned.labels.read_labels_csv`;
    the actor defaults to the clip's folder name).

    Args:
        csv_path: the CSV file; relative clip paths are relative to its folder.
        root: the data root for cache keys (default: the CSV's folder).

    Raises:
        InputError: missing file or columns, an unknown emotion label, or a missing clip.
    """
    csv_path = Path(csv_path)
    root = Path(root) if root is not None else csv_path.parent
    return [_record(c, root) for c in read_clip_labels(csv_path)]


def discover_clips(root: str | Path, labels_csv: str | Path | None = None, *,
                   views: Sequence[str] | None = ("front",)) -> list[ClipRecord]:
    """Find the labelled clips of a training root.

    Args:
        root: a MEAD-layout root, a folder of MEAD-style names, or a folder with a CSV.
        labels_csv: the CSV of labels; None looks for ``<root>/labels.csv`` and otherwise
            parses MEAD names.
        views: camera views to keep for MEAD names (None keeps all).

    Returns:
        Records sorted by cache key (emotions outside :data:`EMOTIONS` are dropped, logged).

    Raises:
        InputError: when the root is missing or holds no usable clip.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: training data folder not found")
    if labels_csv is None and (root / "labels.csv").is_file():
        labels_csv = root / "labels.csv"
    if labels_csv is not None:
        records = read_labels_csv(labels_csv, root)
    else:
        records, unnamed = [], 0
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() not in VIDEO_SUFFIXES or not path.is_file():
                continue
            record = parse_mead_path(path, root)
            if record is None:
                unnamed += 1
            elif views is None or record.view in views:
                records.append(record)
        if unnamed:
            logger.warning("%d videos under %s follow no MEAD naming and were skipped (use a labels CSV)",
                           unnamed, root)
    skipped = sorted({r.emotion for r in records if r.emotion not in EMOTIONS})
    if skipped:
        logger.info("skipping clips labelled %s (not among the manipulator's emotions %s)", skipped, list(EMOTIONS))
    records = sorted((r for r in records if r.emotion in EMOTIONS), key=lambda r: r.key)
    if not records:
        raise InputError(f"{root}: no labelled clips found (expected <actor>/video/front/<emotion>/level_<k>/"
                         "<nnn>.mp4, <actor>_<view>_<emotion>_level<k>_<nnn>.mp4, or a labels CSV)")
    return records


def cache_path(cache_dir: str | Path, clip: ClipRecord) -> Path:
    """Where the clip's expression array is cached: ``<cache_dir>/<key>.npy``."""
    return Path(cache_dir) / f"{clip.key}.npy"


def _extract_one(extractor: Extractor, video: Path, out: Path) -> tuple[str | None, bool]:
    """Run the extractor on one clip and write ``out`` atomically.

    Returns ``(error message or None, fatal)``; a :class:`ModelFileError` is fatal (the
    extractor itself cannot run), any other error only skips the clip.
    """
    try:
        values = np.asarray(extractor(video))
        if values.ndim != 2 or values.shape[0] == 0 or not np.issubdtype(values.dtype, np.number):
            return f"extractor returned shape {values.shape} {values.dtype}, expected (T, D) float", False
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as handle:
            np.save(handle, values.astype(np.float32))
        os.replace(tmp, out)
        return None, False
    except ModelFileError as err:
        return str(err), True
    except Exception as err:  # noqa: BLE001 - one bad clip must not stop a long batch
        return f"{type(err).__name__}: {err}", False


def extract_expressions(clips: Sequence[ClipRecord], extractor: Extractor, cache_dir: str | Path, *,
                        workers: int = 1, quiet: bool = False, require_any: bool = True) -> list[ClipRecord]:
    """Cache every clip's ``(T, D)`` expression array, skipping those already cached.

    Args:
        clips: the clips.
        extractor: ``extract(video_path) -> (T, D)``; must be picklable when ``workers > 1``.
        cache_dir: the cache folder.
        workers: processes (1 runs in this process).
        quiet: hide the progress bar.
        require_any: raise when no clip ends up cached.

    Returns:
        The clips whose array is cached (failed clips are logged and left out).

    Raises:
        ModelFileError: when the extractor cannot run at all.
        InputError: when no clip could be extracted (with ``require_any``).
        ValueError: for ``workers < 1``.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    todo = [c for c in clips if not cache_path(cache_dir, c).is_file()]
    if len(todo) < len(clips):
        logger.info("%d of %d clips already cached in %s", len(clips) - len(todo), len(clips), cache_dir)
    failed: dict[str, str] = {}

    def handle(clip: ClipRecord, result: tuple[str | None, bool]) -> None:
        error, fatal = result
        if fatal:
            raise ModelFileError(error or "extractor failed")
        if error:
            failed[clip.key] = error
            logger.warning("%s: expression extraction failed (%s); clip skipped", clip.path, error)

    bar = tqdm(total=len(todo), desc="extracting expressions", unit="clip", disable=quiet or not todo)
    if workers == 1 or len(todo) <= 1:
        for clip in todo:
            handle(clip, _extract_one(extractor, clip.path, cache_path(cache_dir, clip)))
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(_extract_one, extractor, c.path, cache_path(cache_dir, c)): c for c in todo}
            try:
                for future in as_completed(futures):
                    handle(futures[future], future.result())
                    bar.update()
            except NedError:
                for future in futures:
                    future.cancel()
                raise
    bar.close()
    done = [c for c in clips if c.key not in failed and cache_path(cache_dir, c).is_file()]
    if not done and require_any and clips:
        raise InputError(f"no clip could be turned into expression vectors ({len(failed)} failed); "
                         f"first error: {next(iter(failed.values()), 'none')}")
    return done


@dataclass(frozen=True)
class ClipData:
    """One clip's expression vectors with its labels.

    Attributes:
        name: cache key or any identifier.
        expressions: (T, D) float32; NaN rows mark frames without a face.
        label: emotion index into :data:`EMOTIONS`.
        actor: actor id.
    """

    name: str
    expressions: np.ndarray
    label: int
    actor: str


def load_clips(clips: Sequence[ClipRecord], cache_dir: str | Path) -> list[ClipData]:
    """Read the cached arrays of ``clips``.

    Raises:
        InputError: on an unreadable array or when the clips disagree on D.
    """
    out = []
    for clip in clips:
        path = cache_path(cache_dir, clip)
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: cannot read cached expressions ({err}); delete it to re-extract") from None
        if values.ndim != 2:
            raise InputError(f"{path}: expected a (T, D) array, got shape {values.shape}; delete it to re-extract")
        out.append(ClipData(name=clip.key, expressions=values.astype(np.float32), label=EMOTIONS.index(clip.emotion),
                            actor=clip.actor))
    dims = sorted({c.expressions.shape[1] for c in out})
    if len(dims) > 1:
        raise InputError(f"cached expression arrays in {cache_dir} have different sizes per frame {dims}; "
                         "they come from different backends: use one cache folder per backend")
    return out


def split_by_actor(clips: Sequence[ClipData], val_actors: Iterable[str]) -> tuple[list[ClipData], list[ClipData]]:
    """``(train, val)``: clips of ``val_actors`` go to validation.

    Raises:
        InputError: for a validation actor that has no clip, or when no training clip is left.
    """
    val_actors = set(val_actors)
    actors = sorted({c.actor for c in clips})
    unknown = sorted(val_actors - set(actors))
    if unknown:
        raise InputError(f"validation actors {unknown} have no clips; actors found: {actors}")
    train = [c for c in clips if c.actor not in val_actors]
    val = [c for c in clips if c.actor in val_actors]
    if not train:
        raise InputError(f"no training clips left after holding out {sorted(val_actors)}; actors found: {actors}")
    return train, val


class WindowDataset(torch.utils.data.Dataset):
    """All ``window``-frame windows of a set of clips, every ``hop`` frames.

    Frames are stored once, concatenated; a window is a start offset. Windows never cross a
    clip boundary or a NaN row.

    Args:
        clips: the clips (all with the same D).
        window: frames per window.
        hop: frames between consecutive window starts.

    Raises:
        ValueError: on bad arguments or when no clip is long enough for one window.
    """

    def __init__(self, clips: Sequence[ClipData], window: int = 10, hop: int = 1) -> None:
        if window < 1 or hop < 1:
            raise ValueError(f"window and hop must be >= 1, got {window}, {hop}")
        if not clips:
            raise ValueError("no clips")
        dims = {c.expressions.shape[1] for c in clips}
        if len(dims) != 1:
            raise ValueError(f"clips differ in values per frame: {sorted(dims)}")
        self.window, self.hop = window, hop
        self.input_dim = dims.pop()
        frames, starts, labels, clip_ids, offset = [], [], [], [], 0
        for i, clip in enumerate(clips):
            values = clip.expressions
            finite = np.isfinite(values).all(axis=1)
            run_start = None
            for t in range(len(values) + 1):  # windows inside each run of finite rows
                if t < len(values) and finite[t]:
                    run_start = t if run_start is None else run_start
                    continue
                if run_start is not None:
                    for s in range(run_start, t - window + 1, hop):
                        starts.append(offset + s)
                        labels.append(clip.label)
                        clip_ids.append(i)
                    run_start = None
            frames.append(values)
            offset += len(values)
        if not starts:
            raise ValueError(f"no clip has {window} consecutive frames with a face")
        self.frames = torch.from_numpy(np.concatenate(frames).astype(np.float32))  # (F, D)
        self.starts = np.asarray(starts, np.int64)      # (N,)
        self.labels = np.asarray(labels, np.int64)      # (N,)
        self.clip_ids = np.asarray(clip_ids, np.int64)  # (N,)
        self.actors = tuple(c.actor for c in clips)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Returns one window (W, D) float32 and its emotion index."""
        s = int(self.starts[index])
        return self.frames[s:s + self.window], int(self.labels[index])

    def gather(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows ``(B, W, D)`` float32 and labels ``(B,)`` int64 for window indices ``(B,)``."""
        indices = np.asarray(indices, np.int64)
        rows = self.starts[indices][:, None] + np.arange(self.window)[None, :]  # (B, W)
        return self.frames[torch.from_numpy(rows)], torch.from_numpy(self.labels[indices])

    def statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation ``(D,)`` of the finite frames.

        The std is floored at 1% of the largest one, so a dimension that (almost) never
        moves in the training data cannot blow up at inference.
        """
        finite = torch.isfinite(self.frames).all(dim=1)
        values = self.frames[finite].double()
        std = values.std(0) if len(values) > 1 else torch.ones(values.shape[1], dtype=torch.float64)
        return values.mean(0).float(), std.clamp_min(max(1e-6, 0.01 * float(std.max()))).float()


@dataclass(frozen=True)
class DataOptions:
    """Where the training clips are and how they become windows.

    Attributes:
        root: data root (MEAD layout, MEAD-style names, or clips with a labels CSV).
        labels_csv: CSV of labels (path,emotion[,actor]); None: ``<root>/labels.csv`` or MEAD names.
        cache_dir: expression cache; None: ``<checkpoints_dir>/expressions/<backend fingerprint>``.
        views: MEAD camera views kept (e.g. front).
        workers: extraction processes (>= 1).
        hop: frames between training windows (>= 1).
    """

    root: Path
    labels_csv: Path | None = None
    cache_dir: Path | None = None
    views: tuple[str, ...] = ("front",)
    workers: int = 1
    hop: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        if self.labels_csv is not None:
            object.__setattr__(self, "labels_csv", Path(self.labels_csv))
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        object.__setattr__(self, "views", tuple(self.views))
        if self.workers < 1:
            raise ValueError(f"DataOptions.workers must be >= 1, got {self.workers}")
        if self.hop < 1:
            raise ValueError(f"DataOptions.hop must be >= 1, got {self.hop}")


def make_synthetic_clips(*, num_actors: int = 2, clips_per_emotion: int = 1, frames: int = 40,
                         input_dim: int = 8, seed: int = 0) -> list[ClipData]:
    """Synthetic labelled clips for tests and benchmarks.

    Index 0 is a speech signal (a random smooth mouth-opening track); every emotion adds
    its own constant pattern over the other dimensions, plus small noise.

    Returns:
        ``num_actors * 7 * clips_per_emotion`` clips of ``(frames, input_dim)`` float32.
    """
    rng = np.random.default_rng(seed)
    patterns = rng.normal(0.0, 1.0, size=(len(EMOTIONS), input_dim)).astype(np.float32)
    patterns[:, 0] = 0.0
    patterns[0] = 0.0  # neutral
    t = np.arange(frames, dtype=np.float32)
    out = []
    for a in range(num_actors):
        actor_offset = rng.normal(0.0, 0.1, size=input_dim).astype(np.float32)
        for label in range(len(EMOTIONS)):
            for k in range(clips_per_emotion):
                freq, phase = rng.uniform(0.15, 0.4), rng.uniform(0, 2 * np.pi)
                values = patterns[label] + actor_offset + rng.normal(0, 0.05, (frames, input_dim)).astype(np.float32)
                values[:, 0] = 0.5 + 0.5 * np.sin(freq * t + phase)
                out.append(ClipData(name=f"A{a}_{EMOTIONS[label]}_{k}", expressions=values.astype(np.float32),
                                    label=label, actor=f"A{a}"))
    return out
