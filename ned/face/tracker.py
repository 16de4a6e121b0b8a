"""Track one person's face through a video: detection, 478 landmarks, crop box.

The flow per frame (MediaPipe's face-mesh tracking, run with LiteRT):

1. while no face is tracked, BlazeFace detects faces on the whole frame; the face to
   follow is chosen once (:attr:`TrackOptions.select` / :attr:`TrackOptions.face_index`)
   and re-acquired later only near where it was last seen;
2. the mesh runs on a rotated square ROI built from the previous frame's landmarks
   (no detection per frame: that is what makes tracking fast); a low face-presence
   score or a jump ends tracking and the next step detects again;
3. the iris model refines the eyelids and adds 5 iris points per eye (478 points);
4. a One-Euro landmark smoother (:class:`ned.face.smoothing.LandmarkSmoother`) removes
   jitter without lagging the lips;
5. frames without a face are filled by linear interpolation when the gap lasts at most
   :attr:`TrackOptions.max_gap_s` (short gaps at the clip's start or end hold the
   nearest face); longer gaps stay "missing" (landmarks NaN);
6. the crop box (a square ``box_scale`` times the mesh's extent) is smoothed by a
   centred running median of ``box_window`` frames (NED used 49).

Steps 5 and 6 look ahead a bounded number of frames (``max_gap`` + ``box_window // 2``),
so :meth:`FaceTracker.track` streams with memory independent of the clip's length.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Protocol

import numpy as np

from ned.errors import InputError
from ned.face import models
from ned.face.landmarks import (
    IRIS_CONTOUR_TO_MESH_LEFT,
    IRIS_CONTOUR_TO_MESH_RIGHT,
    LEFT_IRIS,
    MESH_POINTS,
    NUM_LANDMARKS,
    RIGHT_IRIS,
    MeshPoint,
)
from ned.face.smoothing import LandmarkSmoother
from ned.types import check_array

if TYPE_CHECKING:  # pragma: no cover
    from ned.media import DecodedFrame

__all__ = [
    "TRACKED",
    "INTERPOLATED",
    "MISSING",
    "TrackOptions",
    "FaceObservation",
    "TrackStats",
    "FaceTracker",
    "track_video",
    "landmark_box",
]

logger = logging.getLogger(__name__)

TRACKED = "tracked"
INTERPOLATED = "interpolated"
MISSING = "missing"
STATUSES = (TRACKED, INTERPOLATED, MISSING)

_SELECT = ("largest", "center", "score")
_DETECTORS = ("auto", "short", "full")
_EYELID_POINTS = 16  # the first 16 of the iris model's 71 points are the eyelid contour
_DEFAULT_FPS = 25.0


@dataclass(frozen=True)
class TrackOptions:
    """Options of :class:`FaceTracker`.

    Attributes:
        select: which face to follow when several are found at the start: ``"largest"``
            box, the one nearest the frame ``"center"``, or the best detection ``"score"``.
        face_index: follow the i-th face (0-based, ordered left to right) of the first
            frame with a face; overrides ``select``. None to use ``select``.
        detector: ``"auto"`` (short- and full-range BlazeFace merged, then the frame
            padded so that a face filling it is found), ``"short"`` or ``"full"``.
        min_detection_score: detection threshold in (0, 1).
        min_presence: mesh face-presence probability below which the face is lost, in (0, 1).
        max_jump: the face is lost when its centre moves more than this many face sizes
            between consecutive frames (> 0).
        reacquire_radius: after a loss, a detection is the same person only if its centre
            lies within ``reacquire_radius x (1 + seconds since last seen)`` face sizes of
            the last position (> 0).
        max_gap_s: gaps without a face up to this long (seconds, >= 0) are interpolated.
        box_window: centred running-median window of the crop box (frames, odd, >= 1).
        box_scale: crop box side / longest side of the mesh's bounding box (> 0).
        smooth: filter landmarks over time (One-Euro); False keeps the raw mesh.
        min_cutoff_hz: One-Euro cutoff of head motion at rest (Hz, > 0); lower = smoother.
        beta: One-Euro speed coefficient of head motion (>= 0); higher = less lag.
        mobile_min_cutoff_hz: One-Euro cutoff of lips, jaw, eyelids and irises relative
            to the head (Hz, > 0); high so speech is not delayed.
        refine_eyelids: replace the mesh's 2 x 16 eyelid points by the iris model's.
        num_threads: LiteRT threads per model (>= 1).
    """

    select: str = "largest"
    face_index: int | None = None
    detector: str = "auto"
    min_detection_score: float = 0.5
    min_presence: float = 0.5
    max_jump: float = 0.5
    reacquire_radius: float = 1.0
    max_gap_s: float = 0.5
    box_window: int = 49
    box_scale: float = 1.5
    smooth: bool = True
    min_cutoff_hz: float = 1.0
    beta: float = 10.0
    mobile_min_cutoff_hz: float = 6.0
    refine_eyelids: bool = True
    num_threads: int = 1

    def __post_init__(self) -> None:
        if self.select not in _SELECT:
            raise ValueError(f"select must be one of {_SELECT}, got {self.select!r}")
        if self.face_index is not None and (not isinstance(self.face_index, int) or self.face_index < 0):
            raise ValueError(f"face_index must be None or an integer >= 0, got {self.face_index!r}")
        if self.detector not in _DETECTORS:
            raise ValueError(f"detector must be one of {_DETECTORS}, got {self.detector!r}")
        for name in ("min_detection_score", "min_presence"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {value}")
        for name in ("max_jump", "reacquire_radius", "box_scale", "min_cutoff_hz",
                     "mobile_min_cutoff_hz"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if not self.max_gap_s >= 0:
            raise ValueError(f"max_gap_s must be >= 0, got {self.max_gap_s}")
        if not isinstance(self.box_window, int) or self.box_window < 1 or self.box_window % 2 == 0:
            raise ValueError(f"box_window must be an odd integer >= 1, got {self.box_window!r}")
        if not isinstance(self.num_threads, int) or self.num_threads < 1:
            raise ValueError(f"num_threads must be an integer >= 1, got {self.num_threads!r}")


@dataclass(frozen=True)
class FaceObservation:
    """The tracked face in one frame.

    Attributes:
        frame_index: index of the frame in the clip.
        status: ``"tracked"`` (seen in this frame), ``"interpolated"`` (filled across a
            short gap) or ``"missing"`` (no face; landmarks NaN).
        box: ``(4,) float32`` x1 y1 x2 y2 in frame pixels: the smoothed square crop box
            (may extend past the frame's edges). For a missing frame, the nearest known
            box (NaN only if no face was seen yet).
        landmarks: ``(478, 3) float32`` frame pixels: 468 mesh points then 10 iris points
            (see :mod:`ned.face.landmarks`); NaN when missing.
        score: face-presence probability of the mesh for tracked frames, 0 otherwise.
    """

    frame_index: int
    status: str
    box: np.ndarray
    landmarks: np.ndarray
    score: float


@dataclass
class TrackStats:
    """Counters of the last :meth:`FaceTracker.track` run."""

    frames: int = 0
    tracked: int = 0
    interpolated: int = 0
    missing: int = 0
    detector_runs: int = 0
    acquisitions: int = 0
    interpolated_frames: list[int] = field(default_factory=list)
    missing_frames: list[int] = field(default_factory=list)


class _Frame(Protocol):  # what track() needs from ned.media.DecodedFrame
    index: int
    rgb: np.ndarray
    time_s: float


# --------------------------------------------------------------------------- pure helpers


def landmark_box(landmarks: np.ndarray, scale: float) -> np.ndarray:
    """Square box around the mesh: centred on its bounding box, side ``scale`` x its
    longest side.

    Args:
        landmarks: ``(N, 2|3)`` frame pixels (the first 468 rows are used).
        scale: side factor (> 0).

    Returns:
        ``(3,) float64`` ``(cx, cy, side)``; NaN if the landmarks are NaN.
    """
    xy = np.asarray(landmarks, dtype=np.float64)[:MESH_POINTS, :2]
    if not np.isfinite(xy).all():
        return np.full(3, np.nan)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    centre = (lo + hi) / 2.0
    return np.array([centre[0], centre[1], float((hi - lo).max()) * scale])


def _box_corners(params: np.ndarray) -> np.ndarray:
    cx, cy, side = params
    half = side / 2.0
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float32)


def _choose_first(detections: list[models.Detection], options: TrackOptions,
                  width: int, height: int) -> models.Detection | None:
    if not detections:
        return None
    if options.face_index is not None:
        ordered = sorted(detections, key=lambda d: float(d.center[0]))
        if options.face_index >= len(ordered):
            logger.warning("face_index %d asked but only %d face(s) found; following the last",
                           options.face_index, len(ordered))
        return ordered[min(options.face_index, len(ordered) - 1)]
    if options.select == "largest":
        return max(detections, key=lambda d: d.area)
    if options.select == "center":
        middle = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
        return min(detections, key=lambda d: float(np.linalg.norm(d.center - middle)))
    return max(detections, key=lambda d: d.score)


def _choose_near(detections: list[models.Detection], centre: np.ndarray, size: float,
                 radius: float) -> models.Detection | None:
    best, best_dist = None, math.inf
    for det in detections:
        det_size = max(float(det.box[2] - det.box[0]), float(det.box[3] - det.box[1]))
        dist = float(np.linalg.norm(det.center - centre))
        if dist <= radius * size and 0.4 < det_size / max(size, 1e-6) < 2.5 and dist < best_dist:
            best, best_dist = det, dist
    return best


def _merge_detections(first: list[models.Detection], second: list[models.Detection],
                      iou_threshold: float = 0.3) -> list[models.Detection]:
    """Union of two detection lists, dropping any that overlaps a better one."""
    kept: list[models.Detection] = []
    for det in sorted(first + second, key=lambda d: -d.score):
        if all(_box_iou(det.box, k.box) <= iou_threshold for k in kept):
            kept.append(det)
    return kept


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(float(w), 0.0) * max(float(h), 0.0)
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


def _face_geometry(mesh: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and size (longest side of the bounding box) of a mesh."""
    xy = mesh[:MESH_POINTS, :2]
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return (lo + hi) / 2.0, float((hi - lo).max())


# --------------------------------------------------------------------------- per-frame tracking


@dataclass
class _Raw:
    frame: Any
    landmarks: np.ndarray | None  # (478, 3) float32 or None
    score: float


class _FrameTracker:
    """Causal per-frame tracking state: models, previous landmarks, identity."""

    def __init__(self, options: TrackOptions) -> None:
        self.options = options
        threads = options.num_threads
        score = options.min_detection_score
        self._short = models.FaceDetector("short", score, num_threads=threads) \
            if options.detector in ("auto", "short") else None
        self._full: models.FaceDetector | None = None
        if options.detector == "full":
            self._full = models.FaceDetector("full", score, num_threads=threads)
        self._mesh = models.FaceMesh(threads)
        self._iris = models.IrisLandmarker(threads)
        self.stats = TrackStats()
        self.reset()

    def reset(self) -> None:
        self._prev: np.ndarray | None = None
        self._last_centre: np.ndarray | None = None
        self._last_size = 0.0
        self._last_time = 0.0

    def _full_detector(self) -> models.FaceDetector:
        if self._full is None:
            self._full = models.FaceDetector("full", self.options.min_detection_score,
                                             num_threads=self.options.num_threads)
        return self._full

    def detect(self, rgb: np.ndarray) -> list[models.Detection]:
        """Faces in a frame with the configured detector strategy.

        ``"auto"`` runs both ranges and merges them (large and small faces), then, if
        nothing was found, the short-range model on the frame padded by 30% (a face
        that fills the frame).
        """
        self.stats.detector_runs += 1
        if self.options.detector == "full":
            return self._full_detector().detect(rgb)
        assert self._short is not None
        found = self._short.detect(rgb)
        if self.options.detector == "short":
            return found
        found = _merge_detections(found, self._full_detector().detect(rgb))
        if found:
            return found
        return self._short.detect(rgb, pad=0.3)

    def step(self, rgb: np.ndarray, t_s: float) -> tuple[np.ndarray | None, float, bool]:
        """Track one frame. Returns ``(landmarks (478, 3) or None, presence, new_segment)``."""
        if self._prev is not None:
            roi = models.roi_from_points(self._prev[:MESH_POINTS], self._eye_line(self._prev))
            mesh, presence = self._mesh(rgb, roi)
            if presence >= self.options.min_presence and not self._jumped(mesh):
                return self._accept(rgb, mesh, presence, t_s), presence, False
            logger.debug("face lost at t=%.3fs (presence %.2f)", t_s, presence)
            self._prev = None
        target = self._pick(self.detect(rgb), rgb.shape[1], rgb.shape[0], t_s)
        if target is None:
            return None, 0.0, False
        mesh, presence = self._mesh(rgb, models.roi_from_detection(target))
        if presence < self.options.min_presence:
            return None, presence, False
        # A second pass from the mesh's own ROI is tighter than the detection's.
        mesh2, presence2 = self._mesh(rgb, models.roi_from_points(mesh, self._eye_line(mesh)))
        if presence2 >= self.options.min_presence:
            mesh, presence = mesh2, presence2
        self.stats.acquisitions += 1
        logger.debug("face acquired at t=%.3fs (presence %.2f)", t_s, presence)
        return self._accept(rgb, mesh, presence, t_s), presence, True

    @staticmethod
    def _eye_line(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return points[MeshPoint.RIGHT_EYE_OUTER], points[MeshPoint.LEFT_EYE_OUTER]

    def _jumped(self, mesh: np.ndarray) -> bool:
        assert self._prev is not None
        c_new, s_new = _face_geometry(mesh)
        c_old, s_old = _face_geometry(self._prev)
        moved = float(np.linalg.norm(c_new - c_old)) > self.options.max_jump * s_old
        resized = not (1.0 / (1.0 + 2 * self.options.max_jump) < s_new / max(s_old, 1e-6)
                       < 1.0 + 2 * self.options.max_jump)
        return moved or resized

    def _pick(self, detections: list[models.Detection], width: int, height: int,
              t_s: float) -> models.Detection | None:
        if self._last_centre is None:
            return _choose_first(detections, self.options, width, height)
        elapsed = max(t_s - self._last_time, 0.0)
        radius = self.options.reacquire_radius * (1.0 + elapsed)
        return _choose_near(detections, self._last_centre, self._last_size, radius)

    def _accept(self, rgb: np.ndarray, mesh: np.ndarray, presence: float, t_s: float) -> np.ndarray:
        landmarks = self._add_iris(rgb, mesh)
        self._prev = landmarks
        self._last_centre, self._last_size = _face_geometry(landmarks)
        self._last_time = t_s
        return landmarks

    def _add_iris(self, rgb: np.ndarray, mesh: np.ndarray) -> np.ndarray:
        out = np.empty((NUM_LANDMARKS, 3), np.float32)
        out[:MESH_POINTS] = mesh
        eyes = (
            (MeshPoint.RIGHT_EYE_OUTER, MeshPoint.RIGHT_EYE_INNER, False,
             IRIS_CONTOUR_TO_MESH_RIGHT, RIGHT_IRIS),
            (MeshPoint.LEFT_EYE_INNER, MeshPoint.LEFT_EYE_OUTER, True,
             IRIS_CONTOUR_TO_MESH_LEFT, LEFT_IRIS),
        )
        for start, end, mirror, table, iris_rows in eyes:
            contour, iris = self._iris(rgb, models.eye_roi(mesh[start], mesh[end]), mirror)
            lids = table[:_EYELID_POINTS]
            if self.options.refine_eyelids:
                out[lids, :2] = contour[:_EYELID_POINTS, :2]
            # Iris depth relative to the eyelids, placed on the mesh's eyelid depth.
            out[iris_rows, :2] = iris[:, :2]
            out[iris_rows, 2] = mesh[lids, 2].mean() + iris[:, 2] - contour[:_EYELID_POINTS, 2].mean()
        return out


# --------------------------------------------------------------------------- streaming stages


@dataclass
class _Resolved:
    frame: Any
    status: str
    landmarks: np.ndarray  # (478, 3) float32, NaN when missing
    score: float


def _nan_landmarks() -> np.ndarray:
    return np.full((NUM_LANDMARKS, 3), np.nan, np.float32)


def _lerp_times(t0: float, t1: float, t: float) -> float:
    return 0.5 if t1 <= t0 else min(max((t - t0) / (t1 - t0), 0.0), 1.0)


def fill_gaps(items: Iterable[_Raw], max_gap: int) -> Iterator[_Resolved]:
    """Resolve frames without a face (a streaming stage, look-ahead ``max_gap`` frames).

    A gap of at most ``max_gap`` frames between two faces is linearly interpolated
    (in time); a short gap at the start or end holds the nearest face; both are
    ``"interpolated"``. Longer gaps are ``"missing"`` with NaN landmarks.

    Args:
        items: per-frame results in order (``landmarks`` None when no face).
        max_gap: longest gap (frames, >= 0) that is filled.
    """
    pending: deque[_Raw] = deque()
    last: _Raw | None = None
    long_gap = False
    for item in items:
        if item.landmarks is None:
            if long_gap:
                yield _Resolved(item.frame, MISSING, _nan_landmarks(), 0.0)
                continue
            pending.append(item)
            if len(pending) > max_gap:
                long_gap = True
                while pending:
                    yield _Resolved(pending.popleft().frame, MISSING, _nan_landmarks(), 0.0)
            continue
        long_gap = False
        if pending:
            t1 = float(item.frame.time_s)
            t0 = float(last.frame.time_s) if last is not None else t1
            for gap_item in pending:
                if last is None or last.landmarks is None:
                    filled = item.landmarks
                else:
                    w = _lerp_times(t0, t1, float(gap_item.frame.time_s))
                    filled = (1.0 - w) * last.landmarks + w * item.landmarks
                yield _Resolved(gap_item.frame, INTERPOLATED, np.asarray(filled, np.float32), 0.0)
            pending.clear()
        last = item
        yield _Resolved(item.frame, TRACKED, item.landmarks, item.score)
    for gap_item in pending:  # a short gap at the end: hold the last face
        if last is not None and last.landmarks is not None:
            yield _Resolved(gap_item.frame, INTERPOLATED, last.landmarks.copy(), 0.0)
        else:
            yield _Resolved(gap_item.frame, MISSING, _nan_landmarks(), 0.0)


def smooth_boxes(items: Iterable[_Resolved], window: int, box_scale: float
                 ) -> Iterator[tuple[Any, FaceObservation]]:
    """Attach a crop box smoothed by a centred running median (streaming, look-ahead
    ``window // 2`` frames; the window is truncated at the clip's ends and skips
    missing frames).

    Args:
        items: resolved frames in order.
        window: odd window length in frames.
        box_scale: box side / longest side of the mesh's bounding box.
    """
    half = window // 2
    params: deque[np.ndarray] = deque(maxlen=window)  # boxes of the last `window` items
    queue: deque[_Resolved] = deque()  # items waiting for their look-ahead
    last_box = np.full(4, np.nan, np.float32)

    def emit(item: _Resolved, lookahead: int) -> tuple[Any, FaceObservation]:
        nonlocal last_box
        # `params` ends `lookahead` items after `item`; take up to `half` on each side.
        n = len(params)
        pos = n - 1 - lookahead
        window_params = np.array(list(params)[max(pos - half, 0): pos + half + 1])
        ok = np.isfinite(window_params).all(axis=1)
        if ok.any():
            box = _box_corners(np.median(window_params[ok], axis=0))
            last_box = box
        else:
            box = last_box.copy()
        obs = FaceObservation(frame_index=int(item.frame.index), status=item.status, box=box,
                              landmarks=item.landmarks, score=float(item.score))
        return item.frame, obs

    for item in items:
        params.append(landmark_box(item.landmarks, box_scale))
        queue.append(item)
        if len(queue) > half:
            yield emit(queue.popleft(), len(queue))
    while queue:
        yield emit(queue.popleft(), len(queue))


# --------------------------------------------------------------------------- public API


class FaceTracker:
    """Track one person's face through a stream of frames.

    Args:
        options: tracking options.

    Raises:
        ModelFileError: the MediaPipe model files are missing.
    """

    def __init__(self, options: TrackOptions | None = None) -> None:
        self.options = options if options is not None else TrackOptions()
        self._frame_tracker = _FrameTracker(self.options)
        self.stats = TrackStats()

    def track(self, frames: Iterable["DecodedFrame"], *, fps: float | Fraction | None = None,
              source: str | Path | None = None) -> Iterator[tuple["DecodedFrame", FaceObservation]]:
        """Track the face; yields each frame with its observation, in order.

        Frames are held for a bounded look-ahead (``max_gap`` + ``box_window // 2``
        frames), so memory does not grow with the clip's length.

        Args:
            frames: decoded frames (``index``, ``rgb (H, W, 3) uint8``, ``time_s``), e.g.
                :func:`ned.media.iter_frames`.
            fps: frame rate used to turn :attr:`TrackOptions.max_gap_s` into frames;
                None estimates it from the first two frames' ``time_s`` (25 if unknown).
            source: name of the input for messages (e.g. the video path).

        Raises:
            InputError: when the stream ends, if no face was found in any frame (the
                frames have been yielded as "missing" by then).
            ValueError: a frame's ``rgb`` is not ``(H, W, 3) uint8``.
        """
        it = iter(frames)
        head: list[Any] = []
        if fps is None:
            for frame in it:
                head.append(frame)
                if len(head) == 2:
                    break
            fps = _estimate_fps(head)
        max_gap = int(math.floor(self.options.max_gap_s * float(fps) + 1e-6))
        self.stats = self._frame_tracker.stats = TrackStats()
        self._frame_tracker.reset()

        def chained() -> Iterator[Any]:
            yield from head
            yield from it

        resolved = fill_gaps(self._raw(chained()), max_gap)
        for frame, obs in smooth_boxes(resolved, self.options.box_window, self.options.box_scale):
            self._count(obs)
            yield frame, obs
        stats = self.stats
        logger.info("face track: %d frames, %d tracked, %d interpolated, %d missing, "
                    "%d detector runs", stats.frames, stats.tracked, stats.interpolated,
                    stats.missing, stats.detector_runs)
        if stats.tracked == 0:
            where = f" in {source}" if source is not None else ""
            raise InputError(f"no face found{where} ({stats.frames} frames): use a clip that "
                             "shows one face clearly, or try TrackOptions(detector='full')")

    def _raw(self, frames: Iterable[Any]) -> Iterator[_Raw]:
        smoother = LandmarkSmoother(self.options.min_cutoff_hz, self.options.beta,
                                    mobile_min_cutoff_hz=self.options.mobile_min_cutoff_hz)
        for frame in frames:
            # Planar frames (ned.media.PlanarFrame) give their picture: crops are cut
            # from its YUV planes, and the frame is converted to RGB only to detect.
            image = getattr(frame, "image", None)
            if image is None or isinstance(image, np.ndarray):
                image = frame.rgb if image is None else image
                image = np.ascontiguousarray(check_array(image, "H W 3", np.uint8, name="frame.rgb"))
            t_s = float(frame.time_s)
            landmarks, score, new_segment = self._frame_tracker.step(image, t_s)
            if landmarks is None:
                smoother.reset()
            elif self.options.smooth:
                if new_segment:
                    smoother.reset()
                landmarks = smoother(landmarks, t_s)
            yield _Raw(frame, landmarks, score)

    def _count(self, obs: FaceObservation) -> None:
        stats = self.stats
        stats.frames += 1
        if obs.status == TRACKED:
            stats.tracked += 1
        elif obs.status == INTERPOLATED:
            stats.interpolated += 1
            stats.interpolated_frames.append(obs.frame_index)
        else:
            stats.missing += 1
            stats.missing_frames.append(obs.frame_index)


def _estimate_fps(head: list[Any]) -> float:
    if len(head) >= 2:
        dt = float(head[1].time_s) - float(head[0].time_s)
        if dt > 1e-6:
            return 1.0 / dt
    return _DEFAULT_FPS


def track_video(path: str | Path, options: TrackOptions | None = None) -> list[FaceObservation]:
    """Track the face of a whole video file (non-streaming convenience).

    Args:
        path: video file.
        options: tracking options.

    Returns:
        One observation per frame, in order.

    Raises:
        InputError: unreadable video, or no face in any frame.
        ModelFileError: the model files are missing.
    """
    from ned import media  # imported here: media is only needed for files

    info = media.probe(path)
    tracker = FaceTracker(options)
    frames = media.iter_frames(path)
    return [obs for _, obs in tracker.track(frames, fps=info.fps, source=path)]
