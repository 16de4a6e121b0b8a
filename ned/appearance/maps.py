"""The label-driven appearance model: authored crease and shading maps in texture space.

Like the wrinkle maps of game face rigs, every emotion blendshape of
:class:`ned.morph.rig.Blendshape` owns one *shading map*: the natural-log luminance gain
it adds at weight 1, in the mesh's texture space (:mod:`ned.appearance.texture`). A frame
whose emotion weights moved by ``dw (K,)`` gets ``sum_k dw[k] * map[k]``.

The maps are authored in the project (``scripts/build_appearance_maps.py``), never
extracted from footage. Each is built from a *height field* (IOD units, positive =
towards the camera) of procedural features placed by mesh landmarks:

- :func:`crease_height`: a valley along a curve (forehead lines, glabella furrows, crow's
  feet, nasolabial folds), a Gaussian core with soft shoulders so the mean is kept;
- :func:`bulge_height`: an anisotropic Gaussian mound (cheek apples, lower-lid bulges,
  the chin boss);

turned into luminance by :func:`shading_from_height`: a fake light from above (Lambert
on the slope: surfaces tilted up get brighter) plus a cavity term (hollows darker),
then multiplied by the skin mask (:func:`ned.appearance.texture.skin_mask_uv`).

Sides are the person's own: ``_L`` maps act on the person's left (``u > 0.5``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from ned.errors import ModelFileError
from ned.morph.rig import Blendshape

__all__ = [
    "AppearanceMaps",
    "load_maps",
    "maps_path",
    "catmull_rom",
    "crease_height",
    "bulge_height",
    "shading_from_height",
    "resize_maps",
    "crease_response",
    "BROW_CREASE_ONSET",
    "MAPS_VERSION",
]

MAPS_VERSION = 1
#: brow creases form early (:func:`crease_response`); 0 = linear in the weights
BROW_CREASE_ONSET = 0.4
_BROW_SHAPES = [int(b) for b in Blendshape if b.name.startswith(("BROW_INNER_UP", "BROW_OUTER_UP", "BROW_DOWN"))]
_INNER_UP_AGAINST_DOWN = ((int(Blendshape.BROW_INNER_UP_L), int(Blendshape.BROW_DOWN_L)),
                          (int(Blendshape.BROW_INNER_UP_R), int(Blendshape.BROW_DOWN_R)))


def crease_response(weights: np.ndarray, onset: float = BROW_CREASE_ONSET) -> np.ndarray:
    """How far the maps' creases have formed at blendshape ``weights`` ``(..., K)``.

    The weights themselves, except for the brow shapes (AU1, AU2, AU4), whose forehead and
    glabella creases form early: ``tanh(w / onset) / tanh(1 / onset)`` (odd, 1 at weight 1;
    at onset 0.4 a weight of 0.3 gives 0.64). The rig's brow shapes move the brows 0.12 IOD
    at weight 1, an extreme raise; actors move them a third of that (the calibrated brow
    weights of every emotion are 0.1-0.45) yet their foreheads fold visibly, as skin does at
    FACS intensity B-C. Linear in the weights, the authored creases stayed faint.

    The inner brow raise's horizontal forehead lines then fade as the same side's brow
    lowerer (AU4) forms: ``x (1 - AU4's response)``. Drawn together (sad and angry targets
    carry both at 0.3-0.4), the brows barely rise and the glabella folds instead; with
    horizontal lines as well, the second classifier read M030's sad edit as surprised or
    neutral (sad 0.00; his neutral clip reads sad 0.65 to it), and angry faces looked worried.

    Measured with ``ned evaluate-suite`` (label mode, MEAD crops; with the forehead lines
    made irregular at the same time), linear -> this: FER2013 score 0.49 -> 0.50, the second
    classifier's 0.35 -> 0.45 (surprised M030 0.65 -> 0.94, sad M030 0.10 -> 0.54); identity
    distance at most 0.281 (was 0.290). Without the AU4 fade: FER2013 0.52, second 0.37,
    identity up to 0.311.

    Returns:
        ``(..., K) float32``.
    """
    out = np.array(weights, np.float32)
    if onset > 0:
        w = out[..., _BROW_SHAPES]
        out[..., _BROW_SHAPES] = np.tanh(w / onset) / np.tanh(1.0 / onset)
    for up, down in _INNER_UP_AGAINST_DOWN:
        out[..., up] *= 1.0 - np.clip(out[..., down], 0.0, 1.0)
    return out


@dataclass(frozen=True, eq=False)
class AppearanceMaps:
    """Per-blendshape shading maps.

    Attributes:
        log_gain: ``(K, S, S) float32`` natural-log luminance gain per unit weight of each
            :class:`Blendshape` (all-zero rows for shapes without a map), texture space.
        size: ``S``.
    """

    log_gain: np.ndarray
    size: int

    def __post_init__(self) -> None:
        k = len(Blendshape)
        if self.log_gain.ndim != 3 or self.log_gain.shape != (k, self.size, self.size):
            raise ValueError(f"log_gain: expected shape ({k}, {self.size}, {self.size}), got {self.log_gain.shape}")

    @functools.cached_property
    def _active(self) -> np.ndarray:
        return np.flatnonzero(np.abs(self.log_gain).reshape(len(self.log_gain), -1).max(1) > 0)

    def blend(self, delta: np.ndarray) -> np.ndarray:
        """``sum_k delta[k] * log_gain[k]``: ``(S, S) float32``.

        Args:
            delta: ``(K,)`` weight change per blendshape (emotion part only, normally).

        Raises:
            ValueError: wrong length.
        """
        d = np.asarray(delta, np.float32)
        if d.shape != (len(Blendshape),):
            raise ValueError(f"delta: expected shape ({len(Blendshape)},), got {d.shape}")
        w = d[self._active]
        small = np.abs(w) <= 1e-6
        if small.all():
            return np.zeros((self.size, self.size), np.float32)
        w[small] = 0.0
        # einsum, not ``w @ flat``: a (A,) @ (A, S*S) float32 product goes to OpenBLAS sgemv,
        # whose threads take ~8 ms on a busy 2-core machine (the decoder's threads compete);
        # the plain einsum loop takes ~0.2 ms and is deterministic.
        return np.einsum("a,an->n", w, self._active_flat).reshape(self.size, self.size)

    @functools.cached_property
    def _active_flat(self) -> np.ndarray:
        """``(A, S * S) float32`` the maps with content, contiguous (one product per blend)."""
        return np.ascontiguousarray(self.log_gain[self._active].reshape(len(self._active), -1), np.float32)


def maps_path() -> Path:
    """Path of the packaged ``appearance_maps.npz``."""
    return Path(str(resources.files("ned") / "data" / "appearance_maps.npz"))


@functools.lru_cache(maxsize=4)
def load_maps(path: str | Path | None = None) -> AppearanceMaps:
    """Load the maps file (cached).

    Args:
        path: an ``.npz`` written by ``scripts/build_appearance_maps.py``; default the
            packaged one.

    Raises:
        ModelFileError: missing, malformed, or built for other blendshape names.
    """
    p = Path(path) if path is not None else maps_path()
    if not p.is_file():
        raise ModelFileError(f"{p}: appearance maps missing; run `python scripts/build_appearance_maps.py`")
    try:
        with np.load(p, allow_pickle=False) as z:
            names = [str(n) for n in z["names"]]
            maps = z["log_gain"].astype(np.float32)
            scale = float(z["scale"])
            version = int(z["version"])
    except (KeyError, ValueError) as err:
        raise ModelFileError(f"{p}: not an appearance maps file ({err}); rebuild it with "
                             "`python scripts/build_appearance_maps.py`") from err
    if version != MAPS_VERSION:
        raise ModelFileError(f"{p}: maps version {version}, expected {MAPS_VERSION}; rebuild it with "
                             "`python scripts/build_appearance_maps.py`")
    known = {b.name: int(b) for b in Blendshape}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ModelFileError(f"{p}: maps for unknown blendshapes {unknown}; rebuild it with "
                             "`python scripts/build_appearance_maps.py`")
    size = int(maps.shape[-1])
    full = np.zeros((len(Blendshape), size, size), np.float32)
    for name, m in zip(names, maps):
        full[known[name]] = m * scale
    full.setflags(write=False)
    return AppearanceMaps(log_gain=full, size=size)


# ---------------------------------------------------------------------------------------
# Authoring primitives (pure; used by scripts/build_appearance_maps.py)
# ---------------------------------------------------------------------------------------
def catmull_rom(points: np.ndarray, samples_per_segment: int = 16) -> np.ndarray:
    """A dense polyline through control points (centripetal-free uniform Catmull-Rom).

    Args:
        points: ``(P, 2)`` control points, P >= 2 (ends are duplicated).
        samples_per_segment: samples between two control points, >= 1.

    Returns:
        ``((P - 1) * samples_per_segment + 1, 2) float64`` passing through every point.

    Raises:
        ValueError: fewer than two points.
    """
    p = np.asarray(points, np.float64)
    if p.ndim != 2 or p.shape[0] < 2 or p.shape[1] != 2:
        raise ValueError(f"points: expected shape (P >= 2, 2), got {p.shape}")
    ext = np.concatenate([p[:1] * 2 - p[1:2], p, p[-1:] * 2 - p[-2:-1]])
    t = np.linspace(0.0, 1.0, samples_per_segment, endpoint=False)[:, None]
    out = []
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    out.append(p[-1:])
    return np.concatenate(out)


def _distance_to_polyline(grid: np.ndarray, line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance ``(H, W)`` of grid points ``(H, W, 2)`` to a polyline ``(L, 2)``, and the
    arc-length parameter in [0, 1] of the nearest point."""
    seg_a, seg_b = line[:-1], line[1:]
    d = seg_b - seg_a
    seg_len = np.linalg.norm(d, axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg_len)])
    total = max(cum[-1], 1e-12)
    best = np.full(grid.shape[:2], np.inf)
    param = np.zeros(grid.shape[:2])
    for a, dd, ln, c0 in zip(seg_a, d, seg_len, cum[:-1]):
        rel = grid - a
        t = np.clip((rel @ dd) / max(ln * ln, 1e-12), 0.0, 1.0)
        dist = np.linalg.norm(rel - t[..., None] * dd, axis=-1)
        closer = dist < best
        best = np.where(closer, dist, best)
        param = np.where(closer, (c0 + t * ln) / total, param)
    return best, param


def crease_height(size: int, curve: np.ndarray, width: float, depth: float,
                  envelope: np.ndarray | None = None, shoulder: float = 0.35) -> np.ndarray:
    """Height field of a crease (a valley) along a curve.

    Profile across the curve at distance ``d``: ``-depth * (g(d, width) - shoulder *
    g(d, 2.5 width))`` with ``g(d, s) = exp(-d^2 / 2 s^2)``: a dark core with soft raised
    shoulders (a fold, not a drawn line). Along the curve the depth follows ``envelope``.

    Args:
        size: ``S`` texels per side; coordinates below are texel pixels.
        curve: ``(L, 2)`` dense polyline (e.g. from :func:`catmull_rom`), texel pixels.
        width: Gaussian sigma of the core, texels (> 0).
        depth: valley depth (any height unit; the maps use IOD).
        envelope: ``(E,)`` depth factors sampled uniformly along the curve (linearly
            interpolated); default ``sin(pi s) ** 0.5`` (tapered ends).
        shoulder: relative height of the shoulders, ``[0, 1)``.

    Returns:
        ``(S, S) float32`` height.

    Raises:
        ValueError: on a non-positive width or a bad shoulder.
    """
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    if not 0 <= shoulder < 1:
        raise ValueError(f"shoulder must be in [0, 1), got {shoulder}")
    grid = np.dstack(np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64)))
    dist, s = _distance_to_polyline(grid, np.asarray(curve, np.float64))
    if envelope is None:
        env = np.sqrt(np.sin(np.pi * s))
    else:
        e = np.asarray(envelope, np.float64)
        env = np.interp(s, np.linspace(0.0, 1.0, len(e)), e)
    core = np.exp(-0.5 * (dist / width) ** 2)
    wide = np.exp(-0.5 * (dist / (2.5 * width)) ** 2)
    return (-depth * env * (core - shoulder * wide)).astype(np.float32)


def bulge_height(size: int, centre: tuple[float, float], radii: tuple[float, float], angle: float,
                 height: float) -> np.ndarray:
    """Height field of a smooth mound (anisotropic Gaussian).

    Args:
        size: ``S``; coordinates in texel pixels.
        centre: ``(x, y)`` texels.
        radii: ``(sigma_major, sigma_minor)`` texels (> 0).
        angle: direction of the major axis, radians from +x (image axes, y down).
        height: peak height (negative for a hollow).

    Returns:
        ``(S, S) float32``.

    Raises:
        ValueError: on non-positive radii.
    """
    if min(radii) <= 0:
        raise ValueError(f"radii must be > 0, got {radii}")
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    dx, dy = x - centre[0], y - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    a = (dx * c + dy * s) / radii[0]
    b = (-dx * s + dy * c) / radii[1]
    return (height * np.exp(-0.5 * (a * a + b * b))).astype(np.float32)


def shading_from_height(height: np.ndarray, texel_iod: float, light_elevation_deg: float = 45.0,
                        cavity: float = 3.0, cavity_sigma: float = 4.0) -> np.ndarray:
    """Log-luminance gain of a height field under a fake light from above.

    ``log(lambert(slope) / lambert(flat)) + cavity * (h - blur(h))``, where ``lambert`` is
    the cosine between the surface normal ``(-h_u, -h_v, 1)`` and a light above the camera
    at ``light_elevation_deg`` over the view axis (image "up" is ``-v``): a slope rising
    downwards faces the light and brightens. The cavity term darkens hollows and
    brightens ridges independently of their orientation (ambient occlusion).

    Args:
        height: ``(S, S)`` height in IOD units.
        texel_iod: texel size in IOD (slopes are height / distance in IOD).
        light_elevation_deg: angle of the light above the view axis, [0, 80].
        cavity: gain of the cavity term per IOD of relative height.
        cavity_sigma: blur (texels) defining "relative".

    Returns:
        ``(S, S) float32`` log gain.

    Raises:
        ValueError: on a bad elevation.
    """
    if not 0 <= light_elevation_deg <= 80:
        raise ValueError(f"light_elevation_deg must be in [0, 80], got {light_elevation_deg}")
    h = np.asarray(height, np.float64)
    hv, hu = np.gradient(h, texel_iod)
    th = np.radians(light_elevation_deg)
    light = np.array([0.0, -np.sin(th), np.cos(th)])
    n_dot_l = (-hu * light[0] - hv * light[1] + light[2]) / np.sqrt(1.0 + hu * hu + hv * hv)
    direct = np.log(np.maximum(n_dot_l, 0.05) / light[2])
    rel = h - cv2.GaussianBlur(h, (0, 0), cavity_sigma)
    return (direct + cavity * rel).astype(np.float32)


def resize_maps(maps: AppearanceMaps, size: int) -> AppearanceMaps:
    """The same maps resampled to ``size`` texels per side (area/bilinear)."""
    if size == maps.size:
        return maps
    interp = cv2.INTER_AREA if size < maps.size else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(m, (size, size), interpolation=interp) for m in maps.log_gain]).astype(np.float32)
    out.setflags(write=False)
    return AppearanceMaps(log_gain=out, size=size)
