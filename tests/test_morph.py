"""Tests of the face model: topology, rig, deformation tools, fitting, rasterisation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import lsq_linear
from scipy.spatial.transform import Rotation

from ned.errors import ModelFileError
from ned.morph import deform
from ned.morph import topology as T
from ned.morph.fit import (
    FaceFit,
    FaceModel,
    FitOptions,
    iris_follow,
    Pose,
    apply_expression_delta,
    corner_elevation,
    estimate_identity,
    held_expression,
    procrustes,
    solve_box_qp,
)
from ned.morph.raster import rasterise_ids, render_nmfc, render_shape
from ned.morph.rig import (
    BLINK_SHAPES,
    EMOTION_SHAPES,
    GAZE_SHAPES,
    KEPT_SHAPES,
    SPEECH_SHAPES,
    Blendshape,
    load_rig,
    shape_mask,
)

# Named tolerances
WEIGHT_TOL = 0.02  # recovered blendshape weights (synthetic, noise-free, no ridge)
WEIGHT_TOL_RIDGE = 0.06  # the same with the default (small) ridge, which shrinks a little
POSE_ROT_TOL = 1e-3  # rotation matrix entries
SCALE_REL_TOL = 1e-3
IDENTITY_TOL = 0.01  # IOD units


@pytest.fixture(scope="module")
def topo() -> T.Topology:
    return T.load_topology()


@pytest.fixture(scope="module")
def rig():
    return load_rig()


def _pose(yaw=0.15, pitch=-0.1, roll=0.05, scale=60.0, t=(128.0, 120.0, 5.0)) -> Pose:
    rot = Rotation.from_euler("ZYX", [roll, yaw, pitch]).as_matrix()  # Rz(roll) Ry(yaw) Rx(pitch)
    return Pose(rot, np.array(t, float), scale)


def _weights(rng: np.random.Generator, rig, active: int = 6) -> np.ndarray:
    """Sparse random weights within bounds (interior, so they are identifiable)."""
    w = np.zeros(len(Blendshape))
    # one of each antagonistic pair at most: pick among shapes with distinct regions
    pool = [Blendshape.BROW_INNER_UP_L, Blendshape.BROW_OUTER_UP_R, Blendshape.LID_TIGHTEN_L,
            Blendshape.CHEEK_RAISE_R, Blendshape.NOSE_WRINKLE, Blendshape.LIP_CORNER_PULL_L,
            Blendshape.LIP_CORNER_DEPRESS_R, Blendshape.JAW_OPEN, Blendshape.LIPS_PART,
            Blendshape.EYE_BLINK_R, Blendshape.CHIN_RAISE]
    for b in rng.choice(pool, size=active, replace=False):
        w[b] = rng.uniform(0.2, 0.9)
    return w


# ---------------------------------------------------------------------------- topology
class TestTopology:
    def test_smoke(self, topo):
        assert topo.canonical.shape == (468, 3) and topo.canonical.dtype == np.float32
        assert topo.triangles.ndim == 2 and topo.triangles.shape[1] == 3
        assert topo.uv.shape == (468, 2)

    def test_triangles_cover_every_vertex(self, topo):
        assert set(np.unique(topo.triangles)) == set(range(468))
        assert topo.triangles.min() >= 0 and topo.triangles.max() < 468

    def test_canonical_frame(self, topo):
        c = topo.canonical.astype(np.float64)
        assert np.allclose(c.mean(0), 0.0, atol=1e-4)
        assert T.inter_ocular_distance(c) == pytest.approx(1.0, abs=1e-4)
        r, l = T.eye_centres(c)
        assert l[0] > 0 > r[0]  # x right: the person's left eye has x > 0
        assert c[10, 1] < c[152, 1]  # y down: forehead above chin

    def test_mirror_symmetry(self, topo):
        m = topo.mirror
        assert np.array_equal(m[m], np.arange(468))
        c = topo.canonical
        assert np.allclose(c[m] * np.array([-1, 1, 1]), c, atol=1e-5)

    def test_front_facing_and_unfolded(self, topo):
        p = topo.canonical[:, :2].astype(np.float64)
        a, b, c = (p[topo.triangles[:, k]] for k in range(3))
        area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        assert (area > 0).all()

    def test_openings(self, topo):
        # a 20-point inner-lip loop is filled by 18 triangles, a 16-point eye loop by 14
        assert topo.mouth_triangles.sum() == 18
        assert topo.eye_triangles.sum() == 28
        assert np.isin(topo.triangles[topo.mouth_triangles], topo.group("lips_inner")).all()
        kept = topo.render_triangles(("mouth", "eyes"))
        assert len(kept) == len(topo.triangles) - 18 - 28

    def test_loops_are_edges(self, topo):
        edges = {tuple(e) for e in T.mesh_edges(topo.triangles).tolist()}
        for name in ("lips_inner", "lips_outer", "eye_r", "eye_l", "face_outline"):
            loop = topo.groups[name]
            for a, b in zip(loop, loop[1:] + loop[:1]):
                assert tuple(sorted((a, b))) in edges, (name, a, b)

    def test_uv(self, topo):
        assert topo.uv.min() >= 0.0 and topo.uv.max() <= 1.0
        # isotropic: u/v differences proportional to x/y differences
        c, uv = topo.canonical[:, :2], topo.uv
        k = (uv[291] - uv[33]) / (c[291] - c[33])
        assert k[0] == pytest.approx(k[1], rel=1e-4)

    def test_groups(self, topo):
        for name in ("face_oval", "lips_outer", "lips_inner", "eye_r", "eye_l", "brow_r", "brow_l",
                     "nose", "rigid", "face_outline"):
            assert len(topo.group(name)) > 0
        assert T.lip_grid("upper").shape == (4, 9)
        with pytest.raises(KeyError, match="known"):
            topo.group("nope")

    def test_exceptions(self, topo, tmp_path):
        with pytest.raises(ValueError, match="opening"):
            topo.render_triangles(("nose",))
        with pytest.raises(ModelFileError, match="build_topology"):
            T.load_topology(tmp_path / "missing.npz")

    def test_inner_lip_gaps_closed_mouth(self, topo):
        gaps = T.inner_lip_gaps(topo.canonical)[:, 1]
        assert (gaps > 0).all() and gaps.max() < 0.05  # lips closed, a thin line

    def test_triangulate_unit(self):
        # a square with a centre point: 4 triangles, all counter-clockwise
        pts = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]], float)
        tri = T.triangulate(pts, np.array([0, 1, 2, 3]), min_angle_deg=0.0)
        assert len(tri) == 4
        a, b, c = (pts[tri[:, k]] for k in range(3))
        assert ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]) > 0).all()

    def test_enforce_edges(self):
        # a quad triangulated along one diagonal; force the other
        pts = np.array([[0, 0], [2, 0], [2, 1], [0, 1]], float)
        tri = np.array([[0, 1, 2], [0, 2, 3]])
        out = T.enforce_edges(pts, tri, [(1, 3)])
        assert (1, 3) in {tuple(e) for e in T.mesh_edges(out).tolist()}

    def test_mirror_permutation_recovers_pairs(self, topo):
        rot = Rotation.from_euler("y", 0.1).as_matrix()
        pts = topo.canonical.astype(np.float64) @ rot.T * 50 + 100
        perm, normal, _ = T.mirror_permutation(pts)
        assert (perm == topo.mirror).mean() > 0.98
        assert normal[0] > 0.99


# ---------------------------------------------------------------------------- deform
class TestDeform:
    def test_field_interpolates(self, topo):
        v = topo.canonical.astype(np.float64)
        tri = topo.triangles[~(topo.mouth_triangles | topo.eye_triangles)]
        d = np.array([0.0, -0.1, 0.0])
        f = deform.biharmonic_field(v, tri, {334: d}, np.array([10, 152, 234, 454]))
        assert np.allclose(f[334], d)
        assert np.allclose(f[[10, 152, 234, 454]], 0.0)
        assert np.abs(f[296]).max() > 0.01  # a neighbour moves too

    def test_field_exception(self, topo):
        with pytest.raises(ValueError, match="handle or anchor"):
            deform.biharmonic_field(topo.canonical.astype(float), topo.triangles, {}, np.array([], int))

    def test_geodesic(self, topo):
        d = deform.geodesic_distances(topo.canonical.astype(float), topo.triangles, np.array([1]))
        assert d[1] == 0 and np.isfinite(d).all() and (d >= 0).all()

    def test_laplacian_constant_in_kernel(self, topo):
        lap, area = deform.cotan_laplacian(topo.canonical.astype(float), topo.triangles)
        assert np.allclose(lap @ np.ones(468), 0.0, atol=1e-9)
        assert (area > 0).all()


# ---------------------------------------------------------------------------- rig
class TestRig:
    def test_shapes(self, rig):
        assert rig.basis.shape == (len(Blendshape), 468, 3)
        assert (rig.lower < rig.upper).all()
        assert rig.displacement(np.zeros(len(Blendshape))).shape == (468, 3)
        assert rig.displacement(np.zeros((5, len(Blendshape)))).shape == (5, 468, 3)

    def test_subsets_partition(self):
        kept = set(KEPT_SHAPES)
        assert kept == set(SPEECH_SHAPES) | set(BLINK_SHAPES) | set(GAZE_SHAPES)
        assert kept.isdisjoint(EMOTION_SHAPES)
        assert kept | set(EMOTION_SHAPES) == set(Blendshape)
        assert Blendshape.JAW_OPEN in SPEECH_SHAPES and Blendshape.LIPS_PART in SPEECH_SHAPES

    def test_emotion_shapes_keep_inner_lip_aperture(self, rig):
        base = T.inner_lip_gaps(rig.canonical.astype(np.float64))
        for b in EMOTION_SHAPES:
            moved = T.inner_lip_gaps(rig.canonical.astype(np.float64) + 1.5 * rig.basis[b])
            assert np.abs(moved - base).max() < 1e-6, b.name
        # and they do change the face
        assert all(np.abs(rig.basis[b]).max() > 0.02 for b in EMOTION_SHAPES)

    def test_speech_shapes_open_the_mouth(self, rig):
        base = T.inner_lip_gaps(rig.canonical)[:, 1].mean()
        for b in (Blendshape.JAW_OPEN, Blendshape.LIPS_PART):
            assert T.inner_lip_gaps(rig.canonical + rig.basis[b])[:, 1].mean() > base + 0.03

    def test_rigid_points_never_move(self, rig, topo):
        assert np.abs(rig.basis[:, topo.group("rigid")]).max() < 1e-9

    def test_left_right_mirror(self, rig, topo):
        flip = np.array([-1, 1, 1])
        for b in Blendshape:
            if b.name.endswith("_L"):
                right = Blendshape[b.name[:-2] + "_R"]
                assert np.allclose(rig.basis[b][topo.mirror] * flip, rig.basis[right], atol=1e-6)

    def test_left_shapes_act_on_the_left(self, rig):
        d = np.linalg.norm(rig.basis[Blendshape.BROW_INNER_UP_L], axis=1)
        assert rig.canonical[np.argmax(d), 0] > 0
        # brows go up (y down): the inner brow point moves to smaller y
        assert rig.basis[Blendshape.BROW_INNER_UP_L][285, 1] < -0.05

    def test_displacement_exception(self, rig):
        with pytest.raises(ValueError, match="weights"):
            rig.displacement(np.zeros(3))

    def test_shape_mask(self):
        m = shape_mask(SPEECH_SHAPES)
        assert m.sum() == len(SPEECH_SHAPES) and m[Blendshape.JAW_OPEN]


# ---------------------------------------------------------------------------- math
class TestProcrustes:
    def test_recovers_similarity(self, topo):
        pose = _pose()
        src = topo.canonical.astype(np.float64)
        dst = pose.frame_from_canonical(src)[None]
        rot, t, s = procrustes(src, dst)
        assert np.allclose(rot[0], pose.rotation, atol=1e-9)
        assert np.allclose(t[0], pose.translation, atol=1e-6)
        assert s[0] == pytest.approx(pose.scale)

    def test_proper_rotation_under_reflection(self, topo):
        src = topo.canonical.astype(np.float64)
        rot, _, _ = procrustes(src, (src * np.array([-1, 1, 1]))[None])
        assert np.linalg.det(rot[0]) == pytest.approx(1.0)

    def test_pose_round_trip(self, topo):
        pose = _pose()
        p = topo.canonical.astype(np.float64)
        assert np.allclose(pose.canonical_from_frame(pose.frame_from_canonical(p)), p, atol=1e-9)
        yaw, pitch, roll = pose.angles()
        assert (yaw, pitch, roll) == pytest.approx((0.15, -0.1, 0.05), abs=1e-9)


class TestSolveBoxQP:
    def test_matches_scipy(self):
        rng = np.random.default_rng(0)
        a = rng.normal(size=(60, 12))
        lo, hi = np.zeros(12), np.full(12, 1.5)
        lo[0] = -1.5
        y = rng.normal(size=(40, 60))
        w = solve_box_qp(a.T @ a, y @ a, lo, hi)
        ref = np.array([lsq_linear(a, yy, bounds=(lo, hi), tol=1e-12).x for yy in y])
        assert np.abs(w - ref).max() < 1e-5

    def test_interior_is_unconstrained(self):
        g = np.diag([2.0, 3.0])
        w = solve_box_qp(g, np.array([[1.0, 1.5]]), np.zeros(2), np.ones(2))
        assert np.allclose(w, [[0.5, 0.5]])

    def test_bounds_hold(self):
        rng = np.random.default_rng(1)
        a = rng.normal(size=(30, 8))
        w = solve_box_qp(a.T @ a, rng.normal(size=(20, 30)) * 5 @ a, np.zeros(8), np.ones(8), 3, 1)
        assert (w >= 0).all() and (w <= 1).all()


# ---------------------------------------------------------------------------- fitting
@pytest.fixture(scope="module")
def identity(topo, rig):
    """An identity differing from the canonical mesh by a smooth shape change."""
    c = topo.canonical.astype(np.float64)
    warp = np.stack([0.04 * c[:, 1] ** 2, 0.03 * np.sin(c[:, 0] * 2), 0.05 * c[:, 0] ** 2], axis=1)
    return (c * np.array([1.05, 0.97, 1.0]) + warp).astype(np.float32)


class TestFaceModel:
    @pytest.mark.parametrize("ridge,tol", [(0.0, WEIGHT_TOL), (FitOptions().ridge, WEIGHT_TOL_RIDGE)])
    def test_round_trip(self, identity, rig, ridge, tol):
        rng = np.random.default_rng(3)
        model = FaceModel(identity, rig, FitOptions(ridge=ridge))
        for _ in range(5):
            w = _weights(rng, rig)
            pose = _pose(yaw=rng.uniform(-0.3, 0.3), pitch=rng.uniform(-0.2, 0.2), roll=rng.uniform(-0.2, 0.2),
                         scale=rng.uniform(40, 120))
            lm = pose.frame_from_canonical(identity + rig.displacement(w))
            fit = model.fit(lm)
            assert np.abs(fit.expression - w).max() < tol
            assert np.abs(fit.pose.rotation - pose.rotation).max() < POSE_ROT_TOL
            assert fit.pose.scale == pytest.approx(pose.scale, rel=SCALE_REL_TOL)
            assert fit.residual < 2e-3
            assert np.abs(model.reconstruct(fit) - lm)[:, :2].max() < 0.01 * pose.scale

    def test_batch_matches_single(self, identity, rig):
        rng = np.random.default_rng(4)
        model = FaceModel(identity, rig)
        lms = np.stack([_pose(scale=50 + i).frame_from_canonical(identity + rig.displacement(_weights(rng, rig)))
                        for i in range(6)])
        batch = model.fit_batch(lms)
        assert len(batch) == 6
        for t in range(6):
            single = model.fit(lms[t])
            assert np.allclose(single.expression, batch.expression[t], atol=1e-5)
        assert model.reconstruct(batch).shape == (6, 468, 3)

    def test_accepts_478_points(self, identity, rig):
        model = FaceModel(identity, rig)
        lm = _pose().frame_from_canonical(identity)
        lm478 = np.concatenate([lm, np.zeros((10, 3))])
        assert np.allclose(model.fit(lm478).expression, model.fit(lm).expression)

    def test_robust_to_outliers(self, identity, rig):
        model = FaceModel(identity, rig)
        w = np.zeros(len(Blendshape))
        w[Blendshape.BROW_INNER_UP_L] = 0.5
        pose = _pose()
        lm = pose.frame_from_canonical(identity + rig.displacement(w))
        lm[[10, 338]] += 40.0  # two rigid points badly tracked
        fit = model.fit(lm)
        assert np.abs(fit.pose.rotation - pose.rotation).max() < 0.01
        assert fit.expression[Blendshape.BROW_INNER_UP_L] == pytest.approx(0.5, abs=0.05)

    def test_exceptions(self, identity, rig):
        model = FaceModel(identity, rig)
        with pytest.raises(ValueError, match="NaN"):
            model.fit(np.full((468, 3), np.nan))
        with pytest.raises(ValueError, match="468"):
            model.fit_batch(np.zeros((2, 100, 3)))
        with pytest.raises(ValueError, match="identity"):
            FaceModel(np.zeros((10, 3)), rig)

    @pytest.mark.parametrize("field,value", [("robust_iterations", 0), ("robust_scale", 0.0), ("z_weight", 2.0),
                                             ("ridge", -1.0), ("solver_iterations", 0), ("polish_sweeps", -1),
                                             ("pose_alternations", -1), ("pose_nonrigid_weight", 1.5),
                                             ("identity_fraction", 0.0), ("held_corner_tolerance", -0.1)])
    def test_options_validation(self, field, value):
        with pytest.raises(ValueError, match=field):
            FitOptions(**{field: value})

    def test_option_changes_output(self, identity, rig):
        rng = np.random.default_rng(5)
        lm = _pose().frame_from_canonical(identity + rig.displacement(_weights(rng, rig)))
        lm = lm + rng.normal(scale=0.5, size=lm.shape)
        a = FaceModel(identity, rig, FitOptions(ridge=1e-3)).fit(lm).expression
        b = FaceModel(identity, rig, FitOptions(ridge=1.0)).fit(lm).expression
        assert np.abs(a).sum() > np.abs(b).sum()  # a larger ridge shrinks the weights


class TestEstimateIdentity:
    def test_recovers_identity(self, identity, rig, topo):
        rng = np.random.default_rng(6)
        frames = []
        for t in range(40):
            w = _weights(rng, rig, active=3) if t % 4 == 0 else np.zeros(len(Blendshape))
            w[Blendshape.JAW_OPEN] = abs(np.sin(t / 3.0)) * 0.3 * (t % 4 == 1)
            pose = _pose(yaw=rng.uniform(-0.2, 0.2), scale=rng.uniform(50, 70))
            frames.append(pose.frame_from_canonical(identity + rig.displacement(w)))
        est = estimate_identity(np.stack(frames), rig=rig, topology=topo).astype(np.float64)
        rot, t, s = procrustes(est, identity[None].astype(np.float64))
        aligned = s[0] * est @ rot[0].T + t[0]
        assert np.abs(aligned - identity).max() < IDENTITY_TOL

    def test_skips_missing_frames(self, identity, rig, topo):
        frames = np.stack([_pose().frame_from_canonical(identity)] * 5)
        frames[2] = np.nan
        assert np.isfinite(estimate_identity(frames, rig=rig, topology=topo)).all()

    def test_exceptions(self):
        with pytest.raises(ValueError, match="no frame"):
            estimate_identity(np.full((3, 468, 3), np.nan))
        with pytest.raises(ValueError):
            estimate_identity(np.zeros((3, 468)))


class TestHeldExpression:
    """A lip-corner expression held through a whole clip is not part of the identity."""

    def _unit(self, rig, shape: Blendshape, side: int) -> float:
        c = rig.canonical.astype(np.float64)
        return float(abs(corner_elevation(c + rig.basis[shape], rig)[side] - corner_elevation(c, rig)[side]))

    def test_canonical_is_neutral(self, rig):
        assert np.abs(corner_elevation(rig.canonical, rig)).max() < 0.01  # corners on the lip line
        assert not held_expression(rig.canonical, 0.0, rig).any()

    def test_speech_leaves_elevation(self, rig):
        c = rig.canonical.astype(np.float64)
        for w in (0.5, 1.5):
            parted = c + w * rig.basis[Blendshape.LIPS_PART]
            assert np.allclose(corner_elevation(parted, rig), corner_elevation(c, rig), atol=1e-6)

    def test_smile_and_frown(self, rig):
        tol = 0.025
        w = np.zeros(len(Blendshape))
        w[Blendshape.LIP_CORNER_PULL_L] = 1.0  # a smile on the person's left
        w[Blendshape.LIP_CORNER_DEPRESS_R] = 0.8  # a frown on the right
        held = held_expression(rig.canonical + rig.displacement(w), tol, rig)
        pull = 1.0 - tol / self._unit(rig, Blendshape.LIP_CORNER_PULL_L, 0)
        depress = 0.8 - tol / self._unit(rig, Blendshape.LIP_CORNER_DEPRESS_R, 1)
        assert held[Blendshape.LIP_CORNER_PULL_L] == pytest.approx(pull, abs=1e-3)
        assert held[Blendshape.LIP_CORNER_DEPRESS_R] == pytest.approx(depress, abs=1e-3)
        others = np.ones(len(Blendshape), bool)
        others[[Blendshape.LIP_CORNER_PULL_L, Blendshape.LIP_CORNER_DEPRESS_R]] = False
        assert not held[others].any()
        relaxed = rig.canonical + rig.displacement(w - held)
        base = corner_elevation(rig.canonical, rig)
        assert np.abs(corner_elevation(relaxed, rig) - base).max() == pytest.approx(tol, abs=1e-4)
        assert not held_expression(rig.canonical + rig.displacement(0.2 * w), tol, rig).any()  # within tolerance

    def test_identity_without_the_held_smile(self, rig, topo):
        rng = np.random.default_rng(8)
        identity = rig.canonical.astype(np.float64)  # a neutral mouth (corners on the lip line)
        smile = np.zeros(len(Blendshape))
        smile[[Blendshape.LIP_CORNER_PULL_L, Blendshape.LIP_CORNER_PULL_R]] = 0.9
        frames = []
        for t in range(30):
            w = smile.copy()
            w[Blendshape.LIPS_PART] = 0.4 * abs(np.sin(t / 2.0))  # talking through the smile
            frames.append(_pose(yaw=rng.uniform(-0.2, 0.2)).frame_from_canonical(identity + rig.displacement(w)))
        frames = np.stack(frames)
        expected = 0.9 - FitOptions().held_corner_tolerance / self._unit(rig, Blendshape.LIP_CORNER_PULL_L, 0)
        model = FaceModel.from_sequence(frames, rig, topology=topo)
        pull = model.fit_batch(frames).expression[:, [Blendshape.LIP_CORNER_PULL_L, Blendshape.LIP_CORNER_PULL_R]]
        assert np.abs(pull - expected).max() < 0.1  # the smile is expression, not identity
        kept = FaceModel.from_sequence(frames, rig, FitOptions(held_corner_tolerance=None), topo)
        pull_kept = kept.fit_batch(frames).expression[:, [Blendshape.LIP_CORNER_PULL_L, Blendshape.LIP_CORNER_PULL_R]]
        assert pull_kept.max() < 0.1  # the option changes the output: the smile stays in the identity

    def test_exception(self, rig):
        with pytest.raises(ValueError, match="identity"):
            held_expression(np.zeros((10, 3)), 0.025, rig)
        with pytest.raises(ValueError, match="tolerance"):
            held_expression(rig.canonical, -1.0, rig)


class TestApplyExpressionDelta:
    def test_speech_and_aperture_kept(self, identity, rig):
        rng = np.random.default_rng(7)
        model = FaceModel(identity, rig)
        w = _weights(rng, rig)
        w[Blendshape.JAW_OPEN] = 0.6
        lm = _pose().frame_from_canonical(identity + rig.displacement(w)) + rng.normal(scale=0.3, size=(468, 3))
        fit = model.fit(lm)
        new = fit.expression.copy()
        new[list(EMOTION_SHAPES)] = rng.uniform(0, 1.5, len(EMOTION_SHAPES))
        new[Blendshape.JAW_OPEN] = 0.0  # ignored: speech is kept
        out = apply_expression_delta(lm, fit, new, rig)
        assert out.shape == (468, 3) and out.dtype == np.float32
        assert np.abs(T.inner_lip_gaps(out) - T.inner_lip_gaps(lm)).max() < 1e-3
        assert np.abs(out - lm).max() > 1.0  # the emotion part did move things

    def test_blinks_follow_the_edit(self, identity, rig):
        """Blink weights come from the edited weights (the manipulators keep the source's
        or narrow the lids), speech from the fit."""
        model = FaceModel(identity, rig)
        lm = _pose().frame_from_canonical(identity)
        fit = model.fit(lm)
        new = fit.expression.copy()
        new[[Blendshape.EYE_BLINK_L, Blendshape.EYE_BLINK_R]] += 0.4
        new[Blendshape.JAW_OPEN] += 0.8  # ignored
        out = apply_expression_delta(lm, fit, new, rig)
        lids = list(T.GROUPS["eye_l_upper"])
        assert np.abs(out[lids] - lm[lids]).max() > 0.5
        assert np.abs(T.inner_lip_gaps(out) - T.inner_lip_gaps(lm)).max() < 1e-3

    def test_identity_edit_is_noop(self, identity, rig):
        model = FaceModel(identity, rig)
        lm = _pose().frame_from_canonical(identity)
        fit = model.fit(lm)
        assert np.allclose(apply_expression_delta(lm, fit, fit.expression, rig), lm, atol=1e-4)

    def test_iris_follows_eyes(self, identity, rig):
        model = FaceModel(identity, rig)
        lm = _pose().frame_from_canonical(identity)
        iris = np.concatenate([np.repeat(lm[list(T.GROUPS["eye_r"])].mean(0, keepdims=True), 5, 0),
                               np.repeat(lm[list(T.GROUPS["eye_l"])].mean(0, keepdims=True), 5, 0)])
        lm478 = np.concatenate([lm, iris])
        fit = model.fit(lm)
        new = fit.expression.copy()
        new[Blendshape.UPPER_LID_UP_L] = 1.0
        out = apply_expression_delta(lm478, fit, new, rig)
        assert out.shape == (478, 3)
        assert not np.allclose(out[list(T.GROUPS["eye_l_upper"])], lm[list(T.GROUPS["eye_l_upper"])], atol=0.5)
        assert np.allclose(out[468:478], lm478[468:478], atol=1e-3)  # lids opened; the pupils stay (gaze kept)
        # the pupils move with the eye corners (a moved eye carries its eyeball)
        moved = lm + np.array([3.0, -2.0, 0.0])
        assert np.allclose(iris_follow(lm478, moved)[468:478], lm478[468:478] + [3.0, -2.0, 0.0])

    def test_batch(self, identity, rig):
        model = FaceModel(identity, rig)
        lms = np.stack([_pose(scale=60 + i).frame_from_canonical(identity) for i in range(3)])
        fits = model.fit_batch(lms)
        new = fits.expression.copy()
        new[:, Blendshape.LIP_CORNER_PULL_L] = 1.0
        out = apply_expression_delta(lms, fits, new, rig)
        assert out.shape == (3, 468, 3)
        assert (out[:, 291, 1] < lms[:, 291, 1] - 1.0).all()  # the left corner went up

    def test_exception(self, identity, rig):
        model = FaceModel(identity, rig)
        lm = _pose().frame_from_canonical(identity)
        with pytest.raises(ValueError, match="new_expression"):
            apply_expression_delta(lm, model.fit(lm), np.zeros(3), rig)


# ---------------------------------------------------------------------------- raster
@pytest.fixture(scope="module")
def posed(topo, rig):
    w = np.zeros(len(Blendshape))
    w[Blendshape.JAW_OPEN] = 1.0
    return _pose(yaw=0.1, pitch=0.0, roll=0.0, scale=90, t=(128, 128, 0)).frame_from_canonical(
        topo.canonical + rig.displacement(w)).astype(np.float32)


class TestRaster:
    @pytest.mark.parametrize("fn", [render_nmfc, render_shape])
    @pytest.mark.parametrize("size", [(256, 256), (200, 300)])
    def test_cardinality(self, fn, size, posed):
        img = fn(posed, size)
        assert img.shape == (*size, 3) and img.dtype == np.uint8
        assert img[0, 0].tolist() == [0, 0, 0]  # background
        assert (img.max(-1) > 0).mean() > 0.2  # the face covers the middle

    def test_shape_is_grey(self, posed):
        img = render_shape(posed, (256, 256))
        assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])

    def test_nmfc_colours(self, posed, topo):
        img = render_nmfc(posed, (256, 256))
        # the forehead top is dark in y (min of canonical y), the chin bright in y
        fy, cy = posed[151, :2].round().astype(int), posed[199, :2].round().astype(int)
        assert img[fy[1], fy[0], 1] < 80 and img[cy[1], cy[0], 1] > 180

    def test_mouth_hole(self, posed):
        mouth = np.round((posed[13, :2] + posed[14, :2]) / 2).astype(int)
        assert render_nmfc(posed, (256, 256))[mouth[1], mouth[0]].tolist() == [0, 0, 0]
        filled = render_nmfc(posed, (256, 256), holes=())
        assert filled[mouth[1], mouth[0]].max() > 0

    def test_no_state_between_calls(self, posed):
        a = render_nmfc(posed, (128, 128))
        render_nmfc(posed * np.array([0.5, 0.5, 1], np.float32), (128, 128))
        assert np.array_equal(a, render_nmfc(posed, (128, 128)))

    def test_ids_visible_front_faces(self, posed, topo):
        ids = rasterise_ids(posed.astype(np.float64), topo.triangles.astype(np.int64), (256, 256))
        assert ids.min() == -1 and ids.max() < len(topo.triangles)

    def test_exceptions(self, posed):
        with pytest.raises(ValueError, match="size"):
            render_nmfc(posed, (0, 10))
        with pytest.raises(ValueError, match="NaN"):
            render_shape(np.full((468, 3), np.nan, np.float32), (10, 10))
        with pytest.raises(ValueError, match="vertices"):
            render_nmfc(np.zeros((10, 3), np.float32), (10, 10))

    def test_fit_result_type(self, identity, rig, posed):
        fit = FaceModel(identity, rig).fit(posed)
        assert isinstance(fit, FaceFit) and fit.expression.shape == (len(Blendshape),)
