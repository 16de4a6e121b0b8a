"""`ned edit`: the streamed pipeline end to end, on the built-in sample clip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ned.cli import main
from ned.errors import OutputError
from ned.manipulate.plan import ManipulationSpec
from ned.media import EncodeOptions, iter_frames, probe, read_comment
from ned.pipeline import EditOptions, analyse_clip, edit_video, edited_landmarks, make_renderer, render_video
from ned.manipulate.plan import plan_expressions
from ned.render.warp_renderer import RenderOptions
from ned.sample import make_sample_clip


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """1.2 s of the built-in sample (30 frames, 512x512, 25 fps, with a voice track)."""
    return make_sample_clip(tmp_path_factory.mktemp("sample") / "sample.mp4", seconds=1.2, fps=25)


@pytest.fixture(scope="module")
def analysis(sample):
    return analyse_clip(sample, quiet=True)


def _spec(*emotions: str, **kw) -> ManipulationSpec:
    return ManipulationSpec.from_strings(list(emotions), **kw)


def test_edit_keeps_frames_fps_size_audio_and_tags_provenance(tmp_path, sample):
    out = tmp_path / "new" / "happy.mp4"  # the folder is created
    report = edit_video(sample, out, EditOptions(manipulation=_spec("happy"), quiet=True))
    src, dst = probe(sample), probe(out)
    assert (dst.frame_count, dst.fps, dst.width, dst.height) == (src.frame_count, src.fps, src.width, src.height)
    assert dst.has_audio and abs(dst.audio_duration_s - src.audio_duration_s) <= 1 / float(src.fps)
    assert read_comment(out) == "edited by ned 0.1.0: happy"
    assert report.edited_frames == src.frame_count
    # the face changed, the corners of the frame did not (beyond codec noise)
    a = [f.rgb.astype(int) for f in iter_frames(sample)]
    b = [f.rgb.astype(int) for f in iter_frames(out)]
    diff = np.abs(a[15] - b[15]).mean(axis=2)
    assert diff[150:400, 150:380].max() > 20
    assert diff[:40, :40].mean() < 2 and diff[-40:, -40:].mean() < 2


def test_pixels_outside_the_mask_are_bit_identical_before_encoding(tmp_path, sample, analysis):
    new = plan_expressions(analysis.expressions(), _spec("surprised"), [], fps=25.0)
    dst = edited_landmarks(analysis, new)
    source_frames = {f.index: f.rgb for f in iter_frames(sample)}
    checked = []

    def check(t, rgb, mask):
        outside = mask == 0
        assert outside.any() and (mask > 0).any()
        assert np.array_equal(rgb[outside], source_frames[t][outside])
        checked.append(t)

    render_video(sample, tmp_path / "o.mp4", analysis.landmarks, dst, make_renderer(RenderOptions()),
                 info=analysis.info, encode=EncodeOptions(), comment="test", quiet=True, on_frame=check)
    assert len(checked) == analysis.info.frame_count


def test_intensity_zero_leaves_the_parameters_unchanged(analysis):
    src = analysis.expressions()
    new = plan_expressions(src, _spec("angry", intensity=0.0), [], fps=25.0)
    assert np.array_equal(new, src)
    assert np.allclose(edited_landmarks(analysis, new), analysis.landmarks, atol=1e-4)


def test_edit_is_deterministic(analysis):
    a = plan_expressions(analysis.expressions(), _spec("happy", "sad:0.5", seed=3), [], fps=25.0)
    b = plan_expressions(analysis.expressions(), _spec("happy", "sad:0.5", seed=3), [], fps=25.0)
    assert np.array_equal(a, b)


def test_output_equal_to_input_is_refused(sample):
    with pytest.raises(OutputError, match="input"):
        edit_video(sample, sample, EditOptions(manipulation=_spec("happy"), quiet=True))


def test_unwritable_output_folder(tmp_path, sample):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        edit_video(sample, blocker / "out.mp4", EditOptions(manipulation=_spec("happy"), quiet=True))


def test_interrupt_leaves_no_file_under_the_final_name(tmp_path, sample, analysis, monkeypatch):
    out = tmp_path / "o.mp4"

    def stop(t, rgb, mask):
        if t == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render_video(sample, out, analysis.landmarks, analysis.landmarks, make_renderer(RenderOptions()),
                     info=analysis.info, encode=EncodeOptions(), comment="t", quiet=True, on_frame=stop)
    assert list(tmp_path.iterdir()) == []


def test_disk_full_is_an_error_and_removes_the_partial_file(tmp_path, sample):
    out = tmp_path / "o.mp4"
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); "
            f"from ned.cli import main; sys.exit(main(['edit', {str(sample)!r}, '-o', {str(out)!r}, "
            "'--emotion', 'happy', '--quiet']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert "disk full" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_edit_and_bad_emotion(tmp_path, sample, capsys):
    out = tmp_path / "o.mp4"
    assert main(["edit", str(sample), "-o", str(out), "--trg_emotions", "surprise:0.7", "--quiet"]) == 0
    assert read_comment(out) == "edited by ned 0.1.0: surprised:0.7"
    assert main(["edit", str(sample), "-o", str(out), "--emotion", "bored", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown emotion 'bored'" in err and "happy" in err and len(err.strip().splitlines()) == 1


def test_cli_edit_with_own_frames(tmp_path, sample):
    """--own-frames on a clip that never shows the target emotion: nothing is lent, the
    edit is the plain label edit, frame for frame."""
    out, plain = tmp_path / "own.mp4", tmp_path / "plain.mp4"
    assert main(["edit", str(sample), "-o", str(out), "--emotion", "sad", "--own-frames", "--quiet"]) == 0
    assert main(["edit", str(sample), "-o", str(plain), "--emotion", "sad", "--quiet"]) == 0
    assert probe(out).frame_count == probe(sample).frame_count
    a = np.stack([f.rgb for f in iter_frames(out)]).astype(int)
    b = np.stack([f.rgb for f in iter_frames(plain)]).astype(int)
    assert np.abs(a - b).max() <= 1


def test_cli_transfer_limit(tmp_path, sample, capsys):
    """--transfer-limit: a negative limit is refused with a one-line reason; 0 means none."""
    from ned.commands._common import _limit

    with pytest.raises(SystemExit) as stop:
        main(["edit", str(sample), "-o", str(tmp_path / "o.mp4"), "--emotion", "happy", "--transfer-limit", "-1"])
    assert stop.value.code == 2
    assert "--transfer-limit: must be a finite number >= 0" in capsys.readouterr().err
    assert _limit("0") is None and _limit("0.4") == 0.4
    assert not (tmp_path / "o.mp4").exists()


def test_cli_lid_closure(tmp_path, sample, capsys):
    """--lid-closure: outside [0, 1] is refused with a one-line reason; 0 means none; the
    value reaches the manipulator's options."""
    from ned.cli import build_parser
    from ned.commands._common import manipulation_spec

    with pytest.raises(SystemExit) as stop:
        main(["edit", str(sample), "-o", str(tmp_path / "o.mp4"), "--emotion", "sad", "--lid-closure", "1.5"])
    assert stop.value.code == 2
    assert "--lid-closure: must be in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()
    for text, value in (("0", None), ("0.2", 0.2)):
        argv = ["edit", str(sample), "-o", "x.mp4", "--emotion", "sad", "--lid-closure", text]
        args = build_parser(argv).parse_args(argv)
        assert manipulation_spec(args).manipulate_options().lid_closure_limit == value


def test_cli_edit_needs_a_target(tmp_path, sample, capsys):
    assert main(["edit", str(sample), "-o", str(tmp_path / "o.mp4"), "--quiet"]) == 2
    assert "--emotion" in capsys.readouterr().err


def test_reference_driven_edit_with_a_reference_neutral_clip(tmp_path, sample):
    """--ref with --ref-neutral: the reference is measured from its actor's neutral clip."""
    out = tmp_path / "ref.mp4"
    assert main(["edit", str(sample), "-o", str(out), "--ref", str(sample), "--ref-neutral", str(sample),
                 "--quiet"]) == 0
    assert probe(out).frame_count == probe(sample).frame_count
    assert read_comment(out) == f"edited by ned 0.1.0: reference {sample.name}"
