"""`ned preprocess`: the seed's folders, numbering, resume, bad input."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from ned.cli import main
from ned.errors import InputError, OutputError
from ned.layout import count_frame_files, folders_for_mode, load_npz, read_image
from ned.media import write_test_video
from ned.preprocess import PreprocessOptions, preprocess_celeb
from ned.sample import make_sample_clip


@pytest.fixture(scope="module")
def face_clips(tmp_path_factory) -> tuple[Path, Path]:
    """Two short real-face clips (the built-in sample generator): 12 and 10 frames."""
    root = tmp_path_factory.mktemp("clips")
    a = make_sample_clip(root / "a.mp4", seconds=12 / 25, fps=25)
    b = make_sample_clip(root / "b.mp4", seconds=10 / 25, fps=25)
    return a, b


def _celeb(tmp_path: Path, *clips: Path) -> Path:
    celeb = tmp_path / "celeb"
    (celeb / "videos").mkdir(parents=True)
    for clip in clips:
        shutil.copy(clip, celeb / "videos" / clip.name)
    return celeb


def test_test_mode_writes_every_folder_numbered_across_clips(tmp_path, face_clips):
    celeb = _celeb(tmp_path, *face_clips)
    report = preprocess_celeb(celeb, PreprocessOptions(mode="test", quiet=True))
    assert report.frame_count == 22
    assert [c.first_frame for c in report.clips] == [0, 12]
    for folder, ext in folders_for_mode("test").items():
        names = sorted(p.name for p in (celeb / folder).iterdir())
        assert names == [f"{i:06d}.{ext}" for i in range(22)], folder
    crop = read_image(celeb / "images" / "000000.png")
    assert crop.shape == (256, 256, 3)
    nmfc = read_image(celeb / "nmfcs" / "000013.png")
    assert (nmfc.sum(axis=2) > 0).mean() > 0.2  # the face covers a good part of the crop
    f3d = load_npz(celeb / "face3d" / "000005.npz")
    assert f3d["landmarks"].shape == (478, 3) and np.isfinite(f3d["expression"]).all()
    assert float(f3d["residual"]) < 0.1
    lines = (celeb / "videos" / "a.txt").read_text().splitlines()
    boxes = [line for line in lines if not line.startswith("#")]
    assert len(boxes) == 12 and all(len(b.split()) == 4 for b in boxes)
    assert any("fps: 25" in line for line in lines)


def test_train_mode_skips_full_frames(tmp_path, face_clips):
    celeb = _celeb(tmp_path, face_clips[1])
    preprocess_celeb(celeb, PreprocessOptions(mode="train", quiet=True))
    assert not (celeb / "full_frames").exists()
    assert count_frame_files(celeb / "eye_landmarks", "txt") == 10
    points = np.loadtxt(celeb / "eye_landmarks" / "000000.txt")
    assert points.shape == (14, 2) and np.isfinite(points).all()


def test_resume_completes_an_interrupted_run_and_skips_complete_clips(tmp_path, face_clips):
    celeb = _celeb(tmp_path, face_clips[1])
    preprocess_celeb(celeb, PreprocessOptions(mode="reference", quiet=True))
    before = (celeb / "nmfcs" / "000003.png").read_bytes()
    # simulate a run killed mid-way: files missing, a stray temporary file left behind
    for f in list((celeb / "nmfcs").glob("00000[5-9].png")):
        f.unlink()
    (celeb / "nmfcs" / ".000005.png.tmp-123").write_bytes(b"partial")
    report = preprocess_celeb(celeb, PreprocessOptions(mode="reference", quiet=True))
    assert not report.clips[0].skipped
    assert count_frame_files(celeb / "nmfcs", "png") == 10
    assert (celeb / "nmfcs" / "000003.png").read_bytes() == before
    again = preprocess_celeb(celeb, PreprocessOptions(mode="reference", quiet=True))
    assert again.clips[0].skipped


def test_missing_videos_folder(tmp_path):
    (tmp_path / "celeb").mkdir()
    with pytest.raises(InputError, match="missing videos/"):
        preprocess_celeb(tmp_path / "celeb")


def test_not_a_video_names_the_file(tmp_path):
    celeb = tmp_path / "celeb"
    (celeb / "videos").mkdir(parents=True)
    (celeb / "videos" / "notes.mp4").write_text("not a video")
    with pytest.raises(InputError, match="notes.mp4"):
        preprocess_celeb(celeb)


def test_audio_only_file(tmp_path):
    celeb = tmp_path / "celeb"
    (celeb / "videos").mkdir(parents=True)
    tone = (0.2 * np.sin(np.arange(8000) / 10)).astype(np.float32)
    write_test_video(celeb / "videos" / "voice.mp4", None, audio=tone, sample_rate=16000)
    with pytest.raises(InputError, match="voice.mp4"):
        preprocess_celeb(celeb)


def test_no_face_at_all(tmp_path, make_clip):
    celeb = _celeb(tmp_path, make_clip("blank.mp4", frames=12, size=(96, 96)))
    with pytest.raises(InputError, match="no face"):
        preprocess_celeb(celeb, PreprocessOptions(quiet=True))


def test_unwritable_output_is_a_clear_error(tmp_path, face_clips):
    # A celeb path whose videos/ is a symlink but whose output folders would sit below a
    # regular file cannot be made; tests run as root, so use a file, not chmod.
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file")
    celeb = _celeb(tmp_path, face_clips[1])
    (celeb / "images").symlink_to(blocker / "sub")
    with pytest.raises(OutputError, match="images"):
        preprocess_celeb(celeb, PreprocessOptions(quiet=True))


def test_short_clip_warns(tmp_path, caplog):
    clip = make_sample_clip(tmp_path / "short.mp4", seconds=6 / 25, fps=25)
    celeb = _celeb(tmp_path, clip)
    with caplog.at_level(logging.WARNING):
        preprocess_celeb(celeb, PreprocessOptions(quiet=True))
    assert "at least 10" in caplog.text


def test_cli_accepts_positional_and_celeb_option(tmp_path, face_clips, capsys):
    celeb = _celeb(tmp_path, face_clips[1])
    assert main(["preprocess", "--celeb", str(celeb), "--mode", "reference", "--quiet"]) == 0
    assert main(["preprocess", str(celeb), "--mode", "reference", "--quiet"]) == 0
    assert "already complete" in capsys.readouterr().out


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    code = main(["preprocess", str(tmp_path / "nowhere"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "nowhere" in err
