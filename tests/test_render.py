"""Tests of the training-free renderer: warp, blend, un-align and the WarpRenderer.

All data is synthetic (a disk mesh of concentric rings, Delaunay-triangulated, on a smooth
random texture), so nothing here depends on the tracker or on the packaged topology.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.spatial import Delaunay

from ned.render.blend import BLEND_METHODS, BlendOptions, blend, mask_box, mask_reach_px, soft_mask
from ned.render.unalign import composite_crop, footprint_box, unalign
from ned.render.warp import (
    anchor_ring,
    build_warp_mesh,
    displacement_affines,
    loop_from_edges,
    warp_piecewise_affine,
    with_anchors,
)
from ned.render.warp_renderer import AppearanceContext, RenderOptions, WarpRenderer

SIZE = 160                      # test images are SIZE x SIZE
CENTRE = (80.0, 84.0)
RADIUS = 40.0


# --------------------------------------------------------------------------- fixtures


def disk_mesh(centre=CENTRE, radius=RADIUS, rings=5, outer=24):
    """Points on concentric rings: ``(N, 2) float64``, triangles ``(M, 3) int32`` and the
    outer ring as an ordered loop ``(outer,) int32`` (the 'face oval')."""
    pts = [np.array([centre], np.float64)]
    for i in range(1, rings + 1):
        k = max(6, outer * i // rings)
        t = np.arange(k) / k * 2 * np.pi + 0.37 * i
        pts.append(np.stack([centre[0] + radius * i / rings * np.cos(t),
                             centre[1] + radius * i / rings * np.sin(t)], axis=1))
    points = np.concatenate(pts)
    triangles = Delaunay(points).simplices.astype(np.int32)
    oval = np.arange(len(points) - outer, len(points), dtype=np.int32)
    return points, triangles, oval


def texture(seed=0, size=SIZE):
    """A smooth random RGB texture ``(size, size, 3) uint8`` (values well inside 0..255)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (size, size, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 180 + 40).astype(np.uint8)


def bump(points, centre, amount, sigma=12.0):
    """Move points near ``centre`` up by ``amount`` px with a Gaussian falloff."""
    out = points.copy()
    w = np.exp(-np.sum((points - np.asarray(centre)) ** 2, axis=1) / (2 * sigma**2))
    out[:, 1] -= amount * w
    return out


@pytest.fixture(scope="module")
def mesh():
    return disk_mesh()


@pytest.fixture(scope="module")
def image():
    return texture()


# --------------------------------------------------------------------------- topology


class TestLoopFromEdges:
    def test_unit(self):
        edges = np.array([[3, 7], [1, 7], [1, 5], [5, 3]])
        assert loop_from_edges(edges).tolist() in ([1, 7, 3, 5], [1, 5, 3, 7])

    def test_exception(self):
        with pytest.raises(ValueError, match="exactly two"):
            loop_from_edges(np.array([[0, 1], [1, 2]]))
        with pytest.raises(ValueError, match="several loops"):
            loop_from_edges(np.array([[0, 1], [1, 2], [2, 0], [3, 4], [4, 5], [5, 3]]))


class TestBuildWarpMesh:
    def test_cardinality(self, mesh):
        points, tris, oval = mesh
        wm = build_warp_mesh(tris, oval)
        assert wm.n_points == len(points)
        assert wm.n_anchors == len(oval)
        assert wm.triangles.shape == (len(tris) + 2 * len(oval), 3)
        assert wm.triangles.dtype == np.int32
        band = wm.triangles[wm.n_face_triangles:]
        # every band triangle uses oval points and anchors only, and every anchor is used
        assert np.isin(band[band < wm.n_points], oval).all()
        assert set(band[band >= wm.n_points].tolist()) == set(range(wm.n_points, wm.n_points + len(oval)))

    def test_band_does_not_fold(self, mesh):
        points, tris, oval = mesh
        wm = build_warp_mesh(tris, oval)
        anchors = anchor_ring(points, points, oval, 0.3)
        allp = with_anchors(points, wm, anchors).astype(np.float64)
        band = wm.triangles[wm.n_face_triangles:]
        p0, p1, p2 = allp[band[:, 0]], allp[band[:, 1]], allp[band[:, 2]]
        e1, e2 = p1 - p0, p2 - p0
        area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        assert (np.abs(area) > 1.0).all()
        assert len(np.unique(np.sign(area))) == 1          # one consistent orientation

    def test_exception(self, mesh):
        _, tris, oval = mesh
        with pytest.raises(ValueError, match="distinct"):
            build_warp_mesh(tris, np.concatenate([oval, oval[:1]]))
        with pytest.raises(ValueError, match="indices must lie"):
            build_warp_mesh(tris, oval, n_points=5)
        with pytest.raises(ValueError, match="integer"):
            build_warp_mesh(tris.astype(np.float32), oval)
        with pytest.raises(ValueError, match="at least"):
            build_warp_mesh(tris, oval[:2])
        with pytest.raises(ValueError, match="shape"):
            build_warp_mesh(tris[:, :2], oval)


class TestAnchorRing:
    def test_outside_both_ovals(self, mesh):
        points, _, oval = mesh
        dst = points.copy()
        dst[oval[:5]] *= 1.1                                   # push some dst oval points out
        anchors = anchor_ring(points, dst, oval, 0.25)
        centre = points[oval].mean(axis=0)
        r_anchor = np.linalg.norm(anchors - centre, axis=1)
        assert anchors.shape == (len(oval), 2) and anchors.dtype == np.float32
        assert (r_anchor > np.linalg.norm(points[oval] - centre, axis=1)).all()
        assert (r_anchor > np.linalg.norm(dst[oval] - centre, axis=1)).all()

    def test_unit(self):
        oval_pts = np.array([[10.0, 0.0], [0.0, 10.0], [-10.0, 0.0], [0.0, -10.0]])
        anchors = anchor_ring(oval_pts, oval_pts, np.arange(4), 0.5)
        np.testing.assert_allclose(anchors, oval_pts * 1.5, atol=1e-5)

    def test_exception(self, mesh):
        points, _, oval = mesh
        with pytest.raises(ValueError, match="ring_scale"):
            anchor_ring(points, points, oval, 0.0)


# --------------------------------------------------------------------------- warp


class TestDisplacementAffines:
    def test_unit(self):
        dst = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
        src = dst + [[1.0, 2.0], [3.0, 2.0], [1.0, 4.0]]      # disp(p) = (1 + 0.2x, 2 + 0.2y)
        d = displacement_affines(src, dst, np.array([[0, 1, 2]]))
        np.testing.assert_allclose(d[0], [[0.2, 0.0, 1.0], [0.0, 0.2, 2.0]], atol=1e-12)

    def test_zero_is_exact(self, mesh):
        points, tris, _ = mesh
        assert not displacement_affines(points, points, tris).any()


class TestWarpPiecewiseAffine:
    @pytest.mark.parametrize("map_step", [1, 2, 3])
    @pytest.mark.parametrize("interpolation", ["linear", "cubic", "nearest"])
    def test_identity_is_exact(self, mesh, image, map_step, interpolation):
        points, tris, _ = mesh
        warped, coverage = warp_piecewise_affine(image, points, points, tris, map_step=map_step,
                                                 interpolation=interpolation)
        assert warped.dtype == np.uint8 and coverage.dtype == np.float32
        np.testing.assert_array_equal(warped, image)
        assert coverage.max() == 0.0                             # nothing moves, nothing drawn

    @pytest.mark.parametrize("map_step", [1, 2])
    def test_affine_matches_warp_affine(self, mesh, image, map_step):
        points, tris, _ = mesh
        dst_from_src = np.array([[1.06, 0.04, -6.0], [-0.03, 0.95, 5.0]])
        dst = points @ dst_from_src[:, :2].T + dst_from_src[:, 2]
        warped, coverage = warp_piecewise_affine(image, points, dst, tris, map_step=map_step)
        expected = cv2.warpAffine(image, dst_from_src, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
        inside = cv2.erode(coverage, np.ones((3, 3), np.uint8)) > 0
        err = np.abs(warped.astype(int) - expected)[inside]
        assert inside.sum() > 2000
        assert err.max() <= 1 and err.mean() < 0.05

    def test_integer_shift_unit(self, mesh, image):
        points, tris, _ = mesh
        warped, coverage = warp_piecewise_affine(image, points, points + [3.0, -2.0], tris)
        inside = cv2.erode(coverage, np.ones((3, 3), np.uint8)) > 0
        ys, xs = np.nonzero(inside)
        np.testing.assert_array_equal(warped[ys, xs], image[ys + 2, xs - 3])

    def test_anchors_stay_fixed(self, mesh, image):
        points, tris, oval = mesh
        wm = build_warp_mesh(tris, oval)
        rng = np.random.default_rng(1)
        dst = points + rng.normal(0, 1.5, points.shape)          # move every face point
        anchors = anchor_ring(points, dst, oval, 0.3)
        warped, coverage = warp_piecewise_affine(image, points, dst, wm.triangles, anchors=anchors)
        outside = np.ones((SIZE, SIZE), np.uint8)
        cv2.fillPoly(outside, [np.round(anchors).astype(np.int32)], 0)
        outside = cv2.erode(outside, np.ones((5, 5), np.uint8)) > 0       # 2 px off the loop
        assert outside.sum() > 1000
        np.testing.assert_array_equal(warped[outside], image[outside])
        assert (warped != image).any()
        # the band fades: the mean change in the band's outer part is small
        assert coverage[outside].max() == 0.0

    def test_only_moving_triangles_are_drawn(self, mesh, image):
        points, tris, _ = mesh
        dst = points.copy()
        moved = int(np.argmin(np.linalg.norm(points - [95.0, 84.0], axis=1)))
        dst[moved] += [0.0, 3.0]
        warped, coverage = warp_piecewise_affine(image, points, dst, tris)
        star = tris[(tris == moved).any(axis=1)]                # the triangles around that point
        star_mask = np.zeros((SIZE, SIZE), np.uint8)
        for t in star:
            cv2.fillConvexPoly(star_mask, np.round(dst[t]).astype(np.int32), 1)
        star_mask = cv2.dilate(star_mask, np.ones((3, 3), np.uint8))
        assert coverage.sum() > 0 and (coverage[star_mask == 0] == 0).all()
        np.testing.assert_array_equal(warped[star_mask == 0], image[star_mask == 0])

    def test_zero_background_maps_a_texture(self, mesh, image):
        points, tris, _ = mesh
        tex_points = (points - 40.0) * 0.5 + 10.0               # 'uv' layout in a small texture
        tex = np.ascontiguousarray(image[:80, :80])
        warped, coverage = warp_piecewise_affine(tex, tex_points, points, tris, out_size=(SIZE, SIZE),
                                                 background="zero", map_step=1)
        assert (warped[coverage == 0] == 0).all() and coverage.sum() > 3000
        frame_from_tex = np.array([[2.0, 0.0, 20.0], [0.0, 2.0, 20.0]])
        expected = cv2.warpAffine(tex, frame_from_tex, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
        inside = cv2.erode(coverage, np.ones((3, 3), np.uint8)) > 0
        assert np.abs(warped.astype(int) - expected)[inside].max() <= 1

    def test_out_size(self, mesh, image):
        points, tris, _ = mesh
        warped, coverage = warp_piecewise_affine(image, points, points + 5.0, tris, out_size=(100, 200))
        assert warped.shape == (100, 200, 3) and coverage.shape == (100, 200)
        assert (warped[:, SIZE:] == 0).all()
        np.testing.assert_array_equal(warped[:5, :5], image[:5, :5])

    def test_folded_and_degenerate_triangles(self, mesh, image):
        points, tris, _ = mesh
        dst = points.copy()
        dst[0] += [25.0, 0.0]                                   # centre crosses its ring: folds
        dst[tris[0, 1]] = dst[tris[0, 0]]                       # a degenerate destination
        warped, coverage = warp_piecewise_affine(image, points, dst, tris)
        assert warped.shape == image.shape and np.isfinite(coverage).all()
        far = np.ones((SIZE, SIZE), bool)
        far[20:150, 20:150] = False
        np.testing.assert_array_equal(warped[far], image[far])

    def test_points_with_z_and_triangles_int64(self, mesh, image):
        points, tris, _ = mesh
        p3 = np.concatenate([points, np.ones((len(points), 1))], axis=1)
        a, _ = warp_piecewise_affine(image, p3, p3 + [2.0, 0.0, 5.0], tris.astype(np.int64))
        b, _ = warp_piecewise_affine(image, points, points + [2.0, 0.0], tris)
        np.testing.assert_array_equal(a, b)

    def test_exception(self, mesh, image):
        points, tris, _ = mesh
        with pytest.raises(ValueError, match="dtype"):
            warp_piecewise_affine(image.astype(np.float32), points, points, tris)
        with pytest.raises(ValueError, match="equal shapes"):
            warp_piecewise_affine(image, points, points[:-1], tris)
        with pytest.raises(ValueError, match="indices"):
            warp_piecewise_affine(image, points, points, tris + len(points))
        with pytest.raises(ValueError, match="integer"):
            warp_piecewise_affine(image, points, points, tris.astype(np.float32))
        bad = points.copy()
        bad[3] = np.nan
        with pytest.raises(ValueError, match="non-finite"):
            warp_piecewise_affine(image, bad, points, tris)
        with pytest.raises(ValueError, match="interpolation"):
            warp_piecewise_affine(image, points, points, tris, interpolation="lanczos")
        with pytest.raises(ValueError, match="map_step"):
            warp_piecewise_affine(image, points, points, tris, map_step=0)
        with pytest.raises(ValueError, match="out_size"):
            warp_piecewise_affine(image, points, points, tris, out_size=(0, 10))
        with pytest.raises(ValueError, match="anchors"):
            warp_piecewise_affine(image, points, points, tris, anchors=np.zeros((3, 3)))
        with pytest.raises(ValueError, match="background"):
            warp_piecewise_affine(image, points, points, tris, background="black")


# --------------------------------------------------------------------------- blend


def circle_mask(radius=30.0, feather=10.0):
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    polygon = np.stack([CENTRE[0] + radius * np.cos(t), CENTRE[1] + radius * np.sin(t)], axis=1)
    return soft_mask(polygon, (SIZE, SIZE), feather), polygon


class TestSoftMask:
    @pytest.mark.parametrize("feather", [3.0, 10.0, 21.0])
    def test_profile(self, feather):
        mask, _ = circle_mask(30.0, feather)
        assert mask.dtype == np.float32 and mask.shape == (SIZE, SIZE)
        assert mask.min() == 0.0 and mask.max() == 1.0
        yy, xx = np.mgrid[0:SIZE, 0:SIZE]
        r = np.hypot(xx - CENTRE[0], yy - CENTRE[1])
        assert (mask[r < 30 - feather / 2 - 2] > 0.99).all()
        assert (mask[r > 30 + mask_reach_px(feather)] == 0).all()
        inner, outer = mask[(r > 29) & (r < 31)], mask[(r > 33) & (r < 35)]
        assert 0.3 < inner.mean() < 0.7 and outer.mean() < inner.mean()

    def test_exception(self):
        with pytest.raises(ValueError, match="feather_px"):
            soft_mask(np.zeros((4, 2)) + [[0, 0], [5, 0], [5, 5], [0, 5]], (10, 10), 0)
        with pytest.raises(ValueError, match="vertices"):
            soft_mask(np.zeros((2, 2)), (10, 10), 3)


class TestBlendOptions:
    def test_defaults(self):
        opts = BlendOptions()
        assert opts.method == "laplacian" and opts.levels >= 1 and not opts.color_correct
        assert opts.resolve_feather_px(300) == pytest.approx(30.0)
        assert BlendOptions(feather_px=7).resolve_feather_px(300) == 7.0

    @pytest.mark.parametrize("kwargs", [
        {"method": "alpha"}, {"feather_px": 0}, {"feather_px": -3.0}, {"feather_px": float("nan")},
        {"feather_rel": 0.0}, {"feather_rel": 1.5}, {"levels": 0}, {"levels": 11}, {"levels": 2.5},
        {"levels": True}, {"color_correct": 1},
    ])
    def test_exception(self, kwargs):
        with pytest.raises(ValueError, match="BlendOptions"):
            BlendOptions(**kwargs)


class TestBlend:
    @pytest.mark.parametrize("method", BLEND_METHODS)
    @pytest.mark.parametrize("color_correct", [True, False])
    def test_bit_identical_outside_mask(self, image, method, color_correct):
        mask, _ = circle_mask()
        rendered = texture(seed=5)                              # very different content
        out = blend(image, rendered, mask, BlendOptions(method=method, color_correct=color_correct))
        assert out.dtype == np.uint8 and out.shape == image.shape
        np.testing.assert_array_equal(out[mask == 0], image[mask == 0])
        assert (out[mask > 0.9] != image[mask > 0.9]).any()

    @pytest.mark.parametrize("method", BLEND_METHODS)
    def test_identity_is_exact(self, image, method):
        mask, _ = circle_mask()
        np.testing.assert_array_equal(blend(image, image.copy(), mask, BlendOptions(method=method)), image)

    @pytest.mark.parametrize("method", BLEND_METHODS)
    def test_constant_stays_constant(self, method):
        frame = np.full((SIZE, SIZE, 3), (90, 140, 200), np.uint8)
        mask, _ = circle_mask()
        np.testing.assert_array_equal(blend(frame, frame.copy(), mask, BlendOptions(method=method)), frame)

    def test_methods_differ_at_the_border(self, image):
        mask, _ = circle_mask(feather=12.0)
        rendered = np.clip(texture(seed=9).astype(int) + 40, 0, 255).astype(np.uint8)
        outs = {m: blend(image, rendered, mask, BlendOptions(method=m, color_correct=False)).astype(int)
                for m in BLEND_METHODS}
        border = (mask > 0.05) & (mask < 0.95)
        for a, b in (("laplacian", "copy"), ("laplacian", "poisson"), ("copy", "poisson")):
            assert np.abs(outs[a] - outs[b])[border].mean() > 1.0, (a, b)

    def test_copy_is_alpha_blend(self, image):
        mask, _ = circle_mask()
        rendered = texture(seed=3)
        out = blend(image, rendered, mask, BlendOptions(method="copy", color_correct=False))
        full = mask >= 0.1                                       # where the taper is 1
        expected = image * (1 - mask[..., None]) + rendered * mask[..., None]
        assert np.abs(out[full] - expected[full]).max() <= 0.51

    def test_poisson_removes_constant_offset(self, image):
        mask, _ = circle_mask()
        rendered = np.clip(image.astype(int) + 30, 0, 255).astype(np.uint8)
        out = blend(image, rendered, mask, BlendOptions(method="poisson", color_correct=False))
        assert np.abs(out.astype(int) - image).max() <= 1

    def test_poisson_multilevel_matches_exact(self, image, monkeypatch):
        import ned.render.blend as blend_module

        mask, _ = circle_mask(radius=45.0)
        shading = cv2.GaussianBlur(texture(seed=6).astype(np.float32), (0, 0), 3.0) - 130.0
        rendered = np.clip(image + shading + 25, 0, 255).astype(np.uint8)   # relit, shifted
        opts = BlendOptions(method="poisson", color_correct=False)
        exact = blend(image, rendered, mask, opts).astype(int)
        monkeypatch.setattr(blend_module, "_POISSON_EXACT_MAX", 500)
        fast = blend(image, rendered, mask, opts).astype(int)
        err = np.abs(fast - exact)[mask > 0]
        assert err.mean() < 0.5 and err.max() <= 4
        np.testing.assert_array_equal(fast[mask == 0], image[mask == 0])

    def test_color_correct_changes_output(self, image):
        mask, _ = circle_mask()
        rendered = np.clip(image.astype(int) + 30, 0, 255).astype(np.uint8)
        on = blend(image, rendered, mask, BlendOptions(method="copy", color_correct=True))
        off = blend(image, rendered, mask, BlendOptions(method="copy", color_correct=False))
        inner = mask > 0.99
        assert np.abs(on.astype(int) - image)[inner].mean() < 1.0     # offset removed
        assert np.abs(off.astype(int) - image)[inner].mean() > 25.0

    def test_levels_change_output(self, image):
        mask, _ = circle_mask()
        rendered = texture(seed=4)
        a = blend(image, rendered, mask, BlendOptions(levels=1, color_correct=False))
        b = blend(image, rendered, mask, BlendOptions(levels=5, color_correct=False))
        assert (a != b).any()

    def test_empty_mask(self, image):
        out = blend(image, texture(seed=2), np.zeros((SIZE, SIZE), np.float32))
        np.testing.assert_array_equal(out, image)
        assert mask_box(np.zeros((4, 4), np.float32)) is None

    def test_exception(self, image):
        mask, _ = circle_mask()
        with pytest.raises(ValueError, match="rendered"):
            blend(image, image[:-1], mask)
        with pytest.raises(ValueError, match="mask"):
            blend(image, image, mask.astype(np.float64))
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            blend(image, image, mask * 2)


# --------------------------------------------------------------------------- renderer


class TestRenderOptions:
    @pytest.mark.parametrize("kwargs", [
        {"ring_scale": 0.0}, {"ring_scale": 3.0}, {"mask_scale": 0.4}, {"interpolation": "nearest"},
        {"map_step": 0}, {"map_step": 1.5}, {"blend": "laplacian"},
    ])
    def test_exception(self, kwargs):
        with pytest.raises(ValueError, match="RenderOptions"):
            RenderOptions(**kwargs)


class TestWarpRenderer:
    @pytest.mark.parametrize("method", BLEND_METHODS)
    def test_identity_is_exact(self, mesh, image, method):
        points, tris, oval = mesh
        renderer = WarpRenderer(tris, oval, RenderOptions(blend=BlendOptions(method=method)))
        out = renderer.render(image, points, points)
        np.testing.assert_array_equal(out.frame, image)
        assert out.rendered and out.mask.max() == 1.0

    @pytest.mark.parametrize("method", BLEND_METHODS)
    def test_bit_identical_outside_mask(self, mesh, image, method):
        points, tris, oval = mesh
        renderer = WarpRenderer(tris, oval, RenderOptions(blend=BlendOptions(method=method)))
        out = renderer.render(image, points, bump(points, (80, 95), 4.0))
        assert out.frame.shape == image.shape and out.mask.dtype == np.float32
        np.testing.assert_array_equal(out.frame[out.mask == 0], image[out.mask == 0])
        assert (out.frame != image).any()
        x0, y0, x1, y1 = out.box
        assert (out.mask[:y0] == 0).all() and (out.mask[y1:] == 0).all()

    def test_constant_colour_stays_constant(self, mesh):
        points, tris, oval = mesh
        frame = np.full((SIZE, SIZE, 3), (200, 120, 60), np.uint8)
        for method in BLEND_METHODS:
            renderer = WarpRenderer(tris, oval, RenderOptions(blend=BlendOptions(method=method)))
            out = renderer.render(frame, points, bump(points, (80, 95), 6.0))
            np.testing.assert_array_equal(out.frame, frame)

    def test_extra_landmark_rows_and_z(self, mesh, image):
        points, tris, oval = mesh
        extra = np.concatenate([points, np.full((10, 2), 1e6)])          # e.g. iris rows
        extra = np.concatenate([extra, np.zeros((len(extra), 1))], axis=1)
        renderer = WarpRenderer(tris, oval)
        dst = bump(points, (80, 95), 4.0)
        dst_extra = np.concatenate([np.concatenate([dst, np.full((10, 2), -1e6)]), extra[:, 2:]], axis=1)
        a = renderer.render(image, extra, dst_extra)
        b = renderer.render(image, points, dst)
        np.testing.assert_array_equal(a.frame, b.frame)

    def test_missing_face_passes_through(self, mesh, image):
        points, tris, oval = mesh
        renderer = WarpRenderer(tris, oval)
        out = renderer.render(image, np.full_like(points, np.nan), points)
        np.testing.assert_array_equal(out.frame, image)
        assert not out.rendered and out.mask.max() == 0.0

    def test_face_partly_outside_the_frame(self, image):
        points, tris, oval = disk_mesh(centre=(10.0, 150.0))
        out = WarpRenderer(tris, oval).render(image, points, bump(points, (10, 150), 5.0))
        np.testing.assert_array_equal(out.frame[out.mask == 0], image[out.mask == 0])
        assert out.rendered

    def test_warp_moves_content(self, mesh):
        points, tris, oval = mesh
        frame = np.full((SIZE, SIZE, 3), 200, np.uint8)
        frame[88:92, 70:90] = 20                                 # a dark 'mouth' line at y=90
        renderer = WarpRenderer(tris, oval, RenderOptions(map_step=1))
        out = renderer.render(frame, points, points - [0.0, 4.0])     # the whole face moves up 4 px
        column = out.frame[:, 80, 0].astype(int)
        assert column[84:88].min() < 60 and column[90:92].min() > 150

    def test_options_change_output(self, mesh, image):
        points, tris, oval = mesh
        dst = bump(points, (80, 95), 5.0) + [0.0, -1.5]
        base = WarpRenderer(tris, oval).render(image, points, dst).frame
        for opts in (RenderOptions(ring_scale=0.6), RenderOptions(mask_scale=0.9),
                     RenderOptions(interpolation="linear"), RenderOptions(map_step=1),
                     RenderOptions(blend=BlendOptions(method="copy")),
                     RenderOptions(blend=BlendOptions(feather_px=3.0)),
                     RenderOptions(blend=BlendOptions(feather_rel=0.3))):
            assert (WarpRenderer(tris, oval, opts).render(image, points, dst).frame != base).any(), opts

    def test_appearance_hook(self, mesh, image):
        points, tris, oval = mesh
        seen: list[AppearanceContext] = []

        def brighten(warped, ctx):
            seen.append(ctx)
            out = warped.copy()
            out[ctx.mask > 0.5] = np.clip(out[ctx.mask > 0.5].astype(int) + 20, 0, 255)
            return out

        renderer = WarpRenderer(tris, oval, appearance=brighten)
        out = renderer.render(image, points, points, payload={"frame": 3})
        ctx = seen[0]
        h, w = ctx.source.shape[:2]
        assert ctx.mask.shape == ctx.coverage.shape == (h, w)
        assert ctx.dst_points.shape == (len(points), 2) and ctx.payload == {"frame": 3}
        np.testing.assert_allclose(ctx.src_points + ctx.origin, points, atol=1e-4)
        assert (out.frame.astype(int) - image)[out.mask > 0.99].mean() > 15
        np.testing.assert_array_equal(out.frame[out.mask == 0], image[out.mask == 0])

    def test_appearance_hook_bad_output(self, mesh, image):
        points, tris, oval = mesh
        renderer = WarpRenderer(tris, oval, appearance=lambda warped, ctx: warped[:-1])
        with pytest.raises(ValueError, match="appearance output"):
            renderer.render(image, points, points)

    def test_exception(self, mesh, image):
        points, tris, oval = mesh
        renderer = WarpRenderer(tris, oval)
        with pytest.raises(ValueError, match="src_landmarks"):
            renderer.render(image, points[:-1], points)
        with pytest.raises(ValueError, match="frame"):
            renderer.render(image[..., 0], points, points)
        with pytest.raises(ValueError, match="options"):
            WarpRenderer(tris, oval, BlendOptions())
        with pytest.raises(ValueError, match="appearance"):
            WarpRenderer(tris, oval, appearance=3)


# --------------------------------------------------------------------------- un-align


class TestUnalign:
    def crop_from_frame(self):
        angle, scale = 0.2, 1.6
        c, s = np.cos(angle) * scale, np.sin(angle) * scale
        centre = np.array(CENTRE)
        a = np.array([[c, -s], [s, c]])
        return np.concatenate([a, (64 - a @ centre)[:, None]], axis=1)     # face centre -> crop centre

    def test_round_trip(self, image):
        m = self.crop_from_frame()
        crop = cv2.warpAffine(image, m, (128, 128), flags=cv2.INTER_LINEAR)
        crop_mask = np.zeros((128, 128), np.float32)
        cv2.circle(crop_mask, (64, 64), 40, 1.0, -1)
        crop_mask = cv2.GaussianBlur(crop_mask, (0, 0), 3)
        face, mask, box = unalign(crop, crop_mask, m, image.shape[:2])
        x0, y0, x1, y1 = box
        assert face.shape == (y1 - y0, x1 - x0, 3) and mask.shape == (y1 - y0, x1 - x0)
        inner = mask > 0.9
        err = np.abs(face.astype(int) - image[y0:y1, x0:x1])[inner]
        assert err.mean() < 4.0                                  # two resamplings of a smooth texture
        out = composite_crop(image, crop, crop_mask, m)
        np.testing.assert_array_equal(out.frame[out.mask == 0], image[out.mask == 0])
        assert np.abs(out.frame.astype(int) - image)[out.mask > 0.9].mean() < 4.0

    def test_crop_outside_frame(self, image):
        m = np.array([[1.0, 0.0, 1000.0], [0.0, 1.0, 1000.0]])
        assert footprint_box(m, 64, image.shape[:2]) is None
        crop = np.zeros((64, 64, 3), np.uint8)
        out = composite_crop(image, crop, np.ones((64, 64), np.float32), m)
        np.testing.assert_array_equal(out.frame, image)
        assert not out.rendered

    def test_exception(self, image):
        with pytest.raises(ValueError, match="crop_mask"):
            unalign(np.zeros((8, 8, 3), np.uint8), np.zeros((4, 4), np.float32), np.eye(2, 3), (10, 10))
        with pytest.raises(ValueError, match="singular"):
            footprint_box(np.zeros((2, 3)), 8, (10, 10))
        with pytest.raises(ValueError, match="interpolation"):
            unalign(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.float32), np.eye(2, 3), (10, 10),
                    interpolation="area")


# --------------------------------------------------------------------------- eyes opening wider
def _eye_scene(closed: bool = False, gaze: float = 0.0, pupil: bool = False):
    """A face mesh laid out in a 512 px image with painted eyes: white openings, a dark iris
    whose top is hidden by the upper lid, ``gaze`` x the eye's width right of its middle
    (``pupil``: a grey iris with a black pupil of 0.4 its radius); returns image, 478 source
    landmarks, the face topology and the iris circle ``(x, y, r)`` of the person's right eye."""
    from ned.morph.topology import GROUPS, load_topology

    topo = load_topology()
    pts = topo.canonical[:, :2] * 124.0 + np.array([256.0, 264.0])
    if closed:
        for up, lo in (("eye_r_upper", "eye_r_lower"), ("eye_l_upper", "eye_l_lower")):
            pts[list(GROUPS[up])] = pts[list(GROUPS[lo])]
    img = np.full((512, 512, 3), (200, 150, 125), np.uint8)
    irises = []
    for up, lo in (("eye_r_upper", "eye_r_lower"), ("eye_l_upper", "eye_l_lower")):
        contour = np.concatenate([pts[list(GROUPS[up])], pts[list(GROUPS[lo])][::-1]])
        opening = np.zeros((512, 512), np.uint8)
        cv2.fillPoly(opening, [np.round(contour * 16).astype(np.int32)], 1, shift=4)
        top, bottom = pts[list(GROUPS[up]), 1].min(), pts[list(GROUPS[lo]), 1].max()
        cx = pts[list(GROUPS[up]), 0].mean() + gaze * np.ptp(pts[list(GROUPS[up]), 0])
        r = 0.7 * (bottom - top)
        cy = bottom - r * 0.8  # the iris reaches above the upper lid: its top is hidden
        eye = np.full((512, 512, 3), 245, np.uint8)
        cv2.circle(eye, (int(round(cx * 16)), int(round(cy * 16))), int(round(r * 16)),
                   (130, 120, 110) if pupil else (60, 40, 30), -1, shift=4)
        if pupil:
            cv2.circle(eye, (int(round(cx * 16)), int(round(cy * 16))), int(round(0.4 * r * 16)), (10, 10, 10), -1, shift=4)
        img[opening > 0] = eye[opening > 0]
        irises.append((cx, cy, r))
    iris_pts = []
    for cx, cy, r in irises:
        iris_pts += [(cx, cy), (cx + r, cy), (cx, cy - r), (cx - r, cy), (cx, cy + r)]
    landmarks = np.concatenate([pts, np.array(iris_pts)])
    return img, np.concatenate([landmarks, np.zeros((478, 1))], axis=1).astype(np.float32), topo, irises[0]


def _raise_upper_lids(landmarks: np.ndarray, pixels: float) -> np.ndarray:
    from ned.morph.topology import GROUPS

    out = landmarks.copy()
    for up in ("eye_r_upper", "eye_l_upper"):
        inner = list(GROUPS[up])[1:-1]  # the corners stay
        out[inner, 1] -= pixels
    return out


def test_raised_lids_uncover_the_eye_instead_of_stretching_it():
    from ned.morph.topology import GROUPS

    img, src, topo, (cx, cy, r) = _eye_scene()
    dst = _raise_upper_lids(src, 12.0)
    render = lambda reveal: WarpRenderer(topo.triangles, topo.group("face_oval"), RenderOptions(  # noqa: E731
        reveal_eyes=reveal, map_step=1), n_points=468).render(img, src, dst).frame
    on, off = render(True), render(False)
    lid_y = float(np.interp(cx, np.sort(src[list(GROUPS["eye_r_upper"]), 0]),
                            src[list(GROUPS["eye_r_upper"]), 1][np.argsort(src[list(GROUPS["eye_r_upper"]), 0])]))
    # just above the old lid line, over the iris: the iris's hidden top, dark
    assert on[int(lid_y) - 2, int(round(cx))].mean() < 110
    # beside the iris in the uncovered band: the white of the eye
    for x in (int(round(cx - 1.6 * r)), int(round(cx + 1.6 * r))):
        y = int(np.interp(x, np.sort(src[list(GROUPS["eye_r_upper"]), 0]),
                          src[list(GROUPS["eye_r_upper"]), 1][np.argsort(src[list(GROUPS["eye_r_upper"]), 0])])) - 1
        assert on[y, x].mean() > 200, (x, y, on[y, x])
    # the iris stays round: above its circle the white shows (stretched, it reaches there)
    above = (int(round(cy - r)) - 2, int(round(cx)))
    assert on[above].mean() > 200 and off[above].mean() < 110, (on[above], off[above])
    # and the whole change is inside the edited eye openings
    inside = np.zeros((512, 512), np.uint8)
    for up, lo in (("eye_r_upper", "eye_r_lower"), ("eye_l_upper", "eye_l_lower")):
        contour = np.concatenate([dst[list(GROUPS[up]), :2], dst[list(GROUPS[lo]), :2][::-1]])
        cv2.fillPoly(inside, [np.round(contour * 16).astype(np.int32)], 1, shift=4)
    inside = cv2.dilate(inside, np.ones((3, 3), np.uint8))
    assert (on != off).any(axis=2)[inside == 0].sum() == 0
    assert (on != off).any()


def test_uncovered_iris_shows_iris_not_a_second_pupil():
    from ned.morph.topology import GROUPS

    img, src, topo, (cx, cy, r) = _eye_scene(pupil=True)
    upper = src[list(GROUPS["eye_r_upper"]), :2]
    order = np.argsort(upper[:, 0])
    old_lid = float(np.interp(cx, upper[order, 0], upper[order, 1]))
    assert cy - 0.4 * r > old_lid + 1  # the pupil shows below the lid ...
    dst = _raise_upper_lids(src, 12.0)
    out = WarpRenderer(topo.triangles, topo.group("face_oval"), RenderOptions(map_step=1), n_points=468).render(
        img, src, dst).frame
    new_lid = float(np.interp(cx, dst[list(GROUPS["eye_r_upper"]), 0][order], dst[list(GROUPS["eye_r_upper"]), 1][order]))
    # ... and the iris the raised lid uncovers above it is iris grey: mirrored about the lid
    # line it read the pupil there, a second pupil above the first
    band = out[int(np.ceil(new_lid)) + 3:int(old_lid) - 1, int(round(cx))].mean(axis=1)
    assert len(band) >= 4 and band.min() > 60, band
    assert out[int(round(cy)), int(round(cx))].mean() < 30  # the pupil itself stays


def test_iris_near_a_corner_leaves_white_beside_it():
    from ned.morph.topology import GROUPS

    img, src, topo, (cx, cy, r) = _eye_scene(gaze=0.22)
    upper = src[list(GROUPS["eye_r_upper"]), :2]
    corner_x = upper[:, 0].max()
    assert corner_x - (cx + r) < 0.3 * np.ptp(upper[:, 0])  # little white between iris and corner
    dst = _raise_upper_lids(src, 10.0)
    out = WarpRenderer(topo.triangles, topo.group("face_oval"), RenderOptions(map_step=1), n_points=468).render(
        img, src, dst).frame
    order = np.argsort(upper[:, 0])
    x = int(round(0.5 * (cx + r + corner_x)))  # between the iris and the corner
    lid_y = float(np.interp(x, upper[order, 0], upper[order, 1]))
    # the band the raised lid uncovers there shows white, not the iris read from beside it
    column = out[int(lid_y) - 6:int(lid_y) - 1, x]
    assert column.mean() > 200, column
    # and no streak of iris along the raised lid, above the white it uncovered
    raised = dst[list(GROUPS["eye_r_upper"]), :2][order]
    for x in range(int(cx - r), int(corner_x) - 2):
        new_lid, old_lid = (float(np.interp(x, upper[order, 0], c[:, 1])) for c in (raised, upper[order]))
        if old_lid - new_lid < 4 or abs(x - cx) < r:  # nothing uncovered / the iris's own column
            continue
        band = out[int(np.ceil(new_lid)) + 1:int(old_lid) - 1, x]
        assert band.mean(axis=1).min() > 200, (x, band.mean(axis=1))


def test_closed_eyes_keep_the_plain_warp():
    img, src, topo, _ = _eye_scene(closed=True)
    dst = _raise_upper_lids(src, 8.0)
    frames = [WarpRenderer(topo.triangles, topo.group("face_oval"), RenderOptions(reveal_eyes=reveal),
                           n_points=468).render(img, src, dst).frame for reveal in (True, False)]
    np.testing.assert_array_equal(frames[0], frames[1])
