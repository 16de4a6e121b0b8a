"""Array conventions used across the package, a shape checker and a box test.

- Frames: ``(H, W, 3) uint8`` RGB, C-contiguous. BGR exists only inside an OpenCV call.
- Float images: ``float32`` in ``[0, 1]``. Masks: ``(H, W) float32`` in ``[0, 1]``.
- Tensors: ``(B, 3, H, W) float32`` in ``[0, 1]``; ``[-1, 1]`` only inside a network.
- Points: ``(N, 2)`` / ``(N, 3) float32``, ``(x, y[, z])`` in pixels of the named image,
  origin top-left; ``z`` is in the same pixel scale (larger = farther from the camera).
- Boxes are ``(4,)`` ``x0 y0 x1 y1`` in pixels of the named image.
- Transforms are named ``<dst>_from_<src>`` (``crop_from_frame``), 2x3 or 3x3 pixel matrices.
- Rotations are radians in code, degrees only in reports; times carry ``_s`` / ``_ms``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_array", "box_has_area"]


def check_array(x: Any, shape: str, dtype: Any = None, name: str = "array") -> np.ndarray:
    """Check that ``x`` is an ndarray whose shape matches a pattern.

    Args:
        x: the value to check.
        shape: space-separated dimensions; an integer must match exactly, a name matches
            any size (the same name must match the same size), ``*`` matches any number of
            leading dimensions (only first). Example: ``"H W 3"``, ``"N 2"``, ``"* 468 3"``.
        dtype: required dtype, or None for any.
        name: the argument's name for the message.

    Returns:
        ``x`` unchanged.

    Raises:
        ValueError: naming the expected and actual shape / dtype.
    """
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array of shape ({shape}), got {type(x).__name__}")
    dims = shape.split()
    actual = x.shape
    if dims and dims[0] == "*":
        dims = dims[1:]
        if len(actual) < len(dims):
            raise ValueError(f"{name}: expected shape (* {' '.join(dims)}), got {actual}")
        actual = actual[len(actual) - len(dims):]
    elif len(actual) != len(dims):
        raise ValueError(f"{name}: expected shape ({shape}), got {x.shape}")
    bound: dict[str, int] = {}
    for dim, size in zip(dims, actual):
        if dim.isdigit():
            if int(dim) != size:
                raise ValueError(f"{name}: expected shape ({shape}), got {x.shape}")
        elif bound.setdefault(dim, size) != size:
            raise ValueError(f"{name}: expected shape ({shape}) with equal '{dim}', got {x.shape}")
    if dtype is not None and x.dtype != np.dtype(dtype):
        raise ValueError(f"{name}: expected dtype {np.dtype(dtype)}, got {x.dtype}")
    return x


def box_has_area(box: Any) -> bool:
    """True when an ``x0 y0 x1 y1`` box covers some area (``x1 > x0`` and ``y1 > y0``)."""
    return bool(box[2] > box[0] and box[3] > box[1])
