"""FLAME (Li et al., SIGGRAPH Asia 2017) with linear blend skinning, in PyTorch.

Convention (as DECA uses FLAME):
- identity ``shape`` (B, 100) and ``exp`` (B, 50) coefficients weight the first 100 shape
  components and the first 50 expression components of ``shapedirs`` (in FLAME 2020's
  ``generic_model.pkl`` the 400 components are 300 shape, then 100 expression);
- ``pose`` (B, 6) is axis-angle in radians: global (root) rotation (3), then jaw (3);
  neck and both eyeballs stay at rest;
- vertices are in FLAME's model space (metres; y up, z towards the viewer), no global
  translation (DECA's orthographic camera carries it).

Skinning (FLAME paper, Eq. 1-4): ``v = W(T + B_S(beta) + B_P(theta), J(beta), theta, weights)``
with ``B_P(theta) = posedirs . vec(R(theta_k) - I)`` over the non-root joints and
``J(beta) = J_regressor (T + B_S(beta))``.

The pickle is read by :mod:`ned.deca.safe_pickle` (no chumpy); this file's code is our own.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ned.errors import ModelFileError
from ned.deca.safe_pickle import load_pickle

__all__ = [
    "FLAME_EXP_OFFSET",
    "FlameArrays",
    "FlameLayer",
    "JAW_JOINT",
    "N_EXP",
    "N_JOINTS",
    "N_POSE",
    "N_SHAPE",
    "axis_angle_to_matrix",
    "blend_shapes",
    "flame_arrays_from_dict",
    "flame_full_pose",
    "global_rigid_transforms",
    "load_flame",
    "pose_feature",
    "skin_vertices",
]

logger = logging.getLogger(__name__)

N_SHAPE = 100  # identity coefficients DECA estimates
N_EXP = 50  # expression coefficients DECA estimates
N_POSE = 6  # global rotation (3) + jaw rotation (3), axis-angle radians
N_JOINTS = 5  # root, neck, jaw, left eye, right eye
JAW_JOINT = 2
FLAME_EXP_OFFSET = 300  # first expression component in generic_model.pkl's shapedirs

_REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights", "f")


@dataclass(frozen=True)
class FlameArrays:
    """The arrays of a FLAME model, cut to the components DECA uses.

    Attributes:
        v_template: (V, 3) float32 mean head, metres.
        shapedirs: (V, 3, n_shape + n_exp) float32 identity components then expression components.
        posedirs: (V, 3, 9 * (J - 1)) float32 pose-corrective components.
        j_regressor: (J, V) float32 joint regressor (dense).
        parents: (J,) int64 kinematic parent of each joint, -1 for the root; parents[i] < i.
        lbs_weights: (V, J) float32 skinning weights, rows summing to 1.
        faces: (F, 3) int64 triangles, indices into the vertices.
        n_shape: identity coefficients (columns of shapedirs that come first).
        n_exp: expression coefficients (the remaining columns).
    """

    v_template: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    j_regressor: np.ndarray
    parents: np.ndarray
    lbs_weights: np.ndarray
    faces: np.ndarray
    n_shape: int
    n_exp: int

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])


def _dense(value: Any) -> np.ndarray:
    """An array from an ndarray, a scipy.sparse matrix or a nested list."""
    if hasattr(value, "toarray"):
        value = value.toarray()
    return np.asarray(value)


def flame_arrays_from_dict(
    model: dict, *, n_shape: int = N_SHAPE, n_exp: int = N_EXP, source: str = "generic_model.pkl"
) -> FlameArrays:
    """Validate a loaded ``generic_model.pkl`` dict and cut it to DECA's components.

    Args:
        model: the dict read by :func:`ned.deca.safe_pickle.load_pickle` (keys ``v_template``
            (V, 3), ``shapedirs`` (V, 3, K >= 300 + n_exp), ``posedirs`` (V, 3, 36),
            ``J_regressor`` (5, V) dense or sparse, ``kintree_table`` (2, 5), ``weights``
            (V, 5), ``f`` (F, 3)).
        n_shape: identity components to keep (from component 0).
        n_exp: expression components to keep (from component 300).
        source: the file's name for messages.

    Returns:
        The model's arrays in float32 / int64.

    Raises:
        ModelFileError: a key is missing or an array has an unexpected shape.
    """
    if not isinstance(model, dict):
        raise ModelFileError(f"{source}: expected a dict of FLAME arrays, got {type(model).__name__}; "
                             "is this FLAME's generic_model.pkl?")
    missing = [key for key in _REQUIRED_KEYS if key not in model]
    if missing:
        raise ModelFileError(f"{source}: missing {', '.join(missing)}; is this FLAME's generic_model.pkl?")

    def bad(what: str, expected: str, got: tuple) -> ModelFileError:
        return ModelFileError(f"{source}: {what} has shape {got}, expected {expected}; "
                              "is this FLAME's generic_model.pkl (FLAME 2020)?")

    v_template = _dense(model["v_template"]).astype(np.float32)
    if v_template.ndim != 2 or v_template.shape[1] != 3:
        raise bad("v_template", "(V, 3)", v_template.shape)
    n_vertices = v_template.shape[0]
    shapedirs = _dense(model["shapedirs"]).astype(np.float32)
    if shapedirs.ndim != 3 or shapedirs.shape[:2] != (n_vertices, 3) or shapedirs.shape[2] < FLAME_EXP_OFFSET + n_exp:
        raise bad("shapedirs", f"({n_vertices}, 3, >= {FLAME_EXP_OFFSET + n_exp})", shapedirs.shape)
    kintree = _dense(model["kintree_table"]).astype(np.int64)
    if kintree.shape != (2, N_JOINTS):
        raise bad("kintree_table", f"(2, {N_JOINTS})", kintree.shape)
    parents = kintree[0].copy()
    parents[0] = -1
    if any(not 0 <= parents[i] < i for i in range(1, N_JOINTS)):
        raise ModelFileError(f"{source}: kintree_table parents {kintree[0].tolist()} are not a tree "
                             "ordered root-first; is this FLAME's generic_model.pkl?")
    posedirs = _dense(model["posedirs"]).astype(np.float32)
    if posedirs.shape != (n_vertices, 3, 9 * (N_JOINTS - 1)):
        raise bad("posedirs", f"({n_vertices}, 3, {9 * (N_JOINTS - 1)})", posedirs.shape)
    j_regressor = _dense(model["J_regressor"]).astype(np.float32)
    if j_regressor.shape != (N_JOINTS, n_vertices):
        raise bad("J_regressor", f"({N_JOINTS}, {n_vertices})", j_regressor.shape)
    weights = _dense(model["weights"]).astype(np.float32)
    if weights.shape != (n_vertices, N_JOINTS):
        raise bad("weights", f"({n_vertices}, {N_JOINTS})", weights.shape)
    faces = _dense(model["f"]).astype(np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.size == 0 or faces.min() < 0 or faces.max() >= n_vertices:
        raise ModelFileError(f"{source}: f (triangles) has shape {faces.shape} or indices outside "
                             f"0..{n_vertices - 1}; is this FLAME's generic_model.pkl?")
    dirs = np.concatenate(
        [shapedirs[:, :, :n_shape], shapedirs[:, :, FLAME_EXP_OFFSET:FLAME_EXP_OFFSET + n_exp]], axis=2
    )
    return FlameArrays(
        v_template=v_template,
        shapedirs=np.ascontiguousarray(dirs),
        posedirs=posedirs,
        j_regressor=j_regressor,
        parents=parents,
        lbs_weights=weights,
        faces=faces,
        n_shape=n_shape,
        n_exp=n_exp,
    )


def load_flame(path: str | os.PathLike, *, n_shape: int = N_SHAPE, n_exp: int = N_EXP) -> FlameArrays:
    """Read FLAME's ``generic_model.pkl`` without chumpy.

    Raises:
        ModelFileError: missing / unreadable / unsafe file, or arrays of the wrong shape.
    """
    arrays = flame_arrays_from_dict(load_pickle(path), n_shape=n_shape, n_exp=n_exp, source=str(path))
    logger.debug("FLAME: %d vertices, %d faces from %s", arrays.num_vertices, len(arrays.faces), path)
    return arrays


# ---------------------------------------------------------------------------------------
# Pure functions


def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: axis-angle vectors to rotation matrices.

    Args:
        rotvec: (..., 3) axis * angle, radians.

    Returns:
        (..., 3, 3) rotation matrices (``R @ p`` rotates column vectors ``p``); exact and
        differentiable at zero (Taylor terms below 1e-4 rad).
    """
    if rotvec.shape[-1] != 3:
        raise ValueError(f"rotvec: expected shape (..., 3), got {tuple(rotvec.shape)}")
    theta2 = (rotvec * rotvec).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = theta2 < 1e-8
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    sin_term = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    cos_term = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2_safe)
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(rotvec.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(skew)
    return eye + sin_term * skew + cos_term * (skew @ skew)


def blend_shapes(coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Linear blend-shape offsets.

    Args:
        coeffs: (B, K) coefficients.
        dirs: (V, 3, K) components.

    Returns:
        (B, V, 3) offsets ``sum_k coeffs[b, k] * dirs[:, :, k]``.
    """
    return torch.einsum("bk,vck->bvc", coeffs, dirs)


def pose_feature(rot_mats: torch.Tensor) -> torch.Tensor:
    """FLAME's pose-corrective input: ``vec(R_k - I)`` over the non-root joints.

    Args:
        rot_mats: (B, J, 3, 3) per-joint rotations.

    Returns:
        (B, 9 * (J - 1)) features, joint-major, row-major within each matrix.
    """
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[:, 1:] - eye).reshape(rot_mats.shape[0], -1)


def global_rigid_transforms(rot_mats: torch.Tensor, joints: torch.Tensor, parents: Sequence[int]) -> torch.Tensor:
    """Compose joint rotations down the kinematic tree.

    Args:
        rot_mats: (B, J, 3, 3) local rotation of each joint.
        joints: (B, J, 3) rest-pose joint positions.
        parents: (J,) parent index per joint, -1 for the root, ``parents[i] < i``.

    Returns:
        (B, J, 4, 4) transforms that map a rest-pose point rigidly attached to joint ``j``
        to its posed position (the rest joint position is already subtracted).
    """
    batch, n_joints = joints.shape[:2]
    bottom = torch.zeros(batch, 1, 4, dtype=joints.dtype, device=joints.device)
    bottom[..., 3] = 1.0
    world: list[torch.Tensor] = []
    for j in range(n_joints):
        parent = int(parents[j])
        offset = joints[:, j] - joints[:, parent] if parent >= 0 else joints[:, j]
        local = torch.cat([torch.cat([rot_mats[:, j], offset[..., None]], dim=2), bottom], dim=1)
        world.append(local if parent < 0 else world[parent] @ local)
    posed = torch.stack(world, dim=1)  # (B, J, 4, 4): joint frame -> world
    rest_in_posed = (posed[..., :3, :3] @ joints[..., None])[..., 0]  # R_j J_j
    translation = posed[..., :3, 3] - rest_in_posed
    return _with_translation(posed, translation)


def _with_translation(transforms: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """(B, J, 4, 4) transforms with their translation column replaced by (B, J, 3)."""
    top = torch.cat([transforms[..., :3, :3], translation[..., None]], dim=-1)
    return torch.cat([top, transforms[..., 3:, :]], dim=-2)


def skin_vertices(vertices: torch.Tensor, transforms: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Linear blend skinning.

    Args:
        vertices: (B, V, 3) rest-pose vertices (with shape, expression and pose correctives).
        transforms: (B, J, 4, 4) from :func:`global_rigid_transforms`.
        weights: (V, J) skinning weights.

    Returns:
        (B, V, 3) posed vertices ``sum_j w[v, j] * (T_j [v; 1])``.
    """
    blended = torch.einsum("vj,bjrc->bvrc", weights, transforms[..., :3, :])  # (B, V, 3, 4)
    return (blended[..., :3] @ vertices[..., None])[..., 0] + blended[..., 3]


def flame_full_pose(pose: torch.Tensor) -> torch.Tensor:
    """DECA's 6 pose numbers to per-joint axis-angles.

    Args:
        pose: (B, 6) global rotation (3) then jaw rotation (3), radians.

    Returns:
        (B, 5, 3) axis-angle per joint: root, neck (0), jaw, left eye (0), right eye (0).
    """
    if pose.ndim != 2 or pose.shape[1] != N_POSE:
        raise ValueError(f"pose: expected shape (B, {N_POSE}), got {tuple(pose.shape)}")
    zero = torch.zeros_like(pose[:, :3])
    return torch.stack([pose[:, :3], zero, pose[:, 3:], zero, zero], dim=1)


class FlameLayer(nn.Module):
    """FLAME as a module: (shape, exp, pose) -> vertices.

    Args:
        arrays: the model from :func:`load_flame` / :func:`flame_arrays_from_dict`.
    """

    def __init__(self, arrays: FlameArrays) -> None:
        super().__init__()
        self.n_shape = arrays.n_shape
        self.n_exp = arrays.n_exp
        self.register_buffer("v_template", torch.from_numpy(arrays.v_template))
        self.register_buffer("shapedirs", torch.from_numpy(arrays.shapedirs))
        n_pose = arrays.posedirs.shape[2]
        self.register_buffer("posedirs", torch.from_numpy(arrays.posedirs.reshape(-1, n_pose).T.copy()))
        self.register_buffer("j_regressor", torch.from_numpy(arrays.j_regressor))
        self.register_buffer("lbs_weights", torch.from_numpy(arrays.lbs_weights))
        self.parents = tuple(int(p) for p in arrays.parents)  # kinematic tree, root first (-1)
        self.register_buffer("faces", torch.from_numpy(arrays.faces))

    def forward(self, shape: torch.Tensor, exp: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Posed vertices.

        Args:
            shape: (B, n_shape) identity coefficients.
            exp: (B, n_exp) expression coefficients.
            pose: (B, 6) global + jaw axis-angle, radians.

        Returns:
            (B, V, 3) vertices in FLAME model space (metres).

        Raises:
            ValueError: an argument has the wrong shape.
        """
        batch = pose.shape[0]
        for name, value, width in (("shape", shape, self.n_shape), ("exp", exp, self.n_exp)):
            if value.ndim != 2 or value.shape != (batch, width):
                raise ValueError(f"{name}: expected shape ({batch}, {width}), got {tuple(value.shape)}")
        betas = torch.cat([shape, exp], dim=1).to(self.v_template.dtype)
        v_shaped = self.v_template + blend_shapes(betas, self.shapedirs)  # (B, V, 3)
        joints = torch.einsum("jv,bvc->bjc", self.j_regressor, v_shaped)  # (B, J, 3)
        rot_mats = axis_angle_to_matrix(flame_full_pose(pose.to(self.v_template.dtype)))  # (B, J, 3, 3)
        correctives = (pose_feature(rot_mats) @ self.posedirs).reshape(batch, -1, 3)
        transforms = global_rigid_transforms(rot_mats, joints, self.parents)
        return skin_vertices(v_shaped + correctives, transforms, self.lbs_weights)
