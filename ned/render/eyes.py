"""Eye openings that open wider without stretching the eye: the eyeball stays, the white shows.

The piecewise-affine warp maps each eye opening's triangles from the source lid contour
to the edited one, so raising the upper lid (surprise, fear) stretches the iris into an
oval instead of showing more of the eye. :func:`reveal_eyes` rewrites the backward map
inside each edited opening:

- the eye content moves rigidly with the eye corners (an eyeball does not move when the
  lids do): output pixel ``p`` reads the source at ``p - d``, ``d`` the displacement of the
  corners' midpoint (:func:`ned.morph.topology.eye_corner_centres`, which the iris points
  of an edited mesh follow too);
- where that lands on the source's upper lid (the band the raised lid uncovers), it reads
  the source mirrored about the upper lid margin instead: the strip just below the lid
  continues above it, as the hidden part of the eyeball would; with the iris circles
  known (MediaPipe's iris points), uncovered pixels of the iris read the iris mirrored
  about its own horizontal centre line (mirrored about the lid, a lid raised far above a
  hidden iris top showed a second pupil there), and uncovered pixels outside it read the
  white beside the iris, so the iris stays round and white shows above it (on the other
  side of the iris when it is too near a corner). The same holds at the lower lid. A small
  margin keeps lashes out of the mirror;
- along the edited lid line the plain warp stays (it brings the lid margin, lashes and
  waterline), but where that margin lies on the iris in the source while the eyeball
  behind is white, the margin beside the iris is taken; and the hand-over from the margin
  to the eyeball switches rather than blends where the two reads are far apart (a blended
  map samples whatever lies between them). Before, both drew thin iris-coloured or
  catchlight streaks along a raised lid.

Eyes that are (nearly) closed in the source, where there is no eye to mirror, keep the
plain warp. Only the map changes, so the RGB and the YUV-plane render paths share it.
"""

from __future__ import annotations

import cv2
import numpy as np

from ned.morph.topology import GROUPS, NUM_VERTICES, eye_corner_centres, inter_ocular_distance

__all__ = ["EYES", "EDGE_BAND_IOD", "LID_MARGIN_IOD", "MIN_OPENING_IOD", "iris_circles", "reveal_eyes"]

#: (upper lid, lower lid) contours of each eye, corner to corner (same corners).
EYES: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = (
    (GROUPS["eye_r_upper"], GROUPS["eye_r_lower"]),
    (GROUPS["eye_l_upper"], GROUPS["eye_l_lower"]),
)
#: distance kept from the source lid margins when mirroring (lashes, their shadow), IOD
LID_MARGIN_IOD = 0.012
#: width of the band along the edited lid line that keeps the plain warp, and of the
#: hand-over band inside it, IOD
EDGE_BAND_IOD = 0.015
#: a source eye opening (mean lid distance) below this is treated as closed, IOD
MIN_OPENING_IOD = 0.035
#: the iris is taken to reach this many of the landmarks' radii (their radius is approximate
#: and the limbus blurred): an uncovered pixel inside shows iris, outside it white
IRIS_SLACK = 1.15
#: white is read at least this many iris radii beside the iris centre
BESIDE_IRIS = 1.25
#: reads further apart than this (pixels) are not blended in the hand-over band
FAR_READ_PX = 2.0


def _lid_curve(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A lid contour ``(n, 2)`` as ``(x ascending, y)`` for :func:`numpy.interp`."""
    order = np.argsort(points[:, 0], kind="stable")
    return points[order, 0], points[order, 1]


def iris_circles(landmarks: np.ndarray) -> np.ndarray | None:
    """``(2, 3)`` ``(x, y, radius)`` of the right and left iris of ``(478, >= 2)`` landmarks
    (MediaPipe's iris rows: centre then four contour points per eye), or None without them."""
    if landmarks.shape[0] < NUM_VERTICES + 10 or not np.isfinite(landmarks[NUM_VERTICES:NUM_VERTICES + 10, :2]).all():
        return None
    out = []
    for start in (NUM_VERTICES, NUM_VERTICES + 5):
        centre = landmarks[start, :2].astype(np.float64)
        radius = np.linalg.norm(landmarks[start + 1:start + 5, :2] - centre, axis=1).mean()
        out.append([centre[0], centre[1], radius])
    return np.array(out)


def _beside_iris(x: np.ndarray, circle: np.ndarray, ux: np.ndarray) -> np.ndarray:
    """Columns ``x`` moved beside the iris ``circle`` ``(x, y, r)``: at least :data:`BESIDE_IRIS` r from
    its centre, on their own side unless the iris is too near that corner (then on the
    other), within the middle 70 % of the eye's width (lid curve xs ``ux``)."""
    cx, r = float(circle[0]), float(circle[2])
    low, high = ux[0] + 0.15 * (ux[-1] - ux[0]), ux[-1] - 0.15 * (ux[-1] - ux[0])
    side = np.where(x >= cx, 1.0, -1.0)
    nearest = cx + side * BESIDE_IRIS * r
    side = np.where((nearest < low) | (nearest > high), -side, side)
    return np.clip(cx + side * np.maximum(np.abs(x - cx), BESIDE_IRIS * r), low, high)


def _margin_beside_iris(source: np.ndarray, eye_x: np.ndarray, eye_y: np.ndarray, circle: np.ndarray,
                        upper: tuple[np.ndarray, np.ndarray], lower: tuple[np.ndarray, np.ndarray]) -> None:
    """Where the plain warp brings a lid margin that lies on the iris in the source but the
    eyeball behind the pixel is white (a lid raised above the iris), take the margin beside
    the iris, at the same depth from the lid: otherwise a band of iris (or its catchlight)
    runs along the raised lid, above the white it uncovered.

    Args:
        source: ``(n, 2) float64`` plain-warp source points, rewritten in place.
        eye_x, eye_y: ``(n,)`` the eyeball points behind the pixels (source frame).
        circle: ``(3,)`` iris ``(x, y, r)``; upper, lower: lid curves (x ascending).
    """
    cx, cy, r = (float(v) for v in circle)
    reach = IRIS_SLACK * r
    over = (np.hypot(source[:, 0] - cx, source[:, 1] - cy) < reach) & (np.hypot(eye_x - cx, eye_y - cy) > reach)
    if not over.any():
        return
    x, y = source[over, 0], source[over, 1]
    bx = _beside_iris(x, circle, upper[0])
    lid_at = lambda xs, curve: np.interp(xs, curve[0], curve[1])  # noqa: E731
    shift = np.where(y < cy, lid_at(bx, upper) - lid_at(x, upper), lid_at(bx, lower) - lid_at(x, lower))
    source[over, 0] = bx
    source[over, 1] = y + shift


def reveal_eyes(map_xy: np.ndarray, origin: tuple[float, float], src: np.ndarray, dst: np.ndarray,
                iris: np.ndarray | None = None) -> None:
    """Rewrite a backward map inside the edited eye openings (see the module doc), in place.

    Args:
        map_xy: ``(h, w, 2) float32`` source coordinates of each output pixel of a box
            whose top-left output pixel is ``origin``; coordinates in the frame of the points.
        src, dst: ``(>= 468, 2)`` source and edited mesh points, same frame.
        iris: ``(2, 3)`` source iris circles (:func:`iris_circles`, same frame), or None.
            With them, an uncovered pixel outside its iris shows the white of the eye
            beside the iris (read at the same height, mirrored into the opening) rather
            than the mirrored iris.
    """
    if src.shape[0] < NUM_VERTICES or dst.shape[0] < NUM_VERTICES:
        return
    h, w = map_xy.shape[:2]
    ox, oy = float(origin[0]), float(origin[1])
    iod = float(inter_ocular_distance(src[:NUM_VERTICES]))
    if not iod > 0:
        return
    margin = LID_MARGIN_IOD * iod
    src_corners, dst_corners = eye_corner_centres(src[:NUM_VERTICES]), eye_corner_centres(dst[:NUM_VERTICES])
    for e, (upper, lower) in enumerate(EYES):
        up, lo = list(upper), list(lower)
        if np.abs(dst[up + lo] - src[up + lo]).max() < 0.05:  # this eye's lids did not move
            continue
        ux, uy = _lid_curve(src[up])
        lx, ly = _lid_curve(src[lo])
        if np.mean(np.interp(ux, lx, ly) - uy) < MIN_OPENING_IOD * iod:
            continue  # closed (blink) or nearly: nothing to mirror
        poly = np.concatenate([dst[up], dst[lo][::-1][1:-1]])
        x0 = max(int(np.floor(poly[:, 0].min() - ox)) - 1, 0)
        y0 = max(int(np.floor(poly[:, 1].min() - oy)) - 1, 0)
        x1 = min(int(np.ceil(poly[:, 0].max() - ox)) + 2, w)
        y1 = min(int(np.ceil(poly[:, 1].max() - oy)) + 2, h)
        if x1 <= x0 or y1 <= y0:
            continue
        inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
        local = np.round((poly - (ox + x0, oy + y0)) * 16).astype(np.int32)
        cv2.fillPoly(inside, [local], 1, lineType=cv2.LINE_8, shift=4)
        rows, cols = np.nonzero(inside)
        if rows.size == 0:
            continue
        d = dst_corners[e] - src_corners[e]
        qx = cols + (x0 + ox) - d[0]
        qy = rows + (y0 + oy) - d[1]
        top = np.interp(qx, ux, uy) + margin
        bottom = np.interp(qx, lx, ly) - margin
        hidden = (qy < top) | (qy > bottom)
        eye_x, eye_y = qx, qy
        if iris is not None and hidden.any():
            cx, cy, r = iris[e]
            # uncovered iris: the iris mirrored about its own centre line, where visible there
            # (mirrored about the lid it would show a second pupil, and lose its round edge)
            inner = hidden & (np.hypot(qx - cx, qy - cy) <= IRIS_SLACK * r) & (bottom > top)
            qy = np.where(inner, np.clip(2.0 * cy - qy, top, bottom), qy)
            hidden &= ~inner
            # uncovered white above/below the iris: read the white beside the iris instead
            white = hidden & (np.hypot(qx - cx, qy - cy) > IRIS_SLACK * r)
            qx = np.where(white, _beside_iris(qx, iris[e], ux), qx)
            top = np.where(white, np.interp(qx, ux, uy) + margin, top)
            bottom = np.where(white, np.interp(qx, lx, ly) - margin, bottom)
        open_ = bottom > top
        qy = np.where(qy < top, 2.0 * top - qy, qy)
        qy = np.where(qy > bottom, 2.0 * bottom - qy, qy)
        qy = np.clip(qy, top, np.maximum(bottom, top))
        # along the edited lid line keep the warp (it brings the source's own lid margin,
        # lash shadow and waterline) and hand over to the eyeball over one more band
        depth = cv2.distanceTransform(np.pad(inside, 1), cv2.DIST_L2, 3)[1:-1, 1:-1][rows, cols]
        band = EDGE_BAND_IOD * iod
        weight = np.clip((depth - band) / band, 0.0, 1.0)[open_]
        sel_r, sel_c = rows[open_] + y0, cols[open_] + x0
        old = map_xy[sel_r, sel_c].astype(np.float64)
        if iris is not None:
            _margin_beside_iris(old, eye_x[open_], eye_y[open_], iris[e], (ux, uy), (lx, ly))
        # a map blended between far-apart reads samples whatever lies between them (the
        # iris between the lid margin and the white beside it): switch there instead
        far = np.hypot(qx[open_] - old[:, 0], qy[open_] - old[:, 1]) > FAR_READ_PX
        weight = np.where(far, np.round(weight), weight)
        map_xy[sel_r, sel_c, 0] = old[:, 0] + weight * (qx[open_] - old[:, 0])
        map_xy[sel_r, sel_c, 1] = old[:, 1] + weight * (qy[open_] - old[:, 1])
