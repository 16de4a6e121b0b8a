"""The appearance step of the warp renderer: expression detail after the warp.

:class:`ExpressionAppearance` is an :data:`ned.render.warp_renderer.AppearanceFn`. Give it
to the renderer once and pass an :class:`AppearanceFrame` as each frame's ``payload``::

    appearance = ExpressionAppearance(AppearanceOptions(), bank=load_bank(dir) or None,
                                      reference_neutral=[ReferenceFrame(img, pts, w)] or ())
    renderer = WarpRenderer(topo.triangles, topo.group("face_oval"), appearance=appearance)
    for t, ...:
        payload = AppearanceFrame(source_expression=fit.expression[t],
                                  target_expression=edited[t], frame_index=t,
                                  emotion="happy", reference=ReferenceFrame(...) or None)
        renderer.render(frame, src_landmarks, dst_landmarks, payload=payload)

Per frame it builds one log-luminance gain texture (texture space of the mesh) from

- the built-in maps (:mod:`ned.appearance.maps`) blended by the change of the emotion
  weights, ``target - source`` (decreases scaled by ``release_scale``), and/or
- reference detail (:mod:`ned.appearance.ratio`): the ratio of a reference emotion frame
  over the reference's neutral frames, or of the closest exemplars of a bank
  (:mod:`ned.appearance.exemplars`), weighted per texel by how far the target's motion
  follows the reference's there (:mod:`ned.appearance.weighting`), and smoothed over
  time (exponential, ``temporal_alpha``),

and renders it onto the warped face through the edited mesh (luminance only, skin only,
inside the renderer's blend mask: :func:`ned.appearance.compose.render_gain`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import cv2
import numpy as np

from ned.appearance.compose import _render_gain_into, luma_gain_map, render_gain
from ned.appearance.maps import AppearanceMaps, crease_response, load_maps
from ned.appearance.options import AppearanceOptions
from ned.appearance.ratio import detail_map, luminance_uv
from ned.appearance.texture import uv_raster
from ned.appearance.weighting import detail_weighting
from ned.morph.rig import EMOTION_SHAPES, Blendshape, shape_mask
from ned.morph.topology import Topology
from ned.types import check_array

if TYPE_CHECKING:  # pragma: no cover
    from ned.appearance.exemplars import ExemplarBank
    from ned.render.warp_renderer import AppearanceContext

__all__ = ["ReferenceFrame", "AppearanceFrame", "ExpressionAppearance", "emotion_delta", "detail_weight"]

logger = logging.getLogger(__name__)

_EMOTION = shape_mask(EMOTION_SHAPES)
_K = len(Blendshape)


@dataclass(frozen=True)
class ReferenceFrame:
    """One frame of a reference actor.

    Attributes:
        image: ``(H, W, 3) uint8`` RGB frame or aligned crop.
        points: ``(>= 468, 2|3) float32`` its mesh in its pixels.
        expression: ``(K,) float32`` its fitted weights, or None when unknown.
        brow_offset: ``(468, 2) float32`` how its brows moved against its mesh from the
            actor's neutral face, canonical IOD (:mod:`ned.appearance.brows`), or None.
    """

    image: np.ndarray
    points: np.ndarray
    expression: np.ndarray | None = None
    brow_offset: np.ndarray | None = None

    def __post_init__(self) -> None:
        check_array(self.image, "H W 3", np.uint8, name="ReferenceFrame.image")
        pts = np.asarray(self.points)
        if pts.ndim != 2 or pts.shape[0] < 468 or pts.shape[1] not in (2, 3):
            raise ValueError(f"ReferenceFrame.points: expected shape (>= 468, 2|3), got {pts.shape}")
        if self.expression is not None:
            check_array(np.asarray(self.expression), f"{_K}", name="ReferenceFrame.expression")
        if self.brow_offset is not None:
            check_array(np.asarray(self.brow_offset), "468 2", name="ReferenceFrame.brow_offset")


@dataclass(frozen=True)
class AppearanceFrame:
    """What the appearance step needs to know about one frame (the renderer's payload).

    Attributes:
        source_expression: ``(K,)`` the frame's fitted weights.
        target_expression: ``(K,)`` the edited weights the warp moved the face to.
        frame_index: position in the clip (consecutive indices are smoothed together;
            a jump restarts the smoothing); -1 = unknown (no smoothing).
        emotion: the target emotion's name, for choosing exemplars of a bank (None: by
            expression only).
        reference: a reference emotion frame whose detail to transfer (reference mode).
        detail_weight: overrides the automatic weight of reference / exemplar detail,
            [0, 4]; None = automatic (projection of the emotion change).
    """

    source_expression: np.ndarray
    target_expression: np.ndarray
    frame_index: int = -1
    emotion: str | None = None
    reference: ReferenceFrame | None = None
    detail_weight: float | None = None

    def __post_init__(self) -> None:
        check_array(np.asarray(self.source_expression), f"{_K}", name="AppearanceFrame.source_expression")
        check_array(np.asarray(self.target_expression), f"{_K}", name="AppearanceFrame.target_expression")
        if self.detail_weight is not None and not 0.0 <= float(self.detail_weight) <= 4.0:
            raise ValueError(f"AppearanceFrame.detail_weight must be in [0, 4], got {self.detail_weight}")


def emotion_delta(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``target - source`` on the emotion blendshapes, 0 on speech and blinks: ``(K,)`` or,
    for ``(T, K)`` inputs, ``(T, K)`` float32."""
    d = np.asarray(target, np.float32) - np.asarray(source, np.float32)
    return np.where(_EMOTION, d, 0.0).astype(np.float32)


def detail_weight(target_delta: np.ndarray, reference_delta: np.ndarray, floor: float = 0.05) -> float:
    """How much of a reference's detail the target's emotion change calls for, in [0, 1].

    The projection ``<dt, dr> / |dr|^2`` of the target's emotion change ``dt`` on the
    reference's ``dr`` (both :func:`emotion_delta`), clipped to [0, 1]. A reference that
    barely moved (``|dr| < floor``) carries little detail and gets its projection on a
    vector of norm ``floor`` instead (so near-neutral references fade in smoothly).
    """
    dt = np.asarray(target_delta, np.float64)
    dr = np.asarray(reference_delta, np.float64)
    norm2 = max(float(dr @ dr), floor * floor)
    return float(np.clip((dt @ dr) / norm2, 0.0, 1.0))


class ExpressionAppearance:
    """Expression appearance for the warp renderer (an ``AppearanceFn``), with state.

    Args:
        options: :class:`AppearanceOptions`.
        maps: built-in maps (default :func:`ned.appearance.maps.load_maps`, loaded lazily).
        reference_neutral: the reference actor's neutral frames (reference mode).
        bank: an exemplar bank (label mode with exemplars).
        topology: default the packaged one.

    Raises:
        ValueError: on bad options or a maps/texture size mismatch.
    """

    def __init__(self, options: AppearanceOptions = AppearanceOptions(), *, maps: AppearanceMaps | None = None,
                 reference_neutral: Sequence[ReferenceFrame] = (), bank: "ExemplarBank | None" = None,
                 topology: Topology | None = None) -> None:
        if not isinstance(options, AppearanceOptions):
            raise ValueError(f"options must be an AppearanceOptions, got {type(options).__name__}")
        self.options = options
        self.raster = uv_raster(options.texture_size, topology)
        self._maps = maps
        if maps is not None and maps.size != options.texture_size:
            raise ValueError(f"maps are {maps.size} texels, options.texture_size is {options.texture_size}")
        self.bank = bank
        if bank is not None and bank.size != options.texture_size:
            raise ValueError(f"the exemplar bank's details are {bank.size} texels, "
                             f"options.texture_size is {options.texture_size}")
        refs = list(reference_neutral)
        textures = [luminance_uv(r.image, r.points, self.raster) for r in refs]
        # their per-texel median, once (detail_map would take it every frame)
        self._neutral_textures = [np.median(np.stack(textures), axis=0).astype(np.float32)] if textures else []
        exprs = [r.expression for r in refs if r.expression is not None]
        self._neutral_expression = np.mean(exprs, axis=0).astype(np.float32) if exprs else None
        self._last_index: int | None = None
        self._detail: np.ndarray | None = None
        self._blend_key: bytes | None = None  # the last maps.blend input and output
        self._blend: np.ndarray | None = None

    @property
    def neutral_expression(self) -> np.ndarray | None:
        """``(K,) float32`` mean weights of the reference's neutral frames (None without them)."""
        return self._neutral_expression

    @property
    def maps(self) -> AppearanceMaps:
        """The built-in maps (loaded on first use)."""
        if self._maps is None:
            self._maps = load_maps()
            if self._maps.size != self.options.texture_size:
                from ned.appearance.maps import resize_maps

                self._maps = resize_maps(self._maps, self.options.texture_size)
        return self._maps

    def reset(self) -> None:
        """Forget the temporal state (call between clips)."""
        self._last_index, self._detail = None, None

    # -- the per-frame gain ----------------------------------------------------------------
    def gain_uv(self, frame: AppearanceFrame) -> np.ndarray:
        """The frame's log-luminance gain in texture space, ``(S, S) float32``.

        Updates the temporal smoothing state; call once per frame, in order.
        """
        opts = self.options
        s = self.raster.size
        total = np.zeros((s, s), np.float32)
        if opts.mode == "off":
            return total
        delta = emotion_delta(frame.source_expression, frame.target_expression)
        detail, ref_delta = self._frame_detail(frame, delta)
        detail = self._smooth(frame.frame_index, detail)
        use_maps = opts.mode == "maps" or (opts.mode == "auto" and detail is None)
        if detail is not None and opts.mode in ("auto", "reference"):
            total += detail * self._detail_weight(frame, delta, ref_delta) * np.float32(opts.detail_strength)
        if use_maps and opts.map_strength > 0:
            creases = emotion_delta(crease_response(frame.source_expression), crease_response(frame.target_expression))
            d = np.where(creases > 0, creases, creases * opts.release_scale).astype(np.float32)
            key = d.tobytes()
            if key != self._blend_key or self._blend is None:
                self._blend = self.maps.blend(d) * np.float32(opts.map_strength)
                self._blend.setflags(write=False)
                self._blend_key = key
            total += self._blend
        return total

    def _frame_detail(self, frame: AppearanceFrame, delta: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Detail map of this frame's reference or exemplars, and the emotion change that
        made it (``(K,)``; None when unknown)."""
        opts = self.options
        if opts.mode == "maps":
            return None, None
        if frame.reference is not None and self._neutral_textures:
            ref = frame.reference
            detail = detail_map(self._neutral_textures, luminance_uv(ref.image, ref.points, self.raster),
                                self.raster, opts)
            if ref.expression is not None and self._neutral_expression is not None:
                return detail, emotion_delta(self._neutral_expression, ref.expression)
            return detail, None
        if frame.reference is not None:
            logger.debug("reference frame without reference neutral frames: no detail transfer")
        if self.bank is not None and len(self.bank):
            return self.bank.blend(delta, frame.emotion, opts.exemplars)
        return None, None

    def _detail_weight(self, frame: AppearanceFrame, delta: np.ndarray,
                       ref_delta: np.ndarray | None) -> np.ndarray | np.float32:
        """The frame's weight of detail: its override, 1 when the reference's change is
        unknown, else per texel how far ``delta`` follows ``ref_delta`` there
        (:class:`ned.appearance.weighting.DetailWeighting`): ``(S, S)`` or a scalar."""
        if frame.detail_weight is not None:
            return np.float32(frame.detail_weight)
        if ref_delta is None:
            return np.float32(1.0)
        return detail_weighting(self.raster.size).weight_map(delta, ref_delta, detail_weight(delta, ref_delta))

    def _smooth(self, index: int, detail: np.ndarray | None) -> np.ndarray | None:
        alpha = self.options.temporal_alpha
        if detail is None:
            self._last_index, self._detail = None, None
            return None
        if index < 0 or self._detail is None or self._last_index is None or index != self._last_index + 1 \
                or alpha >= 1.0:
            out = detail
        else:
            out = (alpha * detail + (1.0 - alpha) * self._detail).astype(np.float32)
        self._last_index, self._detail = index, out
        return out

    # -- application -----------------------------------------------------------------------
    def apply(self, image: np.ndarray, points: np.ndarray, frame: AppearanceFrame,
              limit: np.ndarray | None = None) -> np.ndarray:
        """Add the frame's expression appearance to a face image.

        Args:
            image: ``(H, W, 3) uint8`` the face at the edited geometry (warped frame region
                or aligned crop).
            points: ``(>= 468, 2|3)`` the edited mesh in ``image`` pixels.
            frame: the frame's :class:`AppearanceFrame`.
            limit: ``(H, W) float32`` in [0, 1] multiplied into the change (e.g. a blend
                mask); None = no limit.

        Returns:
            ``(H, W, 3) uint8``; the input unchanged where no skin is, or when the emotion
            weights did not change and no detail applies.

        Raises:
            ValueError: on bad shapes.
        """
        check_array(image, "H W 3", np.uint8, name="image")
        gain = self.gain_uv(frame)
        if not np.any(gain):
            return image.copy()
        return render_gain(image, points, gain, self.raster, self.options, limit=limit)

    def luma_gain(self, luma: np.ndarray, ctx: "AppearanceContext") -> np.ndarray:
        """The step as a luminance gain, for renderers that work on luma (YUV planes).

        The RGB step (:meth:`__call__`) adds ``Y (e^g - 1)`` to R, G and B, which changes
        only the luma of BT.601 video: ``Y' += (Y' - 16) (e^g - 1)`` (limited range) or
        ``Y' (e^g - 1)`` (full range), chroma unchanged. This returns that ``g``.

        Args:
            luma: ``(h, w)`` the warped region's luminance: ``uint8`` limited-range
                ``Y'`` (16 = black), or ``float32`` on any linear scale whose 0 is black
                (e.g. full-range luma in [0, 1]).
            ctx: the renderer's context (``payload`` an :class:`AppearanceFrame` or None).

        Returns:
            ``(h, w) float32`` natural-log gain, 0 outside the skin and the blend mask
            (all zero without a payload or a change). Updates the temporal state like
            :meth:`__call__`: call once per frame.
        """
        payload = self._payload(ctx)
        h, w = np.asarray(luma).shape[:2]
        if payload is None:
            return np.zeros((h, w), np.float32)
        if luma.dtype == np.uint8:
            luma = cv2.subtract(luma, 16)  # limited range: 16 = black (saturating)
        check_array(luma, f"{h} {w}", name="luma")
        gain = self.gain_uv(payload)
        if not np.any(gain):
            return np.zeros((h, w), np.float32)
        return luma_gain_map((h, w), ctx.dst_points, gain, self.raster, self.options, luma, limit=ctx.mask)

    @staticmethod
    def _payload(ctx: "AppearanceContext") -> AppearanceFrame | None:
        payload: Any = ctx.payload
        if payload is not None and not isinstance(payload, AppearanceFrame):
            raise ValueError(f"the appearance step needs an AppearanceFrame payload, got {type(payload).__name__}")
        return payload

    def __call__(self, warped: np.ndarray, ctx: "AppearanceContext") -> np.ndarray:
        """The renderer's hook: ``ctx.payload`` must be an :class:`AppearanceFrame` (or None:
        unchanged)."""
        payload = self._payload(ctx)
        if payload is None:
            return warped
        check_array(warped, "H W 3", np.uint8, name="warped")
        gain = self.gain_uv(payload)
        if not np.any(gain):
            return warped
        out = warped if warped.flags.writeable else warped.copy()  # the renderer allows in place
        _render_gain_into(out, ctx.dst_points, gain, self.raster, self.options, limit=ctx.mask)
        return out
