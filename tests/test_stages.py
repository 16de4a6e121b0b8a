"""The staged commands: preprocess -> manipulate -> postprocess, and the seed's scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ned.cli import main
from ned.errors import InputError, ModelFileError, OutputError
from ned.layout import count_frame_files, load_npz
from ned.manipulate.celeb import manipulate_celeb
from ned.manipulate.plan import ManipulationSpec
from ned.media import probe, read_comment
from ned.morph.rig import BLINK_SHAPES, EDIT_KEPT_SHAPES, KEPT_SHAPES
from ned.postprocess import postprocess_celeb
from ned.preprocess import PreprocessOptions, preprocess_celeb
from ned.sample import make_sample_clip

REPO = Path(__file__).resolve().parents[1]
N = 15


@pytest.fixture(scope="module")
def celeb(tmp_path_factory) -> Path:
    """A <celeb_path> preprocessed in test mode: one 15-frame sample clip with audio."""
    root = tmp_path_factory.mktemp("celeb")
    (root / "videos").mkdir()
    make_sample_clip(root / "videos" / "clip.mp4", seconds=N / 25, fps=25)
    preprocess_celeb(root, PreprocessOptions(mode="test", quiet=True))
    return root


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ref")
    (root / "videos").mkdir()
    make_sample_clip(root / "videos" / "ref.mp4", seconds=12 / 25, fps=25)
    preprocess_celeb(root, PreprocessOptions(mode="reference", quiet=True))
    return root


def _spec(*emotions: str, **kw) -> ManipulationSpec:
    return ManipulationSpec.from_strings(list(emotions), **kw)


def test_manipulate_writes_the_renderer_inputs_and_keeps_speech(celeb):
    out = manipulate_celeb(celeb, "happy_sad", _spec("happy", "sad"), quiet=True)
    for folder in ("face3d", "nmfcs", "nmfcs_aligned", "shapes", "shapes_aligned", "eye_landmarks",
                   "eye_landmarks_aligned"):
        assert len(list((out / folder).iterdir())) == N, folder
    f = load_npz(out / "face3d" / "000004.npz")
    kept = [int(k) for k in EDIT_KEPT_SHAPES]  # speech and gaze exactly; blinks may only narrow (sad)
    assert np.array_equal(f["expression"][kept], f["source_expression"][kept])
    blinks = [int(k) for k in BLINK_SHAPES]
    assert np.all(f["expression"][blinks] >= f["source_expression"][blinks])
    assert not np.array_equal(f["expression"], f["source_expression"])
    assert not any(p.name.startswith(".") for p in celeb.iterdir() if p.name != ".ned")


def test_manipulate_intensity_zero_is_unchanged(celeb):
    out = manipulate_celeb(celeb, "zero", _spec("angry", intensity=0.0), quiet=True)
    f = load_npz(out / "face3d" / "000007.npz")
    assert np.array_equal(f["expression"], f["source_expression"])
    assert np.allclose(f["landmarks"], f["source_landmarks"], atol=1e-4)


def test_manipulate_cli_with_exemplars(celeb, tmp_path):
    """``ned manipulate --exemplars <bank>``: the bank's acted expression is the target."""
    from ned.appearance.exemplars import BankOptions, _write_bank
    from ned.morph.rig import Blendshape

    bank = tmp_path / "bank"
    bank.mkdir()
    delta = np.zeros((1, len(Blendshape)), np.float32)
    delta[0, Blendshape.BROW_DOWN_R] = 0.7
    _write_bank(bank, [{"actor": "a", "emotion": "angry", "crop": "x.png"}], np.zeros((1, 8, 8)),
                np.zeros((1, 468, 2)), delta, delta,
                BankOptions())
    assert main(["manipulate", str(celeb), "--exp_name", "bank", "--trg_emotions", "angry", "--exemplars",
                 str(bank), "--quiet"]) == 0
    f = load_npz(celeb / "bank" / "face3d" / "000007.npz")
    assert f["expression"][Blendshape.BROW_DOWN_R] == pytest.approx(0.7, abs=0.02)
    assert main(["manipulate", str(celeb), "--exp_name", "nobank", "--trg_emotions", "angry", "--exemplars",
                 str(tmp_path / "missing"), "--quiet"]) != 0
    assert not (celeb / "nobank").exists()


def test_existing_exp_name_is_refused_unless_overwrite(celeb):
    manipulate_celeb(celeb, "twice", _spec("sad"), quiet=True)
    with pytest.raises(OutputError, match="--overwrite"):
        manipulate_celeb(celeb, "twice", _spec("sad"), quiet=True)
    manipulate_celeb(celeb, "twice", _spec("fear"), quiet=True, overwrite=True)


def test_missing_preprocessing_says_what_to_run(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(InputError, match="ned preprocess"):
        manipulate_celeb(tmp_path, "x", _spec("happy"))


def test_reference_driven_and_wrong_mode(celeb, reference):
    out = manipulate_celeb(celeb, "ref", _spec(references=[reference / "face3d"]),
                           ref_dirs=(reference / "face3d",), quiet=True)
    assert len(list((out / "face3d").iterdir())) == N
    with pytest.raises(InputError, match="--mode reference"):
        manipulate_celeb(celeb, "badref", _spec(references=[celeb]), ref_dirs=(celeb,), quiet=True)
    assert not (celeb / "badref").exists()


def test_reference_neutral_in_the_staged_manipulate(celeb, reference, tmp_path):
    """--ref_neutral <neutral ref folder>: the reference is measured from its actor's
    neutral face, so an expression it holds all clip long (brows raised) transfers."""
    import shutil

    from ned.manipulate.celeb import neutral_face_model, reference_expressions
    from ned.morph.rig import Blendshape
    from ned.morph.topology import GROUPS

    held = tmp_path / "held"
    shutil.copytree(reference, held)
    brows = list(GROUPS["brow_r"] + GROUPS["brow_l"])
    for f in sorted((held / "face3d").glob("*.npz")):
        data = dict(np.load(f))
        iod = np.linalg.norm(data["landmarks"][33, :2] - data["landmarks"][263, :2])
        data["landmarks"][brows, 1] -= 0.12 * iod  # brows raised in every frame
        np.savez(f, **data)
    up = [Blendshape.BROW_INNER_UP_L, Blendshape.BROW_INNER_UP_R, Blendshape.BROW_OUTER_UP_L,
          Blendshape.BROW_OUTER_UP_R]
    own = reference_expressions(held, neutral=neutral_face_model(held))[:, up].mean()
    measured = reference_expressions(held, neutral=neutral_face_model(reference))[:, up].mean()
    assert measured > own + 0.2, (own, measured)
    assert main(["manipulate", str(celeb), "--exp_name", "refn", "--ref_dirs", str(held / "face3d"),
                 "--ref_neutral", str(reference), "--quiet"]) == 0
    assert json.loads((celeb / "refn" / "manipulation.json").read_text())["reference_neutral"] == str(reference)
    with pytest.raises(InputError, match="--ref_dirs"):
        manipulate_celeb(celeb, "x", _spec("happy", reference_neutral=reference), quiet=True)
    with pytest.raises(InputError, match="--mode reference"):
        neutral_face_model(celeb)


def test_postprocess_writes_folders_and_a_video_like_the_source(celeb):
    manipulate_celeb(celeb, "post", _spec("surprised"), quiet=True)
    (video,) = postprocess_celeb(celeb, "post")
    assert video == celeb / "post" / "clip.mp4"
    src, dst = probe(celeb / "videos" / "clip.mp4"), probe(video)
    assert (dst.frame_count, dst.fps, dst.width, dst.height, dst.has_audio) == \
        (src.frame_count, src.fps, src.width, src.height, True)
    assert read_comment(video) == "edited by ned 0.1.0: surprised"
    for folder, ext in (("full_frames", "jpg"), ("images", "png"), ("faces", "png"), ("faces_aligned", "png")):
        assert count_frame_files(celeb / "post" / folder, ext) == N, folder


def test_postprocess_without_manipulation_says_what_to_run(celeb):
    with pytest.raises(InputError, match="ned manipulate"):
        postprocess_celeb(celeb, "never_made")


def test_seed_manipulator_script_and_checkpoint_folder_rules(celeb, tmp_path):
    script = REPO / "manipulator" / "test.py"
    empty = tmp_path / "ckpt"
    empty.mkdir()
    args = [sys.executable, str(script), "--celeb", str(celeb), "--checkpoints_dir", str(empty),
            "--trg_emotions", "happy", "angry", "--exp_name", "seed_form", "--quiet"]
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert count_frame_files(celeb / "seed_form" / "nmfcs", "png") == N
    (empty / "notes.txt").write_text("not a checkpoint")
    code = main(["manipulate", str(celeb), "--checkpoints_dir", str(empty), "--emotion", "happy",
                 "--exp_name", "bad_ckpt", "--quiet"])
    assert code == ModelFileError.exit_code
    assert not (celeb / "bad_ckpt").exists()


def test_seed_shell_scripts(tmp_path):
    celeb = tmp_path / "c"
    (celeb / "videos").mkdir(parents=True)
    make_sample_clip(celeb / "videos" / "v.mp4", seconds=10 / 25, fps=25)
    env_py = str(Path(sys.executable).parent)
    env = {"PATH": f"{env_py}:/usr/bin:/bin"}
    assert subprocess.run([str(REPO / "preprocess.sh"), str(celeb), "test", "--quiet"], env=env).returncode == 0
    assert main(["manipulate", "--celeb", str(celeb), "--emotion", "sad", "--exp_name", "e", "--quiet"]) == 0
    assert subprocess.run([str(REPO / "postprocess.sh"), str(celeb), "e", "--quiet"], env=env).returncode == 0
    assert probe(celeb / "e" / "v.mp4").frame_count == 10


def test_fewer_than_ten_frames_is_refused(tmp_path):
    celeb = tmp_path / "short"
    (celeb / "videos").mkdir(parents=True)
    make_sample_clip(celeb / "videos" / "s.mp4", seconds=6 / 25, fps=25)
    preprocess_celeb(celeb, PreprocessOptions(mode="test", quiet=True))
    with pytest.raises(InputError, match="at least 10"):
        manipulate_celeb(celeb, "x", _spec("happy"), quiet=True)
    assert not (celeb / "x").exists()


def test_postprocess_with_a_trained_neural_renderer(celeb, tmp_path):
    """`./postprocess.sh <celeb> <exp> <renderer_checkpoint>` selects the neural renderer."""
    ckpt = tmp_path / "renderer"
    assert main(["train-renderer", str(celeb), "--checkpoints_dir", str(ckpt), "--size", "32", "--arch", "unet_tiny",
                 "--steps", "2", "--batch_size", "1", "--device", "cpu", "--quiet"]) == 0
    manipulate_celeb(celeb, "neural", _spec("happy"), quiet=True)
    proc = subprocess.run([str(REPO / "postprocess.sh"), str(celeb), "neural", str(ckpt), "--quiet"],
                          env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert probe(celeb / "neural" / "clip.mp4").frame_count == N
    bad = main(["postprocess", str(celeb), "--exp_name", "neural", "--renderer", "neural",
                "--renderer_checkpoint", str(tmp_path / "none"), "--quiet"])
    assert bad == ModelFileError.exit_code


def test_manipulate_with_a_learned_checkpoint(celeb, tmp_path):
    """A valid checkpoint in --checkpoints_dir selects the learned manipulator (seeded)."""
    import torch

    from ned.manipulate.checkpoint import checkpoint_path, save_checkpoint
    from ned.manipulate.networks import build_networks, create_arch
    from ned.morph.rig import Blendshape

    torch.manual_seed(0)
    nets = build_networks(create_arch("ned_small", input_dim=len(Blendshape), generator_hidden=16,
                                      encoder_hidden=8, mapping_hidden=8))
    payload = {k: m.state_dict() for k, m in nets.modules().items()}
    payload.update(backend="face3d", arch=nets.arch.to_dict(), version=1, epoch=1, step=1)
    save_checkpoint(checkpoint_path(tmp_path, 1), payload)
    for name in ("learned_a", "learned_b"):
        assert main(["manipulate", str(celeb), "--checkpoints_dir", str(tmp_path), "--emotion", "angry",
                     "--exp_name", name, "--seed", "7", "--quiet"]) == 0
    a, b = (load_npz(celeb / n / "face3d" / "000003.npz") for n in ("learned_a", "learned_b"))
    assert np.array_equal(a["expression"], b["expression"])  # seeded: reproducible
    assert not np.array_equal(a["expression"], a["source_expression"])
    kept = [int(k) for k in KEPT_SHAPES]
    assert np.allclose(a["expression"][kept], a["source_expression"][kept])  # speech kept


def test_postprocess_gives_label_frames_their_emotion(celeb, monkeypatch):
    """The staged path renders like `ned edit`: postprocess reads the label segments that
    manipulate recorded, so its appearance step picks exemplars and brow shapes by emotion."""
    import json

    import ned.postprocess as post

    out = manipulate_celeb(celeb, "sad_then_angry", _spec("sad", "angry"), quiet=True)
    manifest = json.loads((out / "manipulation.json").read_text())
    assert manifest["emotions"] == ["sad", "angry"] and manifest["transition_s"] == 0.5
    seen = {}
    real = post.with_brow_motion

    def spy(landmarks, valid, rotation, scale, payloads, appearance, label=None):
        seen["emotions"] = [payloads(t).emotion for t in (0, len(landmarks) - 1)]
        seen["label"] = label
        return real(landmarks, valid, rotation, scale, payloads, appearance, label)

    monkeypatch.setattr(post, "with_brow_motion", spy)
    postprocess_celeb(celeb, "sad_then_angry")
    assert seen["emotions"] == ["sad", "angry"] and "sad" in seen["label"].offsets
    manifest["emotions"] = ["bored"]
    (out / "manipulation.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="manipulation.json"):
        postprocess_celeb(celeb, "sad_then_angry")
