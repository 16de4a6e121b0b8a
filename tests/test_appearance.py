"""Tests of ned.appearance: texture space, luminance-only gains, maps, ratio transfer, hook, bank.

The face is the packaged topology's canonical mesh laid frontally on a smooth synthetic
skin texture (no footage); the bank test tracks tiny clips made from scikit-image's
``astronaut()`` (public domain).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ned.appearance import (
    AppearanceFrame,
    AppearanceOptions,
    ExpressionAppearance,
    RatioTransfer,
    ReferenceFrame,
    apply_luminance_gain,
    band_pass,
    detail_map,
    detail_weight,
    emotion_delta,
    image_to_uv,
    load_maps,
    luminance_uv,
    render_gain,
    skin_mask_uv,
    uv_raster,
    uv_to_image,
)
from ned.appearance.compose import luminance
from ned.appearance.exemplars import (
    BankOptions,
    ExemplarBank,
    discover_clips,
    normalise_emotion,
    select_frames,
)
from ned.appearance.maps import (bulge_height, catmull_rom, crease_height, crease_response, resize_maps,
                                 shading_from_height)
from ned.appearance.texture import image_uv_map
from ned.errors import InputError, ModelFileError
from ned.morph.rig import Blendshape
from ned.morph.topology import load_topology

SIZE = 256
K = len(Blendshape)


# --------------------------------------------------------------------------- fixtures


def face_points(scale: float = 62.0, centre=(128.0, 132.0)) -> np.ndarray:
    """The canonical mesh laid frontally in a SIZE x SIZE image: (468, 2) float32 px."""
    canon = load_topology().canonical[:, :2].astype(np.float64)
    return (canon * scale + np.array(centre)).astype(np.float32)


def skin_image(seed: int = 0, dot: tuple[int, int] | None = None, dot_radius: int = 2) -> np.ndarray:
    """A smooth skin-coloured image with faint noise, optionally a dark dot: (SIZE, SIZE, 3) uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    base = 0.75 + 0.08 * np.sin(x / 37.0) + 0.05 * np.cos(y / 29.0)
    img = np.stack([base * 225, base * 170, base * 140], axis=-1)
    img += rng.normal(0, 1.5, img.shape)
    if dot is not None:
        cv2.circle(img, dot, dot_radius, (60, 40, 30), -1, lineType=cv2.LINE_AA)
    return np.clip(img, 0, 255).astype(np.uint8)


def cheek_point(points: np.ndarray) -> tuple[int, int]:
    """A pixel in the middle of the right cheek (skin)."""
    topo = load_topology()
    p = points[list(topo.groups["cheek_r"])].mean(0)
    return int(round(p[0])), int(round(p[1]))


def expressions(**weights: float) -> tuple[np.ndarray, np.ndarray]:
    """(source, target) weight vectors: zeros and the named weights."""
    src = np.zeros(K, np.float32)
    dst = src.copy()
    for name, w in weights.items():
        dst[Blendshape[name]] = w
    return src, dst


# --------------------------------------------------------------------------- options


class TestAppearanceOptions:
    def test_defaults(self):
        AppearanceOptions()

    @pytest.mark.parametrize("kwargs", [
        {"mode": "cartoon"}, {"texture_size": 32}, {"texture_size": 192.0}, {"map_strength": -1},
        {"release_scale": 2}, {"detail_strength": 5}, {"detail_low_sigma_iod": 0.5},
        {"detail_high_sigma_iod": 0.01}, {"detail_clamp": 0}, {"max_log_gain": 0}, {"temporal_alpha": 0},
        {"skin_guard": (0.8, 0.5)}, {"skin_guard": (0.1,)}, {"guard_sigma_iod": 1.0}, {"exemplars": 0},
        {"map_strength": True},
    ])
    def test_exception(self, kwargs):
        with pytest.raises(ValueError):
            AppearanceOptions(**kwargs)

    @pytest.mark.parametrize("kwargs", [{"per_emotion": 0}, {"neutral_frames": 100}, {"min_gap_s": -1},
                                        {"max_frames": 0}, {"appearance": None}])
    def test_bank_options_exception(self, kwargs):
        with pytest.raises(ValueError):
            BankOptions(**kwargs)


# --------------------------------------------------------------------------- texture space


class TestTexture:
    def test_raster_covers_the_mesh(self):
        r = uv_raster(96)
        assert r.inside.mean() > 0.5
        assert r.texel_bary.min() >= -1e-6 and np.allclose(r.texel_bary.sum(1), 1, atol=1e-5)
        assert 30 < r.iod_texels < 50

    def test_skin_mask(self):
        m = skin_mask_uv(96)
        assert m.dtype == np.float32 and m.shape == (96, 96)
        assert 0 <= m.min() and m.max() <= 1
        uv = load_topology().uv * 96
        for name in ("eye_r", "eye_l", "lips_inner"):
            c = uv[list(load_topology().groups[name])].mean(0).astype(int)
            assert m[c[1], c[0]] < 0.05, name
        c = uv[list(load_topology().groups["cheek_l"])].mean(0).astype(int)
        assert m[c[1], c[0]] > 0.9

    def test_round_trip(self):
        """image -> texture -> image through the same mesh gives back the image inside the face."""
        pts = face_points()
        img = skin_image()
        r = uv_raster(256)
        tex = image_to_uv(img.astype(np.float32), pts, r)
        back = uv_to_image(tex, pts, img.shape[:2], r)
        mask = cv2.erode((uv_to_image(np.ones((256, 256), np.float32), pts, img.shape[:2], r) > 0.99).astype(np.uint8),
                         np.ones((7, 7), np.uint8)).astype(bool)
        assert mask.sum() > 5000
        assert np.abs(back[mask] - img[mask]).mean() < 4.0

    def test_image_uv_map_box(self):
        pts = face_points()
        where = image_uv_map(pts, (SIZE, SIZE), uv_raster(64))
        x0, y0, x1, y1 = where.box
        assert x0 <= pts[:, 0].min() + 1 and x1 >= pts[:, 0].max()
        assert where.covered.any()

    def test_exception(self):
        r = uv_raster(64)
        with pytest.raises(ValueError):
            image_to_uv(skin_image(), np.zeros((10, 2)), r)
        with pytest.raises(ValueError):
            image_to_uv(skin_image(), np.full((468, 2), np.nan), r)
        with pytest.raises(ValueError):
            uv_to_image(np.zeros((10, 10), np.float32), face_points(), (SIZE, SIZE), r)


# --------------------------------------------------------------------------- luminance-only gains


class TestApplyLuminanceGain:
    def test_zero_gain_is_identity(self):
        img = skin_image()
        out = apply_luminance_gain(img, np.zeros(img.shape[:2], np.float32))
        assert np.array_equal(out, img)

    def test_luminance_only(self):
        img = skin_image()
        g = np.zeros(img.shape[:2], np.float32)
        g[50:150, 60:200] = -0.2
        g[160:200, 60:200] = 0.15
        out = apply_luminance_gain(img, g)
        ycc_in = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb).astype(int)
        ycc_out = cv2.cvtColor(out, cv2.COLOR_RGB2YCrCb).astype(int)
        assert np.abs(ycc_out[..., 1:] - ycc_in[..., 1:]).max() <= 1  # chroma within rounding
        y_in, y_out = luminance(img), luminance(out)
        ratio = y_out[60:140, 70:190] / y_in[60:140, 70:190]
        assert np.allclose(ratio, np.exp(-0.2), atol=0.01)
        assert np.array_equal(out[g == 0], img[g == 0])

    def test_exception(self):
        with pytest.raises(ValueError):
            apply_luminance_gain(skin_image(), np.zeros((3, 3), np.float32))


# --------------------------------------------------------------------------- authored maps


class TestMaps:
    def test_catmull_rom_passes_through_points(self):
        pts = np.array([[0, 0], [10, 5], [20, 0]], float)
        line = catmull_rom(pts, 8)
        assert np.allclose(line[0], pts[0]) and np.allclose(line[8], pts[1]) and np.allclose(line[-1], pts[2])

    def test_crease_is_a_valley(self):
        h = crease_height(64, catmull_rom(np.array([[10.0, 32], [54, 32]])), 2.0, 1.0)
        assert h[32, 32] < -0.5 and abs(h[5, 32]) < 1e-3
        assert h[32, 32] == h[:, 32].min()

    def test_shading_of_a_crease(self):
        """Light from above: the cavity is dark, the lower wall (facing up) brighter than the upper."""
        h = crease_height(64, catmull_rom(np.array([[4.0, 32], [60, 32]])), 3.0, 0.02, envelope=np.ones(2))
        s = shading_from_height(h, 0.01, cavity=5.0)
        assert s[32, 32] < 0
        assert s[35, 32] > s[29, 32]

    def test_bulge(self):
        b = bulge_height(32, (16, 16), (4, 2), 0.0, 1.0)
        assert b[16, 16] == pytest.approx(1.0) and b[16, 20] > b[20, 16]

    def test_exception(self):
        with pytest.raises(ValueError):
            crease_height(16, np.zeros((2, 2)), 0.0, 1.0)
        with pytest.raises(ValueError):
            bulge_height(16, (0, 0), (0, 1), 0, 1)
        with pytest.raises(ValueError):
            catmull_rom(np.zeros((1, 2)))
        with pytest.raises(ValueError):
            shading_from_height(np.zeros((4, 4)), 0.1, light_elevation_deg=90)

    def test_packaged_maps(self):
        maps = load_maps()
        assert maps.log_gain.shape[0] == K
        for b in (Blendshape.JAW_OPEN, Blendshape.LIPS_PART, Blendshape.EYE_BLINK_L):
            assert not maps.log_gain[b].any()  # speech and blinks have no appearance
        for b in (Blendshape.BROW_DOWN_L, Blendshape.CHEEK_RAISE_R, Blendshape.LIP_CORNER_PULL_L):
            assert maps.log_gain[b].min() < -0.02
        assert np.abs(maps.log_gain).max() < 0.35
        # L maps are mirror images of R maps
        assert np.allclose(maps.log_gain[Blendshape.BROW_DOWN_L], maps.log_gain[Blendshape.BROW_DOWN_R][:, ::-1],
                           atol=0.02)
        assert maps.blend(np.zeros(K)).shape == (maps.size, maps.size)
        assert resize_maps(maps, 64).log_gain.shape == (K, 64, 64)
        with pytest.raises(ValueError):
            maps.blend(np.zeros(3))

    def test_missing_file(self, tmp_path):
        with pytest.raises(ModelFileError):
            load_maps(tmp_path / "nope.npz")

    def test_brow_creases_form_early(self):
        w = np.full((2, K), 0.3, np.float32)
        w[1] = -0.3
        out = crease_response(w, onset=0.4)
        for b in (Blendshape.BROW_OUTER_UP_R, Blendshape.BROW_DOWN_L):
            assert out[0, b] == pytest.approx(0.644, abs=0.005) and out[1, b] == -out[0, b]
        for b in (Blendshape.CHEEK_RAISE_L, Blendshape.LIP_CORNER_PULL_R, Blendshape.NOSE_WRINKLE):
            assert out[0, b] == pytest.approx(0.3) and out[1, b] == pytest.approx(-0.3)
        one = np.zeros(K, np.float32)
        one[[Blendshape.BROW_INNER_UP_L, Blendshape.BROW_OUTER_UP_R, Blendshape.CHEEK_RAISE_L]] = 1.0
        assert crease_response(one, 0.4) == pytest.approx(one)
        linear = np.zeros(K, np.float32)
        linear[[Blendshape.BROW_INNER_UP_L, Blendshape.CHEEK_RAISE_L]] = 0.3
        np.testing.assert_array_equal(crease_response(linear, onset=0.0), linear)

    def test_brow_lowerer_fades_the_forehead_lines(self):
        both = np.zeros(K, np.float32)
        both[[Blendshape.BROW_INNER_UP_L, Blendshape.BROW_INNER_UP_R, Blendshape.BROW_DOWN_L]] = 0.3
        out = crease_response(both)
        assert out[Blendshape.BROW_INNER_UP_R] == pytest.approx(0.644, abs=0.005)  # no lowerer on that side
        assert out[Blendshape.BROW_INNER_UP_L] == pytest.approx(0.644 * (1 - 0.644), abs=0.01)
        assert out[Blendshape.BROW_DOWN_L] == pytest.approx(0.644, abs=0.005)  # the glabella folds in full

    def test_blend_is_the_weighted_sum_and_deterministic(self):
        maps = load_maps()
        rng = np.random.default_rng(3)
        for _ in range(3):
            d = ((rng.random(K) - 0.5) * 0.4).astype(np.float32)
            d[rng.random(K) < 0.3] = 1e-7  # below the zero threshold: counts as 0
            got = maps.blend(d)
            want = np.tensordot(np.where(np.abs(d) <= 1e-6, 0, d).astype(np.float64), maps.log_gain, 1)
            assert got.dtype == np.float32 and got.shape == (maps.size, maps.size)
            np.testing.assert_allclose(got, want, atol=1e-5)
            np.testing.assert_array_equal(got, maps.blend(d.copy()))
        assert not maps.blend(np.zeros(K, np.float32)).any()


# --------------------------------------------------------------------------- ratio transfer


class TestRatio:
    def setup_method(self):
        self.opts = AppearanceOptions(texture_size=128)
        self.rt = RatioTransfer(self.opts)
        self.pts = face_points()

    def test_identical_references_are_a_no_op(self):
        target, ref = skin_image(1), skin_image(2)
        out = self.rt.apply(target, self.pts, ref, self.pts, ref.copy(), self.pts, weight=1.0)
        assert np.array_equal(out, target)

    def test_zero_weight_is_a_no_op(self):
        target, ref = skin_image(1), skin_image(2)
        crease = ref.copy()
        cv2.line(crease, (90, 80), (170, 80), (90, 70, 60), 3)
        out = self.rt.apply(target, self.pts, ref, self.pts, crease, self.pts, weight=0.0)
        assert np.array_equal(out, target)

    def test_crease_transfers_as_luminance(self):
        target, ref = skin_image(1), skin_image(2)
        emo = ref.copy()
        x, y = cheek_point(self.pts)
        cv2.line(emo, (x - 25, y - 10), (x + 25, y + 10), (120, 90, 75), 5, lineType=cv2.LINE_AA)
        out = self.rt.apply(target, self.pts, ref, self.pts, emo, self.pts, weight=1.0)
        y_in, y_out = luminance(target), luminance(out)
        assert (y_out[y - 2:y + 3, x - 2:x + 3] / y_in[y - 2:y + 3, x - 2:x + 3]).mean() < 0.93
        ycc_in = cv2.cvtColor(target, cv2.COLOR_RGB2YCrCb).astype(int)
        ycc_out = cv2.cvtColor(out, cv2.COLOR_RGB2YCrCb).astype(int)
        assert np.abs(ycc_out[..., 1:] - ycc_in[..., 1:]).max() <= 1

    def test_mole_in_both_references_does_not_transfer(self):
        x, y = cheek_point(self.pts)
        neutral = skin_image(2, dot=(x, y))
        emotion = skin_image(2, dot=(x, y))
        target = skin_image(1)
        out = self.rt.apply(target, self.pts, neutral, self.pts, emotion, self.pts, weight=1.0)
        assert np.array_equal(out, target)

    def test_mole_only_in_emotion_is_suppressed(self):
        """A small dark dot only in the emotion frame is band-limited to a faint trace."""
        x, y = cheek_point(self.pts)
        neutral, emotion, target = skin_image(2), skin_image(2, dot=(x, y), dot_radius=2), skin_image(1)
        out = self.rt.apply(target, self.pts, neutral, self.pts, emotion, self.pts, weight=1.0)
        y_in, y_out = luminance(target), luminance(out)
        darkening = 1.0 - (y_out[y - 1:y + 2, x - 1:x + 2] / y_in[y - 1:y + 2, x - 1:x + 2]).mean()
        dot_contrast = 1.0 - luminance(emotion)[y, x] / luminance(neutral)[y, x]
        assert dot_contrast > 0.5
        assert darkening < 0.05

    def test_misregistered_mole_does_not_transfer(self):
        """The same mole 2 px apart in the two references (a tracking error) leaves no trace."""
        x, y = cheek_point(self.pts)
        neutral, emotion, target = skin_image(2, dot=(x + 2, y)), skin_image(2, dot=(x, y)), skin_image(1)
        out = self.rt.apply(target, self.pts, neutral, self.pts, emotion, self.pts, weight=1.0)
        ratio = luminance(out)[y - 6:y + 7, x - 6:x + 9] / luminance(target)[y - 6:y + 7, x - 6:x + 9]
        assert np.abs(ratio - 1.0).max() < 0.05

    def test_band_pass_removes_the_mean_and_respects_the_weight(self):
        v = np.full((64, 64), 0.3, np.float32)
        w = np.ones((64, 64), np.float32)
        w[:, :10] = 0
        out = band_pass(v, w, 1.0, 8.0)
        assert np.abs(out).max() < 1e-5 and not out[:, :10].any()
        with pytest.raises(ValueError):
            band_pass(v, w[:10], 1.0, 8.0)
        with pytest.raises(ValueError):
            band_pass(v, w, 3.0, 2.0)

    def test_detail_map_of_lighting_change_is_small(self):
        """A global brightness change between the references is not expression detail."""
        r = self.rt.raster
        ref = skin_image(2)
        brighter = np.clip(ref.astype(np.float32) * 1.25, 0, 255).astype(np.uint8)
        d = detail_map(luminance_uv(ref, self.pts, r), luminance_uv(brighter, self.pts, r), r, self.opts)
        assert np.abs(d).max() < 0.02

    def test_exception(self):
        with pytest.raises(ValueError):
            self.rt.apply(skin_image(), self.pts, skin_image(), self.pts, skin_image(), self.pts, weight=-1)
        with pytest.raises(ValueError):
            RatioTransfer(options="x")


# --------------------------------------------------------------------------- the renderer hook


class TestExpressionAppearance:
    def setup_method(self):
        self.pts = face_points()
        self.app = ExpressionAppearance(AppearanceOptions(mode="maps"))

    def test_zero_weights_leave_the_crop_unchanged(self):
        img = skin_image()
        src = np.random.default_rng(0).uniform(0, 1, K).astype(np.float32)
        out = self.app.apply(img, self.pts, AppearanceFrame(src, src.copy()))
        assert np.array_equal(out, img)

    def test_speech_changes_leave_the_crop_unchanged(self):
        img = skin_image()
        src, dst = expressions(JAW_OPEN=1.0, EYE_BLINK_L=1.0)
        out = self.app.apply(img, self.pts, AppearanceFrame(np.zeros(K, np.float32), dst))
        assert np.array_equal(out, img)

    def test_emotion_changes_luminance_only_on_skin(self):
        img = skin_image()
        src, dst = expressions(BROW_DOWN_L=1.0, BROW_DOWN_R=1.0, CHEEK_RAISE_L=1.0, CHEEK_RAISE_R=1.0,
                               LIP_CORNER_PULL_L=1.0, LIP_CORNER_PULL_R=1.0, BROW_INNER_UP_L=1.0,
                               BROW_INNER_UP_R=1.0, NOSE_WRINKLE=1.0)
        out = self.app.apply(img, self.pts, AppearanceFrame(src, dst))
        changed = np.any(out != img, axis=2)
        assert changed.sum() > 2000
        ycc_in = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb).astype(int)
        ycc_out = cv2.cvtColor(out, cv2.COLOR_RGB2YCrCb).astype(int)
        assert np.abs(ycc_out[..., 1:] - ycc_in[..., 1:]).max() <= 1
        # nothing outside the skin mask changes: eyes, mouth, outside the face
        skin = uv_to_image(skin_mask_uv(self.app.raster.size), self.pts, img.shape[:2], self.app.raster)
        assert not changed[skin <= 0].any()
        topo = load_topology()
        for name in ("eye_r", "eye_l", "lips_inner"):
            cx, cy = self.pts[list(topo.groups[name])].mean(0).round().astype(int)
            assert not changed[cy - 2:cy + 3, cx - 2:cx + 3].any(), name

    def test_limit_mask(self):
        img = skin_image()
        src, dst = expressions(CHEEK_RAISE_L=1.0, CHEEK_RAISE_R=1.0)
        limit = np.zeros(img.shape[:2], np.float32)
        limit[:, :128] = 1.0
        out = self.app.apply(img, self.pts, AppearanceFrame(src, dst), limit=limit)
        assert np.array_equal(out[:, 128:], img[:, 128:])
        assert not np.array_equal(out[:, :128], img[:, :128])

    def test_map_strength_option_scales_the_change(self):
        img = skin_image()
        src, dst = expressions(CHEEK_RAISE_L=1.0)
        weak = ExpressionAppearance(AppearanceOptions(mode="maps", map_strength=0.5)).apply(
            img, self.pts, AppearanceFrame(src, dst))
        strong = self.app.apply(img, self.pts, AppearanceFrame(src, dst))
        d_weak = np.abs(weak.astype(int) - img).sum()
        d_strong = np.abs(strong.astype(int) - img).sum()
        assert 0 < d_weak < d_strong

    def test_forehead_folds_at_a_third_of_the_brow_raise(self):
        img = skin_image()

        def change(**weights: float) -> float:
            src, dst = expressions(**weights)
            return float(np.abs(self.app.apply(img, self.pts, AppearanceFrame(src, dst)).astype(int) - img).sum())

        brow = change(BROW_INNER_UP_L=0.3, BROW_INNER_UP_R=0.3) / change(BROW_INNER_UP_L=1.0, BROW_INNER_UP_R=1.0)
        cheek = change(CHEEK_RAISE_L=0.3) / change(CHEEK_RAISE_L=1.0)
        assert brow > 0.5 and cheek < 0.4

    def test_off_mode(self):
        img = skin_image()
        src, dst = expressions(CHEEK_RAISE_L=1.0)
        out = ExpressionAppearance(AppearanceOptions(mode="off")).apply(img, self.pts, AppearanceFrame(src, dst))
        assert np.array_equal(out, img)

    def test_reference_mode_and_temporal_smoothing(self):
        ref = skin_image(3)
        emo = ref.copy()
        x, y = cheek_point(self.pts)
        cv2.line(emo, (x - 25, y), (x + 25, y), (110, 85, 70), 5, lineType=cv2.LINE_AA)
        n_expr, e_expr = expressions(CHEEK_RAISE_R=1.0)
        app = ExpressionAppearance(AppearanceOptions(mode="reference", temporal_alpha=0.5),
                                   reference_neutral=[ReferenceFrame(ref, self.pts, n_expr)])
        src, dst = expressions(CHEEK_RAISE_R=1.0)
        frame = lambda t, im: AppearanceFrame(src, dst, t, reference=ReferenceFrame(im, self.pts, e_expr))  # noqa: E731
        g0 = app.gain_uv(frame(0, emo))
        g1 = app.gain_uv(frame(1, ref))  # the reference relaxes: the detail fades, smoothly
        assert g0.min() < -0.03
        assert np.allclose(g1, 0.5 * g0, atol=1e-6)
        app.reset()
        assert not app.gain_uv(frame(5, ref)).any()

    def test_detail_weight(self):
        d = np.zeros(K, np.float32)
        d[Blendshape.CHEEK_RAISE_L] = 1.0
        assert detail_weight(d, d) == pytest.approx(1.0)
        assert detail_weight(0.5 * d, d) == pytest.approx(0.5)
        assert detail_weight(-d, d) == 0.0
        src, dst = expressions(JAW_OPEN=1.0, CHEEK_RAISE_L=0.5)
        assert emotion_delta(src, dst)[Blendshape.JAW_OPEN] == 0.0

    def test_detail_weight_per_texel(self):
        """Detail goes where the target's motion follows the reference's: a target that
        took the reference's frown but only a fifth of its grimace gets the forehead's
        detail in full and little of the mouth's."""
        from ned.appearance.weighting import detail_weighting

        weighting = detail_weighting(192)
        _, ref = expressions(BROW_DOWN_L=0.9, BROW_DOWN_R=0.9, LIP_STRETCH_L=1.0, LIP_STRETCH_R=1.0,
                             LIP_CORNER_PULL_L=1.0, LIP_CORNER_PULL_R=1.0)
        uniform = weighting.weight_map(0.5 * ref, ref, detail_weight(0.5 * ref, ref))
        assert uniform.shape == (192, 192) and np.allclose(uniform, 0.5, atol=1e-4)
        partial = ref.copy()
        for b in ("LIP_STRETCH_L", "LIP_STRETCH_R", "LIP_CORNER_PULL_L", "LIP_CORNER_PULL_R"):
            partial[Blendshape[b]] *= 0.2
        w = weighting.weight_map(partial, ref, detail_weight(partial, ref))
        uv = load_topology().uv * 192 - 0.5

        def at(vertex: int) -> float:
            return float(w[int(round(uv[vertex, 1])), int(round(uv[vertex, 0]))])

        assert at(61) < 0.3 and at(291) < 0.3  # lip corners
        assert at(9) > 0.9  # between the brows (glabella)
        assert 0.0 <= w.min() and w.max() <= 1.0

    def test_hook_in_the_renderer(self):
        from ned.render.warp_renderer import WarpRenderer

        topo = load_topology()
        img = skin_image()
        r = WarpRenderer(topo.triangles, topo.group("face_oval"), appearance=self.app, n_points=468)
        src, dst = expressions(CHEEK_RAISE_L=1.0, CHEEK_RAISE_R=1.0)
        plain = r.render(img, self.pts, self.pts)
        assert np.array_equal(plain.frame, img)
        edited = r.render(img, self.pts, self.pts, payload=AppearanceFrame(src, dst))
        assert not np.array_equal(edited.frame, img)
        with pytest.raises(ValueError):
            r.render(img, self.pts, self.pts, payload={"not": "a frame"})

    def test_payload_validation(self):
        with pytest.raises(ValueError):
            AppearanceFrame(np.zeros(3), np.zeros(K))
        with pytest.raises(ValueError):
            AppearanceFrame(np.zeros(K), np.zeros(K), detail_weight=9.0)
        with pytest.raises(ValueError):
            ReferenceFrame(np.zeros((4, 4)), self.pts)


def test_render_gain_zero_texture_is_identity():
    img = skin_image()
    r = uv_raster(64)
    out = render_gain(img, face_points(), np.zeros((64, 64), np.float32), r, AppearanceOptions(texture_size=64))
    assert np.array_equal(out, img)


# --------------------------------------------------------------------------- exemplar bank


class TestExemplarLabels:
    def test_discover_mead_names_and_tree(self, tmp_path):
        for name in ("M001_front_happy_level3_001.mp4", "M001_front_neutral_level1_002.mp4", "notes.mp4"):
            (tmp_path / name).write_bytes(b"")
        tree = tmp_path / "W002" / "video" / "front" / "sad" / "level_2"
        tree.mkdir(parents=True)
        (tree / "003.mp4").write_bytes(b"")
        clips = discover_clips(tmp_path)
        got = {(c.actor, c.emotion, c.level) for c in clips}
        assert got == {("M001", "happy", 3), ("M001", "neutral", 1), ("W002", "sad", 2)}

    def test_discover_csv(self, tmp_path):
        (tmp_path / "a.mp4").write_bytes(b"")
        (tmp_path / "b.mp4").write_bytes(b"")
        (tmp_path / "labels.csv").write_text("path,emotion,actor\na.mp4,Happiness,x\nb.mp4,neutral,x\n")
        clips = discover_clips(tmp_path, tmp_path / "labels.csv")
        assert [(c.path.name, c.emotion, c.actor) for c in clips] == [("a.mp4", "happy", "x"), ("b.mp4", "neutral", "x")]

    @pytest.mark.parametrize("text", ["path,label\na.mp4,happy\n", "path,emotion\nmissing.mp4,happy\n",
                                      "path,emotion\na.mp4,bored\n"])
    def test_bad_csv(self, tmp_path, text):
        (tmp_path / "a.mp4").write_bytes(b"")
        (tmp_path / "labels.csv").write_text(text)
        with pytest.raises(InputError):
            discover_clips(tmp_path, tmp_path / "labels.csv")

    def test_no_clips(self, tmp_path):
        with pytest.raises(InputError):
            discover_clips(tmp_path)
        with pytest.raises(InputError):
            discover_clips(tmp_path / "absent")

    def test_normalise_emotion(self):
        assert normalise_emotion("Surprise") == "surprised"
        with pytest.raises(InputError):
            normalise_emotion("bored")

    def test_select_frames(self):
        s = np.array([0.1, 0.9, 0.8, 0.2, 0.7, np.nan, 0.95])
        assert select_frames(s, 2, 1).tolist() == [1, 6]
        assert select_frames(s, 3, 0, largest=False).tolist() == [0, 3, 4]


def test_bank_select_and_detail():
    d = np.zeros((3, K), np.float32)
    d[0, Blendshape.CHEEK_RAISE_L] = 1.0
    d[1, Blendshape.BROW_DOWN_L] = 1.0
    d[2, Blendshape.CHEEK_RAISE_L] = 0.5
    details = np.stack([np.full((8, 8), v, np.float32) for v in (-0.1, 0.2, -0.05)])
    bank = ExemplarBank(np.array(["happy", "angry", "happy"]), np.array(["a"] * 3), d.copy(), d, details,
                        np.array(["x.png"] * 3), Path("."))
    idx, w = bank.select(d[0], "happy", 2)
    assert set(idx.tolist()) == {0, 2} and w.sum() == pytest.approx(1.0) and w[idx.tolist().index(0)] > 0.5
    detail, ref = bank.blend(d[0], "angry", 1)
    weight = detail_weight(d[0], ref)
    assert detail[0, 0] == pytest.approx(0.2) and weight == 0.0  # angry detail does not fit a smile
    empty = ExemplarBank(np.array([], str), np.array([], str), np.zeros((0, K)), np.zeros((0, K)),
                         np.zeros((0, 8, 8)), np.array([], str), Path("."))
    assert empty.blend(d[0]) == (None, None)


@pytest.fixture(scope="module")
def astronaut_bank(tmp_path_factory):
    """A bank built from tiny labelled clips of the astronaut photo (neutral and 'happy'
    with a synthetic cheek crease), tracked by ned.face."""
    pytest.importorskip("skimage")
    from skimage.data import astronaut

    from ned.appearance.exemplars import build_bank
    from ned.media import write_test_video

    root = tmp_path_factory.mktemp("clips")
    face = np.ascontiguousarray(astronaut()[0:256, 110:366])
    frames_n = [np.roll(face, k, axis=1) for k in range(4)]
    smile = face.copy()
    cv2.line(smile, (150, 150), (175, 185), (150, 110, 95), 4, lineType=cv2.LINE_AA)
    frames_e = [np.roll(smile, k, axis=1) for k in range(4)]
    write_test_video(root / "A01_front_neutral_level1_001.mp4", frames_n, 25)
    write_test_video(root / "A01_front_happy_level3_001.mp4", frames_e, 25)
    out = tmp_path_factory.mktemp("bank")
    try:
        summary = build_bank(root, out, options=BankOptions(per_emotion=2, neutral_frames=2, min_gap_s=0.0,
                                                            appearance=AppearanceOptions(texture_size=64)))
    except ModelFileError as err:  # the tracker's model files are not installed
        pytest.skip(str(err))
    return out, summary


def test_bank_round_trip(astronaut_bank):
    from ned.appearance.exemplars import load_bank

    out, summary = astronaut_bank
    assert summary.exemplars == 2 and summary.neutral == 2 and summary.per_emotion == {"happy": 2}
    bank = load_bank(out)
    assert len(bank) == 2 and bank.size == 64
    assert set(bank.emotions) == {"happy"} and set(bank.actors) == {"A01"}
    assert all((out / c).is_file() for c in bank.crops)
    assert len(list((out / "crops").glob("A01_neutral_*.png"))) == 2
    index = json.loads((out / "index.json").read_text())
    assert len(index["exemplars"]) == 2 and len(index["exemplars"][0]["mesh"]) == 478
    assert bank.details.shape == (2, 64, 64) and np.isfinite(bank.details).all()
    assert bank.details.min() < -0.02  # the painted crease is in the detail
    app = ExpressionAppearance(AppearanceOptions(texture_size=64), bank=bank)
    detail, _ = bank.blend(bank.deltas[0], "happy", 2)
    assert detail.shape == (64, 64)
    with pytest.raises(ValueError):
        ExpressionAppearance(AppearanceOptions(texture_size=96), bank=bank)
    assert app.bank is bank


def test_bank_from_own_frames():
    """The actor's own frames lend their detail: the closest frame's crease is chosen."""
    from ned.appearance.exemplars import bank_from_frames

    pts = face_points()
    neutral = skin_image(4)
    creased = neutral.copy()
    x, y = cheek_point(pts)
    cv2.line(creased, (x - 20, y - 8), (x + 20, y + 8), (120, 90, 75), 5, lineType=cv2.LINE_AA)
    src, smile = expressions(CHEEK_RAISE_R=0.8)
    bank = bank_from_frames([(neutral, pts)], [(neutral, pts, src), (creased, pts, smile)], "happy",
                            options=AppearanceOptions(texture_size=96))
    assert len(bank) == 2 and bank.size == 96
    detail, ref = bank.blend(emotion_delta(src, smile), "happy", 1)
    assert detail.min() < -0.03 and detail_weight(emotion_delta(src, smile), ref) == pytest.approx(1.0)
    detail, _ = bank.blend(np.zeros(K, np.float32), None, 1)
    assert not detail.any()
    with pytest.raises(ValueError):
        bank_from_frames([], [])


def test_load_bank_errors(tmp_path):
    from ned.appearance.exemplars import load_bank

    with pytest.raises(ModelFileError):
        load_bank(tmp_path)
    np.savez(tmp_path / "bank.npz", version=np.int32(99))
    with pytest.raises(ModelFileError):
        load_bank(tmp_path)


def test_version_1_banks_load_without_brow_offsets_and_new_ones_keep_them(tmp_path, caplog):
    from ned.appearance.exemplars import BankOptions, _write_bank, load_bank

    delta = np.zeros((1, K), np.float32)
    brows = np.full((1, 468, 2), 0.01, np.float32)
    _write_bank(tmp_path, [{"actor": "a", "emotion": "sad", "crop": "x.png"}], np.zeros((1, 8, 8)), brows, delta,
                delta, BankOptions())
    assert load_bank(tmp_path).brow_offsets == pytest.approx(brows)
    with np.load(tmp_path / "bank.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "brow_offsets"}
    np.savez(tmp_path / "bank.npz", **{**arrays, "version": np.int32(1)})
    with caplog.at_level("WARNING"):
        old = load_bank(tmp_path)
    assert old.brow_offsets is None and len(old) == 1 and "rebuild" in caplog.text


def test_exemplars_command_registered():
    from ned.cli import build_parser

    args = build_parser().parse_args(["exemplars", "build", "clips", "-o", "bank", "--per-emotion", "2"])
    assert args.per_emotion == 2 and args.out == Path("bank") and callable(args.func)


def _write_tiny_bank(root: Path, emotions, actors, deltas) -> Path:
    from ned.appearance.exemplars import _write_bank

    root.mkdir(parents=True, exist_ok=True)
    records = [{"actor": a, "emotion": e, "crop": "x.png"} for e, a in zip(emotions, actors)]
    _write_bank(root, records, np.zeros((len(records), 8, 8), np.float32),
                np.zeros((len(records), 468, 2), np.float32), np.asarray(deltas, np.float32),
                np.asarray(deltas, np.float32), BankOptions())
    return root


def test_bank_emotion_targets_pool_actors_and_fall_back():
    """Per emotion: each actor's median exemplar change, averaged over actors; the rest
    keeps the calibrated targets."""
    from ned.manipulate.emotions import load_emotion_targets

    d = np.zeros((5, K), np.float32)
    d[:3, Blendshape.LIP_CORNER_PULL_L] = (0.2, 0.4, 3.0)  # actor a: median 0.4 (an outlier does not count)
    d[3:, Blendshape.LIP_CORNER_PULL_L] = (0.8, 0.8)  # actor b: 0.8
    bank = ExemplarBank(np.array(["happy"] * 5), np.array(["a", "a", "a", "b", "b"]), d.copy(), d,
                        np.zeros((5, 8, 8), np.float32), np.array(["x.png"] * 5), Path("bank"))
    calibrated = load_emotion_targets()
    targets = bank.emotion_targets(calibrated)
    assert targets.offset("happy")[Blendshape.LIP_CORNER_PULL_L] == pytest.approx(0.6)
    assert np.count_nonzero(targets.offset("happy")) == 1
    np.testing.assert_array_equal(targets.offset("sad"), calibrated.offset("sad"))
    assert "bank" in targets.source


def test_bank_targets_narrow_the_lids():
    """Exemplars acted with held narrowed eyes (blink weights ~0.8, one caught mid-blink)
    lend the label edit that narrowing; the target's own blinks still close the eye."""
    from ned.manipulate.emotions import EmotionSpec, load_emotion_targets
    from ned.manipulate.label import manipulate_labels

    expr = np.zeros((3, K), np.float32)
    expr[:, [Blendshape.EYE_BLINK_L, Blendshape.EYE_BLINK_R]] = [[0.8, 0.8], [0.7, 0.7], [1.0, 1.0]]
    bank = ExemplarBank(np.array(["sad"] * 3), np.array(["a"] * 3), expr, np.zeros((3, K), np.float32),
                        np.zeros((3, 8, 8), np.float32), np.array(["x.png"] * 3), Path("bank"))
    calibrated = load_emotion_targets()
    targets = bank.emotion_targets(calibrated)
    assert targets.closure("sad") == pytest.approx(0.8)
    assert targets.closure("happy") == calibrated.closure("happy")  # not in the bank: the calibrated one
    source = np.zeros((60, K), np.float32)
    source[30, [Blendshape.EYE_BLINK_L, Blendshape.EYE_BLINK_R]] = 1.0
    out = manipulate_labels(source, [EmotionSpec("sad")], 25.0, targets=targets)
    assert 0.2 < out[10, Blendshape.EYE_BLINK_L] < 0.3  # soft-limited under the default 0.3
    assert out[30, Blendshape.EYE_BLINK_L] == 1.0


def test_bank_targets_lower_face_is_limited(tmp_path):
    """A bank actor's strong grimace is softly limited in the label targets (the lower
    face's motion stays under the transfer limit); the brows keep the bank's motion."""
    from ned.manipulate.envelope import lower_face_motion
    from ned.manipulate.plan import ManipulationSpec, plan_expressions

    d = np.zeros((2, K), np.float32)
    d[:, [Blendshape.LIP_STRETCH_L, Blendshape.LIP_STRETCH_R, Blendshape.LIP_TIGHTEN]] = 1.2
    d[:, Blendshape.BROW_DOWN_L] = 0.9
    bank = _write_tiny_bank(tmp_path / "bank", ["sad", "sad"], ["a", "b"], d)
    source = np.zeros((60, K), np.float32)
    spec = ManipulationSpec.from_strings(["sad"], exemplars=bank)
    out = plan_expressions(source, spec, [], 25.0)
    assert lower_face_motion(d[0]) > 0.8
    assert lower_face_motion(out).max() <= spec.transfer_limit + 1e-6
    assert out[:, Blendshape.BROW_DOWN_L] == pytest.approx(0.9, abs=1e-5)
    free = plan_expressions(source, ManipulationSpec.from_strings(["sad"], exemplars=bank, transfer_limit=None), [], 25.0)
    assert lower_face_motion(free).min() == pytest.approx(lower_face_motion(d[0]), rel=1e-4)


def test_exemplars_set_the_label_targets(tmp_path):
    """``--exemplars`` in label mode: the edited clip settles on the bank's acted expression."""
    from ned.manipulate.plan import ManipulationSpec, plan_expressions

    d = np.zeros((2, K), np.float32)
    d[:, Blendshape.BROW_DOWN_L] = 0.9
    bank = _write_tiny_bank(tmp_path / "bank", ["angry", "angry"], ["a", "b"], d)
    source = np.zeros((60, K), np.float32)
    with_bank = plan_expressions(source, ManipulationSpec.from_strings(["angry"], exemplars=bank), [], 25.0)
    plain = plan_expressions(source, ManipulationSpec.from_strings(["angry"]), [], 25.0)
    assert with_bank[:, Blendshape.BROW_DOWN_L] == pytest.approx(0.9, abs=1e-5)
    assert np.abs(np.delete(with_bank, Blendshape.BROW_DOWN_L, axis=1)).max() < 1e-6
    assert not np.allclose(plain, with_bank)
    happy = plan_expressions(source, ManipulationSpec.from_strings(["happy"], exemplars=bank), [], 25.0)
    np.testing.assert_array_equal(happy, plan_expressions(source, ManipulationSpec.from_strings(["happy"]), [], 25.0))
    with pytest.raises(ModelFileError, match="no exemplar bank"):
        plan_expressions(source, ManipulationSpec.from_strings(["angry"], exemplars=tmp_path / "none"), [], 25.0)
    assert "exemplars bank" in ManipulationSpec.from_strings(["angry"], exemplars=bank).describe()


def test_own_exemplar_frames_pick_frames_showing_the_change():
    """Frames already showing the requested change (same direction, >= half of it) are
    picked; a different action with some overlap (a frown with cheek raise) is not."""
    from ned.appearance.pipeline import own_exemplar_frames

    t = 60
    src = np.zeros((t, K), np.float32)
    src[40:46, Blendshape.LIP_CORNER_PULL_L] = 0.8  # a smile, as asked
    src[40:46, Blendshape.CHEEK_RAISE_L] = 0.3
    src[10:16, Blendshape.BROW_DOWN_L] = 0.9  # a frown that carries some cheek raise
    src[10:16, Blendshape.CHEEK_RAISE_L] = 0.3
    src[25, Blendshape.LIP_CORNER_PULL_L] = 0.2  # a hint of a smile: too little
    new = src.copy()
    new[:, Blendshape.LIP_CORNER_PULL_L] = 0.8
    new[:, Blendshape.CHEEK_RAISE_L] = 0.3
    picks = own_exemplar_frames(src, new, np.zeros(t, int), count=3, min_gap=1)
    assert set(picks) == {0} and set(picks[0].tolist()) <= set(range(40, 46)) and len(picks[0]) == 3
    # two segments: only the one asking for a smile finds frames
    seg = (np.arange(t) >= 30).astype(int)
    frown_then_smile = new.copy()
    frown_then_smile[:30] = src[:30]
    frown_then_smile[:30, Blendshape.LIP_CORNER_DEPRESS_L] = 0.7
    picks = own_exemplar_frames(src, frown_then_smile, seg)
    assert set(picks) == {1}
    nan = src.copy()
    nan[:] = np.nan
    assert own_exemplar_frames(nan, new, np.zeros(t, int)) == {}
    assert own_exemplar_frames(src, src, np.zeros(t, int)) == {}  # nothing asked


def test_own_footage_lends_its_detail(tmp_path):
    """``--own-frames``: the clip's own smiling frames (a crease on the cheek) lend that
    crease, labelled with the segment's emotion, measured from the calm frames."""
    from ned.appearance.pipeline import load_own_exemplars
    from ned.media import write_test_video

    pts = face_points()
    calm = skin_image(3)
    creased = calm.copy()
    x, y = cheek_point(pts)
    cv2.line(creased, (x - 20, y - 8), (x + 20, y + 8), (120, 90, 75), 5, lineType=cv2.LINE_AA)
    t = 30
    smiling = np.zeros(t, bool)
    smiling[18:26] = True
    write_test_video(tmp_path / "clip.mp4", [creased if s else calm for s in smiling], 25, codec="libx264",
                     pix_fmt="yuv444p")
    landmarks = np.repeat(np.concatenate([pts, np.zeros((468, 1), np.float32)], axis=1)[None], t, axis=0)
    src = np.zeros((t, K), np.float32)
    src[smiling, Blendshape.CHEEK_RAISE_R] = 0.8
    new = src.copy()
    new[:, Blendshape.CHEEK_RAISE_R] = 0.8
    options = AppearanceOptions(texture_size=96)
    bank = load_own_exemplars(tmp_path / "clip.mp4", landmarks, src, new, np.zeros(t, int), ["happy"], options)
    assert bank is not None and 1 <= len(bank) <= 8 and set(bank.emotions) == {"happy"}
    detail, ref = bank.blend(emotion_delta(src[0], new[0]), "happy", 2)
    assert detail.min() < -0.03 and detail_weight(emotion_delta(src[0], new[0]), ref) == pytest.approx(1.0)
    assert load_own_exemplars(tmp_path / "clip.mp4", landmarks, src, src, np.zeros(t, int), ["happy"],
                              options) is None
