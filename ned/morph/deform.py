"""Smooth deformation fields on a triangle mesh (the tools the rig is authored with).

A field is defined by a few *handles* (vertices with a prescribed 3-D displacement) and
*anchors* (vertices held still); every other vertex gets the biharmonic interpolation
(minimum of the squared cotangent Laplacian energy), which is smooth, fades to zero
towards the anchors and passes exactly through the handles. Distances for region
limits are geodesic-ish: shortest paths along the mesh edges, so a field authored on the
upper lip does not leak across the mouth opening to the lower lip.

All functions are pure; meshes are ``vertices (N, 3)`` float and ``triangles (F, 3)`` int.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra
from scipy.sparse.linalg import spsolve

from ned.types import check_array

__all__ = ["cotan_laplacian", "edge_graph", "geodesic_distances", "biharmonic_field"]


def cotan_laplacian(vertices: np.ndarray, triangles: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """Cotangent Laplacian (positive semi-definite) and lumped vertex areas.

    Negative cotangent weights (obtuse triangles) are clipped to zero so the operator
    stays an M-matrix on the irregular MediaPipe mesh.

    Args:
        vertices: (N, 3). triangles: (F, 3).

    Returns:
        ``L`` (N, N) csr with ``L @ 1 == 0``; ``area`` (N,) one third of the adjacent
        triangle areas (a small floor keeps isolated vertices invertible).
    """
    check_array(vertices, "N 3", name="vertices")
    check_array(triangles, "F 3", name="triangles")
    v = vertices.astype(np.float64)
    n = len(v)
    rows, cols, vals = [], [], []
    for k in range(3):
        i, j, o = triangles[:, k], triangles[:, (k + 1) % 3], triangles[:, (k + 2) % 3]
        a, b = v[i] - v[o], v[j] - v[o]
        cot = (a * b).sum(1) / (np.linalg.norm(np.cross(a, b), axis=1) + 1e-12)
        w = np.maximum(cot, 0.0) / 2.0
        rows += [i, j]
        cols += [j, i]
        vals += [w, w]
    w = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()
    lap = sp.diags(np.asarray(w.sum(1)).ravel()) - w
    e1 = v[triangles[:, 1]] - v[triangles[:, 0]]
    e2 = v[triangles[:, 2]] - v[triangles[:, 0]]
    tri_area = np.linalg.norm(np.cross(e1, e2), axis=1) / 2.0
    area = np.bincount(triangles.ravel(), weights=np.repeat(tri_area / 3.0, 3), minlength=n)
    area = np.maximum(area, 1e-6 * max(area.mean(), 1e-12))
    return lap.tocsr(), area


def edge_graph(vertices: np.ndarray, triangles: np.ndarray) -> sp.csr_matrix:
    """Sparse symmetric (N, N) graph of the mesh edges weighted by their 3-D length."""
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]).astype(np.int64)
    e = np.unique(np.sort(e, axis=1), axis=0)
    length = np.linalg.norm(vertices[e[:, 0]] - vertices[e[:, 1]], axis=1)
    n = len(vertices)
    g = sp.coo_matrix((length, (e[:, 0], e[:, 1])), shape=(n, n))
    return (g + g.T).tocsr()


def geodesic_distances(vertices: np.ndarray, triangles: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Shortest edge-path distance from the nearest of ``sources`` to every vertex: (N,).

    Vertices not connected to any source get ``inf``.
    """
    g = edge_graph(vertices, triangles)
    d = dijkstra(g, directed=False, indices=np.asarray(sources, dtype=np.int64), min_only=True)
    return np.asarray(d, dtype=np.float64)


def biharmonic_field(
    vertices: np.ndarray,
    triangles: np.ndarray,
    handles: dict[int, np.ndarray] | None,
    anchors: np.ndarray,
    lap: tuple[sp.csr_matrix, np.ndarray] | None = None,
) -> np.ndarray:
    """Smooth displacement field through ``handles``, zero on ``anchors``.

    Minimises ``sum_d d^T L^T A^-1 L d`` (biharmonic energy) over the free vertices.

    Args:
        vertices: (N, 3). triangles: (F, 3) (leave out opening triangles to cut the mesh).
        handles: vertex -> (3,) displacement (or None/empty).
        anchors: vertex indices held at zero (handles win where both).
        lap: a precomputed :func:`cotan_laplacian` of the same mesh.

    Returns:
        (N, 3) float64 displacement.

    Raises:
        ValueError: when nothing is fixed (the problem would be singular).
    """
    n = len(vertices)
    handles = handles or {}
    fixed_val = np.zeros((n, 3))
    fixed = np.zeros(n, bool)
    fixed[np.asarray(anchors, dtype=np.int64)] = True
    for i, d in handles.items():
        fixed[int(i)] = True
        fixed_val[int(i)] = np.asarray(d, dtype=np.float64)
    if not fixed.any():
        raise ValueError("biharmonic_field needs at least one handle or anchor")
    lap_m, area = lap if lap is not None else cotan_laplacian(vertices, triangles)
    q = (lap_m.T @ sp.diags(1.0 / area) @ lap_m).tocsr()
    free = ~fixed
    out = fixed_val.copy()
    if free.any():
        q_ff = q[free][:, free].tocsc()
        q_fc = q[free][:, fixed]
        rhs = -(q_fc @ fixed_val[fixed])
        # a tiny ridge keeps components without any fixed vertex well posed
        q_ff = q_ff + sp.identity(q_ff.shape[0], format="csc") * 1e-9
        sol = spsolve(q_ff, rhs)
        out[free] = sol.reshape(-1, 3)
    return out
