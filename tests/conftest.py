"""Shared pytest fixtures.

- ``shared_media``: the folder of real clips (``../shared/media``); tests that use it
  skip when it is absent. It is read-only and third-party: copy or link clips into
  ``tmp_path``, never into the repository.
- ``make_clip``: writes a tiny synthetic video (smooth gradient + a moving square,
  optional tone) into ``tmp_path`` with :func:`ned.media.write_test_video`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def synthetic_frames(count: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    """``count`` RGB frames ``(height, width, 3) uint8``: a smooth gradient with a white
    square moving 2 px per frame (smooth content survives H.264 within a few levels)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / max(width - 1, 1), y / max(height - 1, 1), 0.5 + 0.0 * x], axis=-1)
    frames = []
    side = max(4, min(width, height) // 6)
    for i in range(count):
        frame = (base * 200 + 20).astype(np.uint8)
        x0 = (2 * i) % max(width - side, 1)
        frame[height // 3:height // 3 + side, x0:x0 + side] = 255
        frames.append(frame)
    return frames


def synthetic_tone(seconds: float, sample_rate: int = 48000, freq_hz: float = 440.0) -> np.ndarray:
    """A mono sine tone ``(N,) float32`` in [-0.3, 0.3]."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """The read-only folder of real clips ($NED_SHARED_MEDIA, ../shared/media or
    /work/shared/media); skips the test when none exists."""
    candidates = [os.environ.get("NED_SHARED_MEDIA"), REPO_ROOT.parent / "shared" / "media", "/work/shared/media"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    pytest.skip("../shared/media is absent")


@pytest.fixture
def make_clip(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_clip(name="clip.mp4", frames=10, size=(64, 48), fps=25,
    audio=False, **write_test_video_kwargs) -> Path`` (a file in ``tmp_path``).

    ``audio=True`` adds a 440 Hz tone as long as the video; an array is used as is.
    The suffix of ``name`` picks the container (.mp4 .mov .mkv .webm .avi).
    """
    from ned.media import write_test_video

    def make(
        name: str = "clip.mp4",
        frames: int = 10,
        size: tuple[int, int] = (64, 48),
        fps=25,
        audio: bool | np.ndarray = False,
        **kwargs,
    ) -> Path:
        if isinstance(audio, np.ndarray):
            kwargs["audio"] = audio
        elif audio:
            rate = kwargs.setdefault("sample_rate", 48000)
            kwargs["audio"] = synthetic_tone(frames / float(fps), rate)
        return write_test_video(tmp_path / name, synthetic_frames(frames, *size), fps, **kwargs)

    return make
