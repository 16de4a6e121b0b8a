"""The built-in sample clip: a real photo brought to life, made at run time.

The picture is scikit-image's ``astronaut`` (NASA portrait of Eileen Collins, public
domain), shipped inside the scikit-image wheel, so nothing is downloaded and no
third-party footage is committed. The clip is a square crop around her face with a
small, smooth head motion (rotation, translation and scale that vary slowly, as a
hand-held camera would) and a synthesised speech-like voice: a glottal pulse train
through vowel formant filters, syllable by syllable, with a falling intonation.

Everything is deterministic: same arguments, same frames and samples.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from ned.errors import InputError
from ned.media import probe, write_test_video

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FPS",
    "DEFAULT_SECONDS",
    "SAMPLE_SIZE",
    "default_cache_dir",
    "frame_count",
    "make_sample_clip",
    "photo_from_frame",
    "sample_audio",
    "sample_clip_path",
    "sample_frames",
]

SAMPLE_VERSION = 1  # bump when the clip's content changes, so caches refresh
DEFAULT_SECONDS = 4.0
DEFAULT_FPS = 25
SAMPLE_SIZE = 512  # output width = height, pixels
SAMPLE_RATE = 48000  # audio samples per second
# The face in the 512x512 astronaut photo: centre of the crop (x, y) and its side, pixels.
_CROP_CENTER = (226.0, 146.0)
_CROP_SIDE = 272.0
_COMMENT = (
    "ned built-in sample: scikit-image 'astronaut' photo (NASA, public domain) "
    "with synthetic head motion and a synthetic voice"
)
# Vowel formants (F1, F2, F3) in Hz with bandwidths, a rough adult female voice.
_VOWELS = {
    "a": ((850, 1220, 2810), (90, 110, 170)),
    "e": ((560, 2000, 2800), (70, 100, 160)),
    "i": ((330, 2650, 3200), (60, 110, 170)),
    "o": ((520, 920, 2700), (70, 90, 160)),
    "u": ((370, 950, 2680), (60, 90, 160)),
}


def _astronaut() -> np.ndarray:
    """The ``(512, 512, 3) uint8`` RGB photo from scikit-image."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def _head_motion(time_s: float) -> tuple[float, float, float, float]:
    """Smooth small motion at ``time_s``: (rotation rad, dx px, dy px, scale), source pixels."""
    tau = 2.0 * math.pi
    angle = math.radians(2.5 * math.sin(tau * 0.31 * time_s) + 1.0 * math.sin(tau * 0.73 * time_s + 1.0))
    dx = 4.0 * math.sin(tau * 0.23 * time_s + 0.5) + 1.5 * math.sin(tau * 0.61 * time_s)
    dy = 3.0 * math.sin(tau * 0.41 * time_s + 2.0)
    scale = 1.0 + 0.02 * math.sin(tau * 0.17 * time_s + 0.3)
    return angle, dx, dy, scale


def photo_from_frame(time_s: float, size: int = SAMPLE_SIZE) -> np.ndarray:
    """The ``(2, 3)`` affine map from output-frame pixels to photo pixels at ``time_s``.

    Convention: (x, y) pixels, origin top-left; a frame pixel ``p`` samples the photo at
    ``M @ [p, 1]``. The crop is ``_CROP_SIDE`` photo pixels wide around ``_CROP_CENTER``,
    rotated by the motion angle and scaled by ``1 / scale`` (scale > 1 zooms in).
    """
    angle, dx, dy, scale = _head_motion(time_s)
    k = _CROP_SIDE / size / scale
    cos, sin = math.cos(angle) * k, math.sin(angle) * k
    cx, cy = _CROP_CENTER[0] + dx, _CROP_CENTER[1] + dy
    half = (size - 1) / 2.0
    return np.array(
        [[cos, -sin, cx - cos * half + sin * half], [sin, cos, cy - sin * half - cos * half]], dtype=np.float64
    )


def sample_frames(
    seconds: float = DEFAULT_SECONDS, fps: int = DEFAULT_FPS, size: int = SAMPLE_SIZE
) -> Iterator[np.ndarray]:
    """Yield the sample's frames, ``(size, size, 3) uint8`` RGB, one per ``1 / fps`` s."""
    import cv2

    photo = _astronaut()
    for index in range(frame_count(seconds, fps)):
        matrix = photo_from_frame(index / fps, size)
        yield cv2.warpAffine(
            photo, matrix, (size, size), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT101
        )


def frame_count(seconds: float, fps: int) -> int:
    """Frames in a clip of ``seconds`` at ``fps`` (at least 1)."""
    return max(1, int(round(seconds * fps)))


def _resonator(signal: np.ndarray, freq_hz: float, bandwidth_hz: float, rate: int) -> np.ndarray:
    """A two-pole formant resonator with unit gain at DC (Klatt 1980)."""
    from scipy.signal import lfilter

    r = math.exp(-math.pi * bandwidth_hz / rate)
    c, b = -r * r, 2 * r * math.cos(2 * math.pi * freq_hz / rate)
    a = 1 - b - c
    return lfilter([a], [1, -b, -c], signal)


def _syllable_plan(seconds: float, rng: np.random.Generator) -> list[tuple[float, float, str, bool]]:
    """(start s, length s, vowel, fricative onset) of each syllable; phrases of 4-6."""
    plan, t = [], 0.25
    while t < seconds - 0.35:
        for _ in range(int(rng.integers(4, 7))):
            length = float(rng.uniform(0.14, 0.24))
            if t + length > seconds - 0.2:
                break
            plan.append((t, length, str(rng.choice(list(_VOWELS))), bool(rng.random() < 0.35)))
            t += length + float(rng.uniform(0.03, 0.08))
        t += float(rng.uniform(0.25, 0.45))  # breath between phrases
    return plan


def sample_audio(seconds: float = DEFAULT_SECONDS, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A speech-like mono voice, ``(round(seconds * rate),) float32`` in [-0.5, 0.5].

    Per syllable: a band-limited glottal pulse train (harmonics falling 12 dB/octave)
    at a pitch around 200 Hz that falls over each phrase, through three formant
    resonators of a vowel, under a smooth attack/decay envelope; some syllables start
    with a short fricative (filtered noise). Deterministic (fixed seed).
    """
    rng = np.random.default_rng(20220612)
    total = int(round(seconds * rate))
    out = np.zeros(total, np.float64)
    for start_s, length_s, vowel, fricative in _syllable_plan(seconds, rng):
        n = int(length_s * rate)
        t = np.arange(n) / rate
        f0 = 205.0 - 40.0 * (start_s % 1.6) / 1.6 + 12.0 * np.sin(2 * math.pi * t / length_s)
        phase = 2 * math.pi * np.cumsum(f0) / rate
        harmonics = int(4000 // f0.max())
        source = sum(np.sin(k * phase) / k**2 for k in range(1, harmonics + 1))
        voiced = source
        freqs, bands = _VOWELS[vowel]
        for freq, band in zip(freqs, bands):
            voiced = _resonator(voiced, freq, band, rate)
        ramp = min(int(0.03 * rate), n // 3)
        envelope = np.ones(n)
        envelope[:ramp] = 0.5 - 0.5 * np.cos(np.linspace(0, math.pi, ramp))
        envelope[-ramp:] = envelope[:ramp][::-1]
        segment = voiced * envelope
        begin = int(start_s * rate)
        if fricative:
            m = int(0.06 * rate)
            hiss = _resonator(rng.standard_normal(m), 4500.0, 2500.0, rate) - _resonator(
                rng.standard_normal(m), 800.0, 600.0, rate
            )
            hiss *= np.hanning(m) * 0.15 * np.abs(segment).max() / max(np.abs(hiss).max(), 1e-9)
            lo = max(0, begin - m)
            out[lo:begin] += hiss[m - (begin - lo):]
        out[begin:begin + n] += segment[: total - begin]
    peak = np.abs(out).max()
    return (out * (0.5 / peak if peak > 0 else 1.0)).astype(np.float32)


def make_sample_clip(
    path: str | os.PathLike, seconds: float = DEFAULT_SECONDS, fps: int = DEFAULT_FPS, *, size: int = SAMPLE_SIZE
) -> Path:
    """Write the sample clip: ``size x size`` H.264 at ``fps`` with an AAC voice track.

    Args:
        path: output .mp4 (written atomically; folders are created).
        seconds: length in seconds (0 < seconds <= 600).
        fps: frames per second (1..120).
        size: width = height in pixels (even, 64..2048).

    Returns:
        The path written.

    Raises:
        ValueError: a value out of range. OutputError: the file cannot be written.
    """
    if not 0 < seconds <= 600:
        raise ValueError(f"seconds must be in (0, 600], got {seconds}")
    if not 1 <= int(fps) <= 120 or int(fps) != fps:
        raise ValueError(f"fps must be an integer in 1..120, got {fps}")
    if size % 2 or not 64 <= size <= 2048:
        raise ValueError(f"size must be even and in 64..2048, got {size}")
    fps = int(fps)
    frames = frame_count(seconds, fps)
    audio = sample_audio(frames / fps, SAMPLE_RATE)
    out = write_test_video(
        path,
        sample_frames(frames / fps, fps, size),
        fps,
        audio=audio,
        sample_rate=SAMPLE_RATE,
        audio_codec="aac",
        comment=_COMMENT,
    )
    log.info("wrote the sample clip %s (%d frames at %d fps, %dx%d)", out, frames, fps, size, size)
    return out


def default_cache_dir() -> Path:
    """``$NED_CACHE_DIR``, else ``$XDG_CACHE_HOME/ned``, else ``~/.cache/ned``."""
    if os.environ.get("NED_CACHE_DIR"):
        return Path(os.environ["NED_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ned"


def sample_clip_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cached default sample clip, made on first use (about a second).

    Args:
        cache_dir: folder of the cache; None uses :func:`default_cache_dir`.

    Returns:
        Path of ``sample_v<version>.mp4`` in the cache folder.

    Raises:
        OutputError: the cache folder cannot be written.
    """
    path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"sample_v{SAMPLE_VERSION}.mp4"
    if path.is_file():
        try:
            probe(path)
            return path
        except InputError as err:
            log.warning("the cached sample is damaged (%s); making it again", err)
    return make_sample_clip(path)
