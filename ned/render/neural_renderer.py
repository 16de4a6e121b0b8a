"""Inference with a trained neural renderer: conditioning in, face crop out.

:class:`NeuralRenderer` loads the EMA generator of a checkpoint written by
``ned train-renderer`` and renders a clip frame by frame (it keeps the previous frame's
conditioning and output, as in training; :meth:`NeuralRenderer.reset` at each clip).
Its output is a face crop (the preprocessing crop, at the trained size), and
:func:`composite_crop` un-aligns and blends it into the frame with
:mod:`ned.render.blend`, returning the training-free renderer's
:class:`~ned.render.warp_renderer.RenderedFace`, so blending, audio and provenance are
shared by both renderers. :meth:`NeuralRenderer.render_frame` does the whole frame step
(crop, NMFC / shape / eye images of the edited mesh, the training-free warp, network,
composite) with the same arguments and result as ``WarpRenderer.render`` plus the crop matrix.

Convention: crops are ``(S, S, 3) uint8`` RGB at the size the renderer was trained at;
eye landmarks ``(N, 2)`` crop pixels; matrices ``(2, 3)`` pixel affines ``<dst>_from_<src>``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ned.distributed import autocast, autocast_dtype, resolve_device
from ned.errors import ModelFileError
from ned.render.blend import BlendOptions, blend, soft_mask
from ned.render.dataset import conditioning_image, rasterize_eyes
from ned.render.networks import FrameGenerator, initial_previous
from ned.render.train import CHECKPOINT_KIND, find_checkpoint, read_checkpoint
from ned.render.warp_renderer import RenderedFace
from ned.types import check_array

logger = logging.getLogger(__name__)

__all__ = ["NeuralRenderer", "composite_crop", "face_polygon_from_nmfc", "is_renderer_checkpoint"]


def is_renderer_checkpoint(path: str | Path) -> bool:
    """True when ``path`` (file or folder) holds a readable neural renderer checkpoint."""
    try:
        read_checkpoint(path)
    except ModelFileError:
        return False
    return True


def _to_tensor(img: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(H, W, C) uint8 -> (1, C, H, W) float32 [0, 1]`` on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].to(device).float().div_(255.0)


class NeuralRenderer:
    """A trained per-actor renderer, used frame by frame.

    Build it with :meth:`load`. Args of the constructor (for tests and tools):

    Args:
        generator: the trained :class:`FrameGenerator` (EMA weights).
        device: where it runs.
        source: where it came from (for messages).
        step: the training step of the weights.
    """

    def __init__(self, generator: FrameGenerator, device: torch.device, source: str = "", step: int = 0) -> None:
        self.generator = generator.to(device).eval().requires_grad_(False)
        self.device = device
        self.source = source
        self.step = step
        self.amp_dtype = autocast_dtype(device)  # None on the CPU: full precision
        self.use_amp = self.amp_dtype is not None
        self._warp_renderer: Any = None
        self._cond_history: list[torch.Tensor] = []
        self._prev_output: torch.Tensor | None = None

    @property
    def size(self) -> int:
        """Crop side (pixels) the renderer was trained at and renders at."""
        return self.generator.size

    @property
    def use_warp(self) -> bool:
        """Whether :meth:`render` needs the warped crop."""
        return self.generator.use_warp

    @classmethod
    def load(cls, checkpoint: str | Path, *, size: int | None = None, device: str = "auto",
             use_ema: bool = True) -> "NeuralRenderer":
        """Load a renderer from a checkpoint file or the newest one in a folder.

        Args:
            checkpoint: ``step_<n>.pt`` or the ``--checkpoints_dir`` of ``train-renderer``.
            size: the crop size the caller works at; a checkpoint trained at another size
                is refused. None accepts the checkpoint's size.
            device: ``auto``, ``cpu``, ``cuda`` or ``cuda:<n>``.
            use_ema: the EMA generator (default) or the raw one.

        Raises:
            ModelFileError: nothing there, not a renderer checkpoint, corrupt, or trained
                at another size (the message says which size and what to do).
        """
        path = find_checkpoint(checkpoint)
        state = read_checkpoint(path)
        hparams: dict[str, Any] = dict(state.get("generator_hparams") or {})
        trained = int(hparams.get("size", state.get("options", {}).get("size", 0)))
        if size is not None and trained != int(size):
            raise ModelFileError(
                f"{path}: this neural renderer was trained at {trained}x{trained} px and cannot render "
                f"{size}x{size} crops; train one at that size (ned train-renderer --size {size}) or render at {trained}"
            )
        try:
            generator = FrameGenerator(**hparams)
            key = "generator_ema" if use_ema and state["nets"].get("generator_ema") is not None else "generator"
            generator.load_state_dict(state["nets"][key])
        except (TypeError, ValueError, KeyError, RuntimeError) as err:
            raise ModelFileError(f"{path}: damaged {CHECKPOINT_KIND} checkpoint ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0] if str(err) else ''})") from err
        dev = resolve_device(device)
        logger.info("neural renderer %s: %d px, warp-guided %s, step %d, on %s", path, trained,
                    generator.use_warp, int(state.get("step", 0)), dev)
        return cls(generator, dev, source=str(path), step=int(state.get("step", 0)))

    def reset(self) -> None:
        """Forget the previous frames (call at the start of every clip)."""
        self._cond_history = []
        self._prev_output = None

    def conditioning(self, nmfc: np.ndarray, shape: np.ndarray, eye_landmarks: np.ndarray) -> np.ndarray:
        """One frame's conditioning image ``(S, S, 9) uint8`` (NMFC, eyes, shape), as in training.

        Raises:
            ValueError: inputs not ``(S, S, 3) uint8`` at the renderer's size, or bad landmarks.
        """
        s = self.size
        check_array(nmfc, f"{s} {s} 3", np.uint8, name="nmfc")
        check_array(shape, f"{s} {s} 3", np.uint8, name="shape")
        return conditioning_image(nmfc, rasterize_eyes(eye_landmarks, s), shape)

    @torch.no_grad()
    def render(self, nmfc: np.ndarray, shape: np.ndarray, eye_landmarks: np.ndarray,
               warped: np.ndarray | None = None) -> np.ndarray:
        """Render the next frame of the clip.

        Args:
            nmfc: ``(S, S, 3) uint8`` NMFC image of the (edited) mesh, ``S = self.size``.
            shape: ``(S, S, 3) uint8`` shaded-mesh image.
            eye_landmarks: ``(N, 2)`` eye landmarks in crop pixels (the ``eye_landmarks/`` layout).
            warped: ``(S, S, 3) uint8`` the training-free renderer's warped crop (required
                exactly when :attr:`use_warp`).

        Returns:
            ``(S, S, 3) uint8`` RGB crop.

        Raises:
            ValueError: wrong sizes or dtypes (a crop of another size names the trained size),
                or ``warped`` missing for a warp-guided renderer.
        """
        s = self.size
        if isinstance(nmfc, np.ndarray) and nmfc.ndim == 3 and nmfc.shape[:2] != (s, s):
            raise ValueError(f"this neural renderer renders {s}x{s} crops; got {nmfc.shape[1]}x{nmfc.shape[0]} "
                             f"conditioning (load a renderer trained at that size)")
        cond = _to_tensor(self.conditioning(nmfc, shape, eye_landmarks), self.device)
        warp = None
        if self.use_warp:
            if warped is None:
                raise ValueError("this neural renderer is warp-guided: pass the warped crop (warped=...)")
            warp = _to_tensor(check_array(warped, f"{s} {s} 3", np.uint8, name="warped"), self.device)
        elif warped is not None:
            logger.debug("render: warped crop ignored (renderer is not warp-guided)")
        k = self.generator.n_cond_frames
        history = [cond] + self._cond_history
        history += [history[-1]] * (k - len(history))  # first frames: repeat the oldest
        prev = self._prev_output if self._prev_output is not None else initial_previous(warp, cond)
        with autocast(self.device, self.amp_dtype):
            out = self.generator(torch.cat(history[:k], dim=1), prev, warp).float()
        self._cond_history = history[: k - 1]
        self._prev_output = out
        return (out[0].clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).cpu().numpy()


    def render_frame(self, frame: np.ndarray, src_landmarks: np.ndarray, dst_landmarks: np.ndarray,
                     crop_from_frame: np.ndarray, *, crop_size: int = 256,
                     blend_options: BlendOptions = BlendOptions(), mask_scale: float = 1.12) -> RenderedFace:
        """Render the next frame of the clip into the full frame (``WarpRenderer.render``'s contract).

        Steps: cut the crop (``crop_from_frame`` rescaled to the trained size), rasterise
        the NMFC and shape images and the eye landmarks of ``dst_landmarks`` as
        preprocessing does, warp the crop from ``src`` to ``dst`` with the training-free
        renderer (warp-guided renderers), :meth:`render`, then :func:`composite_crop`
        inside the ``dst`` face oval scaled by ``mask_scale``.

        Args:
            frame: ``(H, W, 3) uint8`` RGB.
            src_landmarks: ``(478, 2|3)`` tracked landmarks in frame pixels (468 mesh + iris).
            dst_landmarks: ``(478, 2|3)`` the edited landmarks, same layout.
            crop_from_frame: ``(2, 3)`` frame pixels -> the preprocessing crop of side
                ``crop_size`` (``face3d/`` ``crop_from_frame``, or the tracker's box).
            crop_size: side of the crop ``crop_from_frame`` maps to.
            blend_options: how the face is composited.
            mask_scale: blend outline = the edited face oval scaled about its centroid, > 0.

        Returns:
            :class:`RenderedFace`; non-finite landmarks (no face) pass the frame through.

        Raises:
            ValueError: bad shapes.
        """
        from ned.face.align import transform_points
        from ned.face.landmarks import FACE_OVAL
        from ned.face.mask import eye_landmarks
        from ned.morph.raster import render_nmfc, render_shape

        check_array(frame, "H W 3", np.uint8, name="frame")
        src, dst = np.asarray(src_landmarks), np.asarray(dst_landmarks)
        if src.shape != dst.shape or src.ndim != 2 or src.shape[0] != 478 or src.shape[1] not in (2, 3):
            raise ValueError(f"landmarks: expected two (478, 2|3) arrays, got {src.shape} and {dst.shape}")
        if not (np.isfinite(src).all() and np.isfinite(dst).all()):
            h, w = frame.shape[:2]
            return RenderedFace(frame=frame.copy(), mask=np.zeros((h, w), np.float32), box=np.zeros(4, np.int32))
        # Exactly as in training: crop, NMFC and shape at the preprocessing size, then
        # area-resampled to the trained size; eyes and the warp at the trained size.
        s, cs = self.size, int(crop_size)
        m_full = check_array(np.asarray(crop_from_frame, np.float64), "2 3", name="crop_from_frame")
        m = m_full * (s / cs)
        crop_full = cv2.warpAffine(frame, m_full, (cs, cs), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        dst_full = transform_points(dst, m_full)
        if dst_full.shape[1] == 2:
            dst_full = np.concatenate([dst_full, np.zeros((478, 1), np.float32)], axis=1)

        def down(img: np.ndarray) -> np.ndarray:
            return img if cs == s else cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA)

        crop = down(crop_full)
        nmfc, shape = down(render_nmfc(dst_full[:468], (cs, cs))), down(render_shape(dst_full[:468], (cs, cs)))
        src_c, dst_c = transform_points(src, m), transform_points(dst, m)
        warped = None
        if self.use_warp:
            if self._warp_renderer is None:
                from ned.render.dataset import MeshWarpProvider

                self._warp_renderer = MeshWarpProvider().renderer
            warped = self._warp_renderer.render(crop, src_c, dst_c).frame
        out = self.render(nmfc, shape, eye_landmarks(dst_c), warped)
        oval = dst_c[FACE_OVAL, :2].astype(np.float64)
        centre = oval.mean(axis=0)
        return composite_crop(frame, out, m, centre + (oval - centre) * mask_scale, blend_options)


def face_polygon_from_nmfc(nmfc: np.ndarray) -> np.ndarray | None:
    """Convex hull ``(K, 2) float32`` (crop px) of the face pixels of an NMFC image, or None."""
    check_array(nmfc, "H W 3", np.uint8, name="nmfc")
    ys, xs = np.nonzero(nmfc.max(axis=-1) > 0)
    if len(xs) < 3:
        return None
    hull = cv2.convexHull(np.stack([xs, ys], axis=1).astype(np.float32))
    return hull[:, 0, :].astype(np.float32)


def composite_crop(frame: np.ndarray, crop: np.ndarray, crop_from_frame: np.ndarray, face_polygon: np.ndarray | None,
                   options: BlendOptions = BlendOptions()) -> RenderedFace:
    """Un-align a rendered crop and blend it into the frame inside a soft face mask.

    Args:
        frame: ``(H, W, 3) uint8`` the original frame.
        crop: ``(S, S, 3) uint8`` the rendered crop.
        crop_from_frame: ``(2, 3)`` pixel affine mapping frame pixels to this crop's pixels
            (for a crop rendered at another size than the preprocessing crop, scale it).
        face_polygon: ``(K, 2)`` the face outline in crop pixels (e.g. the edited mesh's
            face oval, or :func:`face_polygon_from_nmfc`); None passes the frame through.
        options: blending (the mask's soft edge from ``feather_px`` / ``feather_rel``).

    Returns:
        :class:`RenderedFace`: pixels outside the mask equal the input frame bit for bit.

    Raises:
        ValueError: bad shapes.
    """
    check_array(frame, "H W 3", np.uint8, name="frame")
    check_array(crop, "S S 3", np.uint8, name="crop")
    m = check_array(np.asarray(crop_from_frame, np.float64), "2 3", name="crop_from_frame")
    h, w = frame.shape[:2]
    empty = RenderedFace(frame=frame.copy(), mask=np.zeros((h, w), np.float32), box=np.zeros(4, np.int32))
    if face_polygon is None or len(face_polygon) < 3:
        return empty
    frame_from_crop = cv2.invertAffineTransform(m)
    poly = np.asarray(face_polygon, np.float64) @ frame_from_crop[:, :2].T + frame_from_crop[:, 2]
    feather = options.resolve_feather_px(float(np.ptp(poly[:, 0])))
    reach = int(np.ceil(feather / 2)) + 2 + (2**options.levels if options.method == "laplacian" else 0)
    x0, y0 = max(0, int(np.floor(poly[:, 0].min())) - reach), max(0, int(np.floor(poly[:, 1].min())) - reach)
    x1, y1 = min(w, int(np.ceil(poly[:, 0].max())) + reach + 1), min(h, int(np.ceil(poly[:, 1].max())) + reach + 1)
    if x1 <= x0 or y1 <= y0:
        return empty
    shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]])
    region_from_crop = shift[:, :2] @ frame_from_crop[:, :2], shift[:, :2] @ frame_from_crop[:, 2] + shift[:, 2]
    region_from_crop_m = np.concatenate([region_from_crop[0], region_from_crop[1][:, None]], axis=1)
    region = frame[y0:y1, x0:x1]
    rendered = cv2.warpAffine(crop, region_from_crop_m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    mask = soft_mask(poly - [x0, y0], (y1 - y0, x1 - x0), feather)
    out = frame.copy()
    out[y0:y1, x0:x1] = blend(region, rendered, mask, options)
    full_mask = np.zeros((h, w), np.float32)
    full_mask[y0:y1, x0:x1] = mask
    return RenderedFace(frame=out, mask=full_mask, box=np.array([x0, y0, x1, y1], np.int32))
