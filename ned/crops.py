"""Square crop boxes around the tracked face and the crop matrices they define.

A crop box is ``(4,) float32 x1 y1 x2 y2`` in frame pixels, square; the crop image is
the box resampled to ``size x size`` pixels. ``crop_from_frame`` is the 2x3 matrix that
maps frame pixels to crop pixels (point helpers live in :mod:`ned.face.align`).
"""

from __future__ import annotations

import numpy as np

from ned.types import check_array


def square_box(box: np.ndarray) -> np.ndarray:
    """The square box with the same centre whose side is the longer side of ``box``.

    Args:
        box: ``(4,)`` x1 y1 x2 y2 in pixels.

    Returns:
        ``(4,) float32`` square box.
    """
    check_array(np.asarray(box), "4", name="box")
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float32)


def crop_from_box(box: np.ndarray, size: int) -> np.ndarray:
    """2x3 matrix mapping frame pixels to the ``size x size`` crop of a square ``box``."""
    x1, y1, x2, _ = (float(v) for v in box)
    scale = size / max(x2 - x1, 1e-6)
    return np.array([[scale, 0.0, -x1 * scale], [0.0, scale, -y1 * scale]], np.float64)
