"""`ned preprocess`: track the face of every clip in ``<celeb>/videos/`` and write the
seed's per-frame folders (see :mod:`ned.layout` and the README for the formats).

Per clip, one streamed decode: track (:mod:`ned.face`), crop a square box around the
face (``images/``), align to a fixed template (``align_transforms/``, ``*_aligned``),
mask (``masks/``, ``faces/``), eyes (``eye_landmarks/``), rasterise the mesh
(``nmfcs/``, ``shapes/``). Then, on the landmarks alone, fit the face model
(:mod:`ned.morph`) and write ``face3d/``. Image encoding runs on a small thread pool
(OpenCV releases the GIL), bounded so memory does not grow with the clip's length.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from ned import __version__
from ned.crops import crop_from_box, square_box
from ned.errors import InputError
from ned.face.align import CROP_SIZE, compose_affine, transform_points, warp_to_crop
from ned.face.align import crop_from_frame as aligned_from_points
from ned.face.mask import eye_landmarks, face_mask
from ned.face.tracker import FaceObservation, FaceTracker, TrackOptions
from ned.layout import (
    CelebLayout,
    atomic_save_npz,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    encode_image,
    ensure_writable_dir,
    folders_complete,
    folders_for_mode,
)
from ned.media import VideoInfo, iter_frames, probe, read_ahead, tune_malloc
from ned.morph.fit import FaceFits, FaceModel
from ned.morph.raster import render_nmfc_and_shape
from ned.morph.topology import load_topology

logger = logging.getLogger(__name__)

MIN_MANIPULATION_FRAMES = 10
_READ_AHEAD = 4  # frames decoded ahead by a background thread


@dataclass(frozen=True)
class PreprocessOptions:
    """Options of :func:`preprocess_celeb`.

    Attributes:
        mode: ``"train"``, ``"test"`` or ``"reference"`` (which folders are written).
        crop_size: side of ``images/`` and the aligned crops, pixels (>= 64).
        jpeg_quality: quality of ``full_frames/`` JPEGs, in [80, 100].
        workers: image-encoding threads (>= 1).
        track: face-tracking options.
        quiet: no progress bars.
    """

    mode: str = "test"
    crop_size: int = CROP_SIZE
    jpeg_quality: int = 95
    workers: int = 2
    track: TrackOptions = field(default_factory=TrackOptions)
    quiet: bool = False

    def __post_init__(self) -> None:
        folders_for_mode(self.mode)  # raises ValueError on an unknown mode
        if not isinstance(self.crop_size, int) or self.crop_size < 64:
            raise ValueError(f"crop_size must be an integer >= 64, got {self.crop_size!r}")
        if not 80 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [80, 100], got {self.jpeg_quality}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {self.workers!r}")


@dataclass(frozen=True)
class ClipReport:
    """What preprocessing did with one clip."""

    video: Path
    first_frame: int
    frame_count: int
    skipped: bool
    interpolated_frames: tuple[int, ...] = ()
    missing_frames: tuple[int, ...] = ()


@dataclass(frozen=True)
class PreprocessReport:
    """Result of :func:`preprocess_celeb`."""

    celeb: Path
    mode: str
    clips: tuple[ClipReport, ...]

    @property
    def frame_count(self) -> int:
        return sum(c.frame_count for c in self.clips)


@dataclass(frozen=True)
class FrameGeometry:
    """Where the face is in one frame and the crops derived from it.

    Attributes:
        box: ``(4,) float32`` square crop box, frame pixels.
        crop_from_frame: ``(2, 3)`` frame pixels -> crop pixels.
        aligned_from_crop: ``(2, 3)`` crop pixels -> aligned-crop pixels (identity when
            the face is missing).
        landmarks_crop: ``(478, 3) float32`` crop pixels (NaN when missing).
    """

    box: np.ndarray
    crop_from_frame: np.ndarray
    aligned_from_crop: np.ndarray
    landmarks_crop: np.ndarray


def frame_geometry(obs: FaceObservation, frame_size: tuple[int, int], crop_size: int) -> FrameGeometry:
    """Crop and alignment matrices of one observation.

    Args:
        obs: the tracked face.
        frame_size: ``(H, W)`` of the frame (used when no face was seen yet).
        crop_size: crop side in pixels.
    """
    box = obs.box
    if not np.all(np.isfinite(box)):
        h, w = frame_size
        side = float(min(h, w))
        box = np.array([(w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2], np.float32)
    box = square_box(box)
    crop_m = crop_from_box(box, crop_size)
    lm_crop = transform_points(obs.landmarks, crop_m)
    if np.all(np.isfinite(lm_crop)):
        aligned_m = aligned_from_points(lm_crop, crop_size)
    else:
        aligned_m = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    return FrameGeometry(box, crop_m, aligned_m, lm_crop)


class _Writer:
    """Encode and write files on a thread pool; at most ``2 * workers`` jobs in flight."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ned-write")
        self._slots = threading.BoundedSemaphore(4 * workers)
        self._futures: list[Future] = []

    def submit(self, path: Path, make_bytes: Callable[[], bytes]) -> None:
        if path.exists():  # written atomically by an earlier run: complete
            return
        self._slots.acquire()

        def job() -> None:
            try:
                atomic_write_bytes(path, make_bytes())
            finally:
                self._slots.release()

        self._futures.append(self._pool.submit(job))
        if len(self._futures) > 256:
            self._drain(keep=64)

    def _drain(self, keep: int = 0) -> None:
        while len(self._futures) > keep:
            self._futures.pop(0).result()  # re-raises a write error here

    def close(self) -> None:
        try:
            self._drain()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _once(make: Callable[[], object]) -> Callable[[], object]:
    """``make`` wrapped so that it runs at most once, from whichever thread asks first
    (the others wait for its result)."""
    lock = threading.Lock()
    done: list[object] = []

    def get() -> object:
        with lock:
            if not done:
                done.append(make())
            return done[0]

    return get


def _points_text(points: np.ndarray) -> bytes:
    return "".join(f"{x:.3f} {y:.3f}\n" for x, y in points[:, :2]).encode()


def _matrix_text(matrix: np.ndarray) -> bytes:
    return "".join(" ".join(f"{v:.8f}" for v in row) + "\n" for row in matrix).encode()


def _write_frame_products(
    writer: _Writer, layout: CelebLayout, folders: dict[str, str], index: int,
    rgb: np.ndarray, geo: FrameGeometry, options: PreprocessOptions,
) -> None:
    """Queue every per-frame image/text file of one frame."""
    size = options.crop_size
    found = bool(np.all(np.isfinite(geo.landmarks_crop)))
    crop = warp_to_crop(rgb, geo.crop_from_frame, size, border="replicate")
    lm_aligned = transform_points(geo.landmarks_crop, geo.aligned_from_crop)

    def path(folder: str) -> Path:
        return layout.frame_file(folder, index, folders[folder])

    def image_job(folder: str, make: Callable[[], np.ndarray]) -> None:
        if folder in folders:
            ext = folders[folder]
            writer.submit(path(folder), lambda: encode_image(make(), ext, options.jpeg_quality))

    def aligned(image: np.ndarray) -> np.ndarray:
        return warp_to_crop(image, geo.aligned_from_crop, size)

    def mask_of(points: np.ndarray) -> np.ndarray:
        if not found:
            return np.zeros((size, size), np.uint8)
        return (face_mask(points, (size, size)) * 255 + 0.5).astype(np.uint8)

    def faces_of(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        # round(image * mask / 255): never exactly halfway for integers, so the same as
        # the float floor(x + 0.5) it replaces, in one OpenCV pass.
        return cv2.multiply(image, cv2.cvtColor(mask, cv2.COLOR_GRAY2RGB), scale=1.0 / 255.0)

    def raster(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not found:
            blank = np.zeros((size, size, 3), np.uint8)
            return blank, blank
        return render_nmfc_and_shape(points[:468], (size, size))

    # Shared by two files each (the jobs run on several threads; each is made once).
    mask_crop, mask_aligned = _once(lambda: mask_of(geo.landmarks_crop)), _once(lambda: mask_of(lm_aligned))
    raster_crop, raster_aligned = _once(lambda: raster(geo.landmarks_crop)), _once(lambda: raster(lm_aligned))
    image_job("images", lambda: crop)
    image_job("full_frames", lambda: rgb)
    image_job("masks", mask_crop)
    image_job("masks_aligned", mask_aligned)
    image_job("faces", lambda: faces_of(crop, mask_crop()))
    image_job("faces_aligned", lambda: faces_of(aligned(crop), mask_aligned()))
    image_job("nmfcs", lambda: raster_crop()[0])
    image_job("nmfcs_aligned", lambda: raster_aligned()[0])
    image_job("shapes", lambda: raster_crop()[1])
    image_job("shapes_aligned", lambda: raster_aligned()[1])
    if "eye_landmarks" in folders:
        writer.submit(path("eye_landmarks"), lambda: _points_text(eye_landmarks(geo.landmarks_crop)))
        writer.submit(path("eye_landmarks_aligned"), lambda: _points_text(eye_landmarks(lm_aligned)))
    if "align_transforms" in folders:
        writer.submit(path("align_transforms"), lambda: _matrix_text(geo.aligned_from_crop))


def box_file_text(info: VideoInfo, boxes: np.ndarray) -> str:
    """Content of ``videos/<name>.txt``: a header then one ``x1 y1 x2 y2`` line per frame."""
    header = (f"# ned {__version__} crop boxes (x1 y1 x2 y2, frame pixels, one line per frame)\n"
              f"# source: {info.path}\n# fps: {info.fps}\n# frames: {info.frame_count}\n"
              f"# size: {info.width}x{info.height}\n")
    return header + "".join(f"{b[0]:.2f} {b[1]:.2f} {b[2]:.2f} {b[3]:.2f}\n" for b in boxes)


def fit_clip(landmarks: np.ndarray) -> tuple[FaceModel, FaceFits | None, np.ndarray]:
    """Fit the face model to a clip's landmarks.

    Args:
        landmarks: ``(T, 478, 3)`` frame pixels, NaN rows for missing frames.

    Returns:
        ``(model, fits of the valid frames, valid mask (T,) bool)``.

    Raises:
        InputError: no frame has a face.
    """
    valid = np.all(np.isfinite(landmarks.reshape(len(landmarks), -1)), axis=1)
    if not valid.any():
        raise InputError("no frame with a face to fit the face model to")
    model = FaceModel.from_sequence(landmarks[valid])
    return model, fit_in_chunks(model, landmarks[valid]), valid


#: Frames fitted per call of :meth:`FaceModel.fit_batch` (its temporaries take tens of
#: KB per frame; the fits do not depend on the chunking, bit for bit).
FIT_CHUNK = 256


def fit_in_chunks(model: FaceModel, landmarks: np.ndarray, chunk: int = FIT_CHUNK) -> FaceFits:
    """:meth:`FaceModel.fit_batch` over ``(T, N, 3)`` landmarks, ``chunk`` frames at a
    time, so that its working memory does not grow with the clip's length."""
    if len(landmarks) <= chunk:
        return model.fit_batch(landmarks)
    parts = [model.fit_batch(landmarks[i:i + chunk]) for i in range(0, len(landmarks), chunk)]
    return FaceFits(*(np.concatenate([getattr(p, name) for p in parts])
                      for name in ("rotation", "translation", "scale", "expression", "residual")))


def face3d_arrays(model: FaceModel, fits: FaceFits, valid: np.ndarray, t: int, k: int,
                  landmarks: np.ndarray, geo: FrameGeometry, status: str) -> dict[str, np.ndarray]:
    """The arrays of one ``face3d/<frame>.npz`` file (see the README for the keys).

    Args:
        t: frame index within the clip; ``k`` its row in ``fits`` (ignored when missing).
    """
    n_shapes = model.num_shapes
    arrays = {
        "landmarks": landmarks.astype(np.float32),
        "landmarks_crop": geo.landmarks_crop.astype(np.float32),
        "box": geo.box.astype(np.float32),
        "crop_from_frame": geo.crop_from_frame,
        "aligned_from_crop": geo.aligned_from_crop,
        "identity": model.identity.astype(np.float32),
        "status": np.array(status),
        "valid": np.array(bool(valid[t])),
    }
    if valid[t]:
        fit = fits[k]
        arrays.update(rotation=fit.pose.rotation, translation=fit.pose.translation,
                      scale=np.array(fit.pose.scale), expression=fit.expression.astype(np.float32),
                      residual=np.array(fit.residual, np.float32))
    else:
        arrays.update(rotation=np.full((3, 3), np.nan), translation=np.full(3, np.nan),
                      scale=np.array(np.nan), expression=np.full(n_shapes, np.nan, np.float32),
                      residual=np.array(np.nan, np.float32))
    return arrays


def _preprocess_clip(layout: CelebLayout, clip: Path, first: int, info: VideoInfo,
                     options: PreprocessOptions, folders: dict[str, str]) -> ClipReport:
    n = info.frame_count
    tracker = FaceTracker(options.track)
    # Per-frame results go into arrays allocated once: a list of small per-frame arrays
    # kept to the end of the clip would sit between the frames' multi-MB buffers on the
    # heap and make the process grow with the clip's length (fragmentation).
    landmarks = np.full((n, 478, 3), np.nan, np.float32)
    boxes = np.full((n, 4), np.nan)
    crop_ms = np.zeros((n, 2, 3))
    aligned_ms = np.zeros((n, 2, 3))
    landmarks_crop = np.full((n, 478, 3), np.nan, np.float32)
    statuses: list[str] = []
    writer = _Writer(options.workers)
    bar = tqdm(total=n, desc=f"preprocess {clip.name}", unit="frame", disable=options.quiet)
    try:
        # Decoding (and the conversion to RGB) runs ahead in a background thread.
        frames = read_ahead(iter_frames(clip), _READ_AHEAD)
        for frame, obs in tracker.track(frames, fps=info.fps, source=clip):
            t = frame.index
            if t >= n:
                raise InputError(f"{clip}: decoded more frames than probed ({n})")
            geo = frame_geometry(obs, frame.rgb.shape[:2], options.crop_size)
            landmarks[t] = obs.landmarks
            boxes[t], crop_ms[t], aligned_ms[t], landmarks_crop[t] = (
                geo.box, geo.crop_from_frame, geo.aligned_from_crop, geo.landmarks_crop)
            statuses.append(obs.status)
            _write_frame_products(writer, layout, folders, first + t, frame.rgb, geo, options)
            bar.update(1)
    finally:
        bar.close()
        writer.close()
    if len(statuses) != n:
        raise InputError(f"{clip}: decoded {len(statuses)} frames, expected {n}; the file may be corrupt")
    model, fits, valid = fit_clip(landmarks)
    rows = np.cumsum(valid) - 1
    for t in range(n):
        geo = FrameGeometry(boxes[t].astype(np.float32), crop_ms[t], aligned_ms[t], landmarks_crop[t])
        atomic_save_npz(layout.frame_file("face3d", first + t, "npz"),
                        **face3d_arrays(model, fits, valid, t, int(rows[t]), landmarks[t], geo, statuses[t]))
    atomic_write_text(layout.videos_dir / f"{clip.stem}.txt", box_file_text(info, boxes.astype(np.float32)))
    stats = tracker.stats
    return ClipReport(clip, first, n, False, tuple(stats.interpolated_frames), tuple(stats.missing_frames))


def preprocess_celeb(celeb: str | Path, options: PreprocessOptions = PreprocessOptions()) -> PreprocessReport:
    """Preprocess every clip of ``<celeb>/videos/`` (resumable).

    A clip whose folders already hold every frame (and its box file) is skipped;
    otherwise it is processed again, skipping per-frame files that exist (files are
    written atomically, so an existing file is complete).

    Raises:
        InputError: missing ``videos/``, a file that is not a readable video, no face.
        OutputError: the folder cannot be written.
    """
    tune_malloc()  # per-frame buffers of several MB reuse freed memory (see ned.media.tune_malloc)
    layout = CelebLayout(Path(celeb))
    # Load the packaged mesh data here, not first inside a writer thread: CPython 3.11's
    # parser (np.load reads .npy headers with ast.literal_eval) is not thread-safe.
    load_topology()
    clips = layout.list_videos()
    infos = [probe(c) for c in clips]  # fail early on a bad file, before writing anything
    folders = folders_for_mode(options.mode)
    for name in folders:
        ensure_writable_dir(layout.folder(name))
    reports: list[ClipReport] = []
    first = 0
    for clip, info in zip(clips, infos):
        if info.frame_count < MIN_MANIPULATION_FRAMES:
            logger.warning("%s has %d frames: manipulation needs at least %d", clip,
                           info.frame_count, MIN_MANIPULATION_FRAMES)
        ids = range(first, first + info.frame_count)
        box_file = layout.videos_dir / f"{clip.stem}.txt"
        if box_file.exists() and folders_complete(layout, folders.items(), ids):
            logger.info("%s: already preprocessed, skipped", clip.name)
            reports.append(ClipReport(clip, first, info.frame_count, True))
        else:
            reports.append(_preprocess_clip(layout, clip, first, info, options, folders))
        first += info.frame_count
    atomic_write_json(layout.state_file(f"preprocess_{options.mode}"), {
        "version": __version__, "mode": options.mode, "frames": first,
        "clips": [{"video": c.video.name, "first_frame": c.first_frame, "frames": c.frame_count,
                   "interpolated": list(c.interpolated_frames), "missing": list(c.missing_frames)}
                  for c in reports],
    })
    return PreprocessReport(layout.root, options.mode, tuple(reports))


def compose_frame_to_aligned(geo: FrameGeometry) -> np.ndarray:
    """``aligned_from_frame`` of one frame (2x3)."""
    return compose_affine(geo.aligned_from_crop, geo.crop_from_frame)
