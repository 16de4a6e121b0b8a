"""`ned postprocess`: render a manipulated ``<celeb>/<exp_name>/`` back into videos.

For every clip of ``<celeb>/videos/``: decode it, warp each face from its source mesh
(``<celeb>/face3d/``) to its edited mesh (``<celeb>/<exp_name>/face3d/``), blend into the
frame, and write ``<exp_name>/full_frames/``, ``images/`` (the crop box), ``faces/``,
``faces_aligned/`` and ``<celeb>/<exp_name>/<video name>.mp4`` with the clip's fps,
frame count, resolution and audio, and the provenance tag.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ned.errors import InputError
from ned.face.align import warp_to_crop
from ned.face.mask import face_mask
from ned.layout import CelebLayout, atomic_write_image
from ned.manipulate.celeb import clip_frames, load_face3d, preprocess_state
from ned.appearance.options import AppearanceOptions
from ned.appearance.brows import load_label_brows, with_brow_motion
from ned.appearance.texture import uv_raster
from ned.manipulate.emotions import canonical_emotion, load_emotion_targets
from ned.appearance.pipeline import plan_appearance
from ned.media import EncodeOptions, probe
from ned.pipeline import make_renderer, render_video
from ned.render.warp_renderer import RenderOptions

logger = logging.getLogger(__name__)

OUTPUT_FOLDERS = ("full_frames", "images", "faces", "faces_aligned")


@dataclass(frozen=True)
class PostprocessOptions:
    """Options of :func:`postprocess_celeb`.

    Attributes:
        render: training-free renderer and blending options.
        renderer_checkpoint: a neural renderer (``ned train-renderer``) to use instead.
        device: where the neural renderer runs.
        appearance: expression appearance after the warp (training-free renderer only).
        exemplars: an exemplar bank lending real expression detail, or None.
        encode: output video encoding.
        crop_size: side of ``images/`` and the aligned crops (pixels).
        quiet: no progress bars.
    """

    render: RenderOptions = field(default_factory=RenderOptions)
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    crop_size: int = 256
    renderer_checkpoint: Path | None = None
    device: str = "auto"
    appearance: AppearanceOptions = field(default_factory=AppearanceOptions)
    exemplars: Path | None = None
    quiet: bool = False


class NeuralFrameRenderer:
    """Adapter giving the neural renderer the training-free renderer's ``render`` call;
    the payload of each frame is its ``crop_from_frame`` (2x3) from ``face3d/``."""

    def __init__(self, checkpoint: Path, crop_size: int, render: RenderOptions, device: str) -> None:
        from ned.render.neural_renderer import NeuralRenderer

        self._renderer = NeuralRenderer.load(checkpoint, device=device)
        self._crop_size, self._options = crop_size, render

    def reset(self) -> None:
        self._renderer.reset()

    def render(self, frame: np.ndarray, src: np.ndarray, dst: np.ndarray, *, payload: np.ndarray):
        return self._renderer.render_frame(frame, src, dst, payload, crop_size=self._crop_size,
                                           blend_options=self._options.blend, mask_scale=self._options.mask_scale)


def _frame_writer(exp: Path, first: int, src: dict, dst: dict, size: int):
    """The per-frame callback of :func:`ned.pipeline.render_video` writing the folders."""

    def write(t: int, rgb: np.ndarray, mask: np.ndarray) -> None:
        name = f"{first + t:06d}"
        crop_m, aligned_m = src["crop_from_frame"][t], src["aligned_from_crop"][t]
        crop = warp_to_crop(rgb, crop_m, size, border="replicate")
        pts = dst["landmarks_crop"][t]
        m = face_mask(pts, (size, size)) if np.isfinite(pts).all() else np.zeros((size, size), np.float32)
        faces = (crop * m[..., None] + 0.5).astype(np.uint8)
        atomic_write_image(exp / "full_frames" / f"{name}.jpg", rgb)
        atomic_write_image(exp / "images" / f"{name}.png", crop)
        atomic_write_image(exp / "faces" / f"{name}.png", faces)
        atomic_write_image(exp / "faces_aligned" / f"{name}.png", warp_to_crop(faces, aligned_m, size))

    return write


def postprocess_celeb(celeb: str | Path, exp_name: str, options: PostprocessOptions = PostprocessOptions()) -> list[Path]:
    """Render ``<celeb>/<exp_name>`` into one video per clip; returns their paths.

    Raises:
        InputError: missing preprocessing or manipulation output (says which command to run).
        OutputError: cannot write, disk full.
    """
    layout = CelebLayout(Path(celeb))
    exp = layout.root / exp_name
    if not (exp / "face3d").is_dir():
        raise InputError(f"{exp}/face3d is missing: run `ned manipulate {layout.root} --exp_name {exp_name} "
                         "--trg_emotions <emotion>` first")
    state = preprocess_state(layout, ("test",))
    manifest = json.loads((exp / "manipulation.json").read_text()) if (exp / "manipulation.json").exists() else {}
    request = manifest.get("request", "") if manifest else exp_name
    # label mode's segments (manifests older than this say nothing: no emotion per frame)
    try:
        emotions = tuple(canonical_emotion(str(e)) for e in manifest.get("emotions", ()))
        transition_s = float(manifest.get("transition_s", 0.0))
    except (InputError, TypeError, ValueError) as err:
        raise InputError(f"{exp / 'manipulation.json'}: bad emotions or transition ({err}); run `ned manipulate` "
                         "again") from err
    label = load_label_brows(load_emotion_targets(), uv_raster(options.appearance.texture_size)) if emotions else None
    from ned import __version__

    comment = f"edited by ned {__version__}: {request}"
    neural = None
    if options.renderer_checkpoint is not None:
        neural = NeuralFrameRenderer(options.renderer_checkpoint, options.crop_size, options.render, options.device)
    for folder in OUTPUT_FOLDERS:
        (exp / folder).mkdir(parents=True, exist_ok=True)
    outputs = []
    for clip in clip_frames(layout, state):
        video = layout.videos_dir / clip.video
        info = probe(video)
        if info.frame_count != clip.frame_count:
            raise InputError(f"{video} has {info.frame_count} frames but was preprocessed with "
                             f"{clip.frame_count}; run `ned preprocess` again")
        src = load_face3d(layout.folder("face3d"), clip.first_frame, clip.frame_count)
        dst = load_face3d(exp / "face3d", clip.first_frame, clip.frame_count)
        out = exp / f"{video.stem}.mp4"
        if neural is not None:
            neural.reset()  # temporal conditioning starts afresh with each clip
            renderer, payloads = neural, (lambda t, m=src["crop_from_frame"]: m[t])
        else:
            appearance, payloads = plan_appearance(src["expression"], dst["expression"], fps=clip.fps,
                                                   emotions=emotions, transition_s=transition_s,
                                                   options=options.appearance, exemplars=options.exemplars)
            renderer = make_renderer(options.render, appearance)
            if payloads is not None:  # brow shapes: an exemplar bank's or the calibrated ones (ned.appearance.brows)
                valid = np.isfinite(src["landmarks"]).all(axis=(1, 2)) & np.isfinite(dst["landmarks"]).all(axis=(1, 2))
                dst = {**dst, "landmarks": with_brow_motion(dst["landmarks"], valid, src["rotation"][valid],
                                                            src["scale"][valid], payloads, appearance, label)}
        render_video(video, out, src["landmarks"], dst["landmarks"], renderer, info=info, encode=options.encode,
                     comment=comment, quiet=options.quiet, payloads=payloads,
                     on_frame=_frame_writer(exp, clip.first_frame, src, dst, options.crop_size))
        outputs.append(out)
    return outputs
