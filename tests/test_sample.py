"""Tests of ned.sample (the built-in clip) and the `ned sample` command."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

import ned.sample as sample
from ned.commands import sample as sample_command
from ned.media import iter_frames, probe, read_comment


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    return sample.make_sample_clip(tmp_path_factory.mktemp("sample") / "sample.mp4", seconds=1.0, fps=25)


class TestMakeSampleClip:
    def test_smoke(self, short_clip):
        info = probe(short_clip)
        assert (info.width, info.height) == (sample.SAMPLE_SIZE, sample.SAMPLE_SIZE)
        assert info.fps == 25 and info.frame_count == 25 and not info.is_vfr
        assert info.has_audio and info.audio_codec == "aac"
        assert abs(info.audio_duration_s - info.duration_s) < 1 / 25
        assert "astronaut" in read_comment(short_clip)

    def test_motion_is_small_and_smooth(self, short_clip):
        frames = np.stack([f.rgb for f in iter_frames(short_clip)]).astype(np.int16)
        diffs = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
        assert diffs.min() > 0.3  # it moves
        assert diffs.max() < 12.0  # but only a little per frame

    def test_deterministic(self, tmp_path):
        a = sample.make_sample_clip(tmp_path / "a.mp4", seconds=0.4)
        b = sample.make_sample_clip(tmp_path / "b.mp4", seconds=0.4)
        assert a.read_bytes() == b.read_bytes()

    @pytest.mark.parametrize("kwargs", [{"seconds": 0}, {"seconds": 601}, {"fps": 0}, {"fps": 2.5}, {"size": 101}])
    def test_exception(self, tmp_path, kwargs):
        with pytest.raises(ValueError):
            sample.make_sample_clip(tmp_path / "x.mp4", **kwargs)
        assert not (tmp_path / "x.mp4").exists()


class TestGeometry:
    def test_face_stays_near_the_centre(self):
        # The nose tip of the photo (about x=226, y=130) must stay in the middle third.
        for time_s in np.linspace(0, 4, 41):
            matrix = np.vstack([sample.photo_from_frame(time_s), [0, 0, 1]])
            x, y, _ = np.linalg.inv(matrix) @ [226.0, 130.0, 1.0]
            assert sample.SAMPLE_SIZE / 3 < x < 2 * sample.SAMPLE_SIZE / 3
            assert sample.SAMPLE_SIZE / 4 < y < 2 * sample.SAMPLE_SIZE / 3

    def test_unit_centre_without_motion(self, monkeypatch):
        monkeypatch.setattr(sample, "_head_motion", lambda t: (0.0, 0.0, 0.0, 1.0))
        matrix = sample.photo_from_frame(0.0, size=512)
        centre = matrix @ [255.5, 255.5, 1.0]
        np.testing.assert_allclose(centre, sample._CROP_CENTER)
        np.testing.assert_allclose(matrix[:, :2], np.eye(2) * sample._CROP_SIDE / 512)

    def test_frames_shape(self):
        frames = list(sample.sample_frames(seconds=0.12, fps=25, size=64))
        assert len(frames) == 3 and frames[0].shape == (64, 64, 3) and frames[0].dtype == np.uint8


class TestSampleAudio:
    def test_speech_like(self):
        rate = 16000
        audio = sample.sample_audio(4.0, rate)
        assert audio.shape == (4 * rate,) and audio.dtype == np.float32
        assert 0.45 < np.abs(audio).max() <= 0.5
        # syllables and pauses: voiced 20 ms windows are neither all nor none
        rms = np.sqrt((audio[: audio.size // 320 * 320].reshape(-1, 320) ** 2).mean(axis=1))
        voiced = rms > 0.1 * rms.max()
        assert 0.3 < voiced.mean() < 0.9
        # a voice pitch: autocorrelation peak of a voiced window between 150 and 260 Hz
        start = int(np.argmax(rms)) * 320
        window = audio[start:start + 1024] - audio[start:start + 1024].mean()
        corr = np.correlate(window, window, "full")[window.size - 1:]
        lag = int(np.argmax(corr[rate // 400: rate // 100])) + rate // 400
        assert 150 < rate / lag < 260

    def test_deterministic(self):
        np.testing.assert_array_equal(sample.sample_audio(0.5, 8000), sample.sample_audio(0.5, 8000))


class TestCache:
    def test_made_once_and_repaired(self, tmp_path, monkeypatch):
        calls = []
        real = sample.make_sample_clip

        def quick(path, *args, **kwargs):
            calls.append(path)
            return real(path, seconds=0.2)

        monkeypatch.setattr(sample, "make_sample_clip", quick)
        monkeypatch.setenv("NED_CACHE_DIR", str(tmp_path / "cache"))
        first = sample.sample_clip_path()
        assert first == tmp_path / "cache" / f"sample_v{sample.SAMPLE_VERSION}.mp4" and first.is_file()
        assert sample.sample_clip_path() == first and len(calls) == 1
        first.write_bytes(b"damaged")
        assert probe(sample.sample_clip_path()).frame_count == 5 and len(calls) == 2

    def test_default_cache_dir(self, monkeypatch, tmp_path):
        monkeypatch.delenv("NED_CACHE_DIR", raising=False)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        assert sample.default_cache_dir() == tmp_path / "ned"


class TestCommand:
    @staticmethod
    def parse(argv):
        parser = argparse.ArgumentParser(prog="ned")
        sample_command.register(parser.add_subparsers(dest="command"))
        return parser.parse_args(argv)

    def test_writes_output(self, tmp_path, capsys):
        out = tmp_path / "sub" / "s.mp4"
        args = self.parse(["sample", "-o", str(out), "--seconds", "0.2", "--quiet"])
        assert args.func(args) == 0
        assert capsys.readouterr().out.strip() == str(out.absolute())
        assert probe(out).frame_count == 5

    def test_defaults_come_from_the_library(self):
        args = self.parse(["sample"])
        assert (args.seconds, args.fps, args.output) == (sample.DEFAULT_SECONDS, sample.DEFAULT_FPS, None)

    @pytest.mark.parametrize("argv", [["--seconds", "0"], ["--fps", "0"], ["--seconds", "x"]])
    def test_bad_values(self, argv):
        with pytest.raises(SystemExit):
            self.parse(["sample", *argv])
