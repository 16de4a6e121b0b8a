"""The training-free renderer: warp the source frame's own face onto the edited mesh.

One frame's journey through :meth:`WarpRenderer.render`::

    frame, src/dst landmarks (frame px)
      -> two boxes: the source box (anchor ring and mask: all the warp can read) and the
         output box (where the blend mask can be non-zero)
      -> piecewise-affine warp into the output box, src mesh -> dst mesh, with a fixed
         anchor ring so the warp fades to the identity at the face border (ned.render.warp)
      -> appearance hook (optional; e.g. expression detail transfer, issue 6)
      -> blend into the frame inside a soft mask around the dst face oval (ned.render.blend)
      -> RenderedFace(frame, mask, box)

Everything happens in frame pixels on the boxes only, so the face keeps its full
resolution. :meth:`WarpRenderer.render_region` returns the output box alone (no
full-frame copies), and :meth:`WarpRenderer.render_planes` renders straight on the planes
of YUV 4:2:0 video (no RGB at all): about 10 ms for a 1080p face on one core.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import cv2
import numpy as np

from ned.render.blend import BlendOptions, blend, blend_box, mask_reach_px, soft_mask
from ned.morph.topology import NUM_VERTICES
from ned.render.eyes import iris_circles, reveal_eyes
from ned.render.warp import (_INTERPOLATIONS, MapAdjust, WarpMesh, _warp_box, anchor_ring, box_maps,
                             build_warp_mesh)
from ned.types import box_has_area, check_array

__all__ = ["AppearanceContext", "AppearanceFn", "RenderOptions", "RenderedFace", "RenderedPlanes", "RenderedRegion",
           "WarpRenderer"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderOptions:
    """Options of the training-free warp renderer.

    Attributes:
        ring_scale: the anchor loop is the face oval pushed out from its centroid by this
            fraction of the centroid-to-oval distance, ``(0, 2]``. Wider = a gentler fade.
        mask_scale: the blend mask's outline is the destination face oval scaled about the
            same centroid by this factor, ``(0.5, 3]``; the soft edge is centred on it.
        interpolation: image resampling of the warp, ``"cubic"`` (keeps skin texture
            sharp under sub-pixel shifts) or ``"linear"`` (a little faster, softer).
        map_step: the warp's displacement field is evaluated every ``map_step`` pixels and
            bilinearly upsampled, ``1..4`` (1 = exact; 2 is faster and visually identical).
        blend: how the warped face is composited (method, feather, levels, colour).
        reveal_eyes: inside the eye openings the eye moves rigidly and lids that open
            wider uncover more of it instead of stretching it (:mod:`ned.render.eyes`;
            needs the 468-point face mesh).
    """

    ring_scale: float = 0.3
    mask_scale: float = 1.12
    interpolation: str = "cubic"
    map_step: int = 2
    blend: BlendOptions = field(default_factory=BlendOptions)
    reveal_eyes: bool = True

    def __post_init__(self) -> None:
        if not (0 < self.ring_scale <= 2):
            raise ValueError(f"RenderOptions.ring_scale must be in (0, 2], got {self.ring_scale}")
        if not (0.5 < self.mask_scale <= 3):
            raise ValueError(f"RenderOptions.mask_scale must be in (0.5, 3], got {self.mask_scale}")
        if self.interpolation not in ("linear", "cubic"):
            raise ValueError(f"RenderOptions.interpolation must be 'linear' or 'cubic', got {self.interpolation!r}")
        if isinstance(self.map_step, bool) or not isinstance(self.map_step, (int, np.integer)) \
                or not 1 <= self.map_step <= 4:
            raise ValueError(f"RenderOptions.map_step must be an integer in [1, 4], got {self.map_step!r}")
        if not isinstance(self.blend, BlendOptions):
            raise ValueError(f"RenderOptions.blend must be a BlendOptions, got {type(self.blend).__name__}")


@dataclass(frozen=True)
class RenderedFace:
    """The composited frame and where it may differ from the input.

    Attributes:
        frame: ``(H, W, 3) uint8`` RGB, equal to the input bit for bit where ``mask == 0``.
        mask: ``(H, W) float32`` blend mask in ``[0, 1]`` (all zero when nothing was rendered).
        box: ``(4,) int32`` ``x0 y0 x1 y1`` (exclusive ends) of the region that was
            processed, frame pixels; all zero when nothing was rendered.
    """

    frame: np.ndarray
    mask: np.ndarray
    box: np.ndarray

    @property
    def rendered(self) -> bool:
        """False when the frame was passed through (no face, or an empty region)."""
        return box_has_area(self.box)


@dataclass(frozen=True)
class RenderedRegion:
    """The rendered face over the changed region only (what :meth:`WarpRenderer.render_region`
    returns; no full-frame copies).

    Attributes:
        box: ``(4,) int32`` ``x0 y0 x1 y1`` (exclusive ends) of the region, frame pixels;
            all zero when nothing was rendered (then the arrays are empty).
        source: ``(h, w, 3) uint8`` the input frame over ``box``.
        image: ``(h, w, 3) uint8`` the composited region, equal to ``source`` bit for bit
            where ``mask == 0``.
        mask: ``(h, w) float32`` blend mask in ``[0, 1]``; 0 everywhere outside ``box``.
    """

    box: np.ndarray
    source: np.ndarray
    image: np.ndarray
    mask: np.ndarray

    @property
    def rendered(self) -> bool:
        """False when the frame was passed through (no face, or an empty region)."""
        return box_has_area(self.box)

    def paste(self, frame: np.ndarray) -> None:
        """Write the composited region into ``frame`` ``(H, W, 3) uint8`` in place."""
        if self.rendered:
            x0, y0, x1, y1 = (int(v) for v in self.box)
            frame[y0:y1, x0:x1] = self.image

    def full_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The blend mask over a whole ``(H, W)`` frame (zeros outside the box)."""
        out = np.zeros(shape[:2], np.float32)
        if self.rendered:
            x0, y0, x1, y1 = (int(v) for v in self.box)
            out[y0:y1, x0:x1] = self.mask
        return out

    @staticmethod
    def empty() -> RenderedRegion:
        """Nothing rendered."""
        return RenderedRegion(np.zeros(4, np.int32), np.zeros((0, 0, 3), np.uint8),
                              np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.float32))


@dataclass(frozen=True)
class RenderedPlanes:
    """What :meth:`WarpRenderer.render_planes` returns: the changed box of a YUV 4:2:0 picture.

    Attributes:
        box: ``(4,) int32`` ``x0 y0 x1 y1`` (even, exclusive ends), luma pixels; all zero
            when nothing was rendered (then the arrays are empty).
        y: ``(h, w) uint8`` the new luma over ``box``.
        u, v: ``(h / 2, w / 2) uint8`` the new chroma over ``box / 2``.
        mask: ``(h, w) float32`` the blend mask (luma resolution).
    """

    box: np.ndarray
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    mask: np.ndarray

    @property
    def rendered(self) -> bool:
        """False when nothing was rendered (no face, or off the frame)."""
        return box_has_area(self.box)

    @staticmethod
    def empty() -> RenderedPlanes:
        """Nothing rendered."""
        z = np.zeros((0, 0), np.uint8)
        return RenderedPlanes(np.zeros(4, np.int32), z, z, z, np.zeros((0, 0), np.float32))


@dataclass(frozen=True)
class AppearanceContext:
    """What an appearance step sees besides the warped region (all in region pixels).

    Attributes:
        origin: ``(2,) int`` ``(x0, y0)`` of the region in frame pixels
            (``frame_px = region_px + origin``).
        source: ``(h, w, 3) uint8`` the unwarped region of the input frame (read-only;
            the luma ``(h, w) uint8`` from :meth:`WarpRenderer.render_planes`).
        src_points: ``(N, 2) float32`` source landmarks in region pixels.
        dst_points: ``(N, 2) float32`` edited landmarks in region pixels (the geometry of
            the warped image).
        anchors: ``(K, 2) float32`` the fixed anchor ring, region pixels.
        coverage: ``(h, w) float32`` 1 inside the warped triangles (face and band); None
            from :meth:`WarpRenderer.render_planes` (not computed there).
        mask: ``(h, w) float32`` the blend mask; changes outside it are discarded.
        mesh: the triangulation (face triangles, then the band to the anchors).
        payload: whatever the caller passed to :meth:`WarpRenderer.render` (e.g. the
            frame's expression weights or a reference frame); opaque to the renderer.
    """

    origin: np.ndarray
    source: np.ndarray
    src_points: np.ndarray
    dst_points: np.ndarray
    anchors: np.ndarray
    coverage: np.ndarray | None
    mask: np.ndarray
    mesh: WarpMesh
    payload: Any = None


AppearanceFn = Callable[[np.ndarray, AppearanceContext], np.ndarray]
"""``appearance(warped (h, w, 3) uint8, ctx) -> (h, w, 3) uint8``: runs after the warp,
before blending; must return an image of the same shape and dtype (it may modify its
input in place)."""


class WarpRenderer:
    """Warp-and-blend renderer for one face topology.

    Args:
        triangles: ``(M, 3)`` int face triangulation (e.g. the 468-point MediaPipe mesh's),
            covering the face as a disk, mouth and eye interiors included.
        oval: ``(K,)`` int face-oval landmark indices, an ordered closed loop.
        options: :class:`RenderOptions`.
        appearance: optional :data:`AppearanceFn` applied to the warped region; None = no-op.
        n_points: number of landmarks the triangles index; default ``triangles.max() + 1``.
            Landmarks passed to :meth:`render` may have more rows (e.g. 478 with iris);
            the extra rows are ignored.

    Raises:
        ValueError: on a bad topology or options.
    """

    def __init__(self, triangles: np.ndarray, oval: np.ndarray, options: RenderOptions = RenderOptions(),
                 *, appearance: AppearanceFn | None = None, n_points: int | None = None) -> None:
        if not isinstance(options, RenderOptions):
            raise ValueError(f"options must be a RenderOptions, got {type(options).__name__}")
        if appearance is not None and not callable(appearance):
            raise ValueError("appearance must be callable or None")
        self.options = options
        self.appearance = appearance
        self.mesh = build_warp_mesh(triangles, oval, n_points)

    def render(self, frame: np.ndarray, src_landmarks: np.ndarray, dst_landmarks: np.ndarray,
               *, payload: Any = None) -> RenderedFace:
        """Move the face in ``frame`` from ``src_landmarks`` to ``dst_landmarks``.

        Args:
            frame: ``(H, W, 3) uint8`` RGB.
            src_landmarks: ``(N, 2|3)`` the face's landmarks in ``frame`` pixels
                (``N >= n_points``; ``z`` ignored).
            dst_landmarks: ``(N, 2|3)`` the edited landmarks, same layout.
            payload: passed to the appearance step unchanged.

        Returns:
            :class:`RenderedFace`. With ``dst == src`` (and no appearance step) the frame is
            returned unchanged bit for bit. Non-finite landmarks (a missing face) pass the
            frame through with an empty mask.

        Raises:
            ValueError: on bad shapes or dtypes, or an appearance step that returns a
                wrong shape/dtype.
        """
        check_array(frame, "H W 3", np.uint8, name="frame")
        region = self.render_region(frame, src_landmarks, dst_landmarks, payload=payload)
        out = frame.copy()
        region.paste(out)
        return RenderedFace(frame=out, mask=region.full_mask(frame.shape), box=region.box)

    def render_region(self, frame: Any, src_landmarks: np.ndarray, dst_landmarks: np.ndarray,
                      *, payload: Any = None) -> RenderedRegion:
        """:meth:`render`, returning only the region that can change (no full-frame copies).

        Args:
            frame: ``(H, W, 3) uint8`` RGB, or a picture that converts regions on demand:
                anything with ``shape`` ``(H, W, 3)`` and ``region_rgb(x0, y0, x1, y1)``
                returning that rectangle as RGB (e.g. :class:`ned.media.YuvImage`).
            src_landmarks, dst_landmarks, payload: as in :meth:`render`.

        Returns:
            :class:`RenderedRegion` (empty when the face is missing or off the frame).

        Raises:
            ValueError: as :meth:`render`.
        """
        if isinstance(frame, np.ndarray):
            check_array(frame, "H W 3", np.uint8, name="frame")
        elif not hasattr(frame, "region_rgb"):
            raise ValueError(f"frame: expected an (H, W, 3) uint8 array or a planar picture, got {type(frame).__name__}")
        src = self._points(src_landmarks, "src_landmarks")
        dst = self._points(dst_landmarks, "dst_landmarks")
        height, width = frame.shape[:2]
        if not (np.isfinite(src).all() and np.isfinite(dst).all()):
            logger.debug("render: non-finite landmarks, frame passed through")
            return RenderedRegion.empty()

        mesh, opts = self.mesh, self.options
        geo = self._geometry(src, dst, width, height)
        if geo is None:
            return RenderedRegion.empty()
        anchors, polygon, feather, (sx0, sy0, sx1, sy1), (x0, y0, x1, y1) = geo
        source = frame[sy0:sy1, sx0:sx1] if isinstance(frame, np.ndarray) else frame.region_rgb(sx0, sy0, sx1, sy1)
        s_origin = np.array([sx0, sy0], np.float64)
        points_s = np.concatenate([src, anchors]) - s_origin
        targets_s = np.concatenate([dst, anchors]) - s_origin
        out_box = (x0 - sx0, y0 - sy0, x1 - sx0, y1 - sy0)
        warped, coverage = _warp_box(source, points_s, targets_s, mesh.triangles, out_box,
                                     interpolation=opts.interpolation, map_step=opts.map_step, identity=True,
                                     coverage=self.appearance is not None,
                                     map_adjust=self._map_adjust(src, dst, src_landmarks, s_origin))
        region = source[y0 - sy0:y1 - sy0, x0 - sx0:x1 - sx0]
        origin = np.array([x0, y0], np.float64)
        mask = soft_mask(polygon - origin, (y1 - y0, x1 - x0), feather)
        if self.appearance is not None:
            ctx = self._context(region, src, dst, anchors, (x0, y0), coverage, mask, payload)
            warped = self.appearance(warped, ctx)
            check_array(warped, f"{y1 - y0} {x1 - x0} 3", np.uint8, name="appearance output")
        composited = blend(region, warped, mask, opts.blend)
        return RenderedRegion(box=np.array([x0, y0, x1, y1], np.int32), source=region, image=composited, mask=mask)

    def _context(self, source: np.ndarray, src: np.ndarray, dst: np.ndarray, anchors: np.ndarray,
                 origin: tuple[int, int], coverage: np.ndarray | None, mask: np.ndarray,
                 payload: Any) -> AppearanceContext:
        """The appearance step's :class:`AppearanceContext` of an output box at ``origin``
        (``source``: the unwarped box, shown read-only; points in frame pixels)."""
        view = source.view()
        view.flags.writeable = False
        o = np.array(origin, np.float64)
        return AppearanceContext(origin=np.array(origin, np.int64), source=view,
                                 src_points=(src - o).astype(np.float32), dst_points=(dst - o).astype(np.float32),
                                 anchors=(anchors - o).astype(np.float32), coverage=coverage, mask=mask,
                                 mesh=self.mesh, payload=payload)

    @property
    def renders_planes(self) -> bool:
        """True when :meth:`render_planes` can be used: a blend that works per plane
        (``laplacian`` or ``copy``) and no appearance step, or one that is a luminance gain
        (it has a ``luma_gain(luma, ctx)`` method, e.g.
        :class:`ned.appearance.hook.ExpressionAppearance`)."""
        return (self.appearance is None or callable(getattr(self.appearance, "luma_gain", None))) \
            and self.options.blend.method in ("laplacian", "copy")

    def render_planes(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, src_landmarks: np.ndarray,
                      dst_landmarks: np.ndarray, *, payload: Any = None) -> RenderedPlanes:
        """:meth:`render_region` on the planes of an 8-bit YUV 4:2:0 picture, without RGB.

        The warp and the blend are linear in the pixel values, so they can run on the
        luma and chroma planes as they are: luma with the full-resolution maps and mask,
        chroma with both averaged over each 2x2 block (and one pyramid level less). Only
        where the blend mask is 0 for all four pixels of a block is a chroma sample
        outside the mask; there, and at every luma sample with mask 0, the output equals
        the input bit for bit.

        An appearance step runs as a luminance gain ``g`` on the warped luma, before the
        blend (``appearance.luma_gain(warped luma, ctx) -> (h, w) log gain``; chroma is
        untouched): ``Y' += (Y' - 16) (e^g - 1)``, which is what adding ``Y (e^g - 1)`` to
        R, G and B does to limited-range video of either matrix (BT.601, BT.709). Its
        context's ``source`` is the unwarped luma box ``(h, w) uint8`` and its
        ``coverage`` None (not computed).

        Args:
            y: ``(H, W) uint8`` luma plane (``H``, ``W`` even), limited range.
            u, v: ``(H / 2, W / 2) uint8`` chroma planes.
            src_landmarks, dst_landmarks, payload: as in :meth:`render`.

        Returns:
            :class:`RenderedPlanes` (empty when the face is missing or off the frame).

        Raises:
            ValueError: bad shapes or dtypes, or when :attr:`renders_planes` is False.
        """
        if not self.renders_planes:
            raise ValueError("render_planes: needs a laplacian or copy blend and no appearance step "
                             "or a luminance-gain one")
        check_array(y, "H W", np.uint8, name="y")
        height, width = y.shape
        if height % 2 or width % 2:
            raise ValueError(f"render_planes: the picture size must be even, got {width}x{height}")
        check_array(u, f"{height // 2} {width // 2}", np.uint8, name="u")
        check_array(v, f"{height // 2} {width // 2}", np.uint8, name="v")
        src = self._points(src_landmarks, "src_landmarks")
        dst = self._points(dst_landmarks, "dst_landmarks")
        if not (np.isfinite(src).all() and np.isfinite(dst).all()):
            return RenderedPlanes.empty()
        mesh, opts = self.mesh, self.options
        geo = self._geometry(src, dst, width, height)
        if geo is None:
            return RenderedPlanes.empty()
        anchors, polygon, feather, _, (x0, y0, x1, y1) = geo
        mask = soft_mask(polygon - np.array([x0, y0], np.float64), (y1 - y0, x1 - x0), feather)
        half = ((x1 - x0) // 2, (y1 - y0) // 2)
        chroma_mask = cv2.resize(mask, half, interpolation=cv2.INTER_AREA)   # 0 only where all 4 are 0
        cx0, cy0, cx1, cy1 = x0 // 2, y0 // 2, x1 // 2, y1 // 2
        y_in, u_in, v_in = y[y0:y1, x0:x1], u[cy0:cy1, cx0:cx1], v[cy0:cy1, cx0:cx1]
        map_xy = box_maps(np.concatenate([src, anchors]), np.concatenate([dst, anchors]), mesh.triangles,
                          (x0, y0, x1, y1), map_step=opts.map_step, map_adjust=self._map_adjust(src, dst, src_landmarks))
        gain = None
        if self.appearance is not None:
            y_warped = y_in if map_xy is None else \
                cv2.remap(y, map_xy, None, _INTERPOLATIONS[opts.interpolation], borderMode=cv2.BORDER_REPLICATE)
            ctx = self._context(y_in, src, dst, anchors, (x0, y0), None, mask, payload)
            gain = self.appearance.luma_gain(y_warped, ctx)
            check_array(gain, f"{y1 - y0} {x1 - x0}", np.float32, name="appearance luma gain")
            if not gain.any():
                gain = None
        if map_xy is None and gain is None:  # nothing changes: the blend of an identical picture is the picture
            return RenderedPlanes(np.array([x0, y0, x1, y1], np.int32), y_in.copy(), u_in.copy(), v_in.copy(), mask)
        if map_xy is None:  # only the luma changes
            y_out = blend_box(y_in, _add_luma_gain(y_in, gain), mask, opts.blend)
            return RenderedPlanes(np.array([x0, y0, x1, y1], np.int32), y_out, u_in.copy(), v_in.copy(), mask)
        if gain is None:
            y_warped = cv2.remap(y, map_xy, None, _INTERPOLATIONS[opts.interpolation],
                                 borderMode=cv2.BORDER_REPLICATE)
        else:
            y_warped = _add_luma_gain(y_warped, gain)
        # A chroma sample covers a 2x2 block: its source is the block's mean source
        # position, in chroma pixels (luma position p -> chroma (p - 0.5) / 2). Chroma is
        # smooth at half resolution: bilinear resampling is enough there.
        c_map = cv2.resize(map_xy, half, interpolation=cv2.INTER_AREA)
        c_map = cv2.addWeighted(c_map, 0.5, c_map, 0.0, -0.25)          # (p - 0.5) / 2
        u_warped = cv2.remap(u, c_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        v_warped = cv2.remap(v, c_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        y_out = blend_box(y_in, y_warped, mask, opts.blend)
        chroma_blend = replace(opts.blend, levels=max(1, opts.blend.levels - 1))
        uv = blend_box(cv2.merge([u_in, v_in]), cv2.merge([u_warped, v_warped]), chroma_mask, chroma_blend)
        return RenderedPlanes(np.array([x0, y0, x1, y1], np.int32), y_out, np.ascontiguousarray(uv[..., 0]),
                              np.ascontiguousarray(uv[..., 1]), mask)

    def _geometry(self, src: np.ndarray, dst: np.ndarray, width: int, height: int
                  ) -> tuple[np.ndarray, np.ndarray, float, tuple[int, int, int, int], tuple[int, int, int, int]] | None:
        """Anchor ring, mask polygon, feather and the two boxes of one frame, or None when
        the face is off the frame.

        The source box holds everything the warp can read (the anchor ring) and the mask;
        the output box (even corners) only where the mask can be non-zero. Pixels of the
        output box outside the mask are copied back bit for bit by the blend.
        """
        mesh, opts = self.mesh, self.options
        anchors = anchor_ring(src, dst, mesh.oval, opts.ring_scale)
        centre = src[mesh.oval].mean(axis=0)
        polygon = centre + (dst[mesh.oval] - centre) * opts.mask_scale       # (K, 2) frame px
        face_width = float(np.ptp(dst[mesh.oval, 0]))
        feather = opts.blend.resolve_feather_px(face_width)
        reach = mask_reach_px(feather) + 2
        source_box = _box(np.concatenate([anchors, polygon]), reach, width, height)
        out_box = _box(polygon, reach, width, height, even=True)
        if out_box[2] <= out_box[0] or out_box[3] <= out_box[1] or source_box[2] <= source_box[0] \
                or source_box[3] <= source_box[1]:
            return None
        return anchors, polygon, feather, source_box, out_box

    def _map_adjust(self, src: np.ndarray, dst: np.ndarray, src_landmarks: np.ndarray,
                    shift: np.ndarray | None = None) -> MapAdjust | None:
        """The eye-opening rewrite of the backward map (:func:`ned.render.eyes.reveal_eyes`)
        for mesh points ``src``/``dst`` in frame pixels (the source's iris circles read from
        ``src_landmarks``, 478 rows), moved by ``-shift`` into the map's frame; None when
        off or not our face mesh."""
        if not self.options.reveal_eyes or self.mesh.n_points < NUM_VERTICES:
            return None
        iris = iris_circles(np.asarray(src_landmarks))
        if shift is not None:
            src, dst = src - shift, dst - shift
            iris = None if iris is None else iris - np.array([shift[0], shift[1], 0.0])
        return lambda map_xy, origin: reveal_eyes(map_xy, origin, src, dst, iris)

    def _points(self, points: np.ndarray, name: str) -> np.ndarray:
        points = np.asarray(points)
        if points.ndim != 2 or points.shape[0] < self.mesh.n_points or points.shape[1] not in (2, 3):
            raise ValueError(f"{name}: expected shape (>= {self.mesh.n_points}, 2|3), got {points.shape}")
        return points[: self.mesh.n_points, :2].astype(np.float64)


def _add_luma_gain(y: np.ndarray, log_gain: np.ndarray) -> np.ndarray:
    """``Y' + (Y' - 16) (e^g - 1)`` rounded and clipped to uint8 (limited-range luma: a
    luminance gain ``e^g``); samples with ``g == 0`` keep their value."""
    delta = np.expm1(log_gain, dtype=np.float32)
    delta *= cv2.subtract(y, 16)  # saturating: super-black luma is black, as in RGB
    return cv2.add(y, delta, dtype=cv2.CV_8U)


def _box(points: np.ndarray, margin: int, width: int, height: int, *, even: bool = False) -> tuple[int, int, int, int]:
    """Integer box ``(x0, y0, x1, y1)`` around ``points`` grown by ``margin``, clipped to the
    frame; ``even`` grows it by a pixel where needed so that its corners have even
    coordinates within the frame (whole 2x2 chroma blocks of 4:2:0 video)."""
    x0 = max(0, int(np.floor(points[:, 0].min())) - margin)
    y0 = max(0, int(np.floor(points[:, 1].min())) - margin)
    x1 = min(width, int(np.ceil(points[:, 0].max())) + margin + 1)
    y1 = min(height, int(np.ceil(points[:, 1].max())) + margin + 1)
    if even:
        x0, y0 = x0 & ~1, y0 & ~1
        x1 = min(x1 + (x1 & 1), width)
        y1 = min(y1 + (y1 & 1), height)
    return x0, y0, x1, y1
