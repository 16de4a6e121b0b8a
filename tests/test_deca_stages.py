"""The staged commands and `ned edit` with ``--backend deca`` (ned.deca.stages), run through the CLI.

Everything the backend needs is built here: a 12-vertex FLAME-format sheet (test_deca_e2e), a
tiny DECA checkpoint whose camera output is pinned so the sheet lands on the face, a tiny
learned manipulator for 51 numbers, and a 12-frame real-face clip (the built-in sample).
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ned.cli import main
from ned.deca import (
    DECA_KEYS,
    MANIPULATOR_INPUTS,
    DecaBackend,
    DecaOptions,
    from_manipulator_output,
    load_deca_params,
    load_pickle,
    read_manipulator_input,
)
from ned.deca.encoder import COARSE_SPLITS
from ned.deca.stages import bridge_landmarks, nearest_vertices, visible_vertices
from ned.layout import load_npz, read_image
from ned.manipulate.checkpoint import checkpoint_path, save_checkpoint
from ned.manipulate.networks import build_networks, create_arch
from ned.media import probe, read_comment
from ned.sample import make_sample_clip
from test_deca import TINY_WIDTH, tiny_checkpoint
from test_deca_e2e import sheet_flame_dict

torch.set_num_threads(1)

FRAMES = 12  # 0.48 s at 25 fps
SHAPES = {"shape": (1, 100), "tex": (1, 50), "exp": (1, 50), "pose": (1, 6), "cam": (1, 3),
          "light": (1, 9, 3), "detail": (1, 128)}


def _offset(name: str) -> int:
    names = [n for n, _ in COARSE_SPLITS]
    return sum(size for _, size in COARSE_SPLITS[:names.index(name)])


def write_deca_dir(folder: Path) -> Path:
    """generic_model.pkl (the sheet, plain arrays) and a deca_model.tar whose coarse encoder
    outputs an upright pose and a camera that puts the sheet on the face (small weights, so
    the expression still varies a little from frame to frame)."""
    folder.mkdir(parents=True)
    (folder / "generic_model.pkl").write_bytes(pickle.dumps(sheet_flame_dict(), protocol=2))
    checkpoint = tiny_checkpoint(folder / "deca_model.tar", detail=False)
    head = checkpoint["E_flame"]
    head["layers.2.weight"] = head["layers.2.weight"] * 0.01
    bias = torch.zeros_like(head["layers.2.bias"])
    bias[_offset("exp"):_offset("exp") + 50] = torch.linspace(-0.5, 0.5, 50)
    bias[_offset("cam")] = 9.0
    head["layers.2.bias"] = bias
    torch.save(checkpoint, folder / "deca_model.tar")
    return folder


def write_manipulator(folder: Path, input_dim: int = MANIPULATOR_INPUTS, backend: str = "deca") -> Path:
    torch.manual_seed(0)
    nets = build_networks(create_arch("ned_small", input_dim=input_dim, generator_hidden=16, encoder_hidden=8,
                                      mapping_hidden=8), with_discriminator=False)
    payload = {key: module.state_dict() for key, module in nets.modules().items()}
    payload.update(backend=backend, arch=nets.arch.to_dict(), version=1, epoch=1, step=1)
    save_checkpoint(checkpoint_path(folder, 1), payload)
    return folder


@pytest.fixture(scope="module", autouse=True)
def tiny_encoder_width():
    """The commands build DECA's encoders at DECA's width; the test checkpoint is narrower."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("ned.deca.stages.deca_options", lambda: DecaOptions(encoder_width=TINY_WIDTH))
        yield


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("deca_stages")
    return {"deca": write_deca_dir(root / "deca"), "ckpt": write_manipulator(root / "ckpt"),
            "clip": make_sample_clip(root / "clip.mp4", seconds=FRAMES / 25, fps=25), "root": root}


@pytest.fixture(scope="module")
def backend(files) -> DecaBackend:
    return DecaBackend(files["deca"], DecaOptions(encoder_width=TINY_WIDTH))


@pytest.fixture(scope="module")
def celeb(files) -> Path:
    """A <celeb_path> preprocessed with --backend deca in test mode."""
    root = files["root"] / "celeb"
    (root / "videos").mkdir(parents=True)
    shutil.copy(files["clip"], root / "videos" / "clip.mp4")
    code = main(["preprocess", str(root), "--mode", "test", "--backend", "deca", "--deca_dir", str(files["deca"]),
                 "--quiet"])
    assert code == 0
    return root


@pytest.fixture(scope="module")
def happy(celeb, files) -> Path:
    code = main(["manipulate", str(celeb), "--exp_name", "happy", "--trg_emotions", "happy", "--backend", "deca",
                 "--deca_dir", str(files["deca"]), "--checkpoints_dir", str(files["ckpt"]), "--quiet"])
    assert code == 0
    return celeb / "happy"


def _one_line_error(capsys, code: int, expected_code: int, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == expected_code, err
    assert "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# --- the bridge ---------------------------------------------------------------------------

class TestBridge:
    def test_bridge_landmarks_hand_computed(self):
        src = np.array([[0.0, 0.0, 1.0], [10.0, 0.0, 2.0], [0.0, 10.0, 3.0]], np.float32)
        dst = src + np.array([[1.0, 2.0, 9.0], [0.0, -1.0, 9.0], [5.0, 5.0, 9.0]], np.float32)
        landmarks = np.array([[1.0, 1.0, 7.0], [9.0, 1.0, 8.0]], np.float32)
        nearest = nearest_vertices(landmarks, src)
        assert nearest.tolist() == [0, 1]
        out = bridge_landmarks(landmarks, src, dst, nearest)
        np.testing.assert_allclose(out, [[2.0, 3.0, 7.0], [9.0, 0.0, 8.0]])  # x, y move; z kept

    def test_nearest_only_among_candidates(self):
        vertices = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
        points = np.array([[1.0, 0.0]])
        assert nearest_vertices(points, vertices, np.array([False, True, True])).tolist() == [1]
        assert nearest_vertices(points, vertices, np.zeros(3, bool)).tolist() == [0]  # none allowed: all
        with pytest.raises(ValueError, match="NaN"):
            nearest_vertices(np.array([[np.nan, 0.0]]), vertices)

    def test_hidden_and_back_facing_vertices_are_not_visible(self):
        front = [[10, 10, 5], [10, 40, 5], [40, 10, 5]]  # FLAME winding (CCW with y up) faces the camera
        behind = [[12, 12, 50], [12, 30, 50], [30, 12, 50]]  # same facing, fully covered, farther
        away = [[60, 60, 5], [90, 60, 5], [60, 90, 5]]  # reversed winding: back-facing
        vertices = np.array(front + behind + away, np.float64)
        faces = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
        visible = visible_vertices(vertices, faces, (100, 100))
        assert visible.tolist() == [True] * 3 + [False] * 6


# --- preprocess ----------------------------------------------------------------------------

def test_preprocess_writes_ned_deca_files_and_flame_nmfcs(celeb, backend):
    files = sorted((celeb / "DECA").glob("*.pkl"))
    assert [f.name for f in files] == [f"{i:06d}.pkl" for i in range(FRAMES)]
    raw = load_pickle(files[3])
    assert set(raw) == set(DECA_KEYS)
    for key, shape in SHAPES.items():
        assert np.asarray(raw[key]).shape == shape, key
    assert tuple(raw["original_size"]) == (256, 256)  # DECA ran on the images/ crops, as NED does
    params = load_deca_params(files[3])
    image = read_image(celeb / "images" / "000003.png")
    assert image.shape == (256, 256, 3)
    nmfc = read_image(celeb / "nmfcs" / "000003.png")
    np.testing.assert_array_equal(nmfc, backend.render_nmfc(params))  # the FLAME mesh, not our mesh
    assert nmfc.any(axis=2).sum() > 500
    for folder in ("nmfcs_aligned", "shapes", "shapes_aligned"):
        assert read_image(celeb / folder / "000003.png").any(), folder
    assert (celeb / ".ned" / "preprocess_deca_test.json").exists()


def test_preprocess_resumes_only_missing_frames(celeb, files):
    kept, removed = celeb / "DECA" / "000001.pkl", celeb / "DECA" / "000005.pkl"
    before = kept.stat().st_mtime_ns
    removed.unlink()
    assert main(["preprocess", str(celeb), "--mode", "test", "--backend", "deca", "--deca_dir",
                 str(files["deca"]), "--quiet"]) == 0
    assert removed.exists() and kept.stat().st_mtime_ns == before


# --- manipulate ----------------------------------------------------------------------------

def test_manipulate_writes_ned_outputs_flame_renders_and_bridged_landmarks(celeb, happy, backend):
    outputs = sorted((happy / "DECA").glob("*.pkl"))
    assert len(outputs) == FRAMES
    for folder in ("face3d", "nmfcs", "nmfcs_aligned", "shapes", "shapes_aligned", "eye_landmarks",
                   "eye_landmarks_aligned"):
        assert len(list((happy / folder).iterdir())) == FRAMES, folder
    out = load_pickle(outputs[4])
    assert set(out) == {"exp", "pose"} and out["exp"].shape == (1, 50) and out["pose"].shape == (1, 6)
    source = load_deca_params(celeb / "DECA" / "000004.pkl")
    assert out["pose"][0, 3] == pytest.approx(source.pose[0, 3])  # jaw opening kept (speech)
    assert np.count_nonzero(out["pose"]) <= 1
    assert not np.allclose(out["exp"], source.exp)
    edited = from_manipulator_output(source, read_manipulator_input(outputs[4]))
    np.testing.assert_array_equal(read_image(happy / "nmfcs" / "000004.png"), backend.render_nmfc(edited))

    f = load_npz(happy / "face3d" / "000004.npz")
    moved = np.abs(f["landmarks"][:, :2] - f["source_landmarks"][:, :2]).max()
    assert np.isfinite(f["landmarks"]).all() and moved > 0.01
    np.testing.assert_array_equal(f["landmarks"][:, 2], f["source_landmarks"][:, 2])
    np.testing.assert_allclose(f["deca_expression"], read_manipulator_input(outputs[4]), rtol=1e-6)
    assert f["deca_source"].shape == (MANIPULATOR_INPUTS,)


def test_manipulate_reference_driven(celeb, happy, files):
    code = main(["manipulate", str(celeb), "--exp_name", "ref", "--ref_dirs", str(celeb / "DECA"), "--backend",
                 "deca", "--deca_dir", str(files["deca"]), "--checkpoints_dir", str(files["ckpt"]), "--quiet"])
    assert code == 0
    label = load_pickle(happy / "DECA" / "000006.pkl")["exp"]
    ref = load_pickle(celeb / "ref" / "DECA" / "000006.pkl")["exp"]
    assert ref.shape == (1, 50) and not np.allclose(label, ref)


# --- postprocess and edit ------------------------------------------------------------------

def test_postprocess_renders_the_deca_manipulation(celeb, happy):
    assert main(["postprocess", str(celeb), "--exp_name", "happy", "--backend", "deca", "--quiet"]) == 0
    video = happy / "clip.mp4"
    assert probe(video).frame_count == FRAMES
    assert len(list((happy / "full_frames").iterdir())) == FRAMES


def test_edit_streams_with_deca_expressions(files, tmp_path):
    out = tmp_path / "out.mp4"
    code = main(["edit", str(files["clip"]), "-o", str(out), "--emotion", "happy", "--backend", "deca",
                 "--deca_dir", str(files["deca"]), "--checkpoints_dir", str(files["ckpt"]), "--quiet"])
    assert code == 0
    info, source = probe(out), probe(files["clip"])
    assert info.frame_count == source.frame_count == FRAMES and info.fps == source.fps
    assert "DECA backend" in read_comment(out)


# --- errors --------------------------------------------------------------------------------

def test_backend_deca_without_deca_dir(files, tmp_path, capsys):
    code = main(["edit", str(files["clip"]), "-o", str(tmp_path / "o.mp4"), "--emotion", "happy",
                 "--backend", "deca", "--checkpoints_dir", str(files["ckpt"])])
    _one_line_error(capsys, code, 2, "--deca_dir")
    code = main(["preprocess", str(tmp_path), "--backend", "deca"])
    _one_line_error(capsys, code, 2, "--deca_dir")


def test_missing_flame_file_is_named(files, tmp_path, capsys):
    empty = tmp_path / "deca"
    empty.mkdir()
    (tmp_path / "videos").mkdir()
    shutil.copy(files["clip"], tmp_path / "videos" / "clip.mp4")
    code = main(["preprocess", str(tmp_path), "--backend", "deca", "--deca_dir", str(empty), "--quiet"])
    _one_line_error(capsys, code, 4, "generic_model.pkl", "flame.is.tue.mpg.de")
    assert not (tmp_path / "images").exists()  # checked before any work


def test_deca_without_checkpoint_needs_a_learned_manipulator(celeb, files, tmp_path, capsys):
    code = main(["manipulate", str(celeb), "--exp_name", "x", "--trg_emotions", "happy", "--backend", "deca",
                 "--deca_dir", str(files["deca"])])
    _one_line_error(capsys, code, 4, "learned manipulator checkpoint", "--checkpoints_dir")
    code = main(["edit", str(files["clip"]), "-o", str(tmp_path / "o.mp4"), "--emotion", "happy", "--backend",
                 "deca", "--deca_dir", str(files["deca"]), "--manipulator", "training-free"])
    _one_line_error(capsys, code, 4, "learned manipulator checkpoint")
    assert not (celeb / "x").exists() and not (tmp_path / "o.mp4").exists()


def test_checkpoint_of_the_other_backend_is_refused(celeb, files, tmp_path, capsys):
    face3d_ckpt = write_manipulator(tmp_path / "face3d_ckpt", input_dim=12, backend="face3d")
    code = main(["manipulate", str(celeb), "--exp_name", "x", "--trg_emotions", "happy", "--backend", "deca",
                 "--deca_dir", str(files["deca"]), "--checkpoints_dir", str(face3d_ckpt)])
    _one_line_error(capsys, code, 4, "--backend face3d")


def test_missing_deca_file_is_named(celeb, files, tmp_path, capsys):
    copy = tmp_path / "celeb"
    shutil.copytree(celeb, copy, ignore=shutil.ignore_patterns("happy", "ref", "full_frames", "faces*", "masks*"))
    (copy / "DECA" / "000007.pkl").unlink()
    code = main(["manipulate", str(copy), "--exp_name", "x", "--trg_emotions", "happy", "--backend", "deca",
                 "--deca_dir", str(files["deca"]), "--checkpoints_dir", str(files["ckpt"])])
    _one_line_error(capsys, code, 2, "000007.pkl is missing", "--backend deca")
    code = main(["postprocess", str(copy), "--exp_name", "happy", "--backend", "deca"])
    _one_line_error(capsys, code, 2, "DECA is missing", "ned manipulate")
