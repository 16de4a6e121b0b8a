"""NMFC and shape images of the FLAME mesh, drawn with the project's rasteriser.

:mod:`ned.morph.raster` draws the 468-vertex face model; its visibility pass
(:func:`~ned.morph.raster.rasterise_ids`) takes any triangles, so this module feeds it
FLAME's 5023-vertex mesh and interpolates per-vertex values itself.

Conventions: vertices in image pixels (x right, y down, z larger = farther); ``faces`` in
FLAME's own winding (counter-clockwise seen from the front in FLAME's y-up model space),
which is clockwise on screen once y points down, so the triangles are reversed before
rasterising. Pixel (row i, column j) samples the point x = j, y = i.
"""

from __future__ import annotations

import numpy as np

from ned.morph.raster import AMBIENT, DIFFUSE, LIGHT_DIR, rasterise_ids, vertex_normals
from ned.types import check_array

__all__ = ["render_vertex_values", "render_flame_nmfc", "render_flame_shape", "screen_triangles"]


def screen_triangles(faces: np.ndarray) -> np.ndarray:
    """FLAME's faces with the winding the rasteriser expects in y-down image space: (F, 3) int64."""
    check_array(faces, "F 3", name="faces")
    return np.ascontiguousarray(faces[:, [0, 2, 1]], dtype=np.int64)


def _check(vertices: np.ndarray, size: tuple[int, int]) -> tuple[int, int]:
    check_array(vertices, "N 3", name="vertices")
    if len(size) != 2 or int(size[0]) <= 0 or int(size[1]) <= 0:
        raise ValueError(f"size: expected (H, W) > 0, got {size}")
    if not np.isfinite(vertices).all():
        raise ValueError("vertices: contain NaN or inf")
    return int(size[0]), int(size[1])


def render_vertex_values(vertices: np.ndarray, faces: np.ndarray, values: np.ndarray,
                         size: tuple[int, int]) -> np.ndarray:
    """Barycentric interpolation of per-vertex values over the visible mesh.

    Args:
        vertices: (N, 3) image pixels.
        faces: (F, 3) FLAME triangles (FLAME winding).
        values: (N, C) per-vertex values.
        size: (H, W) of the output.

    Returns:
        (H, W, C) float32; 0 where no triangle is visible.

    Raises:
        ValueError: bad shapes, size or non-finite vertices.
    """
    h, w = _check(vertices, size)
    check_array(values, "N C", name="values")
    if values.shape[0] != vertices.shape[0]:
        raise ValueError(f"values: expected {vertices.shape[0]} rows, got {values.shape[0]}")
    triangles = screen_triangles(faces)
    ids = rasterise_ids(vertices, triangles, (h, w))
    out = np.zeros((h, w, values.shape[1]), np.float32)
    rows, cols = np.nonzero(ids >= 0)
    if rows.size == 0:
        return out
    corners = vertices[:, :2].astype(np.float64)[triangles[ids[rows, cols]]]  # (P, 3, 2)
    edge1, edge2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    det = edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0]
    det = np.where(np.abs(det) < 1e-12, 1e-12, det)
    dx, dy = cols - corners[:, 0, 0], rows - corners[:, 0, 1]
    b1 = np.clip((dx * edge2[:, 1] - dy * edge2[:, 0]) / det, 0.0, 1.0)
    b2 = np.clip((edge1[:, 0] * dy - edge1[:, 1] * dx) / det, 0.0, 1.0)
    total = np.maximum(b1 + b2, 1.0)  # pixels just outside (1/16 px rounding) snap to the edge
    b1, b2 = b1 / total, b2 / total
    weights = np.stack([1.0 - b1 - b2, b1, b2], axis=1)  # (P, 3)
    corner_values = values.astype(np.float64)[triangles[ids[rows, cols]]]  # (P, 3, C)
    out[rows, cols] = np.einsum("pk,pkc->pc", weights, corner_values)
    return out


def render_flame_nmfc(vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray,
                      size: tuple[int, int]) -> np.ndarray:
    """NMFC image: each vertex coloured by its normalised template coordinate.

    Args:
        vertices: (N, 3) image pixels; faces: (F, 3) FLAME triangles;
        colours: (N, 3) in [0, 1] (``DecaBackend.nmfc_colors``); size: (H, W).

    Returns:
        (H, W, 3) uint8 RGB, background 0.

    Raises:
        ValueError: as :func:`render_vertex_values`.
    """
    image = render_vertex_values(vertices, faces, colours, size)
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_flame_shape(vertices: np.ndarray, faces: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Grey Lambert-shaded image (the light of :mod:`ned.morph.raster`).

    Returns:
        (H, W, 3) uint8 grey, background 0.

    Raises:
        ValueError: as :func:`render_vertex_values`.
    """
    _check(vertices, size)
    normals = vertex_normals(vertices, screen_triangles(faces))
    shade = AMBIENT + DIFFUSE * np.clip(normals @ LIGHT_DIR, 0.0, 1.0)
    grey = render_vertex_values(vertices, faces, shade[:, None], size)[..., 0]
    grey = np.clip(grey * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)
