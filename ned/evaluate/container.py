"""Container checks: frame count, frame rate, size, audio presence, duration and sync.

Video facts come from :func:`ned.media.probe`. Audio is decoded here (PyAV, mono,
resampled) to measure where it starts on the video's clock and, by cross-correlating
the loudness envelopes of input and output, whether the edited audio is shifted.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import av.error
import numpy as np

from ned.errors import InputError
from ned.evaluate.metrics import audio_envelope, envelope_shift_s
from ned.media import VideoInfo

__all__ = ["StreamSummary", "AudioTrack", "ContainerComparison", "summarize", "read_audio", "compare_containers"]

logger = logging.getLogger(__name__)

AUDIO_RATE = 8000  # Hz, mono: enough for a loudness envelope
ENVELOPE_HOP_S = 0.01


@dataclass(frozen=True)
class StreamSummary:
    """The container facts of one video (JSON-friendly).

    Attributes:
        frame_count, width, height: from :func:`ned.media.probe` (displayed size).
        fps: frames per second (float); ``fps_exact`` the exact rational as ``"30000/1001"``.
        duration_s: video duration.
        has_audio, audio_codec: first audio stream.
        audio_duration_s: audio stream length (None without audio).
        audio_start_s: first audio sample's time minus the first video frame's time (None
            without audio or when it cannot be decoded).
    """

    frame_count: int
    fps: float
    fps_exact: str
    width: int
    height: int
    duration_s: float
    has_audio: bool
    audio_codec: str | None
    audio_duration_s: float | None
    audio_start_s: float | None


@dataclass(frozen=True)
class AudioTrack:
    """Decoded mono audio placed on the video's clock.

    Attributes:
        samples: ``(N,) float32`` mono samples at ``sample_rate``; sample 0 is at the
            first video frame's time (zeros fill a late start; an early start is cut).
        sample_rate: Hz.
        start_s: where the audio stream starts relative to the first video frame.
    """

    samples: np.ndarray
    sample_rate: int
    start_s: float


@dataclass(frozen=True)
class ContainerComparison:
    """Input vs output container checks.

    Attributes:
        input, output: the two summaries.
        frame_count_equal, fps_equal, resolution_equal, audio_presence_equal: equalities.
        audio_duration_diff_s: output minus input audio duration (None unless both have audio).
        audio_start_diff_s: output minus input audio start (timestamps only).
        audio_shift_s: delay of the output's sound vs the input's, from the
            cross-correlation of loudness envelopes on the video clock (includes the start
            difference; None without audio in both or for silence).
        audio_in_sync: the shift (or, when it cannot be measured, the start difference)
            is within one frame; None without audio in both.
    """

    input: StreamSummary
    output: StreamSummary
    frame_count_equal: bool
    fps_equal: bool
    resolution_equal: bool
    audio_presence_equal: bool
    audio_duration_diff_s: float | None
    audio_start_diff_s: float | None
    audio_shift_s: float | None
    audio_in_sync: bool | None

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def read_audio(path: Path, video_start_s: float, sample_rate: int = AUDIO_RATE) -> AudioTrack | None:
    """Decode the first audio stream to mono float samples on the video's clock.

    Args:
        path: the video file.
        video_start_s: presentation time of its first video frame (``VideoInfo.start_time_s``).
        sample_rate: output rate in Hz.

    Returns:
        The track, or None when the file has no audio stream or no decodable sample.

    Raises:
        InputError: the file cannot be opened.
    """
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        raise InputError(f"{path}: cannot read the audio ({err}); is it a complete video file?") from err
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        first_s: float | None = None
        try:
            for frame in container.decode(stream):
                if first_s is None and frame.pts is not None and frame.time_base:
                    first_s = float(frame.pts * frame.time_base)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as err:
            logger.warning("%s: audio decoding stopped early (%s)", path, err)
    if not chunks:
        return None
    samples = np.concatenate(chunks).astype(np.float32)
    start_s = (first_s if first_s is not None else 0.0) - video_start_s
    lead = int(round(start_s * sample_rate))
    samples = np.concatenate([np.zeros(lead, np.float32), samples]) if lead > 0 else samples[-lead:]
    return AudioTrack(samples=samples, sample_rate=sample_rate, start_s=start_s)


def summarize(info: VideoInfo, audio: AudioTrack | None) -> StreamSummary:
    """The JSON-friendly summary of one probed video and its decoded audio."""
    return StreamSummary(
        frame_count=info.frame_count,
        fps=float(info.fps),
        fps_exact=f"{info.fps.numerator}/{info.fps.denominator}",
        width=info.width,
        height=info.height,
        duration_s=info.duration_s,
        has_audio=info.has_audio,
        audio_codec=info.audio_codec,
        audio_duration_s=info.audio_duration_s,
        audio_start_s=audio.start_s if audio is not None else None,
    )


def compare_containers(
    info_in: VideoInfo,
    info_out: VideoInfo,
    audio_in: AudioTrack | None,
    audio_out: AudioTrack | None,
    max_shift_s: float = 1.0,
) -> ContainerComparison:
    """Compare two videos' containers and audio (see :class:`ContainerComparison`).

    Args:
        info_in, info_out: probed videos.
        audio_in, audio_out: their decoded audio (:func:`read_audio`) or None.
        max_shift_s: largest audio shift searched by cross-correlation.
    """
    s_in, s_out = summarize(info_in, audio_in), summarize(info_out, audio_out)
    frame_s = 1.0 / float(info_in.fps)
    duration_diff = start_diff = shift = None
    in_sync = None
    if s_in.has_audio and s_out.has_audio:
        if s_in.audio_duration_s is not None and s_out.audio_duration_s is not None:
            duration_diff = s_out.audio_duration_s - s_in.audio_duration_s
        if audio_in is not None and audio_out is not None:
            start_diff = audio_out.start_s - audio_in.start_s
            env_in = audio_envelope(audio_in.samples, audio_in.sample_rate, ENVELOPE_HOP_S)
            env_out = audio_envelope(audio_out.samples, audio_out.sample_rate, ENVELOPE_HOP_S)
            measured = envelope_shift_s(env_in, env_out, ENVELOPE_HOP_S, max_shift_s)
            shift = measured if math.isfinite(measured) else None
        decisive = shift if shift is not None else start_diff
        in_sync = None if decisive is None else abs(decisive) <= frame_s
    return ContainerComparison(
        input=s_in,
        output=s_out,
        frame_count_equal=s_in.frame_count == s_out.frame_count,
        fps_equal=info_in.fps == info_out.fps,
        resolution_equal=(s_in.width, s_in.height) == (s_out.width, s_out.height),
        audio_presence_equal=s_in.has_audio == s_out.has_audio,
        audio_duration_diff_s=duration_diff,
        audio_start_diff_s=start_diff,
        audio_shift_s=shift,
        audio_in_sync=in_sync,
    )
