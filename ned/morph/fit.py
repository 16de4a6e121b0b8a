"""Fit the face model to tracked landmarks: pose, identity and expression weights.

Model of a frame's 468 mesh points (image pixels, x right, y down, z away)::

    frame = scale * rotation @ (identity + rig.displacement(expression)) + translation

- pose (``scale``, ``rotation``, ``translation``): a robust (iteratively reweighted,
  Cauchy) similarity Procrustes of the identity's rigid points (forehead, nose bridge,
  temples, face side, inner eye corners) onto the frame's. No rig shape moves a rigid
  point, so pose does not depend on the expression.
- identity (``(468, 3)`` canonical units, ≈ IOD): the actor's neutral face, estimated
  over a clip (:func:`estimate_identity`): the median of its most neutral-looking
  frames, less any lip-corner expression held through the whole clip (a constant smile
  or frown, :func:`held_expression`), which would otherwise pass for the actor's neutral.
  Weights are therefore measured from the actor's own neutral face: 0 = neutral.
- expression ``(K,)``: bounded least squares against the rig, in canonical space, with
  depth residuals down-weighted (MediaPipe's z is the noisiest axis) and a small ridge.
  The box-constrained problem is solved exactly for a whole batch of frames at once by
  vectorised block principal pivoting on the K x K normal equations (thousands of
  frames per second on one core).

The residual reported per frame is the RMS distance (in IOD units, canonical space)
between the landmarks and the fitted model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ned.morph.rig import EDIT_KEPT_SHAPES, Blendshape, Rig, load_rig, shape_mask
from ned.morph.topology import NUM_VERTICES, Topology, eye_corner_centres, inner_lip_gaps, load_topology
from ned.types import check_array

__all__ = [
    "FitOptions",
    "Pose",
    "FaceFit",
    "FaceFits",
    "FaceModel",
    "procrustes",
    "estimate_identity",
    "held_expression",
    "corner_elevation",
    "solve_box_qp",
    "apply_expression_delta",
    "pose_displacement",
    "iris_follow",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitOptions:
    """Options of :class:`FaceModel` and :func:`estimate_identity`.

    Attributes:
        robust_iterations: reweighting passes of the rigid Procrustes (>= 1).
        robust_scale: Cauchy scale of rigid-point residuals (IOD units, > 0).
        z_weight: weight of depth residuals in the expression fit, in [0, 1].
        ridge: Tikhonov weight on the expression (>= 0), relative to the mean diagonal
            of the rig's normal matrix.
        solver_iterations: pivoting iterations of the bounded solve (>= 1; it usually
            stops after 2-5).
        polish_sweeps: projected Gauss-Seidel sweeps for frames the pivoting left
            unsolved (>= 0).
        pose_alternations: times the pose is refined on all points against the fitted
            shape, each followed by a new expression fit (>= 0; 0 = rigid points only).
        pose_nonrigid_weight: weight of non-rigid points in those refinements, in [0, 1].
        identity_fraction: fraction of the clip's frames, the most neutral-looking ones,
            whose median forms the identity, in (0, 1].
        held_corner_tolerance: lip-corner elevation (IOD units, >= 0) a neutral mouth
            may show; a clip-long expression beyond it (a held smile or frown) is taken
            out of the identity and left to the expression weights
            (:func:`held_expression`); None keeps whatever the clip holds in the identity.
    """

    robust_iterations: int = 3
    robust_scale: float = 0.05
    z_weight: float = 0.0
    ridge: float = 1e-3
    solver_iterations: int = 30
    polish_sweeps: int = 2
    pose_alternations: int = 1
    pose_nonrigid_weight: float = 0.3
    identity_fraction: float = 0.5
    held_corner_tolerance: float | None = 0.025

    def __post_init__(self) -> None:
        for name in ("robust_iterations", "solver_iterations"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("polish_sweeps", "pose_alternations"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not 0.0 <= self.pose_nonrigid_weight <= 1.0:
            raise ValueError(f"pose_nonrigid_weight must be in [0, 1], got {self.pose_nonrigid_weight}")
        if not self.robust_scale > 0:
            raise ValueError(f"robust_scale must be > 0, got {self.robust_scale}")
        if not 0.0 <= self.z_weight <= 1.0:
            raise ValueError(f"z_weight must be in [0, 1], got {self.z_weight}")
        if not self.ridge >= 0:
            raise ValueError(f"ridge must be >= 0, got {self.ridge}")
        if not 0.0 < self.identity_fraction <= 1.0:
            raise ValueError(f"identity_fraction must be in (0, 1], got {self.identity_fraction}")
        if self.held_corner_tolerance is not None and not self.held_corner_tolerance >= 0:
            raise ValueError(f"held_corner_tolerance must be >= 0 or None, got {self.held_corner_tolerance}")


@dataclass(frozen=True)
class Pose:
    """Similarity from canonical space to frame pixels: ``frame = scale * R @ p + t``.

    Attributes:
        rotation: (3, 3) float64 proper rotation.
        translation: (3,) float64 frame pixels.
        scale: pixels per canonical unit (≈ pixels per IOD), > 0.
    """

    rotation: np.ndarray
    translation: np.ndarray
    scale: float

    def frame_from_canonical(self, points: np.ndarray) -> np.ndarray:
        """Canonical points ``(*, 3)`` to frame pixels ``(*, 3)`` (float64)."""
        return self.scale * np.asarray(points, np.float64) @ self.rotation.T + self.translation

    def canonical_from_frame(self, points: np.ndarray) -> np.ndarray:
        """Frame pixels ``(*, 3)`` to canonical points ``(*, 3)`` (float64)."""
        return (np.asarray(points, np.float64) - self.translation) @ self.rotation / self.scale

    def angles(self) -> tuple[float, float, float]:
        """``(yaw, pitch, roll)`` radians (rotation = Rz(roll) Ry(yaw) Rx(pitch), image axes)."""
        r = self.rotation
        yaw = float(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
        pitch = float(np.arctan2(r[2, 1], r[2, 2]))
        roll = float(np.arctan2(r[1, 0], r[0, 0]))
        return yaw, pitch, roll


@dataclass(frozen=True)
class FaceFit:
    """One frame's fit.

    Attributes:
        pose: canonical -> frame similarity.
        expression: (K,) float32 weights indexed by :class:`ned.morph.rig.Blendshape`.
        residual: RMS landmark error of the fit, IOD units.
    """

    pose: Pose
    expression: np.ndarray
    residual: float


@dataclass(frozen=True)
class FaceFits:
    """A batch of fits (one per frame), as arrays.

    Attributes:
        rotation: (T, 3, 3). translation: (T, 3). scale: (T,).
        expression: (T, K) float32. residual: (T,) float32 (IOD units).
    """

    rotation: np.ndarray
    translation: np.ndarray
    scale: np.ndarray
    expression: np.ndarray
    residual: np.ndarray

    def __len__(self) -> int:
        return int(self.expression.shape[0])

    def __getitem__(self, t: int) -> FaceFit:
        return FaceFit(Pose(self.rotation[t], self.translation[t], float(self.scale[t])),
                       self.expression[t], float(self.residual[t]))

    def with_expression(self, expression: np.ndarray) -> "FaceFits":
        """The same poses with other weights ``(T, K)`` (residual set to NaN: not fitted)."""
        check_array(expression, f"{len(self)} {self.expression.shape[1]}", name="expression")
        return FaceFits(self.rotation, self.translation, self.scale, expression.astype(np.float32),
                        np.full(len(self), np.nan, np.float32))


# ---------------------------------------------------------------------------------------
# Pure math
# ---------------------------------------------------------------------------------------
def procrustes(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted similarity ``dst ≈ s * R @ src + t`` for a batch (Umeyama).

    Args:
        src: (M, 3) or (T, M, 3). dst: (T, M, 3). weights: (T, M) or (M,) >= 0, or None.

    Returns:
        ``R`` (T, 3, 3) proper rotations, ``t`` (T, 3), ``s`` (T,).
    """
    dst = np.asarray(dst, np.float64)
    src = np.asarray(src, np.float64)
    if weights is None:
        w = np.full(dst.shape[:2], 1.0 / dst.shape[1])
    else:
        w = np.broadcast_to(np.asarray(weights, np.float64), dst.shape[:2])
        w = w / np.maximum(w.sum(1, keepdims=True), 1e-12)
    mu_s = np.matmul(w[:, None, :], src)[:, 0] if src.ndim == 3 else w @ src  # (T, 3)
    mu_d = np.matmul(w[:, None, :], dst)[:, 0]
    a = src - mu_s[:, None]
    b = dst - mu_d[:, None]
    cov = np.matmul((b * w[..., None]).transpose(0, 2, 1), a)  # (T, 3, 3) = sum w b a^T
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(np.matmul(u, vt)))
    u[:, :, 2] *= d[:, None]
    sig[:, 2] *= d
    rot = np.matmul(u, vt)
    var = (w * _sq_norm(a)).sum(-1)
    s = sig.sum(1) / np.maximum(var, 1e-12)
    t = mu_d - s[:, None] * np.matmul(rot, mu_s[..., None])[..., 0]
    return rot, t, s


def _sq_norm(x: np.ndarray) -> np.ndarray:
    """Squared norm over a last axis of length 3 (faster than a strided reduction)."""
    return x[..., 0] * x[..., 0] + x[..., 1] * x[..., 1] + x[..., 2] * x[..., 2]


def pose_displacement(d: np.ndarray, rotation: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Canonical displacements in frame pixels, ``s R d``: ``(T, M, 3)`` for ``d`` ``(M, 3)``
    or ``(T, M, 3)``, ``rotation`` ``(T, 3, 3)`` and ``scale`` ``(T,)`` (the fits' poses)."""
    return np.asarray(scale)[:, None, None] * np.matmul(d, np.transpose(rotation, (0, 2, 1)))


def _apply_pose(points: np.ndarray, rot: np.ndarray, t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``s R p + t`` for points (M, 3) or (T, M, 3): (T, M, 3)."""
    return pose_displacement(points, rot, s) + t[:, None]


def _invert_pose(points: np.ndarray, rot: np.ndarray, t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``R^T (p - t) / s`` for points (T, M, 3)."""
    return np.matmul(points - t[:, None], rot) / s[:, None, None]


def _robust_pose(
    src: np.ndarray, dst: np.ndarray, options: FitOptions, prior: np.ndarray | None = None,
    iterations: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cauchy-reweighted :func:`procrustes`; residuals measured in canonical units.

    ``prior`` (M,) multiplies the robust weights (e.g. rigid points more than others).
    """
    w = prior
    for _ in range(iterations or options.robust_iterations):
        rot, t, s = procrustes(src, dst, w)
        diff = _apply_pose(src, rot, t, s) - dst
        r2 = _sq_norm(diff) / (s * s)[:, None]
        w = 1.0 / (1.0 + r2 / options.robust_scale ** 2)
        if prior is not None:
            w = w * prior
    return rot, t, s


def solve_box_qp(
    gram: np.ndarray, rhs: np.ndarray, lower: np.ndarray, upper: np.ndarray,
    iterations: int = 30, sweeps: int = 2,
) -> np.ndarray:
    """Minimise ``0.5 w^T G w - b^T w`` subject to ``lower <= w <= upper``, for many ``b``.

    Block principal pivoting (Kim & Park's NNLS method extended to two-sided bounds),
    vectorised over the frames still being solved: each variable is free, at its lower
    or at its upper bound; the free ones are solved exactly with the others held; every
    variable that breaks a KKT condition (a free one out of bounds, a held one whose
    multiplier has the wrong sign) switches at once; when the number of violations stops
    falling, only the highest-index one switches (Murty's rule, finite termination).
    Typically 2-5 iterations. Frames left unsolved after ``iterations`` (none in
    practice) get ``sweeps`` projected Gauss-Seidel sweeps.

    Args:
        gram: (K, K) symmetric positive definite. rhs: (T, K). lower, upper: (K,).
        iterations: pivoting iterations. sweeps: fallback polishing sweeps.

    Returns:
        (T, K) float64 solutions.
    """
    g = np.asarray(gram, np.float64)
    b = np.atleast_2d(np.asarray(rhs, np.float64))
    lo = np.asarray(lower, np.float64)
    hi = np.asarray(upper, np.float64)
    n, k = b.shape
    eye = np.eye(k, dtype=bool)
    w = np.clip(b @ np.linalg.inv(g), lo, hi)
    at_lo = w <= lo
    at_hi = w >= hi
    best = np.full(n, k + 1)  # fewest violations seen (Kim & Park's backup rule)
    patience = np.full(n, 3)
    active = np.arange(n)
    tol = 1e-10
    for _ in range(iterations):
        if active.size == 0:
            break
        al, ah = at_lo[active], at_hi[active]
        held = al | ah
        free = ~held
        hv = np.where(al, lo, 0.0) + np.where(ah, hi, 0.0)
        mat = np.where(free[:, :, None] & free[:, None, :], g, 0.0) + (eye & held[:, :, None])
        x = np.linalg.solve(mat, np.where(free, b[active] - hv @ g, hv)[..., None])[..., 0]
        grad = x @ g - b[active]
        bad_lo = free & (x < lo - tol)
        bad_hi = free & (x > hi + tol)
        bad_held = (al & (grad < -tol)) | (ah & (grad > tol))
        bad = bad_lo | bad_hi | bad_held
        count = bad.sum(1)
        w[active] = np.clip(x, lo, hi)
        done = count == 0
        improved = count < best[active]
        best[active] = np.where(improved, count, best[active])
        patience[active] = np.where(improved, 3, patience[active] - 1)
        single = ~improved & (patience[active] <= 0)
        # Murty's rule: switch only the highest-index violation
        last = k - 1 - np.argmax(bad[:, ::-1], axis=1)
        only = np.zeros_like(bad)
        only[np.arange(len(bad)), last] = True
        switch = np.where(single[:, None], bad & only, bad)
        al = np.where(switch & bad_lo, True, np.where(switch & bad_held, False, al))
        ah = np.where(switch & bad_hi, True, np.where(switch & bad_held, False, ah))
        at_lo[active], at_hi[active] = al, ah
        active = active[~done]
    if sweeps and active.size:
        diag = np.diag(g)
        wa, ba = w[active], b[active]
        for _ in range(sweeps):
            for j in range(k):
                wa[:, j] = np.clip(wa[:, j] - (wa @ g[:, j] - ba[:, j]) / diag[j], lo[j], hi[j])
        w[active] = wa
    return w


def iris_follow(landmarks: np.ndarray, moved_mesh: np.ndarray) -> np.ndarray:
    """Move the 10 iris points (rows 468..477) with their eye: the mean of its two corners.

    The corners (canthi) carry the eyeball; lids that open or close around it leave the
    pupil where it was, as :mod:`ned.render.eyes` renders it (gaze is kept from the source).

    Args:
        landmarks: (478, 3) or (T, 478, 3), the source points (mesh then iris: right eye
            468..472, left eye 473..477).
        moved_mesh: the new mesh, (468, 3) or (T, 468, 3).

    Returns:
        Same shape as ``landmarks``: ``moved_mesh`` then the shifted iris points.
    """
    out = np.array(landmarks, dtype=np.float64, copy=True)
    out[..., :NUM_VERTICES, :] = moved_mesh
    if out.shape[-2] > NUM_VERTICES:
        r0, l0 = eye_corner_centres(np.asarray(landmarks, np.float64)[..., :NUM_VERTICES, :])
        r1, l1 = eye_corner_centres(np.asarray(moved_mesh, np.float64))
        out[..., 468:473, :] += (r1 - r0)[..., None, :]
        out[..., 473:478, :] += (l1 - l0)[..., None, :]
    return out


# ---------------------------------------------------------------------------------------
# Identity
# ---------------------------------------------------------------------------------------
def _valid_frames(landmark_seq: np.ndarray) -> np.ndarray:
    return np.isfinite(landmark_seq[:, :NUM_VERTICES]).all(axis=(1, 2))


def estimate_identity(
    landmark_seq: np.ndarray,
    *,
    rig: Rig | None = None,
    topology: Topology | None = None,
    options: FitOptions = FitOptions(),
) -> np.ndarray:
    """The actor's neutral face in canonical space, from a clip's landmarks.

    Frames are aligned (robust Procrustes on the rigid points) to the canonical mesh,
    then to their own median; the most neutral-looking ``identity_fraction`` of them
    (closest to the median on the mobile points, mouth most closed) give the per-vertex
    median. A lip-corner expression held beyond ``held_corner_tolerance`` is then taken
    out (:func:`held_expression`), so a clip-long smile is measured as expression.

    Args:
        landmark_seq: (T, 468, 3) or (T, 478, 3) frame pixels; frames with NaN are skipped.
        rig, topology: defaults are the packaged ones.
        options: fit options.

    Returns:
        (468, 3) float32 canonical units.

    Raises:
        ValueError: bad shape, or no frame with a complete mesh.
    """
    landmark_seq = np.asarray(landmark_seq)
    check_array(landmark_seq, "T N 3", name="landmark_seq")
    if landmark_seq.shape[1] < NUM_VERTICES:
        raise ValueError(f"landmark_seq: expected at least {NUM_VERTICES} points per frame, got {landmark_seq.shape}")
    topo = topology or load_topology()
    rig = rig or load_rig()
    frames = landmark_seq[_valid_frames(landmark_seq), :NUM_VERTICES].astype(np.float64)
    if len(frames) == 0:
        raise ValueError("landmark_seq has no frame with a complete face mesh")
    rigid = topo.group("rigid")
    ref = topo.canonical.astype(np.float64)
    for _ in range(2):
        rot, t, s = _robust_pose(ref[rigid], frames[:, rigid], options)
        aligned = _invert_pose(frames, rot, t, s)
        ref = np.median(aligned, axis=0)
    mobile = np.ones(NUM_VERTICES, bool)
    mobile[rigid] = False
    dev = np.sqrt(((aligned[:, mobile] - ref[mobile]) ** 2).sum(-1).mean(-1))
    aperture = np.abs(inner_lip_gaps(aligned)[..., 1]).mean(-1)
    score = dev / max(np.median(dev), 1e-9) + aperture / max(np.median(aperture), 1e-9)
    keep = np.argsort(score)[: max(1, int(round(options.identity_fraction * len(aligned))))]
    identity = np.median(aligned[keep], axis=0)
    if options.held_corner_tolerance is not None:
        held = held_expression(identity, options.held_corner_tolerance, rig)
        if held.any():
            logger.debug("identity: held lip-corner expression taken out: %s",
                         {Blendshape(k).name: round(float(held[k]), 3) for k in np.flatnonzero(held)})
        identity = identity - rig.displacement(held).astype(np.float64)
    return identity.astype(np.float32)


_CORNERS = {"L": 291, "R": 61}  # outer lip corners, the person's left / right
_LIP_CENTRE = (13, 14)  # inner-lip centre, upper / lower


def corner_elevation(points: np.ndarray, rig: Rig | None = None) -> np.ndarray:
    """Height of each outer lip corner above the lip line: ``(*, 2)`` (person's L, R).

    Measured in canonical units (y down, so a corner above the line is positive) from the
    point between the inner-lip centres that parting the lips does not move (weighted by
    the rig's ``LIPS_PART`` field), so opening the lips for speech leaves it unchanged;
    a smile raises it (about 0.09 per unit of ``LIP_CORNER_PULL``), a frown lowers it.
    The canonical neutral mesh measures -0.004; the identities of the neutral MEAD clips
    (two actors) are within 0.01 of that, their other emotions but happy within about
    0.025, their happy clips 0.05-0.06 above it, the smiling astronaut sample 0.10 above.

    Args:
        points: (*, 468, 3) canonical-space points (e.g. an identity).
        rig: default the packaged rig.
    """
    rig = rig or load_rig()
    up, lo = _LIP_CENTRE
    d_up, d_lo = rig.basis[Blendshape.LIPS_PART, [up, lo], 1].astype(np.float64)
    a = d_lo / (d_lo - d_up) if d_lo != d_up else 0.5
    p = np.asarray(points, np.float64)
    line = a * p[..., up, 1] + (1.0 - a) * p[..., lo, 1]
    return np.stack([line - p[..., _CORNERS[s], 1] for s in ("L", "R")], axis=-1)


def held_expression(identity: np.ndarray, tolerance: float, rig: Rig | None = None) -> np.ndarray:
    """The lip-corner expression an identity holds beyond a neutral mouth: (K,) float32.

    A clip's identity is the median of its most neutral frames; when the actor smiles (or
    frowns) through the whole clip, so does that median. Per side, the corner elevation
    (:func:`corner_elevation`) beyond ``tolerance`` is converted into ``LIP_CORNER_PULL``
    (above) or ``LIP_CORNER_DEPRESS`` (below) weight by the rig's own effect on it (a soft
    threshold: continuous in the identity). Subtracting ``rig.displacement`` of the result
    from the identity leaves a neutral mouth, and the fitted weights then carry the held
    expression. Brows, lids and cheeks are not examined: their neutral position varies too
    much between faces to tell a held expression from the actor's own face.

    Args:
        identity: (468, 3) canonical-space neutral face estimate.
        tolerance: elevation (IOD units, >= 0) a neutral mouth may show
            (:attr:`FitOptions.held_corner_tolerance`).
        rig: default the packaged rig.

    Raises:
        ValueError: bad identity shape or negative tolerance.

    Returns:
        (K,) float32 weights, zero except the lip-corner shapes.
    """
    rig = rig or load_rig()
    check_array(np.asarray(identity), f"{NUM_VERTICES} 3", name="identity")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    elevation = corner_elevation(identity, rig)
    base = corner_elevation(rig.canonical, rig)
    held = np.zeros(rig.num_shapes, np.float32)
    for k, side in enumerate(("L", "R")):
        pull, depress = Blendshape[f"LIP_CORNER_PULL_{side}"], Blendshape[f"LIP_CORNER_DEPRESS_{side}"]
        up = corner_elevation(rig.canonical + rig.basis[pull], rig)[k] - base[k]
        down = base[k] - corner_elevation(rig.canonical + rig.basis[depress], rig)[k]
        excess = elevation[k] - base[k]
        if excess > tolerance and up > 0:
            held[pull] = min((excess - tolerance) / up, rig.upper[pull])
        elif excess < -tolerance and down > 0:
            held[depress] = min((-excess - tolerance) / down, rig.upper[depress])
    return held


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------
@dataclass
class _Solver:
    """Precomputed normal equations of the weighted expression fit."""

    proj: np.ndarray  # (K, 1404) = B W^2
    gram: np.ndarray  # (K, K) = B W^2 B^T + ridge
    weights: np.ndarray  # (1404,) W^2 per coordinate


class FaceModel:
    """An actor's face model: identity + rig, fitted per frame.

    Args:
        identity: (468, 3) canonical neutral face of the actor (see
            :func:`estimate_identity`); default the canonical mesh.
        rig: default :func:`ned.morph.rig.load_rig`.
        options: fit options.
        topology: default :func:`ned.morph.topology.load_topology`.

    Raises:
        ValueError: bad identity shape.
    """

    def __init__(
        self,
        identity: np.ndarray | None = None,
        rig: Rig | None = None,
        options: FitOptions = FitOptions(),
        topology: Topology | None = None,
    ) -> None:
        self.topology = topology or load_topology()
        self.rig = rig or load_rig()
        self.options = options
        ident = self.rig.canonical if identity is None else identity
        check_array(np.asarray(ident), f"{NUM_VERTICES} 3", name="identity")
        self.identity = np.asarray(ident, np.float64)
        self._rigid = self.topology.group("rigid")
        self._pose_weights = np.full(NUM_VERTICES, options.pose_nonrigid_weight)
        self._pose_weights[self._rigid] = 1.0
        self._solver = self._build_solver()
        self._basis = self.rig.basis.reshape(self.rig.num_shapes, -1).astype(np.float64)

    @classmethod
    def from_sequence(
        cls, landmark_seq: np.ndarray, rig: Rig | None = None, options: FitOptions = FitOptions(),
        topology: Topology | None = None,
    ) -> "FaceModel":
        """A model whose identity is estimated from ``landmark_seq (T, 468|478, 3)``.

        Raises:
            ValueError: as :func:`estimate_identity`.
        """
        identity = estimate_identity(landmark_seq, rig=rig, topology=topology, options=options)
        return cls(identity, rig, options, topology)

    def _build_solver(self) -> _Solver:
        basis = self.rig.basis.reshape(self.rig.num_shapes, -1).astype(np.float64)
        wz = np.tile(np.array([1.0, 1.0, self.options.z_weight ** 2]), NUM_VERTICES)
        proj = basis * wz
        gram = proj @ basis.T
        gram += np.eye(len(gram)) * self.options.ridge * np.trace(gram) / len(gram)
        return _Solver(proj=proj, gram=gram, weights=wz)

    @property
    def num_shapes(self) -> int:
        """K."""
        return self.rig.num_shapes

    def fit(self, landmarks: np.ndarray) -> FaceFit:
        """Fit one frame.

        Args:
            landmarks: (468, 3) or (478, 3) frame pixels (only the mesh is used).

        Returns:
            The frame's :class:`FaceFit`.

        Raises:
            ValueError: bad shape or non-finite landmarks.
        """
        landmarks = np.asarray(landmarks)
        check_array(landmarks, "N 3", name="landmarks")
        return self.fit_batch(landmarks[None])[0]

    def fit_batch(self, landmark_seq: np.ndarray) -> FaceFits:
        """Fit T frames at once (vectorised).

        Args:
            landmark_seq: (T, 468, 3) or (T, 478, 3) frame pixels, all finite (drop or
                interpolate missing frames first).

        Returns:
            :class:`FaceFits` with T rows.

        Raises:
            ValueError: bad shape or non-finite landmarks.
        """
        landmark_seq = np.asarray(landmark_seq)
        check_array(landmark_seq, "T N 3", name="landmark_seq")
        if landmark_seq.shape[1] < NUM_VERTICES:
            raise ValueError(f"landmark_seq: expected at least {NUM_VERTICES} points per frame, got {landmark_seq.shape}")
        pts = landmark_seq[:, :NUM_VERTICES].astype(np.float64)
        if not np.isfinite(pts).all():
            raise ValueError("landmarks contain NaN/inf; fit only frames with a face")
        opt = self.options
        basis = self._basis
        rot, t, s = _robust_pose(self.identity[self._rigid], pts[:, self._rigid], opt)
        for a in range(opt.pose_alternations + 1):
            last = a == opt.pose_alternations
            delta = (_invert_pose(pts, rot, t, s) - self.identity).reshape(len(pts), -1)
            rhs = delta @ self._solver.proj.T
            w = solve_box_qp(self._solver.gram, rhs, self.rig.lower, self.rig.upper,
                             opt.solver_iterations, opt.polish_sweeps)
            model = w @ basis
            if last:
                break
            # refine the pose on every point against the fitted shape (rigid points weigh more)
            shape = self.identity + model.reshape(len(pts), NUM_VERTICES, 3)
            rot, t, s = _robust_pose(shape, pts, opt, self._pose_weights, iterations=2)
        err = delta - model
        residual = np.sqrt((err * err).mean(-1) * 3.0)
        return FaceFits(rot, t, s, w.astype(np.float32), residual.astype(np.float32))

    def canonical_shape(self, expression: np.ndarray) -> np.ndarray:
        """Identity + rig for weights ``(*, K)``: ``(*, 468, 3)`` canonical units (float64)."""
        return self.identity + self.rig.displacement(expression).astype(np.float64)

    def reconstruct(self, fit: FaceFit | FaceFits) -> np.ndarray:
        """The model's mesh in frame pixels: (468, 3) for a FaceFit, (T, 468, 3) for FaceFits."""
        shape = self.canonical_shape(fit.expression)
        if isinstance(fit, FaceFit):
            return fit.pose.frame_from_canonical(shape)
        return _apply_pose(shape, fit.rotation, fit.translation, fit.scale)


def apply_expression_delta(
    landmarks: np.ndarray,
    fit: FaceFit | FaceFits,
    new_expression: np.ndarray,
    rig: Rig | None = None,
    keep: tuple = EDIT_KEPT_SHAPES,
) -> np.ndarray:
    """Edit tracked landmarks by the rig difference of two weight vectors.

    ``out = landmarks + scale * R @ (rig(new) - rig(old))``: everything the rig does not
    model (residual detail, the exact lip motion) stays as tracked. Weights of ``keep``
    (speech and gaze) are taken from ``fit`` whatever ``new_expression`` says, so the
    inner-lip aperture is unchanged exactly; blinks follow ``new_expression`` (the
    manipulators keep the source's, plus any held lid narrowing). Iris points (478-point input) follow their
    eye's corners (:func:`iris_follow`): opening the lids leaves the pupils in place.

    Args:
        landmarks: (468|478, 3) with a :class:`FaceFit`, or (T, 468|478, 3) with
            :class:`FaceFits`; frame pixels.
        fit: the landmarks' fit(s).
        new_expression: (K,) or (T, K).
        rig: default the packaged rig.
        keep: shapes copied from ``fit`` (empty tuple to apply all of ``new_expression``).

    Returns:
        Same shape as ``landmarks``, float32.

    Raises:
        ValueError: on mismatched shapes.
    """
    rig = rig or load_rig()
    landmarks = np.asarray(landmarks)
    old = np.asarray(fit.expression, np.float64)
    new = np.array(new_expression, np.float64, copy=True)
    if new.shape != old.shape:
        raise ValueError(f"new_expression: expected shape {old.shape}, got {new.shape}")
    mask = shape_mask(tuple(keep))
    new[..., mask] = old[..., mask]
    d = rig.displacement(new - old).astype(np.float64)
    if isinstance(fit, FaceFit):
        check_array(landmarks, "N 3", name="landmarks")
        moved = landmarks[:NUM_VERTICES].astype(np.float64) + fit.pose.scale * d @ fit.pose.rotation.T
    else:
        check_array(landmarks, f"{len(fit)} N 3", name="landmarks")
        moved = landmarks[:, :NUM_VERTICES].astype(np.float64) + pose_displacement(d, fit.rotation, fit.scale)
    return iris_follow(landmarks, moved).astype(np.float32)
