"""The seed's `<celeb_path>` folder layout, atomic file writes and resume checks.

Layout (NED release, foivospar/NED @ 22721de, extended): ``<celeb>/videos/*`` are the
inputs; every per-frame folder holds one file per frame named ``000000.<ext>``,
``000001.<ext>``, ... numbered across all clips of ``videos/`` in name order.
Every file is written to a temporary name in its folder and moved into place with
``os.replace``, so a killed run never leaves a half-written file under a final name.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np

from ned.errors import InputError, OutputError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
MODES = ("train", "test", "reference")

# Folder -> (file extension, modes that write it).
PREPROCESS_FOLDERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "images": ("png", MODES),
    "full_frames": ("jpg", ("test", "reference")),
    "eye_landmarks": ("txt", ("train", "test")),
    "eye_landmarks_aligned": ("txt", ("train", "test")),
    "align_transforms": ("txt", ("train", "test")),
    "faces": ("png", ("train", "test")),
    "faces_aligned": ("png", ("train", "test")),
    "masks": ("png", ("train", "test")),
    "masks_aligned": ("png", ("train", "test")),
    "face3d": ("npz", MODES),
    "nmfcs": ("png", MODES),
    "nmfcs_aligned": ("png", MODES),
    "shapes": ("png", MODES),
    "shapes_aligned": ("png", MODES),
}


def frame_name(index: int, ext: str) -> str:
    """``000042.png`` for index 42."""
    return f"{index:06d}.{ext}"


def folders_for_mode(mode: str) -> dict[str, str]:
    """Folder name -> extension written by ``preprocess --mode <mode>``.

    Raises:
        ValueError: unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return {name: ext for name, (ext, modes) in PREPROCESS_FOLDERS.items() if mode in modes}


@dataclass(frozen=True)
class CelebLayout:
    """Paths of one `<celeb_path>` folder."""

    root: Path

    @property
    def videos_dir(self) -> Path:
        return self.root / "videos"

    def folder(self, name: str) -> Path:
        return self.root / name

    def frame_file(self, folder: str, index: int, ext: str) -> Path:
        return self.root / folder / frame_name(index, ext)

    def state_file(self, name: str) -> Path:
        """Small JSON files that record what a stage finished (``.ned/<name>.json``)."""
        return self.root / ".ned" / f"{name}.json"

    def list_videos(self) -> list[Path]:
        """The input clips of ``videos/`` in name order.

        Raises:
            InputError: ``videos/`` missing or holding no video file.
        """
        if not self.root.is_dir():
            raise InputError(f"{self.root}: no such folder (expected <celeb_path> with a videos/ folder)")
        if not self.videos_dir.is_dir():
            raise InputError(f"{self.root}: missing videos/ folder; put the input clips in {self.videos_dir}")
        clips = sorted(p for p in self.videos_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        if not clips:
            raise InputError(f"{self.videos_dir}: no video files ({', '.join(VIDEO_SUFFIXES)})")
        return clips


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and check that files can be created in it.

    Raises:
        OutputError: it cannot be created or written (e.g. a parent is a regular file).
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".ned-probe-"):
            pass
    except OSError as err:
        raise OutputError(f"{path}: cannot write here ({err.strerror or err})") from err
    return path


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)``, then move the result to ``path`` (parent folders created).

    The temporary file (``.<name>.tmp-<pid>`` beside ``path``) is removed on any error, so
    a crash leaves the previous file or the new one, never half of one.

    Returns:
        ``path``.

    Raises:
        OSError: the folder or file cannot be written; whatever ``write`` raises.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any, *, sort_keys: bool = True) -> None:
    """Write ``obj`` as indented JSON atomically (parent folder created); ``sort_keys=False``
    keeps the keys in their insertion order (e.g. a benchmark's figures as printed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


def encode_image(image: np.ndarray, ext: str, jpeg_quality: int = 95, png_compression: int = 1) -> bytes:
    """Encode an RGB ``(H, W, 3) uint8`` or grey ``(H, W) uint8`` image to PNG/JPEG bytes.

    Raises:
        ValueError: unsupported extension or image that OpenCV cannot encode.
    """
    if ext not in ("png", "jpg"):
        raise ValueError(f"unsupported image extension {ext!r}")
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if ext == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, png_compression]
    ok, buf = cv2.imencode("." + ext, bgr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} {image.dtype} image as {ext}")
    return buf.tobytes()


def atomic_write_image(path: Path, image: np.ndarray) -> None:
    """Write an RGB or grey uint8 image to ``path`` (PNG or JPEG by suffix) atomically."""
    atomic_write_bytes(path, encode_image(image, path.suffix.lstrip(".").lower().replace("jpeg", "jpg")))


def read_image(path: Path) -> np.ndarray:
    """Read a PNG/JPEG as RGB ``(H, W, 3) uint8`` (grey files as ``(H, W) uint8``).

    Raises:
        InputError: missing or unreadable file.
    """
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path}: missing or not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Save arrays to an ``.npz`` atomically (uncompressed, loads without pickle)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(path, write)


def atomic_save_npz_compressed(path: Path, **arrays: np.ndarray) -> None:
    """Save arrays to a compressed ``.npz`` atomically (the packaged data files)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    atomic_write(path, write)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Load an ``.npz`` written by :func:`atomic_save_npz` (``allow_pickle=False``).

    Raises:
        InputError: missing or corrupt file.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: missing or not a valid .npz file ({err})") from err


def count_frame_files(folder: Path, ext: str) -> int:
    """Number of final (non-temporary) ``*.<ext>`` files in ``folder`` (0 when missing)."""
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.glob(f"*.{ext}") if not p.name.startswith("."))


def folders_complete(layout: CelebLayout, folders: Iterable[tuple[str, str]], frame_ids: Iterable[int]) -> bool:
    """True when every ``(folder, ext)`` holds a file for every frame index."""
    ids = list(frame_ids)
    return all(layout.frame_file(f, i, ext).exists() for f, ext in folders for i in ids)
