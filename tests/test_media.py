"""Tests of ned.media: probe, iter_frames, VideoWriter, rotation, bad inputs and outputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import REPO_ROOT, synthetic_frames, synthetic_tone
from ned.errors import InputError, OutputError
from ned.media import (
    DecodedFrame,
    EncodeOptions,
    Orientation,
    VideoInfo,
    VideoWriter,
    check_output_path,
    iter_frames,
    probe,
    read_comment,
    rgb_to_video_frame,
    write_test_video,
)


# ----------------------------------------------------------------------------- helpers
def decode_all(path: Path) -> np.ndarray:
    """``(N, H, W, 3) uint8`` of every frame."""
    return np.stack([f.rgb for f in iter_frames(path)])


def decode_audio(path: Path) -> tuple[np.ndarray, float, int]:
    """Mono float32 samples, the start time of the first sample (s), sample rate."""
    chunks, start, rate = [], None, 0
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            if start is None:
                start = float(frame.pts * frame.time_base)
            rate = frame.sample_rate
            chunks.append(frame.to_ndarray().reshape(len(frame.layout.channels), -1).mean(axis=0))
    return np.concatenate(chunks).astype(np.float32), start or 0.0, rate


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(audio=0) if p.size]


def partial_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".partial-" in p.name]


def copy_through(src: Path, out: Path, **kwargs) -> Path:
    """Decode ``src`` and write every frame to ``out`` with ``src``'s audio."""
    info = probe(src)
    with VideoWriter(out, width=info.width, height=info.height, fps=info.fps, audio_from=src, **kwargs) as writer:
        for frame in iter_frames(src):
            writer.write(frame.rgb)
    return out


def flash_clip(path: Path, fps: int = 25, frames: int = 50, flashes=(12, 37), sample_rate: int = 48000) -> Path:
    """Dark frames with white flashes, and 20 ms tone bursts at the same instants."""
    video = [np.full((48, 64, 3), 30, np.uint8) for _ in range(frames)]
    audio = np.zeros(int(frames / fps * sample_rate), np.float32)
    burst = synthetic_tone(0.02, sample_rate, 1000.0) * 2.5
    for k in flashes:
        video[k][:] = 230
        start = int(round(k / fps * sample_rate))
        audio[start:start + burst.size] = burst
    return write_test_video(path, video, fps, audio=audio, sample_rate=sample_rate)


def onsets_s(samples: np.ndarray, start_s: float, rate: int) -> list[float]:
    """Times where the envelope first rises above half the peak, one per burst."""
    loud = np.abs(samples) > 0.5 * np.abs(samples).max()
    idx = np.flatnonzero(loud & ~np.r_[False, loud[:-1]])
    times, last = [], -1.0
    for t in start_s + idx / rate:
        if t - last > 0.2:
            times.append(float(t))
        last = t
    return times


# ----------------------------------------------------------------------------- orientation
class TestOrientation:
    @pytest.mark.parametrize(
        "orientation, expected",
        [
            (Orientation(), lambda a: a),
            (Orientation(True, False, True), lambda a: np.rot90(a, -1)),  # 90 clockwise
            (Orientation(False, True, True), lambda a: np.rot90(a, 2)),
            (Orientation(True, True, False), lambda a: np.rot90(a, 1)),  # 90 counter-clockwise
            (Orientation(False, False, True), lambda a: a[:, ::-1]),
        ],
    )
    def test_apply(self, orientation, expected):
        image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
        out = orientation.apply(image)
        np.testing.assert_array_equal(out, expected(image))
        assert out.flags["C_CONTIGUOUS"]

    def test_rotation_and_mirror_are_consistent(self):
        image = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
        for t in (False, True):
            for r in (False, True):
                for c in (False, True):
                    o = Orientation(t, r, c)
                    base = image[:, ::-1] if o.mirrored else image
                    np.testing.assert_array_equal(o.apply(image), np.rot90(base, -o.rotation_deg // 90))

    def test_from_display_matrix_hand_computed(self):
        # FFmpeg's matrix for a 90 degree counter-clockwise display rotation.
        ccw90 = [0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30]
        assert Orientation.from_display_matrix(ccw90) == Orientation(True, True, False)
        assert Orientation.from_display_matrix(ccw90).rotation_deg == 270
        identity = [65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30]
        assert Orientation.from_display_matrix(identity) == Orientation()
        hflip = [-65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30]
        assert Orientation.from_display_matrix(hflip).mirrored

    def test_exception(self):
        with pytest.raises(ValueError):
            Orientation.from_display_matrix([1, 2, 3])

    def test_display_size(self):
        assert Orientation(True).display_size(64, 48) == (48, 64)
        assert Orientation().display_size(64, 48) == (64, 48)


# ----------------------------------------------------------------------------- probe / decode
class TestProbe:
    def test_smoke(self, make_clip):
        path = make_clip(frames=12, size=(64, 48), fps=25, audio=True, comment="c")
        info = probe(path)
        assert isinstance(info, VideoInfo)
        assert (info.width, info.height, info.frame_count) == (64, 48, 12)
        assert info.fps == 25 and not info.is_vfr
        assert info.duration_s == pytest.approx(12 / 25)
        assert info.has_audio and info.audio_codec == "aac" and info.video_codec == "h264"
        assert info.audio_duration_s == pytest.approx(12 / 25, abs=0.03)
        assert info.rotation_deg == 0

    @pytest.mark.parametrize("fps", [Fraction(30000, 1001), Fraction(24), Fraction(50)])
    def test_exact_fps(self, make_clip, fps):
        info = probe(make_clip(frames=7, fps=fps))
        assert info.fps == fps
        assert info.frame_count == 7

    @pytest.mark.parametrize(
        "name, kwargs",
        [
            ("a.mp4", {}),
            ("a.mov", {"audio": True, "audio_codec": "pcm_s16le"}),
            ("a.mkv", {"audio": True, "audio_codec": "flac"}),
            ("a.webm", {"codec": "libvpx-vp9", "audio": True, "audio_codec": "libopus"}),
            ("a.avi", {"codec": "mjpeg", "audio": True, "audio_codec": "pcm_s16le"}),
            ("b.avi", {"codec": "mpeg4"}),
        ],
    )
    def test_containers_count_equals_decoded(self, make_clip, name, kwargs):
        path = make_clip(name, frames=9, **kwargs)
        info = probe(path)
        frames = list(iter_frames(path))
        assert info.frame_count == len(frames) == 9
        assert info.fps == 25
        assert frames[0].rgb.shape == (48, 64, 3)

    @pytest.mark.parametrize("rotation", [90, 180, 270])
    def test_rotation(self, make_clip, rotation):
        info = probe(make_clip(frames=3, size=(64, 48), rotation_deg=rotation))
        assert info.rotation_deg == rotation
        expected = (48, 64) if rotation in (90, 270) else (64, 48)
        assert (info.width, info.height) == expected

    def test_vfr_keeps_timestamps(self, make_clip):
        pts = [0, 40, 80, 100, 200, 210, 300, 400, 440, 480]
        path = make_clip("vfr.mkv", frames=10, pts=pts, time_base=Fraction(1, 1000))
        info = probe(path)
        assert info.is_vfr and info.frame_count == 10
        assert info.duration_s == pytest.approx(0.52, abs=0.011)
        assert [f.time_s for f in iter_frames(path)] == pytest.approx([p / 1000 for p in pts])


class TestIterFrames:
    def test_round_trip_pixels(self, make_clip):
        path = make_clip(frames=5, size=(64, 48))
        decoded = decode_all(path)
        source = np.stack(synthetic_frames(5, 64, 48))
        assert decoded.dtype == np.uint8 and decoded.shape == source.shape
        assert np.abs(decoded.astype(int) - source).mean() < 3.0

    def test_frames_are_ordered_and_timed(self, make_clip):
        frames = list(iter_frames(make_clip(frames=6, fps=25)))
        assert [f.index for f in frames] == list(range(6))
        assert [f.time_s for f in frames] == pytest.approx([i / 25 for i in range(6)])
        assert all(isinstance(f, DecodedFrame) and f.rgb.flags["C_CONTIGUOUS"] for f in frames)

    def test_max_frames(self, make_clip):
        assert len(list(iter_frames(make_clip(frames=8), max_frames=3))) == 3

    @pytest.mark.parametrize("rotation, turn", [(90, -1), (180, 2), (270, 1)])
    def test_rotation_applied(self, make_clip, rotation, turn):
        stored = synthetic_frames(2, 64, 48)
        decoded = decode_all(make_clip(frames=2, size=(64, 48), rotation_deg=rotation))
        expected = np.rot90(stored[1], turn)  # np.rot90 turns counter-clockwise for k > 0
        assert decoded.shape[1:3] == expected.shape[:2]
        assert np.abs(decoded[1].astype(int) - expected).mean() < 3.0

    def test_decoded_frame_validates(self):
        with pytest.raises(ValueError):
            DecodedFrame(index=0, rgb=np.zeros((4, 4), np.uint8), pts=0, time_s=0.0)


# ----------------------------------------------------------------------------- bad inputs
def _text_file(folder: Path) -> Path:
    path = folder / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    return path


def _audio_only(folder: Path) -> Path:
    return write_test_video(folder / "speech.m4a", None, audio=synthetic_tone(0.5))


def _zero_frames(folder: Path) -> Path:
    # Matroska keeps an empty video track when another stream has data.
    return write_test_video(folder / "empty_track.mkv", [], audio=synthetic_tone(0.5))


def _truncated_mp4(folder: Path) -> Path:
    full = write_test_video(folder / "full.mp4", synthetic_frames(20), 25)
    path = folder / "cut.mp4"
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return path


def _truncated_mkv(folder: Path) -> Path:
    full = write_test_video(folder / "full.mkv", synthetic_frames(30), 25)
    path = folder / "cut.mkv"
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return path


def _corrupt(folder: Path) -> Path:
    full = write_test_video(folder / "full.mkv", synthetic_frames(30), 25)
    data = bytearray(full.read_bytes())
    mid = len(data) // 4
    data[mid:mid + 3000] = np.random.default_rng(0).integers(0, 255, 3000, dtype=np.uint8).tobytes()
    path = folder / "damaged.mkv"
    path.write_bytes(bytes(data))
    return path


BAD_INPUTS = {
    "missing": lambda d: d / "nothing_here.mp4",
    "folder": lambda d: d,
    "empty_file": lambda d: (d / "zero_bytes.mp4", (d / "zero_bytes.mp4").write_bytes(b""))[0],
    "text_file": _text_file,
    "audio_only": _audio_only,
    "zero_frames": _zero_frames,
    "truncated_mp4": _truncated_mp4,
    "truncated_mkv": _truncated_mkv,
    "corrupt": _corrupt,
}


class TestBadInputs:
    @pytest.mark.parametrize("case", sorted(BAD_INPUTS))
    @pytest.mark.parametrize("reader", ["probe", "iter_frames"])
    def test_input_error_names_file(self, tmp_path, case, reader):
        folder = tmp_path / "in"
        folder.mkdir()
        path = BAD_INPUTS[case](folder)
        with pytest.raises(InputError) as info:
            if reader == "probe":
                probe(path)
            else:
                for _ in iter_frames(path):
                    pass
        message = str(info.value)
        assert str(path) in message and "\n" not in message

    def test_audio_only_says_so(self, tmp_path):
        with pytest.raises(InputError, match="audio only"):
            probe(_audio_only(tmp_path))

    def test_zero_frames_says_so(self, tmp_path):
        with pytest.raises(InputError, match="zero frames"):
            probe(_zero_frames(tmp_path))


# ----------------------------------------------------------------------------- writer
class TestVideoWriter:
    @pytest.mark.parametrize("fps", [Fraction(25), Fraction(30000, 1001)])
    def test_round_trip_count_fps_size(self, tmp_path, fps):
        out = tmp_path / "out.mp4"
        frames = synthetic_frames(13, 64, 48)
        with VideoWriter(out, width=64, height=48, fps=fps) as writer:
            for frame in frames:
                writer.write(frame)
        info = probe(out)
        assert (info.width, info.height, info.frame_count, info.fps) == (64, 48, 13, fps)
        assert not info.has_audio
        assert np.abs(decode_all(out).astype(int) - np.stack(frames)).mean() < 3.0
        assert partial_files(tmp_path) == []

    def test_odd_size_kept_exactly(self, tmp_path):
        out = tmp_path / "odd.mp4"
        frames = synthetic_frames(5, 101, 77)
        with VideoWriter(out, width=101, height=77, fps=25) as writer:
            for frame in frames:
                writer.write(frame)
        info = probe(out)
        assert (info.width, info.height, info.frame_count) == (101, 77, 5)
        with av.open(str(out)) as container:
            assert container.streams.video[0].codec_context.pix_fmt == "yuv444p"
        decoded = list(iter_frames(out))
        assert all(f.rgb.flags["C_CONTIGUOUS"] for f in decoded)  # rows are padded in FFmpeg
        assert np.abs(np.stack([f.rgb for f in decoded]).astype(int) - np.stack(frames)).mean() < 2.0

    def test_audio_copied_untouched_and_in_sync(self, tmp_path):
        src = flash_clip(tmp_path / "src.mp4")
        out = copy_through(src, tmp_path / "out.mp4")
        src_info, out_info = probe(src), probe(out)
        assert out_info.frame_count == src_info.frame_count and out_info.fps == src_info.fps
        assert out_info.audio_codec == "aac"
        # remuxed: the packets are the source's own bytes
        src_packets, out_packets = audio_packets(src), audio_packets(out)
        assert out_packets == src_packets[: len(out_packets)]
        assert abs(out_info.audio_duration_s - out_info.duration_s) < 1 / 25
        self._check_sync(out, out_info)

    def test_audio_reencoded_when_codec_does_not_fit_mp4(self, tmp_path):
        video = [np.full((48, 64, 3), 30, np.uint8) for _ in range(50)]
        audio = np.zeros(2 * 48000, np.float32)
        for k in (12, 37):
            video[k][:] = 230
            audio[int(k / 25 * 48000):int(k / 25 * 48000) + 960] = synthetic_tone(0.02, 48000, 1000.0) * 2.5
        src = write_test_video(tmp_path / "src.mov", video, 25, audio=audio, audio_codec="pcm_s16le")
        out = copy_through(src, tmp_path / "out.mp4")
        info = probe(out)
        assert info.audio_codec == "aac" and info.frame_count == 50
        assert abs(info.audio_duration_s - info.duration_s) < 1 / 25
        self._check_sync(out, info)

    @pytest.mark.parametrize(
        "name, audio_codec, expected",
        [("a.webm", "libopus", "opus"), ("a.mkv", "flac", "flac"), ("b.mkv", "libmp3lame", "mp3"),
         ("c.mkv", "pcm_s16le", "aac"), ("d.avi", "pcm_s16le", "aac")],
    )
    def test_audio_codecs(self, make_clip, tmp_path, name, audio_codec, expected):
        codec = "libvpx-vp9" if name.endswith(".webm") else "libx264" if name.endswith(".mkv") else "mjpeg"
        src = make_clip(name, frames=25, codec=codec, audio=True, audio_codec=audio_codec)
        info = probe(copy_through(src, tmp_path / "out.mp4"))
        assert info.audio_codec == expected and info.frame_count == 25
        assert abs(info.audio_duration_s - info.duration_s) < 1 / 25

    @staticmethod
    def _check_sync(path: Path, info: VideoInfo) -> None:
        flashes = [f.time_s for f in iter_frames(path) if f.rgb.mean() > 128]
        samples, start, rate = decode_audio(path)
        onsets = onsets_s(samples, start, rate)
        assert len(flashes) == len(onsets) == 2
        for flash, onset in zip(flashes, onsets):
            assert abs(flash - onset) < 1 / float(info.fps)

    def test_comment_round_trips(self, tmp_path):
        out = tmp_path / "out.mp4"
        comment = "edited by ned 0.1.0: happy"
        with VideoWriter(out, width=64, height=48, fps=25, comment=comment) as writer:
            writer.write(synthetic_frames(1)[0])
        assert read_comment(out) == comment

    def test_comment_absent(self, make_clip):
        assert read_comment(make_clip(frames=2)) is None

    def test_vfr_timestamps_kept(self, make_clip, tmp_path):
        pts = [0, 40, 80, 100, 200, 210, 300, 400, 440, 480]
        src = make_clip("vfr.mkv", frames=10, pts=pts, time_base=Fraction(1, 1000))
        info = probe(src)
        out = tmp_path / "out.mp4"
        with VideoWriter(out, width=info.width, height=info.height, fps=info.fps, time_base=info.time_base) as w:
            for frame in iter_frames(src):
                w.write(frame.rgb, pts=frame.pts)
        assert [f.time_s for f in iter_frames(out)] == pytest.approx([p / 1000 for p in pts])
        assert probe(out).frame_count == 10

    def test_missing_folder_is_created(self, tmp_path):
        out = tmp_path / "a" / "b" / "out.mp4"
        with VideoWriter(out, width=64, height=48, fps=25) as writer:
            writer.write(synthetic_frames(1)[0])
        assert out.is_file()

    def test_folder_below_a_file_is_output_error(self, tmp_path):
        blocker = tmp_path / "file.txt"
        blocker.write_text("x")
        with pytest.raises(OutputError, match="file.txt"):
            VideoWriter(blocker / "out.mp4", width=64, height=48, fps=25)

    def test_output_equal_to_input_is_refused(self, make_clip):
        src = make_clip(frames=2, audio=True)
        before = src.read_bytes()
        with pytest.raises(OutputError, match="overwrite"):
            VideoWriter(src, width=64, height=48, fps=25, audio_from=src)
        assert src.read_bytes() == before

    def test_unsupported_suffix(self, tmp_path):
        with pytest.raises(OutputError, match=".gif"):
            VideoWriter(tmp_path / "out.gif", width=64, height=48, fps=25)

    def test_exception_mid_write_leaves_nothing(self, tmp_path):
        out = tmp_path / "out.mp4"
        with pytest.raises(RuntimeError):
            with VideoWriter(out, width=64, height=48, fps=25) as writer:
                for frame in synthetic_frames(40):
                    writer.write(frame)
                assert [p.name for p in partial_files(tmp_path)] == [f".out.mp4.partial-{os.getpid()}"]
                raise RuntimeError("boom")
        assert not out.exists() and partial_files(tmp_path) == []

    def test_keyboard_interrupt_leaves_nothing(self, tmp_path):
        out = tmp_path / "out.mp4"
        with pytest.raises(KeyboardInterrupt):
            with VideoWriter(out, width=64, height=48, fps=25) as writer:
                writer.write(synthetic_frames(1)[0])
                raise KeyboardInterrupt
        assert not out.exists() and partial_files(tmp_path) == []

    def test_existing_output_survives_failed_write(self, tmp_path):
        out = tmp_path / "out.mp4"
        out.write_bytes(b"previous result")
        with pytest.raises(RuntimeError):
            with VideoWriter(out, width=64, height=48, fps=25) as writer:
                writer.write(synthetic_frames(1)[0])
                raise RuntimeError("boom")
        assert out.read_bytes() == b"previous result"

    def test_no_frames_is_output_error(self, tmp_path):
        writer = VideoWriter(tmp_path / "out.mp4", width=64, height=48, fps=25)
        with pytest.raises(OutputError, match="no frames"):
            writer.close()
        assert list(tmp_path.iterdir()) == []

    def test_bad_frames_and_pts(self, tmp_path):
        with pytest.raises(ValueError):
            with VideoWriter(tmp_path / "a.mp4", width=64, height=48, fps=25) as writer:
                writer.write(np.zeros((48, 63, 3), np.uint8))
        with pytest.raises(ValueError, match="pts"):
            with VideoWriter(tmp_path / "b.mp4", width=64, height=48, fps=25) as writer:
                writer.write(synthetic_frames(1)[0], pts=5)
                writer.write(synthetic_frames(1)[0], pts=5)
        assert list(tmp_path.iterdir()) == []
        with pytest.raises(ValueError):
            VideoWriter(tmp_path / "c.mp4", width=0, height=48, fps=25)

    def test_disk_full_via_rlimit_fsize(self, tmp_path):
        out = tmp_path / "big.mp4"
        script = textwrap.dedent(
            f"""
            import resource, sys
            import numpy as np
            from ned.errors import OutputError
            from ned.media import EncodeOptions, VideoWriter
            rng = np.random.default_rng(0)
            writer = VideoWriter({str(out)!r}, width=128, height=128, fps=25,
                                 options=EncodeOptions(crf=0, preset="ultrafast"))
            resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
            try:
                with writer:
                    for _ in range(400):
                        writer.write(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
            except OutputError as err:
                print(err)
                sys.exit(3)
            sys.exit(0)
            """
        )
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=env
        )
        assert result.returncode == 3, result.stderr
        assert "disk full" in result.stdout and str(out) in result.stdout
        assert not out.exists() and partial_files(tmp_path) == []

    def test_sigint_mid_write_leaves_nothing(self, tmp_path):
        out = tmp_path / "out.mp4"
        script = textwrap.dedent(
            f"""
            import signal
            import numpy as np
            from ned.media import VideoWriter
            # a job started in the background (CI, `cmd &`) inherits SIGINT ignored, and
            # Python then installs no KeyboardInterrupt handler: install it as a terminal would
            signal.signal(signal.SIGINT, signal.default_int_handler)
            frame = np.zeros((64, 64, 3), np.uint8)
            with VideoWriter({str(out)!r}, width=64, height=64, fps=25) as writer:
                for i in range(10_000_000):
                    writer.write(frame)
            """
        )
        proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
        try:
            partial = tmp_path / f".out.mp4.partial-{proc.pid}"
            deadline = time.monotonic() + 30
            while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert partial.exists(), "the writer never started"
            proc.send_signal(signal.SIGINT)  # Ctrl-C while frames are being written
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
        assert not out.exists() and partial_files(tmp_path) == []


class TestRgbToVideoFrame:
    @pytest.mark.parametrize("pix_fmt, size", [("yuv420p", (64, 48)), ("yuv444p", (63, 47)), ("yuv422p", (64, 47))])
    def test_matches_swscale(self, pix_fmt, size):
        rgb = synthetic_frames(3, *size)[2]
        ours = rgb_to_video_frame(rgb, pix_fmt)
        reference = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
            format=pix_fmt, dst_colorspace="ITU601", dst_color_range=1
        )
        assert ours.format.name == pix_fmt and (ours.width, ours.height) == size
        for mine, theirs in zip(ours.planes, reference.planes):
            a = np.frombuffer(mine, np.uint8).reshape(mine.height, -1)[:, : mine.width].astype(int)
            b = np.frombuffer(theirs, np.uint8).reshape(theirs.height, -1)[:, : theirs.width].astype(int)
            assert np.abs(a - b).mean() < 1.5

    def test_round_trip(self):
        rgb = synthetic_frames(1, 64, 48)[0]
        back = rgb_to_video_frame(rgb[:, ::-1]).to_ndarray(format="rgb24", src_color_range=1)
        assert np.abs(back.astype(int) - rgb[:, ::-1]).mean() < 2.0  # swscale: 1.58

    def test_unit_grey(self):
        grey = np.full((2, 2, 3), 255, np.uint8)
        frame = rgb_to_video_frame(grey)
        assert np.frombuffer(frame.planes[0], np.uint8)[0] == 235  # limited-range white
        assert np.frombuffer(frame.planes[1], np.uint8)[0] == 128
        assert frame.colorspace == 6 and frame.color_range == 1

    def test_exception(self):
        with pytest.raises(ValueError):
            rgb_to_video_frame(np.zeros((5, 4, 3), np.uint8), "yuv420p")
        with pytest.raises(ValueError):
            rgb_to_video_frame(np.zeros((4, 4), np.uint8))


class TestCheckOutputPath:
    def test_smoke(self, tmp_path):
        assert check_output_path(tmp_path / "o.mp4", [tmp_path / "i.mp4", None]) == tmp_path / "o.mp4"

    def test_same_file_via_other_spelling(self, tmp_path):
        src = tmp_path / "in.mp4"
        src.write_bytes(b"x")
        with pytest.raises(OutputError):
            check_output_path(tmp_path / "sub" / ".." / "in.mp4", [src])

    def test_hard_link(self, tmp_path):
        src = tmp_path / "in.mp4"
        src.write_bytes(b"x")
        os.link(src, tmp_path / "link.mp4")
        with pytest.raises(OutputError):
            check_output_path(tmp_path / "link.mp4", [src])

    def test_folder(self, tmp_path):
        with pytest.raises(OutputError, match="folder"):
            check_output_path(tmp_path)


class TestEncodeOptions:
    def test_pixel_format(self):
        assert EncodeOptions().pixel_format(64, 48) == "yuv420p"
        assert EncodeOptions().pixel_format(101, 77) == "yuv444p"
        with pytest.raises(ValueError):
            EncodeOptions(pix_fmt="yuv420p").pixel_format(101, 77)

    @pytest.mark.parametrize("kwargs", [{"crf": 52}, {"preset": "warp"}, {"pix_fmt": "nv12"}, {"codec": ""}])
    def test_exception(self, kwargs):
        with pytest.raises(ValueError):
            EncodeOptions(**kwargs)


# ----------------------------------------------------------------------------- real clips
class TestSharedMedia:
    def test_probe_matches_decode(self, shared_media):
        clip = shared_media / "mead_crops" / "M030_front_neutral_level1_001.mp4"
        if not clip.exists():
            pytest.skip(f"{clip} is absent")
        info = probe(clip)
        assert info.frame_count == sum(1 for _ in iter_frames(clip))
        assert (info.width, info.height, info.fps) == (256, 256, 25)

    def test_talking_clip_audio(self, shared_media):
        clip = shared_media / "talking" / "d10.mp4"
        if not clip.exists():
            pytest.skip(f"{clip} is absent")
        info = probe(clip)
        assert info.has_audio and info.fps == 30 and info.frame_count == 448
        assert abs(info.audio_duration_s - info.duration_s) < 0.1
