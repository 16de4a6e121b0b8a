"""`ned manipulate`: the staged manipulation of a preprocessed ``<celeb_path>``.

Reads ``<celeb>/face3d/`` (written by ``ned preprocess``), edits each clip's expression
weights (:func:`ned.manipulate.plan.plan_expressions`) and writes
``<celeb>/<exp_name>/``: ``face3d/`` (the edited per-frame parameters and landmarks),
``nmfcs/``, ``shapes/``, ``eye_landmarks/`` and their ``_aligned`` copies for the
renderer. The folder is built under a temporary name and renamed when complete, so a
failed run leaves nothing half-written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from ned import __version__
from ned.errors import InputError, OutputError
from ned.face.align import transform_points
from ned.face.mask import eye_landmarks
from ned.layout import CelebLayout, atomic_save_npz, atomic_write_image, atomic_write_json, atomic_write_text, load_npz
from ned.manipulate.plan import ManipulationSpec, plan_expressions
from ned.morph.fit import FaceFits, FaceModel, apply_expression_delta
from ned.morph.raster import render_nmfc, render_shape

logger = logging.getLogger(__name__)

EXP_FOLDERS = ("face3d", "nmfcs", "nmfcs_aligned", "shapes", "shapes_aligned", "eye_landmarks", "eye_landmarks_aligned")


@dataclass(frozen=True)
class ClipFrames:
    """The preprocessed frames of one clip of a celeb folder."""

    video: str
    first_frame: int
    frame_count: int
    fps: float


def preprocess_state(layout: CelebLayout, modes: tuple[str, ...]) -> dict:
    """The record of ``ned preprocess`` for one of ``modes``.

    Raises:
        InputError: the folder was not preprocessed in any of ``modes``; says what to run.
    """
    for mode in modes:
        state = layout.state_file(f"preprocess_{mode}")
        if state.exists():
            return json.loads(state.read_text())
    others = sorted(p.stem.removeprefix("preprocess_") for p in layout.state_file("x").parent.glob("preprocess_*.json"))
    found = f" (it was preprocessed with --mode {', '.join(others)})" if others else ""
    raise InputError(f"{layout.root} is not preprocessed for this step{found}: run "
                     f"`ned preprocess {layout.root} --mode {modes[0]}` first")


def clip_frames(layout: CelebLayout, state: dict) -> list[ClipFrames]:
    """Clips recorded by preprocessing, with their fps read from ``videos/<name>.txt``."""
    clips = []
    for c in state["clips"]:
        fps = 25.0
        box_file = layout.videos_dir / f"{Path(c['video']).stem}.txt"
        if box_file.exists():
            for line in box_file.read_text().splitlines():
                if line.startswith("# fps:"):
                    fps = float(Fraction(line.split(":", 1)[1].strip()))
        clips.append(ClipFrames(c["video"], int(c["first_frame"]), int(c["frames"]), fps))
    return clips


def load_face3d(folder: Path, first: int, count: int) -> dict[str, np.ndarray]:
    """Stack ``count`` face3d files starting at ``first`` into arrays with a leading T axis.

    Raises:
        InputError: a file is missing (preprocessing incomplete).
    """
    rows = []
    for i in range(first, first + count):
        path = folder / f"{i:06d}.npz"
        if not path.exists():
            raise InputError(f"{path} is missing: preprocessing is incomplete; run `ned preprocess` again")
        rows.append(load_npz(path))
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def _reference_face3d(ref: Path) -> dict[str, np.ndarray]:
    """Every frame's face3d arrays of a reference folder (``<ref>`` or ``<ref>/face3d``).

    Raises:
        InputError: missing, or not preprocessed with ``--mode reference``.
    """
    root = ref.parent if ref.name == "face3d" else ref
    layout = CelebLayout(root)
    if not (root / "face3d").is_dir():
        raise InputError(f"{ref}: no face3d/ folder; run `ned preprocess {root} --mode reference` first")
    state = preprocess_state(layout, ("reference",))
    return load_face3d(root / "face3d", 0, int(state["frames"]))


def neutral_face_model(neutral: Path) -> FaceModel:
    """The face model of a reference actor's neutral clip (a folder preprocessed with
    ``--mode reference``, or its ``face3d``): identity estimated from that clip.

    Raises:
        InputError: missing, not preprocessed with ``--mode reference``, or no face.
    """
    calm = _reference_face3d(neutral)
    ok = calm["valid"].astype(bool)
    if not ok.any():
        raise InputError(f"no face found in the reference neutral clip {neutral}")
    return FaceModel.from_sequence(calm["landmarks"][ok])


def reference_expressions(ref: Path, neutral: FaceModel | None = None) -> np.ndarray:
    """Expression weights ``(T, K)`` of a reference folder (``<ref>`` or ``<ref>/face3d``).

    With ``neutral`` (:func:`neutral_face_model` of the same reference actor's neutral
    clip), the reference's landmarks are refitted with that identity, so its weights are
    measured from the actor's neutral face (as ``ned edit --ref-neutral`` does). Frames
    without a face are NaN rows.

    Raises:
        InputError: missing, or not preprocessed with ``--mode reference``.
    """
    data = _reference_face3d(ref)
    if neutral is None:
        return data["expression"].astype(np.float32)
    valid = data["valid"].astype(bool)
    out = np.full(data["expression"].shape, np.nan, np.float32)
    if valid.any():
        out[valid] = neutral.fit_batch(data["landmarks"][valid]).expression
    return out


def _fits(data: dict[str, np.ndarray], valid: np.ndarray) -> FaceFits:
    return FaceFits(data["rotation"][valid], data["translation"][valid], data["scale"][valid].astype(np.float64),
                    data["expression"][valid], data["residual"][valid])


def write_face3d_frame(out: Path, index: int, data: dict[str, np.ndarray], t: int, edited: np.ndarray,
                       new_expr: np.ndarray, **extra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Write ``<out>/face3d/<index>.npz``: the source frame's arrays with the edited ones.

    Args:
        data: the clip's stacked source face3d arrays (:func:`load_face3d`); ``t`` the row.
        edited: ``(478, 3)`` edited landmarks, frame pixels (NaN when the frame has no face).
        new_expr: the edited expression vector stored as ``expression``.
        extra: more arrays to store (e.g. another backend's parameters).

    Returns:
        ``(landmarks_crop, landmarks_aligned)`` of the edited landmarks, float32.
    """
    crop_m, aligned_m = data["crop_from_frame"][t], data["aligned_from_crop"][t]
    lm_crop = transform_points(edited, crop_m)
    lm_aligned = transform_points(lm_crop, aligned_m)
    arrays = {k: data[k][t] for k in data}
    arrays.update(source_expression=data["expression"][t], expression=new_expr.astype(np.float32),
                  source_landmarks=data["landmarks"][t], landmarks=edited.astype(np.float32),
                  landmarks_crop=lm_crop.astype(np.float32), **extra)
    atomic_save_npz(out / "face3d" / f"{index:06d}.npz", **arrays)
    return lm_crop, lm_aligned


def write_mesh_renders(out: Path, index: int, lm_crop: np.ndarray, lm_aligned: np.ndarray, valid: bool,
                       size: int) -> None:
    """Write ``nmfcs/``, ``shapes/`` and their ``_aligned`` copies of our face mesh (blank when not valid)."""
    name = f"{index:06d}"
    blank = np.zeros((size, size, 3), np.uint8)
    for folder, render, pts in (("nmfcs", render_nmfc, lm_crop), ("nmfcs_aligned", render_nmfc, lm_aligned),
                                ("shapes", render_shape, lm_crop), ("shapes_aligned", render_shape, lm_aligned)):
        atomic_write_image(out / folder / f"{name}.png", render(pts[:468], (size, size)) if valid else blank)


def write_eye_landmarks(out: Path, index: int, lm_crop: np.ndarray, lm_aligned: np.ndarray) -> None:
    """Write ``eye_landmarks/`` and ``eye_landmarks_aligned/`` of the edited landmarks."""
    name = f"{index:06d}"
    for folder, pts in (("eye_landmarks", lm_crop), ("eye_landmarks_aligned", lm_aligned)):
        eyes = eye_landmarks(pts)
        atomic_write_text(out / folder / f"{name}.txt", "".join(f"{x:.3f} {y:.3f}\n" for x, y in eyes))


def _write_frame(out: Path, index: int, data: dict[str, np.ndarray], t: int, edited: np.ndarray,
                 new_expr: np.ndarray, size: int) -> None:
    lm_crop, lm_aligned = write_face3d_frame(out, index, data, t, edited, new_expr)
    write_mesh_renders(out, index, lm_crop, lm_aligned, bool(data["valid"][t]), size)
    write_eye_landmarks(out, index, lm_crop, lm_aligned)


def exp_folder(layout: CelebLayout, exp_name: str, overwrite: bool) -> Path:
    """``<celeb>/<exp_name>``, checked before anything is computed.

    Raises:
        InputError: ``exp_name`` is not a plain folder name.
        OutputError: it exists and ``overwrite`` is False.
    """
    if not exp_name or "/" in exp_name or exp_name.startswith(".") or exp_name in EXP_FOLDERS + ("videos",):
        raise InputError(f"bad --exp_name {exp_name!r}: use a plain folder name such as 'happy_edit'")
    final = layout.root / exp_name
    if final.exists() and not overwrite:
        raise OutputError(f"{final} already exists; choose another --exp_name or pass --overwrite")
    return final


@contextmanager
def building_exp_folder(layout: CelebLayout, exp_name: str, final: Path,
                        folders: tuple[str, ...] = EXP_FOLDERS) -> Iterator[Path]:
    """Yield a temporary folder (with ``folders`` made) that replaces ``final`` when the block succeeds.

    On any error the temporary folder is removed and ``final`` is left as it was.

    Raises:
        OutputError: the temporary folder cannot be created.
    """
    tmp = layout.root / f".{exp_name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for folder in folders:
            (tmp / folder).mkdir(parents=True)
    except OSError as err:
        raise OutputError(f"{tmp}: cannot write here ({err.strerror or err})") from err
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def manipulate_celeb(celeb: str | Path, exp_name: str, spec: ManipulationSpec, *, ref_dirs: tuple[Path, ...] = (),
                     overwrite: bool = False, quiet: bool = False, crop_size: int = 256) -> Path:
    """Edit every clip of a preprocessed celeb folder; returns ``<celeb>/<exp_name>``.

    Raises:
        InputError: missing preprocessing (says which command to run), a reference folder
            of the wrong mode, fewer than 10 frames, unknown emotion.
        OutputError: ``exp_name`` exists (without ``overwrite``) or cannot be written.
    """
    layout = CelebLayout(Path(celeb))
    final = exp_folder(layout, exp_name, overwrite)
    state = preprocess_state(layout, ("test", "reference", "train"))
    if spec.reference_neutral is not None and not ref_dirs:
        raise InputError("--ref_neutral is the neutral clip of the reference actor: give --ref_dirs too")
    neutral = neutral_face_model(spec.reference_neutral) if spec.reference_neutral is not None else None
    references = [reference_expressions(Path(r), neutral) for r in ref_dirs]
    with building_exp_folder(layout, exp_name, final) as tmp:
        for clip in clip_frames(layout, state):
            data = load_face3d(layout.folder("face3d"), clip.first_frame, clip.frame_count)
            valid = data["valid"].astype(bool)
            new_expr = plan_expressions(np.where(valid[:, None], data["expression"], np.nan), spec, references,
                                        fps=clip.fps)
            edited = np.full_like(data["landmarks"], np.nan)
            if valid.any():
                edited[valid] = apply_expression_delta(data["landmarks"][valid], _fits(data, valid), new_expr[valid])
            for t in tqdm(range(clip.frame_count), desc=f"manipulate {clip.video}", unit="frame", disable=quiet):
                _write_frame(tmp, clip.first_frame + t, data, t, edited[t], new_expr[t], crop_size)
        atomic_write_json(tmp / "manipulation.json", {
            "version": __version__, "request": spec.describe(), "seed": spec.seed,
            "references": [str(r) for r in ref_dirs], "frames": int(state["frames"]),
            "reference_neutral": str(spec.reference_neutral) if spec.reference_neutral is not None else None,
            "transfer_limit_iod": spec.transfer_limit, "lid_closure": spec.lid_closure,
            # label mode's segments, for postprocess's appearance step (exemplars and brows by emotion)
            "emotions": [] if ref_dirs else [s.name for s in spec.segments], "transition_s": spec.transition_s})
    return final
