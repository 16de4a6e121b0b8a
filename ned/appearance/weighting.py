"""Where transferred detail applies, and how strongly: a per-texel weight map.

A reference's (or exemplar's) detail map carries the creases of *every* part of its
expression. When the target's expression follows the reference only in part (the
reference's mouth motion limited, its brows kept: see
:func:`ned.manipulate.envelope.limit_lower_face`), one global weight would paint the
reference's full mouth creases on a mouth that barely moved, and those are what make a
face look like somebody else. :class:`DetailWeighting` instead weights each texel by how
far the target's motion follows the reference's *there*:

- the rig turns both emotion changes into image-plane displacement fields of the mesh,
  ``Dt(v)`` and ``Dr(v)`` (canonical IOD units, ``(468, 2)``);
- their products ``<Dt, Dr>`` and ``|Dr|^2`` are spread over the skin around each vertex
  (rasterised in texture space and Gaussian-blurred by ``spread_iod``: the forehead's
  creases belong to the brows' motion, the nasolabial fold to the lip corners');
- ``W = clip((<Dt, Dr> + lam g) / (|Dr|^2 + lam), 0, 1)``: the local projection where the
  reference moved, falling back to the global projection ``g``
  (:func:`ned.appearance.hook.detail_weight`) where it barely moved (``lam`` =
  ``floor_iod ** 2``).

When the target follows the reference everywhere by the same factor ``a`` the map is ``a``
everywhere, as the global weight was.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from ned.appearance.texture import UVRaster, uv_raster
from ned.morph.rig import EMOTION_SHAPES, Rig, load_rig, shape_mask

__all__ = ["DetailWeighting", "detail_weighting"]

_EMOTION = shape_mask(EMOTION_SHAPES)
_COARSE = 64  # texels per side of the map before it is blurred and upsampled


class DetailWeighting:
    """Per-texel detail weights of an ``S x S`` texture (see the module doc).

    Args:
        size: ``S``, texels per side of the detail maps.
        rig: default the packaged rig.
        spread_iod: Gaussian sigma, in IOD, over which a vertex's motion counts for the
            skin around it (> 0).
        floor_iod: displacement (IOD) below which the global weight takes over (> 0).
    """

    def __init__(self, size: int, rig: Rig | None = None, *, spread_iod: float = 0.2,
                 floor_iod: float = 0.01) -> None:
        if not spread_iod > 0 or not floor_iod > 0:
            raise ValueError(f"spread_iod and floor_iod must be > 0, got {spread_iod}, {floor_iod}")
        rig = rig or load_rig()
        self.size = int(size)
        # (K_e, 468, 2): image-plane displacement per unit weight of each emotion shape
        self._basis = np.ascontiguousarray(rig.basis[_EMOTION][:, :, :2], np.float64)
        self._coarse: UVRaster = uv_raster(_COARSE)
        self._sigma = float(spread_iod) * self._coarse.iod_texels
        self._lam = float(floor_iod) ** 2

    def weight_map(self, target_delta: np.ndarray, reference_delta: np.ndarray, global_weight: float) -> np.ndarray:
        """The ``(S, S) float32`` weight map in [0, 1].

        Args:
            target_delta, reference_delta: ``(K,)`` emotion changes
                (:func:`ned.appearance.hook.emotion_delta`).
            global_weight: the clip-wide projection, used where the reference did not move.
        """
        dt = np.asarray(target_delta, np.float64)[_EMOTION]
        dr = np.asarray(reference_delta, np.float64)[_EMOTION]
        disp_t = np.tensordot(dt, self._basis, axes=1)  # (468, 2)
        disp_r = np.tensordot(dr, self._basis, axes=1)
        along = self._spread(np.einsum("vc,vc->v", disp_t, disp_r))
        energy = self._spread(np.einsum("vc,vc->v", disp_r, disp_r))
        w = (along + self._lam * float(global_weight)) / (energy + self._lam)
        w = np.clip(w, 0.0, 1.0).astype(np.float32)
        return cv2.resize(w, (self.size, self.size), interpolation=cv2.INTER_LINEAR)

    def _spread(self, per_vertex: np.ndarray) -> np.ndarray:
        """Per-vertex values rasterised in the coarse texture and blurred: ``(c, c) float32``."""
        r = self._coarse
        flat = np.zeros(r.size * r.size, np.float32)
        flat[r.texel_index] = np.einsum("pk,pk->p", r.texel_bary, per_vertex[r.texel_vertices])
        return cv2.GaussianBlur(flat.reshape(r.size, r.size), (0, 0), self._sigma, borderType=cv2.BORDER_REPLICATE)


@functools.lru_cache(maxsize=4)
def detail_weighting(size: int) -> DetailWeighting:
    """The cached :class:`DetailWeighting` of the packaged rig at ``size`` texels."""
    return DetailWeighting(size)
