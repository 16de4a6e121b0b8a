"""The streamed one-shot edit: ``ned edit in.mp4 -o out.mp4 --emotion happy``.

Two passes over the input, neither holding more than a bounded window of frames:

1. analyse: decode → track (:mod:`ned.face`) → per-frame landmarks ``(T, 478, 3)``
   (a few KB per frame) → fit the face model (:mod:`ned.morph`) → manipulate the
   expression weights (:mod:`ned.manipulate`) → the edited landmarks;
2. render: decode again → warp each face onto its edited mesh and blend
   (:mod:`ned.render`) → encode with the source's audio (:mod:`ned.media`).

The output keeps the source's frame count, fps, resolution and audio, and carries a
provenance ``comment`` tag. It is written atomically: a failed or interrupted run
leaves nothing under the final name.

Speed: both passes decode in a background thread and keep 8-bit 4:2:0 frames in their
YUV planes (:func:`ned.media.iter_planar_frames`): the tracker cuts its small crops from
the planes, and the renderer warps and blends the face on the planes themselves
(:meth:`~ned.render.warp_renderer.WarpRenderer.render_planes`), so no full frame is
converted to RGB and back, and frames without a face reach the encoder untouched.
``benchmarks/bench_edit.py`` measures it against a plain decode + re-encode.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from ned import __version__
from ned.errors import InputError
from ned.appearance.brows import load_label_brows, with_brow_motion, with_brow_offsets
from ned.appearance.options import AppearanceOptions
from ned.appearance.pipeline import load_reference_clip, plan_appearance
from ned.appearance.texture import uv_raster
from ned.face.tracker import FaceTracker, TrackOptions
from ned.manipulate.emotions import load_emotion_targets
from ned.manipulate.plan import ManipulationSpec, plan_expressions
from ned.media import (
    EncodeOptions,
    VideoInfo,
    VideoWriter,
    WriteBehind,
    YuvImage,
    check_output_path,
    iter_frames,
    iter_planar_frames,
    probe,
    read_ahead,
    tune_malloc,
)
from ned.morph.fit import FaceFits, FaceModel, apply_expression_delta
from ned.morph.topology import load_topology
from ned.preprocess import fit_in_chunks
from ned.render.warp_renderer import RenderOptions, WarpRenderer

logger = logging.getLogger(__name__)

# Frames decoded ahead by a background thread, and frames queued for the encoding
# thread (each a few MB at 1080p).
_READ_AHEAD = 4
_WRITE_BEHIND = 4


@dataclass(frozen=True)
class ClipAnalysis:
    """The tracked and fitted face of one clip.

    Attributes:
        info: the clip's container facts.
        landmarks: ``(T, 478, 3) float32`` frame pixels; NaN rows where no face.
        valid: ``(T,) bool`` frames with a face (tracked or interpolated).
        model: the actor's face model (identity estimated over the clip).
        fits: fits of the valid frames, in order (``len == valid.sum()``).
    """

    info: VideoInfo
    landmarks: np.ndarray
    valid: np.ndarray
    model: FaceModel
    fits: FaceFits

    def expressions(self) -> np.ndarray:
        """``(T, K) float32`` expression weights, NaN rows where no face."""
        out = np.full((len(self.valid), self.model.num_shapes), np.nan, np.float32)
        out[self.valid] = self.fits.expression
        return out


def analyse_clip(path: str | Path, track: TrackOptions = TrackOptions(), *, quiet: bool = False,
                 what: str = "track", identity: np.ndarray | None = None) -> ClipAnalysis:
    """Track and fit the face of a whole clip (streamed decode).

    ``identity`` (``(468, 3)`` canonical, e.g. ``analyse_clip(neutral).model.identity``)
    fits the clip against a known neutral face of the same actor instead of one
    estimated from the clip itself: a clip that holds an expression throughout (a
    reference emotion clip) then shows it in its weights.

    Frames are decoded by a background thread and stay in their YUV planes: the tracker
    cuts its small RGB crops straight from them, so no full frame is converted to RGB.

    Raises:
        InputError: not a readable video, or no face in any frame.
    """
    path = Path(path)
    tune_malloc()
    info = probe(path)
    landmarks = np.full((info.frame_count, 478, 3), np.nan, np.float32)
    tracker = FaceTracker(track)
    frames = read_ahead(iter_planar_frames(path), _READ_AHEAD)
    with tqdm(total=info.frame_count, desc=f"{what} {path.name}", unit="frame", disable=quiet) as bar:
        for frame, obs in tracker.track(frames, fps=info.fps, source=path):
            if frame.index < len(landmarks):
                landmarks[frame.index] = obs.landmarks
            bar.update(1)
    valid = np.isfinite(landmarks).all(axis=(1, 2))
    if not valid.any():
        raise InputError(f"no face found in {path}")
    model = FaceModel.from_sequence(landmarks[valid]) if identity is None else FaceModel(identity=identity)
    return ClipAnalysis(info, landmarks, valid, model, fit_in_chunks(model, landmarks[valid]))


def edited_landmarks(analysis: ClipAnalysis, new_expressions: np.ndarray) -> np.ndarray:
    """Move each valid frame's landmarks by the rig's change from its fit to ``new_expressions``.

    Args:
        new_expressions: ``(T, K)``; rows of invalid frames are ignored.

    Returns:
        ``(T, 478, 3) float32``, NaN where no face.
    """
    out = np.full_like(analysis.landmarks, np.nan)
    if analysis.valid.any():
        moved = apply_expression_delta(analysis.landmarks[analysis.valid], analysis.fits,
                                       new_expressions[analysis.valid])
        out[analysis.valid] = moved
    return out


def make_renderer(options: RenderOptions, appearance: Callable | None = None) -> WarpRenderer:
    """The training-free renderer over the packaged face topology."""
    topo = load_topology()
    return WarpRenderer(topo.triangles, topo.group("face_oval"), options, appearance=appearance, n_points=468)


@dataclass(frozen=True)
class EditOptions:
    """Options of :func:`edit_video`.

    Attributes:
        manipulation: what to change (emotions with intensities, or reference clips).
        track: face-tracking options.
        render: warp-renderer and blending options.
        encode: output encoding (H.264 ``veryfast`` CRF 18 by default).
        appearance: the expression-appearance step after the warp (creases and shading of
            the built-in maps, an exemplar bank's or a reference's detail; ``mode="off"``
            for shape only).
        exemplars: an exemplar bank folder (``ned exemplars build``) for label mode, or None.
        own_frames: in label mode, frames of the clip itself that already show the target
            emotion lend their real detail (:func:`ned.appearance.pipeline.load_own_exemplars`).
        quiet: no progress bars.
    """

    manipulation: ManipulationSpec = field(default_factory=ManipulationSpec)
    track: TrackOptions = field(default_factory=TrackOptions)
    render: RenderOptions = field(default_factory=RenderOptions)
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    appearance: AppearanceOptions = field(default_factory=AppearanceOptions)
    exemplars: Path | None = None
    own_frames: bool = False
    quiet: bool = False


@dataclass(frozen=True)
class EditReport:
    """What :func:`edit_video` wrote."""

    output: Path
    frames: int
    edited_frames: int
    fps: Fraction
    seconds: float
    comment: str


def provenance_comment(spec: ManipulationSpec) -> str:
    """The mp4 ``comment`` tag of an output: ``edited by ned <version>: <what>``."""
    return f"edited by ned {__version__}: {spec.describe()}"


def render_video(source: Path, output: Path, src_landmarks: np.ndarray, dst_landmarks: np.ndarray,
                 renderer: WarpRenderer, *, info: VideoInfo, encode: EncodeOptions, comment: str,
                 quiet: bool = False, payloads: Callable[[int], object] | None = None,
                 on_frame: Callable[[int, np.ndarray, np.ndarray], None] | None = None) -> int:
    """Decode ``source`` again, render every frame with a face, encode to ``output``.

    Frames are decoded by a background thread and encoded by another
    (:class:`ned.media.WriteBehind`). Without ``on_frame``, frames stay in
    their YUV planes when the encoder takes them as they are (8-bit 4:2:0 BT.601 or
    BT.709, the output tagged like the source, limited range, no rotation; see
    :class:`ned.media.YuvImage`), and every sample
    outside the blend mask goes to the encoder exactly as decoded; frames without a
    face are not converted at all. The warp renderer then renders on the planes
    themselves (:meth:`~ned.render.warp_renderer.WarpRenderer.render_planes`, its
    appearance step as a luminance gain when it has one); a renderer that cannot
    gets the face region in RGB and its change is written back as a difference. Otherwise (``on_frame``, other formats) each frame is
    rendered in RGB.

    Args:
        src_landmarks, dst_landmarks: ``(T, 478, 3)`` frame pixels (NaN rows pass through).
        payloads: optional ``frame index -> payload`` for the renderer's appearance step.
        on_frame: optional ``(index, rendered frame (H, W, 3) uint8, blend mask (H, W))``
            callback, e.g. to write the staged command's per-frame folders.

    Returns:
        The number of frames whose face was rendered.
    """
    tune_malloc()
    edited = 0
    by_region = hasattr(renderer, "render_region")
    planar = on_frame is None and by_region
    by_planes = planar and bool(getattr(renderer, "renders_planes", False))
    frames = read_ahead(iter_planar_frames(source) if planar else iter_frames(source), _READ_AHEAD)
    with VideoWriter(output, width=info.width, height=info.height, fps=info.fps, audio_from=source,
                     comment=comment, options=encode, time_base=info.time_base,
                     ycbcr_matrix=info.ycbcr_matrix if planar else "bt601") as writer, \
            WriteBehind(writer, _WRITE_BEHIND) as sink, \
            tqdm(total=info.frame_count, desc=f"render {output.name}", unit="frame", disable=quiet) as bar:
        for frame in frames:
            t = frame.index
            face = t < len(src_landmarks) and bool(np.isfinite(dst_landmarks[t]).all())
            payload = payloads(t) if face and payloads is not None else None
            image = frame.image if planar else None
            if isinstance(image, YuvImage) and writer.accepts(image):
                picture = image.frame
                if face and by_planes:
                    planes = renderer.render_planes(image.y, image.u, image.v, src_landmarks[t], dst_landmarks[t],
                                                    payload=payload)
                    if planes.rendered:
                        edited += 1
                        picture = image.with_planes(int(planes.box[0]), int(planes.box[1]), planes.y, planes.u,
                                                    planes.v)
                elif face:
                    region = renderer.render_region(image, src_landmarks[t], dst_landmarks[t], payload=payload)
                    if region.rendered:
                        edited += 1
                        picture = image.with_region(int(region.box[0]), int(region.box[1]), region.source,
                                                    region.image, keep=region.mask == 0)
                sink.write_frame(picture, pts=frame.pts)  # source timestamps: variable frame rate kept
                bar.update(1)
                continue
            rgb, mask = frame.rgb, None  # a fresh array per frame: rendered in place
            if face and by_region:
                region = renderer.render_region(rgb, src_landmarks[t], dst_landmarks[t], payload=payload)
                region.paste(rgb)
                edited += int(region.rendered)
                if on_frame is not None:
                    mask = region.full_mask(rgb.shape)
            elif face:
                result = renderer.render(rgb, src_landmarks[t], dst_landmarks[t], payload=payload)
                rgb, mask = result.frame, result.mask
                edited += int(result.rendered)
            if on_frame is not None:
                on_frame(t, rgb, mask if mask is not None else np.zeros(rgb.shape[:2], np.float32))
            sink.write(rgb, pts=frame.pts)  # source timestamps: variable frame rate kept
            bar.update(1)
    return edited


def edit_analysed(analysis: ClipAnalysis, source: Path, output: Path, options: EditOptions,
                  references: Sequence[ClipAnalysis] = (), *, start: float | None = None,
                  reference_neutral: ClipAnalysis | None = None) -> EditReport:
    """Manipulate, render and encode one output from an existing analysis of ``source``.

    Args:
        references: analyses of the reference clips of ``options.manipulation`` (in
            order), made by the caller; empty in label mode.
        reference_neutral: analysis of ``options.manipulation.reference_neutral`` (the
            reference actor's neutral clip), whose calmest frames are the neutral of the
            reference's detail transfer; None: the reference's own calmest frames.
    """
    start = time.perf_counter() if start is None else start
    spec = options.manipulation
    fps = float(analysis.info.fps)
    source_expr = analysis.expressions()
    new_expr = plan_expressions(source_expr, spec, [r.expressions() for r in references], fps=fps)
    dst = edited_landmarks(analysis, new_expr)
    uses_detail = options.appearance.mode in ("auto", "reference")  # "maps"/"off" never read reference frames
    ref_clips = [load_reference_clip(path, r.landmarks, r.expressions())
                 for path, r in zip(spec.references, references)] if uses_detail else []
    if ref_clips and reference_neutral is not None:
        calm = load_reference_clip(spec.reference_neutral, reference_neutral.landmarks,
                                   reference_neutral.expressions(), neutral_only=True).neutral
        ref_clips = [dataclasses.replace(c, neutral=calm) for c in ref_clips]
    if ref_clips:  # the brow motion the mesh misses rides along with each reference frame
        raster = uv_raster(options.appearance.texture_size)
        ref_clips = [dataclasses.replace(c, frames=with_brow_offsets(c.frames, c.neutral, raster)) for c in ref_clips]
    appearance, payloads = plan_appearance(
        source_expr, new_expr, fps=fps, emotions=[s.name for s in spec.segments], transition_s=spec.transition_s,
        options=options.appearance, exemplars=options.exemplars, references=ref_clips,
        own_footage=(source, analysis.landmarks) if options.own_frames else None)
    if payloads is not None:
        label = None if spec.references else load_label_brows(load_emotion_targets(),
                                                               uv_raster(options.appearance.texture_size))
        dst = with_brow_motion(dst, analysis.valid, analysis.fits.rotation, analysis.fits.scale, payloads, appearance,
                               label)
    comment = provenance_comment(spec)
    edited = render_video(source, output, analysis.landmarks, dst, make_renderer(options.render, appearance),
                          info=analysis.info, encode=options.encode, comment=comment, quiet=options.quiet,
                          payloads=payloads)
    return EditReport(output, analysis.info.frame_count, edited, analysis.info.fps,
                      time.perf_counter() - start, comment)


def edit_video(input_path: str | Path, output_path: str | Path, options: EditOptions = EditOptions()) -> EditReport:
    """Change the emotion of the face in a video (the whole pipeline, streamed).

    Raises:
        InputError: unreadable input or reference, no face, fewer than 10 frames.
        OutputError: output equals an input, cannot be written, disk full.
        ModelFileError: a bad exemplar bank or learned-manipulator checkpoint.
    """
    start = time.perf_counter()
    source = Path(input_path)
    spec = options.manipulation
    output = check_output_path(output_path, [source, *spec.references, spec.reference_neutral])
    analysis = analyse_clip(source, options.track, quiet=options.quiet)
    neutral = None
    if spec.reference_neutral is not None and spec.references:
        neutral = analyse_clip(spec.reference_neutral, options.track, quiet=options.quiet, what="reference neutral")
    identity = neutral.model.identity if neutral is not None else None
    references = [analyse_clip(r, options.track, quiet=options.quiet, what="reference", identity=identity)
                  for r in spec.references]
    return edit_analysed(analysis, source, output, options, references, start=start, reference_neutral=neutral)
