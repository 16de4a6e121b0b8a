"""Training data of the neural renderer: windows of consecutive frames of one actor.

Reads a ``<celeb_path>`` preprocessed with ``ned preprocess --mode train``:
``images/`` (face crops, the targets), ``nmfcs/``, ``shapes/`` and ``eye_landmarks/``
(``.txt``, one ``x y`` row per point, in crop pixels), all numbered ``000000``,
``000001``, ... across the clips of ``videos/`` (clip lengths from ``videos/<name>.txt``:
one ``x1 y1 x2 y2`` box per frame). A training window never crosses a clip boundary.

Per frame the conditioning is NMFC (3) + eye image (3, :func:`rasterize_eyes`) +
shape image (3). For the warp-guided generator each frame also gets a *warped crop*:
another frame of the same clip warped to this frame's geometry. The warp is pluggable
(:class:`WarpProvider`); the default, :func:`nmfc_warp`, needs only the NMFC images:
an NMFC pixel's colour is the mean-face coordinate of the surface point it shows, so
equal colours in two frames are the same point of the face, a dense correspondence.

Convention: arrays are ``(H, W, 3) uint8`` RGB; tensors out of the dataset are
``float32`` in ``[0, 1]``, ``(T, C, S, S)`` per item (``S`` the training size).
Randomness (which frame is warped) comes from ``np.random.default_rng((seed, epoch,
index))``: the same item is the same on every run, worker and rank.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch
from scipy.spatial import cKDTree

from ned.errors import InputError
from ned.types import check_array

logger = logging.getLogger(__name__)

__all__ = [
    "EyeLayout",
    "eye_layout_for",
    "rasterize_eyes",
    "mouth_center_from_eyes",
    "nmfc_warp",
    "CelebFrames",
    "WarpProvider",
    "NmfcWarpProvider",
    "MeshWarpProvider",
    "make_warp_provider",
    "RendererDataset",
    "conditioning_image",
    "write_synthetic_celeb",
]

REQUIRED_FOLDERS = ("images", "nmfcs", "shapes", "eye_landmarks")
# Mouth centre in a 256 crop for a frontal face (ned.face.align.TEMPLATE mouth corners,
# lip centre slightly below): used when no pupils are known.
_TEMPLATE_MOUTH = (127.5, 170.0)
_TEMPLATE_SIZE = 256.0
# Lip centre below the pupils' midpoint, in pupil distances (1.12 on the alignment template,
# 1.19-1.31 measured on a MEAD clip's tracked meshes).
_MOUTH_BELOW_PUPILS = 1.2


# --------------------------------------------------------------------------- eyes


@dataclass(frozen=True)
class EyeLayout:
    """How the rows of an ``eye_landmarks`` file are grouped.

    Attributes:
        contour: points per eyelid loop (closed polygon), two loops first.
        iris: points per eye after the loops: 0 (none), 1 (pupil centre) or 5 (centre
            then four iris-boundary points, MediaPipe's order).
    """

    contour: int
    iris: int

    @property
    def n_points(self) -> int:
        return 2 * (self.contour + self.iris)


# Known files: NED's 14 points (12 eyelid points in iBUG-68 order + 2 pupils), the dense
# 16-point loops of ned.face.mask (34), and variants without / with full irises.
_EYE_LAYOUTS = {
    layout.n_points: layout
    for layout in (EyeLayout(6, 0), EyeLayout(6, 1), EyeLayout(16, 0), EyeLayout(16, 1), EyeLayout(16, 5))
}


def eye_layout_for(n_points: int) -> EyeLayout | None:
    """The :class:`EyeLayout` of a file with ``n_points`` rows, or None if unknown."""
    return _EYE_LAYOUTS.get(int(n_points))


def _pupils(points: np.ndarray, layout: EyeLayout | None) -> np.ndarray | None:
    """``(2, 2)`` pupil centres (image-left eye first) or None."""
    if layout is None:
        return None
    if layout.iris == 0:
        loops = points[: 2 * layout.contour].reshape(2, layout.contour, 2)
        return loops.mean(axis=1)
    start = 2 * layout.contour
    return points[[start, start + layout.iris]]


def rasterize_eyes(points: np.ndarray, size: int, scale: float = 1.0) -> np.ndarray:
    """Draw eye landmarks as a 3-channel conditioning image.

    Channel 0: eyelid contours (anti-aliased polylines); channel 1: the eye openings
    filled; channel 2: the pupils as discs (iris radius when the file has iris points,
    else 0.2 of the eye's width). Files of unknown layout are drawn as dots in all three
    channels (consistent, if less informative). NaN points (no face) give a black image.

    Args:
        points: ``(N, 2) float`` ``(x, y)`` pixels of the crop the file belongs to.
        size: output side in pixels.
        scale: multiply the points by this first (training size / crop size).

    Returns:
        ``(size, size, 3) uint8``.

    Raises:
        ValueError: ``points`` not ``(N, 2)``.
    """
    points = check_array(np.asarray(points, dtype=np.float64), "N 2", name="points") * scale
    img = np.zeros((size, size, 3), np.uint8)
    if len(points) == 0 or not np.isfinite(points).all():
        return img
    shift = 4
    fixed = np.round(points * (1 << shift)).astype(np.int32)
    thickness = max(1, int(round(size / 128)))
    layout = eye_layout_for(len(points))
    if layout is None:
        chans = [np.ascontiguousarray(img[..., c]) for c in range(3)]
        for x, y in fixed:
            for ch in chans:
                cv2.circle(ch, (int(x), int(y)), thickness << shift, 255, -1, cv2.LINE_AA, shift)
        return np.stack(chans, axis=-1)
    lids, fill, pupil = (np.zeros((size, size), np.uint8) for _ in range(3))
    loops = fixed[: 2 * layout.contour].reshape(2, layout.contour, 2)
    cv2.polylines(lids, list(loops), True, 255, thickness, cv2.LINE_AA, shift)
    cv2.fillPoly(fill, list(loops), 255, cv2.LINE_AA, shift)
    centres = _pupils(points, layout)
    for eye in range(2):
        loop = points[eye * layout.contour : (eye + 1) * layout.contour]
        if layout.iris == 5:
            start = 2 * layout.contour + eye * 5
            radius = np.linalg.norm(points[start + 1 : start + 5] - points[start], axis=1).mean()
        else:
            radius = 0.2 * (loop[:, 0].max() - loop[:, 0].min())
        cx, cy = centres[eye]
        r = max(float(radius), 1.0)
        disc = np.zeros_like(pupil)
        cv2.circle(disc, (int(round(cx * 16)), int(round(cy * 16))), int(round(r * 16)), 255, -1, cv2.LINE_AA, 4)
        # the visible pupil is the part inside the eye opening (closed eye: no pupil)
        eye_fill = np.zeros_like(fill)
        cv2.fillPoly(eye_fill, [loops[eye]], 255, cv2.LINE_AA, shift)
        pupil = np.maximum(pupil, np.minimum(disc, eye_fill))
    return np.stack([lids, fill, pupil], axis=-1)


def mouth_center_from_eyes(points: np.ndarray | None, crop_size: int) -> np.ndarray:
    """Estimate the lip centre of a face crop from its eye landmarks.

    The lip centre lies ``1.2`` pupil distances below the pupils' midpoint, along the
    face's vertical axis (perpendicular to the pupil line), on the project's alignment
    template; without usable points, the template's mouth position is returned.

    Args:
        points: ``(N, 2)`` eye landmarks in crop pixels, or None.
        crop_size: side of the crop in pixels.

    Returns:
        ``(2,) float32`` ``(x, y)`` in crop pixels.
    """
    template = np.array(_TEMPLATE_MOUTH, np.float32) * (crop_size / _TEMPLATE_SIZE)
    if points is None or not np.isfinite(points).all():
        return template
    pupils = _pupils(np.asarray(points, np.float64), eye_layout_for(len(points)))
    if pupils is None:
        return template
    mid = pupils.mean(axis=0)
    across = pupils[1] - pupils[0]
    if np.linalg.norm(across) < 1e-3:
        return template
    down = np.array([-across[1], across[0]])  # +90 degrees: image-down for an upright face
    if down[1] < 0:
        down = -down
    return (mid + _MOUTH_BELOW_PUPILS * down).astype(np.float32)


def conditioning_image(nmfc: np.ndarray, eyes: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Stack one frame's conditioning: ``3 x (H, W, 3) uint8 -> (H, W, 9) uint8``.

    Raises:
        ValueError: the three images differ in size or are not ``(H, W, 3) uint8``.
    """
    for name, img in (("nmfc", nmfc), ("eyes", eyes), ("shape", shape)):
        check_array(img, "H W 3", np.uint8, name=name)
    if not nmfc.shape == eyes.shape == shape.shape:
        raise ValueError(f"nmfc, eyes and shape differ in size: {nmfc.shape}, {eyes.shape}, {shape.shape}")
    return np.concatenate([nmfc, eyes, shape], axis=-1)


# --------------------------------------------------------------------------- warp


def nmfc_warp(src_image: np.ndarray, src_nmfc: np.ndarray, dst_nmfc: np.ndarray, smooth_px: int = 3) -> np.ndarray:
    """Warp ``src_image`` to the geometry of ``dst_nmfc`` through NMFC correspondences.

    Each destination face pixel takes the source pixel whose NMFC colour (mean-face
    coordinate) is nearest to its own (a k-d tree over the source face pixels); the map
    is box-smoothed over face pixels (``smooth_px``) and applied with bilinear sampling.
    Pixels outside the destination face (black NMFC) keep the source's pixel.

    Args:
        src_image: ``(H, W, 3) uint8`` the frame to move.
        src_nmfc: ``(H, W, 3) uint8`` its NMFC image.
        dst_nmfc: ``(H, W, 3) uint8`` the target frame's NMFC image.
        smooth_px: side of the box filter on the map (1 = none).

    Returns:
        ``(H, W, 3) uint8``.

    Raises:
        ValueError: shapes differ or are not ``(H, W, 3) uint8``.
    """
    check_array(src_image, "H W 3", np.uint8, name="src_image")
    check_array(src_nmfc, "H W 3", np.uint8, name="src_nmfc")
    check_array(dst_nmfc, "H W 3", np.uint8, name="dst_nmfc")
    if not src_image.shape == src_nmfc.shape == dst_nmfc.shape:
        raise ValueError(f"shapes differ: {src_image.shape}, {src_nmfc.shape}, {dst_nmfc.shape}")
    h, w = dst_nmfc.shape[:2]
    src_face = src_nmfc.max(axis=-1) > 0
    dst_face = dst_nmfc.max(axis=-1) > 0
    if not src_face.any() or not dst_face.any():
        return src_image.copy()
    ys, xs = np.nonzero(src_face)
    tree = cKDTree(src_nmfc[ys, xs].astype(np.float32))
    dy, dx = np.nonzero(dst_face)
    _, nearest = tree.query(dst_nmfc[dy, dx].astype(np.float32), k=1)
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = grid_x.copy(), grid_y.copy()
    map_x[dy, dx] = xs[nearest]
    map_y[dy, dx] = ys[nearest]
    if smooth_px > 1:  # normalised box filter restricted to face pixels
        weight = dst_face.astype(np.float32)
        norm = cv2.blur(weight, (smooth_px, smooth_px))
        for m in (map_x, map_y):
            sm = cv2.blur(m * weight, (smooth_px, smooth_px)) / np.maximum(norm, 1e-6)
            m[dst_face] = sm[dst_face]
    return cv2.remap(src_image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


# --------------------------------------------------------------------------- folder


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{path}: missing or unreadable image; re-run `ned preprocess <celeb_path> --mode train`")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _read_points(path: Path) -> np.ndarray:
    try:
        pts = np.loadtxt(path, dtype=np.float64, ndmin=2, comments="#")
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: missing or unreadable landmark file ({err})") from err
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise InputError(f"{path}: expected one 'x y' row per point, got shape {pts.shape}")
    return pts[:, :2].astype(np.float32)


_BOX_LINE = re.compile(r"^\s*[-+0-9.eE]+(\s+[-+0-9.eE]+){3}\s*$")


def _clip_lengths(videos_dir: Path, n_frames: int) -> list[int]:
    """Frame counts of the clips from ``videos/*.txt`` (box lines), or one clip."""
    lengths = []
    for txt in sorted(videos_dir.glob("*.txt")) if videos_dir.is_dir() else []:
        lengths.append(sum(1 for line in txt.read_text().splitlines() if _BOX_LINE.match(line)))
    lengths = [n for n in lengths if n > 0]
    if sum(lengths) == n_frames and lengths:
        return lengths
    if lengths:
        logger.warning("videos/*.txt list %d frames but images/ holds %d: treating it as one clip",
                       sum(lengths), n_frames)
    return [n_frames]


class CelebFrames:
    """Read access to the per-frame folders of one train-mode ``<celeb_path>``.

    Args:
        root: the ``<celeb_path>`` folder.

    Raises:
        InputError: a required folder is missing, empty, or holds a different number of
            frames than ``images/`` (the message names the command that writes it).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{self.root}: no such folder (expected a <celeb_path> preprocessed in train mode)")
        counts = {}
        for folder in REQUIRED_FOLDERS:
            path = self.root / folder
            ext = "txt" if folder == "eye_landmarks" else "png"
            counts[folder] = sum(1 for p in path.glob(f"*.{ext}") if not p.name.startswith(".")) if path.is_dir() else 0
            if counts[folder] == 0:
                raise InputError(f"{path}: missing or empty; run `ned preprocess {self.root} --mode train` first")
        if len(set(counts.values())) != 1:
            raise InputError(f"{self.root}: folders hold different frame counts {counts}; re-run "
                             f"`ned preprocess {self.root} --mode train`")
        self.n_frames = counts["images"]
        first = _read_rgb(self._path("images", 0, "png"))
        if first.shape[0] != first.shape[1]:
            raise InputError(f"{self._path('images', 0, 'png')}: expected square crops, got {first.shape[:2]}")
        self.crop_size = int(first.shape[0])
        self.clip_lengths = _clip_lengths(self.root / "videos", self.n_frames)
        starts = np.cumsum([0] + self.clip_lengths)
        self.clip_ranges = [(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]

    def __len__(self) -> int:
        return self.n_frames

    def _path(self, folder: str, index: int, ext: str) -> Path:
        return self.root / folder / f"{index:06d}.{ext}"

    def _check(self, index: int) -> int:
        if not 0 <= index < self.n_frames:
            raise IndexError(f"frame {index} out of range [0, {self.n_frames})")
        return index

    def clip_of(self, index: int) -> tuple[int, int]:
        """``(start, stop)`` frame range of the clip holding ``index``."""
        self._check(index)
        for a, b in self.clip_ranges:
            if a <= index < b:
                return a, b
        raise IndexError(index)  # pragma: no cover - ranges cover all frames

    def image(self, index: int) -> np.ndarray:
        """The real crop, ``(H, W, 3) uint8``."""
        return _read_rgb(self._path("images", self._check(index), "png"))

    def nmfc(self, index: int) -> np.ndarray:
        """The NMFC image, ``(H, W, 3) uint8``."""
        return _read_rgb(self._path("nmfcs", self._check(index), "png"))

    def shape(self, index: int) -> np.ndarray:
        """The shaded-mesh image, ``(H, W, 3) uint8``."""
        return _read_rgb(self._path("shapes", self._check(index), "png"))

    def eye_points(self, index: int) -> np.ndarray:
        """Eye landmarks, ``(N, 2) float32`` crop pixels (NaN rows for a missing face)."""
        return _read_points(self._path("eye_landmarks", self._check(index), "txt"))

    def landmarks(self, index: int) -> np.ndarray:
        """The tracked mesh in crop pixels, ``(478, 3) float32`` (``face3d/`` ``landmarks_crop``).

        Raises:
            InputError: no ``face3d/`` file for the frame, or no ``landmarks_crop`` in it.
        """
        path = self._path("face3d", self._check(index), "npz")
        try:
            with np.load(path, allow_pickle=False) as data:
                return np.asarray(data["landmarks_crop"], np.float32)
        except (OSError, KeyError, ValueError) as err:
            raise InputError(f"{path}: no face3d landmarks ({err}); re-run `ned preprocess {self.root} --mode train` "
                             f"or use the NMFC warp (--warp_provider nmfc)") from err

    def mouth_center(self, index: int) -> np.ndarray:
        """``(2,) float32`` lip centre in crop pixels: from the mesh when ``face3d/`` has it
        (mouth corners for x, inner lips for y), else :func:`mouth_center_from_eyes`."""
        path = self._path("face3d", self._check(index), "npz")
        if path.is_file():
            try:
                lm = self.landmarks(index)
                centre = np.array([lm[[61, 291], 0].mean(), lm[[13, 14], 1].mean()], np.float32)
                if np.isfinite(centre).all():
                    return centre
            except InputError:
                pass
        return mouth_center_from_eyes(self.eye_points(index), self.crop_size)

    def mask(self, index: int) -> np.ndarray | None:
        """The face mask ``(H, W) float32`` in ``[0, 1]`` from ``masks/``, or None."""
        path = self._path("masks", self._check(index), "png")
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        return None if img is None else img.astype(np.float32) / 255.0


# --------------------------------------------------------------------------- warp providers


class WarpProvider(Protocol):
    """Produces the warp-guided input: frame ``src`` warped to frame ``dst``'s geometry.

    Called as ``provider(frames, src, dst, size)``; returns ``(size, size, 3) uint8``.
    A provider built on the training-free renderer (``ned.render.warp``) plugs in here.
    """

    def __call__(self, frames: CelebFrames, src: int, dst: int, size: int) -> np.ndarray: ...


class NmfcWarpProvider:
    """The default :class:`WarpProvider`: :func:`nmfc_warp` at the training size.

    Args:
        smooth_px: box-filter side on the correspondence map at ``size`` (>= 1).
    """

    def __init__(self, smooth_px: int = 3) -> None:
        if smooth_px < 1:
            raise ValueError(f"smooth_px must be >= 1, got {smooth_px}")
        self.smooth_px = smooth_px

    def __call__(self, frames: CelebFrames, src: int, dst: int, size: int) -> np.ndarray:
        def at(img: np.ndarray, interp: int) -> np.ndarray:
            return img if img.shape[0] == size else cv2.resize(img, (size, size), interpolation=interp)

        # nearest keeps NMFC colours unmixed at the face border
        return nmfc_warp(
            at(frames.image(src), cv2.INTER_AREA),
            at(frames.nmfc(src), cv2.INTER_NEAREST),
            at(frames.nmfc(dst), cv2.INTER_NEAREST),
            self.smooth_px,
        )


class MeshWarpProvider:
    """The training-free renderer as a :class:`WarpProvider`: frame ``src``'s crop warped
    from its tracked mesh to frame ``dst``'s (piecewise-affine over the packaged face
    topology, anchor ring, blended: :class:`ned.render.warp_renderer.WarpRenderer`), at
    the training size. Exactly the warped crop the pipeline hands the neural renderer.
    Needs ``face3d/`` with ``landmarks_crop``; a frame without a face gets the unwarped crop.

    Args:
        options: the warp renderer's options (None: its defaults).
    """

    def __init__(self, options: Any = None) -> None:
        from ned.morph.topology import load_topology
        from ned.render.warp_renderer import RenderOptions, WarpRenderer

        topo = load_topology()
        self.renderer = WarpRenderer(topo.triangles, topo.group("face_oval"), options or RenderOptions(),
                                     n_points=topo.triangles.max() + 1)

    def __call__(self, frames: CelebFrames, src: int, dst: int, size: int) -> np.ndarray:
        img = frames.image(src)
        scale = size / frames.crop_size
        if img.shape[0] != size:
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        src_lm, dst_lm = frames.landmarks(src) * scale, frames.landmarks(dst) * scale
        return self.renderer.render(img, src_lm, dst_lm).frame


WARP_PROVIDERS = ("mesh", "nmfc")


def make_warp_provider(name: str) -> WarpProvider:
    """``"mesh"`` -> :class:`MeshWarpProvider`, ``"nmfc"`` -> :class:`NmfcWarpProvider`.

    Raises:
        ValueError: unknown name.
    """
    if name == "mesh":
        return MeshWarpProvider()
    if name == "nmfc":
        return NmfcWarpProvider()
    raise ValueError(f"unknown warp provider {name!r}; choose one of {', '.join(WARP_PROVIDERS)}")


# --------------------------------------------------------------------------- dataset


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """``(H, W, C) uint8 -> (C, H, W) float32 [0, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


class RendererDataset(torch.utils.data.Dataset):
    """Windows of ``window`` consecutive frames of one clip, at the training size.

    Item ``key`` is an index or ``(epoch, index)`` (the epoch varies which frame is
    warped); it returns a dict:

    - ``"cond"``: ``(T, 9, S, S)`` NMFC + eyes + shape, ``[0, 1]``;
    - ``"image"``: ``(T, 3, S, S)`` the real crops (targets), ``[0, 1]``;
    - ``"warp"``: ``(T, 3, S, S)`` warped crops (only with ``use_warp``), ``[0, 1]``;
    - ``"mouth"``: ``(T, 2)`` mouth centres ``(x, y)`` in pixels of ``S``;
    - ``"frame"``: ``(T,)`` int64 frame indices.

    Args:
        frames: the folder.
        size: training size ``S`` in pixels.
        window: consecutive frames per item (>= 1; 2 = current + previous).
        use_warp: produce ``"warp"``.
        warp_provider: the warp (default :class:`NmfcWarpProvider`).
        warp_max_offset: largest distance in frames between a frame and the frame warped
            onto it (0: anywhere in the clip); a frame is never its own source.
        seed: the run's seed.
        frame_ids: only windows lying wholly in these frames (e.g. a training split); None: all.
        source_ids: frames that may be warped onto a window (None: ``frame_ids``); keeps
            held-out frames from leaking into training inputs, and lets an evaluation
            split warp from training frames.
        cache_frames: keep each frame's resized images in memory (worth it at small sizes).

    Mouth centres come from :meth:`CelebFrames.mouth_center`.

    Raises:
        InputError: a clip too short for the window (and for a distinct warp source).
        ValueError: bad arguments.
    """

    def __init__(
        self,
        frames: CelebFrames,
        size: int,
        window: int = 2,
        use_warp: bool = True,
        warp_provider: WarpProvider | None = None,
        warp_max_offset: int = 0,
        seed: int = 0,
        frame_ids: list[int] | None = None,
        source_ids: list[int] | None = None,
        cache_frames: bool = True,
    ) -> None:
        if size < 8 or window < 1 or warp_max_offset < 0:
            raise ValueError(f"bad dataset arguments: size={size}, window={window}, warp_max_offset={warp_max_offset}")
        self.frames = frames
        self.size = int(size)
        self.window = int(window)
        self.use_warp = bool(use_warp)
        self.warp_provider: WarpProvider = warp_provider or NmfcWarpProvider()
        self.warp_max_offset = int(warp_max_offset)
        self.seed = int(seed)
        self.cache_frames = cache_frames
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.epoch = 0
        allowed = set(range(len(frames))) if frame_ids is None else set(int(i) for i in frame_ids)
        self.sources = allowed if source_ids is None else set(int(i) for i in source_ids)
        self.starts: list[int] = []
        self._clip_sources: dict[tuple[int, int], list[int]] = {}  # source-window starts per clip
        for a, b in frames.clip_ranges:
            src = [s for s in range(a, b - self.window + 1) if all(s + k in self.sources for k in range(self.window))]
            self._clip_sources[(a, b)] = src
            for s in range(a, b - self.window + 1):
                if all(s + k in allowed for k in range(self.window)):
                    if not self.use_warp or any(x != s for x in src):
                        self.starts.append(s)
        if not self.starts:
            need = self.window + (1 if self.use_warp else 0)
            raise InputError(f"{frames.root}: no clip has the {need} frames a training window needs "
                             f"(window {self.window}{', plus a distinct warp source' if self.use_warp else ''})")

    def __len__(self) -> int:
        return len(self.starts)

    def set_epoch(self, epoch: int) -> None:
        """Vary the warp sources of plain-index items (like ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def frame_arrays(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(cond (S, S, 9) uint8, image (S, S, 3) uint8, mouth (2,) float32 px of S)``."""
        if index in self._cache:
            return self._cache[index]
        f, s = self.frames, self.size
        scale = s / f.crop_size

        def at(img: np.ndarray, interp: int = cv2.INTER_AREA) -> np.ndarray:
            return img if img.shape[0] == s else cv2.resize(img, (s, s), interpolation=interp)

        points = f.eye_points(index)
        cond = conditioning_image(at(f.nmfc(index)), rasterize_eyes(points, s, scale), at(f.shape(index)))
        mouth = f.mouth_center(index) * scale
        out = (cond, at(f.image(index)), mouth)
        if self.cache_frames:
            self._cache[index] = out
        return out

    def _source_starts(self, start: int, a: int, b: int, unbounded: bool = False) -> list[int]:
        """Starts of source windows for the window at ``start`` in clip ``[a, b)``."""
        near = self.warp_max_offset if self.warp_max_offset and not unbounded else b - a
        return [s for s in self._clip_sources[(a, b)] if s != start and abs(s - start) <= near]

    def warp_sources(self, start: int, epoch: int) -> list[int]:
        """Frames warped onto the window ``start .. start + T - 1``: another window of the
        same clip (consecutive, as at inference), drawn with ``rng((seed, epoch, start))``."""
        a, b = self.frames.clip_of(start)
        rng = np.random.default_rng((self.seed, epoch, start))
        choices = self._source_starts(start, a, b) or self._source_starts(start, a, b, unbounded=True)
        src = int(choices[int(rng.integers(len(choices)))])
        return [src + k for k in range(self.window)]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, idx = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (self.epoch, int(key))
        start = self.starts[idx]
        frame_ids = list(range(start, start + self.window))
        conds, images, mouths = zip(*(self.frame_arrays(i) for i in frame_ids))
        item = {
            "cond": torch.stack([_to_tensor(c) for c in conds]),
            "image": torch.stack([_to_tensor(x) for x in images]),
            "mouth": torch.from_numpy(np.stack(mouths)),
            "frame": torch.tensor(frame_ids, dtype=torch.int64),
        }
        if self.use_warp:
            sources = self.warp_sources(start, epoch)
            warps = [self.warp_provider(self.frames, s, d, self.size) for s, d in zip(sources, frame_ids)]
            item["warp"] = torch.stack([_to_tensor(w) for w in warps])
        return item


# --------------------------------------------------------------------------- synthetic data


def write_synthetic_celeb(root: str | Path, n_frames: int = 8, crop_size: int = 64, seed: int = 0,
                          n_clips: int = 1, face3d: bool = True) -> Path:
    """Write a tiny train-mode ``<celeb_path>`` of a synthetic moving face (tests, benchmarks).

    A textured ellipse "face" drifts and opens its mouth; ``nmfcs/`` hold its exact
    surface coordinates (so :func:`nmfc_warp` is exact on it), ``shapes/`` its shading,
    ``eye_landmarks/`` NED's 14 points, ``masks/`` the face, ``face3d/`` a
    ``landmarks_crop`` mesh (the packaged canonical mesh stretched over the ellipse) and
    ``videos/clip<k>.txt`` one box line per frame. Not a face model: just data with the
    real folder layout.

    Args:
        root: folder to create (parents included).
        n_frames: frames per clip (>= 2). crop_size: crop side, px (>= 16).
        seed: varies the motion. n_clips: clips (frames numbered across them).
        face3d: write ``face3d/`` (needs the packaged topology).

    Returns:
        ``root``.
    """
    if n_frames < 2 or crop_size < 16 or n_clips < 1:
        raise ValueError(f"bad synthetic celeb arguments: {n_frames}, {crop_size}, {n_clips}")
    root = Path(root)
    for name in ("images", "nmfcs", "shapes", "eye_landmarks", "masks", "videos"):
        (root / name).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    s = float(crop_size)
    canonical = None
    if face3d:
        from ned.morph.topology import load_topology

        canonical = load_topology().canonical[:, :2].astype(np.float64)
        canonical = canonical / np.abs(canonical).max(axis=0) * 0.92  # inside the unit disk's box
        (root / "face3d").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:crop_size, 0:crop_size].astype(np.float64)
    index = 0
    for clip in range(n_clips):
        boxes = []
        phase = rng.uniform(0, 2 * np.pi, size=3)
        for t in range(n_frames):
            a = 2 * np.pi * t / max(n_frames, 2)
            cx = s * (0.5 + 0.04 * np.sin(a + phase[0]))
            cy = s * (0.52 + 0.03 * np.cos(a + phase[1]))
            rx, ry = s * 0.30, s * 0.38
            mouth = 0.5 + 0.5 * np.sin(2 * a + phase[2])  # 0 closed .. 1 open
            u, v = (xx - cx) / rx, (yy - cy) / ry
            inside = u**2 + v**2 <= 1.0
            z = np.sqrt(np.clip(1.0 - u**2 - v**2, 0.0, 1.0))
            mouth_px = (np.abs(u) < 0.38) & (np.abs(v - 0.5) < 0.04 + 0.14 * mouth)
            face = inside & ~mouth_px
            nmfc = np.zeros((crop_size, crop_size, 3), np.uint8)
            nmfc[face] = (np.stack([(u + 1) / 2, (v + 1) / 2, z], -1)[face] * 255).astype(np.uint8)
            shade = (np.stack([z, z, z], -1) * 220 * face[..., None]).astype(np.uint8)
            tex = 0.55 + 0.18 * np.sin(9 * u) * np.sin(7 * v) + 0.1 * z
            skin = np.stack([tex * 0.95, tex * 0.72, tex * 0.6], -1)
            bg = np.stack([0.25 + 0.1 * xx / s, 0.3 + 0.0 * yy, 0.35 + 0.1 * yy / s], -1)
            img = np.where(inside[..., None], skin, bg)
            img[mouth_px] = (0.35, 0.08, 0.1)
            eyes = []
            for side in (-1, 1):
                ex, ey = cx + side * 0.36 * rx, cy - 0.25 * ry
                w, h = 0.16 * rx, 0.07 * ry
                ang = np.deg2rad([180, 120, 60, 0, -60, -120]) if side < 0 else np.deg2rad([0, 60, 120, 180, 240, 300])
                eyes.append(np.stack([ex + w * np.cos(ang), ey - h * np.sin(ang)], -1))
                in_eye = ((xx - ex) / w) ** 2 + ((yy - ey) / h) ** 2 <= 1
                img[in_eye] = (0.95, 0.95, 0.95)
                img[in_eye & ((xx - ex) ** 2 + (yy - ey) ** 2 <= (0.5 * h) ** 2)] = (0.1, 0.1, 0.1)
            pupils = np.array([[cx - 0.36 * rx, cy - 0.25 * ry], [cx + 0.36 * rx, cy - 0.25 * ry]])
            points = np.concatenate([eyes[0], eyes[1], pupils])
            name = f"{index:06d}"
            rgb = (img * 255).astype(np.uint8)
            cv2.imwrite(str(root / "images" / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(root / "nmfcs" / f"{name}.png"), cv2.cvtColor(nmfc, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(root / "shapes" / f"{name}.png"), cv2.cvtColor(shade, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(root / "masks" / f"{name}.png"), (inside * 255).astype(np.uint8))
            np.savetxt(root / "eye_landmarks" / f"{name}.txt", points, fmt="%.3f")
            if canonical is not None:
                mesh = np.stack([cx + canonical[:, 0] * rx, cy + canonical[:, 1] * ry], -1)
                iris = np.repeat(pupils, 5, axis=0)
                lm = np.concatenate([np.concatenate([mesh, iris]), np.zeros((478, 1))], axis=1).astype(np.float32)
                np.savez(root / "face3d" / f"{name}.npz", landmarks_crop=lm)
            boxes.append(f"{100 + t} 100 {300 + t} 300")
            index += 1
        header = [f"# source: synthetic clip {clip}", "# fps: 25", f"# frames: {n_frames}"]
        (root / "videos" / f"clip{clip}.txt").write_text("\n".join(header + boxes) + "\n")
    return root
