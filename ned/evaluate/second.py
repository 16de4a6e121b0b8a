"""A second emotion classifier, to check that a gain is not one classifier's quirk.

FER2013's mini-Xception (:class:`ned.evaluate.models.EmotionClassifier`) is what the suite
scores with. It is easily fooled (drawn lines, blotches), so `ned evaluate-suite` also
reports the rates of an independent model: the 7-class expression classifier of the
``facex`` package (MIT licence; a CNN on 200x200 grey faces, trained on other data than
FER2013's 48x48 crops), run here on LiteRT without its TensorFlow and OpenCV-contrib
dependencies (``pip install --no-deps facex==1.1.0``, done by ``make setup``).

facex finds faces with OpenCV's Haar cascade, whose box is larger than dlib's and
includes the forehead; :func:`second_face_input` reproduces that framing from a dlib box
(square, 1.3x its side, centre raised by 0.12 of its height). The model is sensitive to
the framing: with dlib's tight box it reads W009's unedited neutral clip as happy 0.87 of
the time, with the Haar-like box 0.13.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

from ned.evaluate.models import FER_LABELS, LiteRTFaceClassifier, existing_file, package_dir
from ned.types import check_array

__all__ = ["SECOND_INPUT_SIZE", "second_model_path", "second_face_input", "SecondClassifier", "load_second_classifier"]

SECOND_INPUT_SIZE = 200
#: facex's output order, as :data:`ned.evaluate.models.FER_LABELS` names
_MODEL_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
_TO_FER_ORDER = np.array([_MODEL_LABELS.index(label) for label in FER_LABELS])
#: the Haar-like box: side as a multiple of dlib's, centre raised by this fraction of its height
BOX_SCALE = 1.3
BOX_RAISE = 0.12
_HINT = "run `make setup`, or `pip install --no-deps facex==1.1.0` in the project's venv"


def second_model_path() -> Path:
    """The facex ``.tflite`` file.

    Raises:
        ModelFileError: the package or its model file is missing (says how to install it).
    """
    return existing_file(package_dir("facex", _HINT) / "assets" / "model_optimized.tflite", _HINT)


def second_face_input(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The second classifier's input for one face: ``(1, 200, 200, 3) float32`` in ``[0, 1]``.

    The grey frame (OpenCV's RGB->grey) is cropped to the Haar-like square around the dlib
    box (cut at the frame's edges, as a Haar box would be), area-resized to 200x200 and
    repeated over 3 channels, as facex feeds it.

    Args:
        rgb: ``(H, W, 3) uint8`` frame.
        box: ``(4,)`` x1 y1 x2 y2 frame pixels (dlib).

    Raises:
        ValueError: wrong frame shape, or a box that leaves nothing to crop.
    """
    check_array(rgb, "H W 3", np.uint8, name="rgb")
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    side = BOX_SCALE * max(x2 - x1, y2 - y1)
    cx, cy = 0.5 * (x1 + x2), 0.5 * (y1 + y2) - BOX_RAISE * (y2 - y1)
    h, w = rgb.shape[:2]
    left, top = int(round(max(cx - side / 2, 0))), int(round(max(cy - side / 2, 0)))
    right, bottom = int(round(min(cx + side / 2, w))), int(round(min(cy + side / 2, h)))
    if right <= left or bottom <= top:
        raise ValueError(f"face box {np.asarray(box).tolist()} lies outside the frame {rgb.shape[:2]}")
    grey = cv2.cvtColor(rgb[top:bottom, left:right], cv2.COLOR_RGB2GRAY)
    face = cv2.resize(grey, (SECOND_INPUT_SIZE, SECOND_INPUT_SIZE), interpolation=cv2.INTER_AREA)
    return np.repeat((face.astype(np.float32) / 255.0)[None, :, :, None], 3, axis=3)


class SecondClassifier(LiteRTFaceClassifier):
    """facex's expression classifier on LiteRT; :meth:`classify` answers in
    :data:`ned.evaluate.models.FER_LABELS` order, like the FER2013 classifier.

    Raises:
        ModelFileError: LiteRT or the model is missing, or the file is another model.
    """

    def __init__(self, path: Path | None = None, num_threads: int = 1) -> None:
        super().__init__(path or second_model_path(), (1, SECOND_INPUT_SIZE, SECOND_INPUT_SIZE, 3), "facex", _HINT,
                         num_threads)

    def classify(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Probabilities ``(7,) float32`` in ``FER_LABELS`` order for the face in ``box``."""
        return self(second_face_input(rgb, box))[_TO_FER_ORDER]


@functools.lru_cache(maxsize=1)
def load_second_classifier() -> SecondClassifier:
    """The second classifier, loaded once per process."""
    return SecondClassifier()
