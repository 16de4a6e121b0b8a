"""Brow motion the mesh misses (ned.appearance.brows): measured on textures the test draws."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from ned.appearance.brows import (
    MAX_OFFSET_IOD,
    add_brow_motion,
    brow_offset,
    frame_brow_offsets,
    load_label_brows,
    with_brow_motion,
    with_brow_offsets,
)
from ned.appearance.exemplars import ExemplarBank
from ned.appearance.hook import AppearanceFrame, ExpressionAppearance, ReferenceFrame
from ned.appearance.options import AppearanceOptions
from ned.appearance.texture import uv_raster
from ned.morph.rig import Blendshape
from ned.morph.topology import load_topology

S = 192


def _texture(brow_shift: tuple[float, float] = (0.0, 0.0), inner_lift: float = 0.0,
             global_shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """A skin-grey texture with faint pores, two dark brows along the mesh's brow rows, and
    dark eye and nostril marks; brows moved by ``brow_shift`` texels, their inner halves
    lifted by ``inner_lift`` more; everything moved by ``global_shift``."""
    raster, topo = uv_raster(S), load_topology()
    rng = np.random.default_rng(5)
    tex = 0.6 + 0.12 * cv2.GaussianBlur(rng.standard_normal((S, S)).astype(np.float32), (0, 0), 1.5)
    for side in ("r", "l"):
        for row in (topo.group(f"brow_{side}")[:5], topo.group(f"brow_{side}")[5:]):
            pts = raster.uv_px[list(row)].copy()  # outer -> inner
            pts += np.asarray(brow_shift)
            pts[:, 1] -= inner_lift * np.linspace(0.0, 1.0, len(pts))
            cv2.polylines(tex, [np.round(pts * 16).astype(np.int32)], False, 0.15, 3, cv2.LINE_AA, shift=4)
        eye = raster.uv_px[list(topo.group(f"eye_{side}"))]
        cv2.fillPoly(tex, [np.round(eye * 16).astype(np.int32)], 0.2, cv2.LINE_AA, shift=4)
    for x, y in raster.uv_px[list(topo.group("nose_wings"))]:
        cv2.circle(tex, (int(round(x)), int(round(y))), 2, 0.3, -1)
    m = np.float32([[1, 0, global_shift[0]], [0, 1, global_shift[1]]])
    return cv2.warpAffine(tex, m, (S, S), borderMode=cv2.BORDER_REFLECT)


def _brow_rows() -> tuple[list[int], list[int]]:
    topo = load_topology()
    return list(topo.group("brow_r")) + list(topo.group("brow_l")), \
        list(topo.group("eye_r_upper")) + list(topo.group("face_oval"))


def test_raised_brows_are_measured_and_stay_off_the_lids_and_outline():
    raster = uv_raster(S)
    brows, still = _brow_rows()
    up = 4.0  # texels
    offsets = brow_offset(_texture(), _texture(brow_shift=(0.0, -up)), raster)
    assert offsets.shape == (468, 2) and offsets.dtype == np.float32
    rise = -offsets[brows, 1] * raster.iod_texels
    assert np.median(rise) == pytest.approx(up, abs=1.2), rise
    assert np.abs(offsets[brows, 0]).max() * raster.iod_texels < 1.5
    assert np.abs(offsets[still]).max() == 0.0
    # far from the brows (chin, mouth) nothing moves
    topo = load_topology()
    assert np.abs(offsets[list(topo.group("chin")) + list(topo.group("lips_outer"))]).max() == 0.0


def test_an_oblique_brow_lifts_the_inner_end_more():
    raster, topo = uv_raster(S), load_topology()
    offsets = brow_offset(_texture(), _texture(inner_lift=5.0), raster)
    inner = list(topo.group("brow_r_inner")) + list(topo.group("brow_l_inner"))
    outer = list(topo.group("brow_r_outer")) + list(topo.group("brow_l_outer"))
    assert -offsets[inner, 1].mean() > -offsets[outer, 1].mean() + 1.5 / raster.iod_texels


def test_unchanged_or_globally_misregistered_textures_give_no_brow_motion():
    raster = uv_raster(S)
    brows, _ = _brow_rows()
    assert np.abs(brow_offset(_texture(), _texture(), raster)).max() < 0.2 / raster.iod_texels
    shifted = brow_offset(_texture(), _texture(global_shift=(2.0, 3.0)), raster)
    assert np.abs(shifted[brows]).max() < 1.0 / raster.iod_texels


def test_a_change_of_lighting_is_not_brow_motion():
    raster = uv_raster(S)
    brows, _ = _brow_rows()
    rows = np.arange(S, dtype=np.float32)[:, None]
    light = 1.0 + 0.5 * np.exp(-0.5 * ((rows - 20.0) / (0.25 * raster.iod_texels)) ** 2)  # a lit band above the brows
    # (read as 0.2 texel of motion on the raw luminance, 0.075 on the detail)
    assert np.abs(brow_offset(_texture(), _texture() * light, raster)[brows]).max() < 0.12 / raster.iod_texels


def test_a_mismatch_is_clamped():
    raster = uv_raster(S)
    offsets = brow_offset(_texture(), _texture(brow_shift=(0.0, -30.0)), raster)
    assert np.linalg.norm(offsets, axis=1).max() <= MAX_OFFSET_IOD + 1e-6


def _frame(texture: np.ndarray, expression: np.ndarray | None = None) -> ReferenceFrame:
    """A ReferenceFrame whose image, seen through its mesh, is ``texture``: the texture itself
    as the image, with the mesh at the texture's own vertex positions."""
    raster = uv_raster(S)
    image = np.repeat((texture * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    return ReferenceFrame(image, raster.uv_px.astype(np.float32), expression)


def test_reference_frames_carry_smoothed_offsets():
    raster = uv_raster(S)
    brows, _ = _brow_rows()
    frames = [_frame(_texture(brow_shift=(0.0, -4.0 if k % 2 else 0.0))) for k in range(6)]
    out = with_brow_offsets(frames, [_frame(_texture())], raster)
    assert len(out) == 6 and all(f.brow_offset is not None for f in out)
    rises = [-np.median(f.brow_offset[brows, 1]) * raster.iod_texels for f in out]
    # a brow that flickers up every other frame is smoothed to a steady part of its rise
    assert all(0.5 < r < 3.5 for r in rises[1:-1]), rises
    assert with_brow_offsets(frames, [], raster) == tuple(frames)


def _sad_frame() -> tuple[np.ndarray, np.ndarray]:
    k = len(Blendshape)
    offset = np.zeros((468, 2), np.float32)
    offset[:, 1] = -0.05
    expr = np.zeros(k, np.float32)
    expr[Blendshape.BROW_INNER_UP_L] = expr[Blendshape.BROW_INNER_UP_R] = 0.4
    return expr, offset


def test_offsets_follow_how_much_of_the_reference_emotion_the_frame_takes():
    k = len(Blendshape)
    ref_expr, offset = _sad_frame()
    ref = ReferenceFrame(np.zeros((8, 8, 3), np.uint8), np.zeros((468, 2), np.float32), ref_expr, offset)
    neutral = _frame(_texture(), np.zeros(k, np.float32))
    source = np.zeros(k, np.float32)
    targets = [source, 0.5 * ref_expr, ref_expr]
    app = ExpressionAppearance(AppearanceOptions(), reference_neutral=[neutral])
    offsets = frame_brow_offsets(lambda t: AppearanceFrame(source, targets[t], t, reference=ref), 3, app)
    assert offsets[:, 0, 1] == pytest.approx([0.0, -0.025, -0.05])
    # nothing lends detail: no offsets; the maps mode takes nothing from references
    assert frame_brow_offsets(lambda t: AppearanceFrame(source, source, t), 3, app) is None
    maps_only = ExpressionAppearance(AppearanceOptions(mode="maps"), reference_neutral=[neutral])
    assert frame_brow_offsets(lambda t: AppearanceFrame(source, targets[t], t, reference=ref), 3, maps_only) is None


def test_an_exemplar_bank_lends_its_exemplars_brows_in_label_mode():
    k = len(Blendshape)
    sad, offset = _sad_frame()
    happy = np.zeros(k, np.float32)
    happy[Blendshape.LIP_CORNER_PULL_L] = happy[Blendshape.LIP_CORNER_PULL_R] = 0.8
    bank = ExemplarBank(np.array(["sad", "happy"]), np.array(["a", "a"]), np.stack([sad, happy]),
                        np.stack([sad, happy]), np.zeros((2, S, S), np.float32), np.array(["", ""]), Path(),
                        brow_offsets=np.stack([offset, np.zeros_like(offset)]))
    app = ExpressionAppearance(AppearanceOptions(exemplars=1), bank=bank)
    source = np.zeros(k, np.float32)
    offsets = frame_brow_offsets(lambda t: AppearanceFrame(source, [sad, happy][t], t, emotion=["sad", "happy"][t]),
                                 2, app)
    assert offsets[0, 0, 1] == pytest.approx(-0.05) and np.abs(offsets[1]).max() == 0.0
    # a version-1 bank (no brow offsets) lends none
    old = dataclasses.replace(bank, brow_offsets=None)
    assert frame_brow_offsets(lambda t: AppearanceFrame(source, sad, t, emotion="sad"), 1,
                              ExpressionAppearance(AppearanceOptions(exemplars=1), bank=old)) is None


def test_brow_motion_goes_through_each_frames_pose():
    t = 2
    lm = np.zeros((t, 478, 3), np.float32)
    lm[1, :] = np.nan
    offsets = np.zeros((t, 468, 2), np.float32)
    offsets[:, 10] = (0.0, -0.1)
    c, s = np.cos(np.pi / 2), np.sin(np.pi / 2)
    rotation = np.stack([np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])] * t)
    out = add_brow_motion(lm, offsets, rotation, np.array([50.0, 50.0]))
    assert out[0, 10, :2] == pytest.approx([5.0, 0.0], abs=1e-5)  # up in the face is +x in a face turned 90 degrees
    assert np.isnan(out[1]).all()
    assert np.abs(out[0, np.arange(478) != 10]).max() == 0.0


def test_with_brow_motion_moves_only_valid_frames_near_the_brows():
    k = len(Blendshape)
    ref_expr, offset = _sad_frame()
    offset[[i for i in range(468) if i not in _brow_rows()[0]]] = 0.0
    ref = ReferenceFrame(np.zeros((8, 8, 3), np.uint8), np.zeros((468, 2), np.float32), ref_expr, offset)
    app = ExpressionAppearance(AppearanceOptions(), reference_neutral=[_frame(_texture(), np.zeros(k, np.float32))])
    payloads = lambda t: AppearanceFrame(np.zeros(k, np.float32), ref_expr, t, reference=ref)  # noqa: E731
    dst = np.random.default_rng(0).uniform(0, 100, (3, 478, 3)).astype(np.float32)
    valid = np.array([True, False, True])
    rotation, scale = np.stack([np.eye(3)] * 2), np.array([60.0, 60.0])
    out = with_brow_motion(dst, valid, rotation, scale, payloads, app)
    brows, _ = _brow_rows()
    assert out[[0, 2]][:, brows, 1] == pytest.approx(dst[[0, 2]][:, brows, 1] - 3.0, abs=1e-4)  # 0.05 IOD x 60 px up
    others = np.setdiff1d(np.arange(478), brows)
    assert np.array_equal(out[:, others], dst[:, others]) and np.array_equal(out[1], dst[1])
    assert with_brow_motion(dst, valid, rotation, scale, payloads, None) is dst


def test_label_mode_adds_the_emotions_calibrated_brow_shape():
    """The packaged shapes load; a frame taking half of the sad target gets half of sad's shape,
    a frame of another emotion none of it; the maps mode keeps them (they are built in), off drops them."""
    from ned.manipulate.emotions import load_emotion_targets

    raster, targets = uv_raster(S), load_emotion_targets()
    label = load_label_brows(targets, raster)
    assert {"angry", "sad", "fear", "surprised"} <= set(label.offsets)
    brows, still = _brow_rows()
    sad = label.offsets["sad"]
    assert np.abs(sad[brows]).max() > 0.005 and np.abs(sad[still]).max() == 0.0
    k = len(Blendshape)
    source = np.zeros(k, np.float32)
    frames = [AppearanceFrame(source, 0.5 * targets.offset("sad"), 0, emotion="sad"),
              AppearanceFrame(source, source, 1, emotion="sad"),
              AppearanceFrame(source, targets.offset("happy"), 2, emotion="neutral")]
    for mode in ("auto", "maps"):
        offsets = frame_brow_offsets(lambda t: frames[t], 3, ExpressionAppearance(AppearanceOptions(mode=mode)), label)
        assert offsets[0] == pytest.approx(0.5 * sad, abs=1e-6)
        assert not offsets[1:].any()
    assert frame_brow_offsets(lambda t: frames[t], 3, ExpressionAppearance(AppearanceOptions(mode="off")), label) is None


def test_a_bad_brow_shapes_file_is_a_clear_error(tmp_path):
    from ned.errors import ModelFileError
    from ned.manipulate.emotions import load_emotion_targets

    raster, targets = uv_raster(S), load_emotion_targets()
    bad = tmp_path / "brows.json"
    bad.write_text('{"vertices": [1, 2], "emotions": {"sad": [[0, 0], [0, 0]]}}')
    with pytest.raises(ModelFileError, match="calibrate_brows"):
        load_label_brows(targets, raster, bad)
    bad.write_text("not json")
    with pytest.raises(ModelFileError, match="calibrate_brows"):
        load_label_brows(targets, raster, bad)
    with pytest.raises(ModelFileError):
        load_label_brows(targets, raster, tmp_path / "missing.json")
