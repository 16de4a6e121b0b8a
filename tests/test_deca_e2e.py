"""DECA backend end to end: frames -> DECA/*.pkl -> learned manipulator (51 numbers) ->
manipulated DECA files -> FLAME mesh -> NMFC / shape images, on small files built here.

The FLAME model is a 4x3 vertex sheet facing the camera (so the rasteriser has something
to draw); the DECA checkpoint and the manipulator have random weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from ned.deca import (
    MANIPULATOR_INPUTS,
    DecaBackend,
    DecaOptions,
    deca_file_name,
    from_manipulator_output,
    list_deca_files,
    load_deca_params,
    read_manipulator_input,
    save_deca_params,
    save_manipulated,
    to_manipulator_input,
)
from ned.deca.render import render_flame_nmfc, render_vertex_values, screen_triangles
from ned.manipulate.learned import translate_sequence
from ned.manipulate.networks import build_networks, create_arch
from test_deca import TINY_WIDTH, fake_chumpy, flame_pickle_bytes, tiny_checkpoint  # noqa: F401 (fixture)

torch.set_num_threads(1)

ROWS, COLS = 3, 4
FRAME_H, FRAME_W = 200, 240
CAMERA = np.array([[9.0, 0.0, 0.0]], np.float32)  # the sheet (0.1 wide) spans ~100 crop pixels


def _index(row: int, col: int) -> int:
    return row * COLS + col


def sheet_flame_dict(seed: int = 0) -> dict:
    """A FLAME-format model whose mesh is a sheet facing +z; the bottom row follows the jaw."""
    rng = np.random.default_rng(seed)
    xs, ys = np.linspace(-0.05, 0.05, COLS), np.linspace(-0.05, 0.05, ROWS)
    grid = np.array([[x, y, 0.01 * (1 - (x * x + y * y) / 0.005)] for y in ys for x in xs])
    faces = []
    for r in range(ROWS - 1):
        for c in range(COLS - 1):
            a, b, cc, d = _index(r, c), _index(r, c + 1), _index(r + 1, c + 1), _index(r + 1, c)
            faces += [[a, b, cc], [a, cc, d]]  # counter-clockwise seen from +z (FLAME's winding)
    n = ROWS * COLS
    regressor = np.zeros((5, n))
    regressor[[0, 1, 2, 3, 4], [_index(1, 1), _index(1, 2), _index(1, 1), _index(2, 1), _index(2, 2)]] = 1.0
    weights = np.zeros((n, 5))
    weights[:, 0] = 1.0
    weights[[_index(0, c) for c in range(COLS)]] = [0, 0, 1, 0, 0]
    shapedirs = rng.normal(size=(n, 3, 400)) * 1e-4
    shapedirs[:, :, 300:350] = rng.normal(size=(n, 3, 50)) * 2e-3  # expression moves vertices by pixels
    return {
        "v_template": grid, "shapedirs": shapedirs, "posedirs": np.zeros((n, 3, 36)),
        "J_regressor": sp.csc_matrix(regressor),
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "weights": weights, "f": np.array(faces, dtype=np.uint32),
    }


@pytest.fixture()
def backend(tmp_path, fake_chumpy) -> DecaBackend:
    folder = tmp_path / "deca"
    folder.mkdir()
    (folder / "generic_model.pkl").write_bytes(flame_pickle_bytes(sheet_flame_dict(), fake_chumpy, "py2"))
    tiny_checkpoint(folder / "deca_model.tar")
    return DecaBackend(folder, DecaOptions(encoder_width=TINY_WIDTH))


def _preprocess(backend: DecaBackend, out, frames: int) -> None:
    """What `preprocess --backend deca` does per frame, with a sane camera (random weights give any)."""
    rng = np.random.default_rng(0)
    out.mkdir(parents=True)
    for index in range(frames):
        frame = rng.integers(0, 256, (FRAME_H, FRAME_W, 3), dtype=np.uint8)
        points = np.array([[70.0, 40.0], [170.0, 160.0]]) + rng.normal(size=2)
        params = backend.encode_frame(frame, points)
        pose = np.zeros((1, 6), np.float32)
        pose[0, 3] = 0.05 * np.sin(index)  # speech: the jaw opens and closes
        params = params.replace(cam=CAMERA, pose=pose, exp=params.exp * 0.1)
        save_deca_params(out / deca_file_name(index), params)


class TestRender:
    def test_front_facing_sheet_is_drawn(self, backend):
        params = load_deca_params_from(backend)
        nmfc = backend.render_nmfc(params)
        assert nmfc.shape == (FRAME_H, FRAME_W, 3) and nmfc.dtype == np.uint8
        covered = nmfc.any(axis=2)
        assert covered.sum() > 2000  # ~ (100 px / crop scale)^2 of face
        assert not covered[0].any() and not covered[:, 0].any()  # background stays 0
        shape = backend.render_shape(params)
        assert (shape.any(axis=2) == covered).mean() > 0.99

    def test_back_facing_sheet_is_culled(self, backend):
        params = load_deca_params_from(backend)
        turned = params.replace(pose=np.array([[0.0, np.pi, 0, 0, 0, 0]], np.float32))
        assert not backend.render_nmfc(turned).any()

    def test_interpolation_hand_computed(self):
        vertices = np.array([[0.0, 0.0, 0.0], [0.0, 10.0, 0.0], [10.0, 0.0, 0.0]])
        faces = np.array([[0, 1, 2]])  # FLAME winding: CCW with y up = clockwise with y down
        values = np.array([[0.0], [1.0], [2.0]])
        image = render_vertex_values(vertices, faces, values, (12, 12))
        assert image[0, 0, 0] == pytest.approx(0.0) and image[5, 0, 0] == pytest.approx(0.5)
        assert image[0, 5, 0] == pytest.approx(1.0) and image[2, 3, 0] == pytest.approx(0.2 + 0.6)
        assert screen_triangles(faces).tolist() == [[0, 2, 1]]

    def test_nmfc_colours_are_template_coordinates(self, backend):
        params = load_deca_params_from(backend)
        vertices = backend.vertices_frame(params)
        nmfc = render_flame_nmfc(vertices, backend.faces, backend.nmfc_colors, (FRAME_H, FRAME_W))
        corner = np.round(vertices[_index(1, 1), :2]).astype(int)
        expected = backend.nmfc_colors[_index(1, 1)] * 255
        np.testing.assert_allclose(nmfc[corner[1], corner[0]], expected, atol=12)


def load_deca_params_from(backend: DecaBackend):
    frame = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    params = backend.encode_frame(frame, np.array([[70.0, 40.0], [170.0, 160.0]]))
    return params.replace(cam=CAMERA, pose=np.zeros((1, 6), np.float32), exp=np.zeros((1, 50), np.float32))


def test_deca_numbers_through_the_learned_manipulator_to_nmfcs(backend, tmp_path):
    frames = 14
    celeb = tmp_path / "celeb"
    _preprocess(backend, celeb / "DECA", frames)

    # the manipulator's input: [jaw opening, 50 expression] per frame, read as NED's test loader does
    source_files = list_deca_files(celeb / "DECA")
    expressions = np.stack([read_manipulator_input(path) for path in source_files])
    assert expressions.shape == (frames, MANIPULATOR_INPUTS)
    source = [load_deca_params(path) for path in source_files]
    np.testing.assert_array_equal(expressions[3], to_manipulator_input(source[3]))

    torch.manual_seed(0)
    nets = build_networks(create_arch("ned_small", input_dim=MANIPULATOR_INPUTS), with_discriminator=False).eval()
    happy = translate_sequence(nets, expressions.astype(np.float32), "happy", seed=0)
    assert happy.shape == expressions.shape and np.isfinite(happy).all()

    # the manipulator's output files (NED's format: exp + pose[0, 3] only), then rendering
    out = celeb / "happy" / "DECA"
    out.mkdir(parents=True)
    changed = 0
    for path, params, values in zip(source_files, source, happy):
        save_manipulated(out / path.name, values)
        edited = from_manipulator_output(params, read_manipulator_input(out / path.name))
        np.testing.assert_allclose(to_manipulator_input(edited), values, rtol=1e-6)
        np.testing.assert_array_equal(edited.cam, params.cam)
        before, after = backend.render_nmfc(params), backend.render_nmfc(edited)
        assert after.shape == (FRAME_H, FRAME_W, 3) and after.any()
        changed += int((before != after).any())
        moved = np.abs(backend.vertices_frame(edited) - backend.vertices_frame(params))[:, :2].max()
        assert moved > 0.1  # pixels: the new expression moves the mesh
    assert changed == frames
