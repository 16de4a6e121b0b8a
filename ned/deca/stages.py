"""The DECA backend's stages: ``preprocess``, ``manipulate``, ``postprocess`` and ``edit`` with
``--backend deca --deca_dir <dir>``.

Data flow (NED's, with our tracker and renderer around it):

- preprocess: the default preprocessing (:func:`ned.preprocess.preprocess_celeb`), then DECA
  on every ``images/`` crop (as NED runs it), around the tracked landmarks; writes
  ``DECA/<frame>.pkl`` (NED's keys and shapes) and replaces ``nmfcs/``, ``shapes/`` and their
  ``_aligned`` copies with renders of the FLAME mesh;
- manipulate: the 51 numbers of each frame (jaw opening + 50 expression coefficients)
  through the learned manipulator (the training-free one works only on our face model);
  writes NED's manipulator outputs ``<exp>/DECA/<frame>.pkl``, FLAME renders of the edited
  mesh, and the equivalent ``<exp>/face3d/`` landmarks for the renderer (the *bridge* below);
- postprocess: the default one (it renders from ``<exp>/face3d/``);
- edit: the streamed pipeline of :mod:`ned.pipeline` with DECA expressions in the middle.

The bridge from FLAME to our 468 (+10 iris) landmarks: each landmark follows the 2-D image
displacement of its nearest *visible* FLAME vertex, nearest in the source frame's projection,
``dst = src + (flame_dst - flame_src)[nearest]`` (x, y only; z is kept). Only vertices of
triangles that the rasteriser sees are candidates, so a landmark never latches onto the back
of the head, an eyeball behind a lid or the inside of the mouth.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.spatial import cKDTree
from tqdm import tqdm

from ned import __version__
from ned.deca.backend import DecaBackend, DecaOptions, find_deca_files
from ned.deca.encoder import CROP_SIZE
from ned.deca.params import (
    MANIPULATOR_INPUTS,
    DecaParams,
    deca_file_name,
    from_manipulator_output,
    list_deca_files,
    load_deca_params,
    read_manipulator_input,
    save_deca_params,
    save_manipulated,
    to_manipulator_input,
)
from ned.deca.render import render_flame_nmfc, render_flame_shape, screen_triangles
from ned.distributed import resolve_device
from ned.errors import InputError, ModelFileError
from ned.face.align import invert_affine, transform_points
from ned.layout import CelebLayout, atomic_write_image, atomic_write_json, load_npz, read_image
from ned.manipulate.celeb import (
    EXP_FOLDERS,
    building_exp_folder,
    clip_frames,
    exp_folder,
    load_face3d,
    preprocess_state,
    write_eye_landmarks,
    write_face3d_frame,
)
from ned.manipulate.label import MIN_FRAMES, segment_weights
from ned.manipulate.learned import LearnedManipulator, LearnedOptions
from ned.manipulate.networks import EMOTIONS
from ned.manipulate.plan import ManipulationSpec, fill_missing_rows, has_learned_checkpoint
from ned.media import check_output_path, iter_frames
from ned.morph.raster import rasterise_ids
from ned.pipeline import EditOptions, EditReport, analyse_clip, make_renderer, provenance_comment, render_video
from ned.preprocess import PreprocessOptions, PreprocessReport, preprocess_celeb
from ned.types import check_array

__all__ = [
    "DECA_FOLDER",
    "NEEDS_CHECKPOINT",
    "bridge_landmarks",
    "check_deca_manipulation",
    "deca_options",
    "edit_video_deca",
    "encode_clip",
    "flame_bridge",
    "flame_renders",
    "load_deca_manipulator",
    "manipulate_celeb_deca",
    "nearest_vertices",
    "plan_deca_expressions",
    "preprocess_celeb_deca",
    "reference_deca_vectors",
    "visible_vertices",
]

logger = logging.getLogger(__name__)

DECA_FOLDER = "DECA"
FLAME_FOLDERS = ("nmfcs", "nmfcs_aligned", "shapes", "shapes_aligned")
NEEDS_CHECKPOINT = (
    "the DECA backend needs a learned manipulator checkpoint trained on DECA vectors (51 numbers per frame: "
    "jaw opening + 50 FLAME expression coefficients): pass --checkpoints_dir <folder with {epoch:02d}_nets.pth> "
    "(the original NED release's checkpoint, or `ned train-manipulator --backend deca`); the training-free "
    "manipulator works only with our face model (--backend face3d)"
)


def deca_options() -> DecaOptions:
    """The backend options the commands use: DECA's sizes, on the GPU when there is one."""
    return DecaOptions(device=str(resolve_device("auto")))


# --- the bridge: FLAME vertices -> our landmarks (pure functions) ------------------------

def visible_vertices(vertices: np.ndarray, faces: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Vertices of the triangles the rasteriser draws (front-facing, not hidden, inside the image).

    Args:
        vertices: (V, 3) image pixels (x right, y down, z larger = farther).
        faces: (F, 3) FLAME triangles (FLAME winding).
        size: (H, W) of the image.

    Returns:
        (V,) bool.

    Raises:
        ValueError: bad shapes.
    """
    check_array(vertices, "V 3", name="vertices")
    ids = rasterise_ids(vertices, screen_triangles(faces), size)
    seen = np.unique(ids[ids >= 0])
    mask = np.zeros(len(vertices), bool)
    mask[np.asarray(faces, np.int64)[seen].ravel()] = True
    return mask


def nearest_vertices(points: np.ndarray, vertices: np.ndarray, candidates: np.ndarray | None = None) -> np.ndarray:
    """Index of the nearest (2-D) candidate vertex of each point.

    Args:
        points: (N, 2+) image pixels (only x, y are used).
        vertices: (V, 2+) image pixels.
        candidates: (V,) bool vertices allowed; None or none True: all.

    Returns:
        (N,) int64 indices into ``vertices``.

    Raises:
        ValueError: bad shapes or non-finite values.
    """
    points, vertices = np.asarray(points), np.asarray(vertices)
    if points.ndim != 2 or points.shape[1] < 2 or vertices.ndim != 2 or vertices.shape[1] < 2:
        raise ValueError(f"points, vertices: expected (N, 2+) and (V, 2+), got {points.shape} and {vertices.shape}")
    if not (np.isfinite(points[:, :2]).all() and np.isfinite(vertices[:, :2]).all()):
        raise ValueError("points, vertices: contain NaN or inf")
    index = np.arange(len(vertices))
    if candidates is not None and np.any(candidates):
        index = index[np.asarray(candidates, bool)]
    _, nearest = cKDTree(vertices[index, :2].astype(np.float64)).query(points[:, :2].astype(np.float64))
    return index[np.asarray(nearest, np.int64)]


def bridge_landmarks(landmarks: np.ndarray, flame_src: np.ndarray, flame_dst: np.ndarray,
                     nearest: np.ndarray) -> np.ndarray:
    """Move landmarks by the image displacement of their FLAME vertices.

    ``out[:, :2] = landmarks[:, :2] + (flame_dst - flame_src)[nearest, :2]``; other columns kept.

    Args:
        landmarks: (N, 2|3) image pixels.
        flame_src, flame_dst: (V, 2+) the same vertices before and after the edit, same pixels.
        nearest: (N,) vertex index per landmark (:func:`nearest_vertices`).

    Returns:
        (N, 2|3) float32.

    Raises:
        ValueError: mismatching shapes.
    """
    landmarks = np.asarray(landmarks)
    if flame_src.shape != flame_dst.shape or len(nearest) != len(landmarks):
        raise ValueError(f"flame_src {flame_src.shape} / flame_dst {flame_dst.shape} must match and nearest "
                         f"({len(nearest)}) must have one entry per landmark ({len(landmarks)})")
    out = landmarks.astype(np.float32, copy=True)
    out[:, :2] += (flame_dst[nearest, :2] - flame_src[nearest, :2]).astype(np.float32)
    return out


def flame_bridge(backend: DecaBackend, source: DecaParams, edited: DecaParams, landmarks: np.ndarray,
                 image_from_params: np.ndarray | None = None) -> np.ndarray:
    """One frame's edited landmarks from its source and edited DECA parameters.

    Args:
        backend: the loaded FLAME (and encoders).
        source, edited: the frame's parameters before and after the manipulation (same camera).
        landmarks: (N, 2|3) source landmarks in the pixels of the image the parameters refer
            to, or of ``image_from_params``'s destination.
        image_from_params: optional (2, 3) similarity from the parameters' image (NED: the
            ``images/`` crop) to the landmarks' image (the video frame).

    Returns:
        (N, 2|3) float32 edited landmarks, same pixels as ``landmarks``.
    """
    src_crop = backend.vertices_crop(source)  # (V, 3) in DECA's 224 crop
    visible = visible_vertices(src_crop, backend.faces, (CROP_SIZE, CROP_SIZE))
    src, dst = backend.vertices_frame(source), backend.vertices_frame(edited)
    if image_from_params is not None:
        src, dst = transform_points(src, image_from_params), transform_points(dst, image_from_params)
    return bridge_landmarks(landmarks, src, dst, nearest_vertices(landmarks, src, visible))


def flame_renders(backend: DecaBackend, params: DecaParams, aligned_from_image: np.ndarray,
                  size: tuple[int, int]) -> dict[str, np.ndarray]:
    """NMFC and shape images of the FLAME mesh in the parameters' image and its aligned copy.

    Args:
        params: parameters whose ``original_size`` is the image (NED: the ``images/`` crop).
        aligned_from_image: (2, 3) image pixels -> aligned-crop pixels.
        size: (H, W) of both outputs.

    Returns:
        ``{"nmfcs", "nmfcs_aligned", "shapes", "shapes_aligned"}`` -> (H, W, 3) uint8.
    """
    vertices = backend.vertices_frame(params)
    aligned = transform_points(vertices, aligned_from_image)
    return {
        "nmfcs": render_flame_nmfc(vertices, backend.faces, backend.nmfc_colors, size),
        "nmfcs_aligned": render_flame_nmfc(aligned, backend.faces, backend.nmfc_colors, size),
        "shapes": render_flame_shape(vertices, backend.faces, size),
        "shapes_aligned": render_flame_shape(aligned, backend.faces, size),
    }


# --- manipulation of the 51 numbers -------------------------------------------------------

def load_deca_manipulator(spec: ManipulationSpec) -> LearnedManipulator:
    """The learned manipulator for DECA vectors named by ``spec``.

    Raises:
        ModelFileError: no checkpoint (:data:`NEEDS_CHECKPOINT`), or one for another backend.
    """
    if spec.manipulator == "training-free" or not has_learned_checkpoint(spec.checkpoints_dir):
        raise ModelFileError(NEEDS_CHECKPOINT)
    return LearnedManipulator.from_options(LearnedOptions(
        checkpoints_dir=spec.checkpoints_dir, which_epoch=spec.which_epoch, backend="deca", seed=spec.seed,
        keep_speech=True))


def plan_deca_expressions(source: np.ndarray, spec: ManipulationSpec, references: Sequence[np.ndarray],
                          fps: float, manipulator: LearnedManipulator) -> np.ndarray:
    """Edited 51-number vectors of a clip (the learned path of :func:`ned.manipulate.plan.plan_expressions`).

    Each target (an emotion per segment, or a reference clip) translates the whole clip; the
    results are crossfaded over consecutive equal parts and scaled by the intensities
    (``spec.intensity`` times the segment's). The jaw opening is kept from the source.

    Args:
        source: (T, 51) vectors, NaN rows where the clip has no face.
        references: (T_r, 51) vectors of each reference clip (NaN rows dropped).
        fps: the clip's frame rate (transition length).
        manipulator: the learned manipulator for DECA vectors (:func:`load_deca_manipulator`).

    Returns:
        (T, 51) float32; NaN rows stay NaN.

    Raises:
        InputError: fewer than 10 frames with a face, a reference without a face, an emotion
            the learned manipulator does not know.
    """
    check_array(source, f"T {MANIPULATOR_INPUTS}", name="source")
    filled, missing = fill_missing_rows(source)
    if len(filled) < MIN_FRAMES:
        raise InputError(f"the clip has {len(filled)} frames; manipulation needs at least {MIN_FRAMES}")
    refs = [r[np.isfinite(r).all(axis=1)].astype(np.float32) for r in references]
    for path, r in zip(spec.references, refs):
        if len(r) == 0:
            raise InputError(f"no face found in the reference {path}")
    if refs:
        targets: list = refs
        one = spec.segments[0].intensity if len(spec.segments) == 1 else 1.0
        intensities = [one] * len(refs)
    else:
        unknown = [s.name for s in spec.segments if s.name not in EMOTIONS]
        if unknown:
            raise InputError(f"the learned manipulator knows {', '.join(EMOTIONS)}; not {', '.join(unknown)}")
        targets, intensities = [s.name for s in spec.segments], [s.intensity for s in spec.segments]
    outs = [manipulator.manipulate(filled, target) for target in targets]
    weights = segment_weights(len(filled), len(outs), fps, spec.transition_s)  # (T, S)
    delta = sum(weights[:, s, None] * intensities[s] * (o - filled) for s, o in enumerate(outs))
    out = (filled + spec.intensity * delta).astype(np.float32)
    out[missing] = np.nan
    return out


def reference_deca_vectors(ref: Path) -> np.ndarray:
    """(T, 51) vectors of a reference folder: ``<ref>``, ``<ref>/DECA`` (or ``<ref>/face3d``).

    Frames that ``<ref>/face3d/`` marks as faceless are NaN rows.

    Raises:
        InputError: no ``DECA/`` folder (says what to run), an unreadable file.
    """
    ref = Path(ref)
    root = ref.parent if ref.name in (DECA_FOLDER, "face3d") else ref
    folder = root / DECA_FOLDER
    if not folder.is_dir():
        raise InputError(f"{ref}: no {DECA_FOLDER}/ folder; run `ned preprocess {root} --mode reference "
                         "--backend deca --deca_dir <dir>` first")
    rows = []
    for path in list_deca_files(folder):
        vector = read_manipulator_input(path)
        face3d = root / "face3d" / f"{path.stem}.npz"
        if face3d.exists() and not bool(load_npz(face3d)["valid"]):
            vector = np.full(MANIPULATOR_INPUTS, np.nan, np.float32)
        rows.append(vector)
    return np.stack(rows).astype(np.float32)


# --- preprocess ---------------------------------------------------------------------------

def _whole_image_points(size: int) -> np.ndarray:
    """Landmark stand-ins for a frame without a face: DECA's box is then the whole image."""
    margin = size * (1 - 1 / 1.375) / 2  # 1.375 = DECA's box enlargement (1.1 * 1.25)
    return np.array([[margin, margin], [size - 1 - margin, size - 1 - margin]], np.float32)


def preprocess_celeb_deca(celeb: str | Path, deca_dir: str | Path,
                          options: PreprocessOptions = PreprocessOptions(),
                          deca: DecaOptions | None = None) -> PreprocessReport:
    """``ned preprocess --backend deca``: the default preprocessing, then DECA per frame.

    For every frame: DECA on its ``images/`` crop around the tracked landmarks
    (``face3d/``), written as ``DECA/<frame>.pkl`` (NED's keys; ``tform`` maps ``images/``
    pixels to DECA's crop and ``original_size`` is the crop's), and FLAME renders replacing
    ``nmfcs/``, ``shapes/`` and their ``_aligned`` copies (blank where no face). A frame whose
    ``DECA/`` file exists is skipped (it is written last, atomically), so a run resumes.

    Args:
        celeb: the ``<celeb_path>``.
        deca_dir: folder with ``generic_model.pkl`` and ``deca_model.tar``.
        options: the default preprocessing's options (``mode``, ``crop_size``, ``quiet``, ...).
        deca: backend options (:func:`deca_options` by default).

    Returns:
        The report of the default preprocessing.

    Raises:
        ModelFileError: missing or bad DECA/FLAME files (checked before any work).
        InputError, OutputError: as :func:`ned.preprocess.preprocess_celeb`.
    """
    find_deca_files(deca_dir)  # fail before the long tracking pass
    report = preprocess_celeb(celeb, options)
    layout = CelebLayout(Path(celeb))
    out = layout.folder(DECA_FOLDER)
    out.mkdir(exist_ok=True)
    todo = [c for c in report.clips if any(not (out / deca_file_name(i)).exists()
                                           for i in range(c.first_frame, c.first_frame + c.frame_count))]
    if todo:
        backend = DecaBackend(deca_dir, deca or deca_options())
        for clip in todo:
            _encode_celeb_clip(backend, layout, clip.video.name, clip.first_frame, clip.frame_count, options)
    atomic_write_json(layout.state_file(f"preprocess_deca_{options.mode}"), {
        "version": __version__, "mode": options.mode, "frames": report.frame_count, "deca_dir": str(deca_dir)})
    return report


def _encode_celeb_clip(backend: DecaBackend, layout: CelebLayout, name: str, first: int, count: int,
                       options: PreprocessOptions) -> None:
    size = options.crop_size
    for index in tqdm(range(first, first + count), desc=f"DECA {name}", unit="frame", disable=options.quiet):
        target = layout.frame_file(DECA_FOLDER, index, "pkl")
        if target.exists():
            continue
        face3d = load_npz(layout.frame_file("face3d", index, "npz"))
        crop = read_image(layout.frame_file("images", index, "png"))
        valid = bool(face3d["valid"])
        points = face3d["landmarks_crop"][:468, :2] if valid else _whole_image_points(crop.shape[1])
        params = backend.encode_frame(crop, points)
        renders = (flame_renders(backend, params, face3d["aligned_from_crop"], (size, size)) if valid
                   else dict.fromkeys(FLAME_FOLDERS, np.zeros((size, size, 3), np.uint8)))
        for folder, image in renders.items():
            if layout.folder(folder).is_dir():
                atomic_write_image(layout.frame_file(folder, index, "png"), image)
        save_deca_params(target, params)  # last: its presence means the frame is complete


# --- manipulate ---------------------------------------------------------------------------

def _load_clip_params(folder: Path, first: int, count: int, celeb: Path) -> list[DecaParams]:
    params = []
    for index in range(first, first + count):
        path = folder / deca_file_name(index)
        if not path.is_file():
            raise InputError(f"{path} is missing: run `ned preprocess {celeb} --backend deca --deca_dir <dir>` "
                             "(with the same --mode) first")
        params.append(load_deca_params(path))
    return params


def manipulate_celeb_deca(celeb: str | Path, exp_name: str, spec: ManipulationSpec, deca_dir: str | Path, *,
                          ref_dirs: tuple[Path, ...] = (), overwrite: bool = False, quiet: bool = False,
                          crop_size: int = 256, deca: DecaOptions | None = None) -> Path:
    """``ned manipulate --backend deca``: edit the DECA vectors of a preprocessed celeb folder.

    Writes ``<celeb>/<exp_name>/``: ``DECA/`` (NED's manipulator outputs: ``exp`` (1, 50) and
    ``pose`` (1, 6), zeros except the jaw opening), ``nmfcs/``, ``shapes/`` (+ ``_aligned``) of
    the edited FLAME mesh, and ``face3d/`` + ``eye_landmarks/`` (+ ``_aligned``) with our
    landmarks moved by the bridge, so ``ned postprocess`` renders it. Built under a temporary
    name and renamed when complete.

    Raises:
        InputError: missing preprocessing or ``DECA/`` files (naming the file and what to run),
            fewer than 10 frames, a bad reference.
        ModelFileError: no learned checkpoint (:data:`NEEDS_CHECKPOINT`), bad DECA/FLAME files.
        OutputError: ``exp_name`` exists (without ``overwrite``) or cannot be written.
    """
    layout = CelebLayout(Path(celeb))
    if exp_name == DECA_FOLDER:
        raise InputError(f"bad --exp_name {exp_name!r}: {DECA_FOLDER}/ holds the source's parameters")
    final = exp_folder(layout, exp_name, overwrite)
    state = preprocess_state(layout, ("test", "reference", "train"))
    source_dir = layout.folder(DECA_FOLDER)
    if not source_dir.is_dir():
        raise InputError(f"{source_dir} is missing: run `ned preprocess {layout.root} --backend deca "
                         "--deca_dir <dir>` first")
    manipulator = load_deca_manipulator(spec)
    references = [reference_deca_vectors(Path(r)) for r in ref_dirs]
    backend = DecaBackend(deca_dir, deca or deca_options())
    with building_exp_folder(layout, exp_name, final, EXP_FOLDERS + (DECA_FOLDER,)) as tmp:
        for clip in clip_frames(layout, state):
            data = load_face3d(layout.folder("face3d"), clip.first_frame, clip.frame_count)
            params = _load_clip_params(source_dir, clip.first_frame, clip.frame_count, layout.root)
            valid = data["valid"].astype(bool)
            vectors = np.stack([to_manipulator_input(p) for p in params])
            edited = plan_deca_expressions(np.where(valid[:, None], vectors, np.nan), spec, references,
                                           clip.fps, manipulator)
            for t in tqdm(range(clip.frame_count), desc=f"manipulate {clip.video}", unit="frame", disable=quiet):
                index = clip.first_frame + t
                values = edited[t] if valid[t] else vectors[t]
                save_manipulated(tmp / DECA_FOLDER / deca_file_name(index), values)
                _write_edited_frame(tmp, index, backend, params[t], values, data, t, crop_size)
        atomic_write_json(tmp / "manipulation.json", {
            "version": __version__, "backend": "deca", "request": spec.describe(), "seed": spec.seed,
            "references": [str(r) for r in ref_dirs], "frames": int(state["frames"]),
            "checkpoint": str(manipulator.info.path) if manipulator.info else None})
    return final


def _write_edited_frame(out: Path, index: int, backend: DecaBackend, source: DecaParams, values: np.ndarray,
                        data: dict[str, np.ndarray], t: int, size: int) -> None:
    """face3d (bridged landmarks), eye landmarks and FLAME renders of one edited frame."""
    valid = bool(data["valid"][t])
    edited = from_manipulator_output(source, values)
    if valid:
        frame_from_crop = invert_affine(data["crop_from_frame"][t])
        landmarks = flame_bridge(backend, source, edited, data["landmarks"][t], frame_from_crop)
        renders = flame_renders(backend, edited, data["aligned_from_crop"][t], (size, size))
    else:
        landmarks = np.full_like(data["landmarks"][t], np.nan)
        renders = dict.fromkeys(FLAME_FOLDERS, np.zeros((size, size, 3), np.uint8))
    lm_crop, lm_aligned = write_face3d_frame(out, index, data, t, landmarks, data["expression"][t],
                                             deca_source=to_manipulator_input(source),
                                             deca_expression=np.asarray(values, np.float32))
    write_eye_landmarks(out, index, lm_crop, lm_aligned)
    for folder, image in renders.items():
        atomic_write_image(out / folder / f"{index:06d}.png", image)


# --- postprocess ----------------------------------------------------------------------------

def check_deca_manipulation(celeb: str | Path, exp_name: str) -> None:
    """Check that ``<celeb>/<exp_name>`` was written by ``manipulate --backend deca``.

    Postprocessing itself is the default one: it renders from ``<exp_name>/face3d/``.

    Raises:
        InputError: no ``<exp_name>/DECA/`` folder (says what to run).
    """
    exp = Path(celeb) / exp_name
    if not (exp / DECA_FOLDER).is_dir():
        raise InputError(f"{exp / DECA_FOLDER} is missing: run `ned manipulate {celeb} --exp_name {exp_name} "
                         "--backend deca --deca_dir <dir> --checkpoints_dir <dir> --trg_emotions <emotion>` first")


# --- edit -----------------------------------------------------------------------------------

def encode_clip(backend: DecaBackend, path: Path, landmarks: np.ndarray, valid: np.ndarray, *,
                quiet: bool = False) -> list[DecaParams | None]:
    """DECA parameters of every frame of a clip with a face (streamed decode).

    Args:
        landmarks: (T, 478, 3) tracked landmarks, frame pixels.
        valid: (T,) frames with a face.

    Returns:
        One entry per frame: parameters in frame pixels (``original_size`` = the frame's),
        None where there is no face.
    """
    params: list[DecaParams | None] = [None] * len(valid)
    with tqdm(total=len(valid), desc=f"DECA {Path(path).name}", unit="frame", disable=quiet) as bar:
        for frame in iter_frames(path):
            t = frame.index
            if t < len(valid) and valid[t]:
                params[t] = backend.encode_frame(frame.rgb, landmarks[t, :468, :2])
            bar.update(1)
    return params


def _vectors(params: list[DecaParams | None]) -> np.ndarray:
    rows = [to_manipulator_input(p) if p is not None else np.full(MANIPULATOR_INPUTS, np.nan, np.float32)
            for p in params]
    return np.stack(rows).astype(np.float32)


def edit_video_deca(input_path: str | Path, output_path: str | Path, options: EditOptions, deca_dir: str | Path,
                    deca: DecaOptions | None = None) -> EditReport:
    """``ned edit --backend deca``: track, DECA per frame, learned manipulator, bridge, warp render.

    Three streamed decodes (track, DECA, render); memory holds per-frame landmarks and
    DECA parameters (a few KB per frame), not frames.

    Args:
        options: the edit's options (``manipulation`` must name a learned checkpoint trained
            on DECA vectors).

    Raises:
        ModelFileError: no learned checkpoint, bad DECA/FLAME files (checked before decoding).
        InputError: unreadable input or reference, no face, fewer than 10 frames.
        OutputError: output equals an input, cannot be written, disk full.
    """
    start = time.perf_counter()
    source = Path(input_path)
    spec = options.manipulation
    output = check_output_path(output_path, [source, *spec.references])
    manipulator = load_deca_manipulator(spec)
    backend = DecaBackend(deca_dir, deca or deca_options())
    analysis = analyse_clip(source, options.track, quiet=options.quiet)
    params = encode_clip(backend, source, analysis.landmarks, analysis.valid, quiet=options.quiet)
    references = []
    for ref in spec.references:
        ref_analysis = analyse_clip(ref, options.track, quiet=options.quiet, what="reference")
        references.append(_vectors(encode_clip(backend, ref, ref_analysis.landmarks, ref_analysis.valid,
                                               quiet=options.quiet)))
    edited = plan_deca_expressions(_vectors(params), spec, references, float(analysis.info.fps), manipulator)
    dst = np.full_like(analysis.landmarks, np.nan)
    for t, p in enumerate(params):
        if p is not None:
            dst[t] = flame_bridge(backend, p, from_manipulator_output(p, edited[t]), analysis.landmarks[t])
    comment = f"{provenance_comment(spec)} (DECA backend)"
    count = render_video(source, output, analysis.landmarks, dst, make_renderer(options.render),
                         info=analysis.info, encode=options.encode, comment=comment, quiet=options.quiet)
    return EditReport(output, analysis.info.frame_count, count, analysis.info.fps, time.perf_counter() - start,
                      comment)
