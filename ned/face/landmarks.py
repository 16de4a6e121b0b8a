"""Named indices into the 478-point landmark array (468 MediaPipe mesh points + 10 iris).

Sides are the person's own (anatomical), as in MediaPipe's ``face_mesh_connections``:
in a non-mirrored frontal view the person's RIGHT eye appears on the image's LEFT.
(MediaPipe's iris graph calls the 33/133 eye "left"; we do not use that naming.)

Layout of the ``(478, 3)`` array produced by :mod:`ned.face.tracker`:

- ``0 .. 467``: the face mesh (``face_landmark.tflite``), eye contours refined by the
  iris model;
- ``468 .. 472``: right-eye iris (centre, then four points on the iris boundary);
- ``473 .. 477``: left-eye iris (same order).

This matches the 478-point layout of MediaPipe's attention mesh / ``refine_landmarks``.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

__all__ = [
    "MESH_POINTS",
    "IRIS_POINTS",
    "NUM_LANDMARKS",
    "MeshPoint",
    "FACE_OVAL",
    "RIGHT_EYE_CONTOUR",
    "LEFT_EYE_CONTOUR",
    "LIPS_OUTER",
    "LIPS_INNER",
    "RIGHT_IRIS",
    "LEFT_IRIS",
    "IRIS_CONTOUR_TO_MESH_RIGHT",
    "IRIS_CONTOUR_TO_MESH_LEFT",
    "RIGID_POINTS",
    "MOBILE_POINTS",
]

MESH_POINTS = 468
IRIS_POINTS = 10  # 5 per eye: centre + 4
NUM_LANDMARKS = MESH_POINTS + IRIS_POINTS


class MeshPoint(IntEnum):
    """A few landmarks used by name (indices into the 478-point array)."""

    FOREHEAD_TOP = 10
    NOSE_TIP = 1
    NOSE_BRIDGE = 168
    CHIN = 152
    RIGHT_EYE_OUTER = 33
    RIGHT_EYE_INNER = 133
    LEFT_EYE_INNER = 362
    LEFT_EYE_OUTER = 263
    MOUTH_RIGHT = 61
    MOUTH_LEFT = 291
    UPPER_LIP = 13  # inner upper lip, centre
    LOWER_LIP = 14  # inner lower lip, centre
    RIGHT_CHEEK = 234  # face oval, level with the eyes
    LEFT_CHEEK = 454
    RIGHT_IRIS_CENTER = 468
    LEFT_IRIS_CENTER = 473


# Closed loop around the face (forehead top, clockwise in the image for a frontal face).
FACE_OVAL = np.array(
    [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
     377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67,
     109],
    dtype=np.int64,
)

# Eyelid contours as closed loops: lower lid from outer to inner corner, then the upper
# lid back from inner to outer (16 points each).
RIGHT_EYE_CONTOUR = np.array(
    [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246],
    dtype=np.int64,
)
LEFT_EYE_CONTOUR = np.array(
    [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466],
    dtype=np.int64,
)

# Lip loops: lower lip from the right corner to the left, then the upper lip back.
LIPS_OUTER = np.array(
    [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40,
     185],
    dtype=np.int64,
)
LIPS_INNER = np.array(
    [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80,
     191],
    dtype=np.int64,
)

RIGHT_IRIS = np.arange(468, 473, dtype=np.int64)
LEFT_IRIS = np.arange(473, 478, dtype=np.int64)

# The iris model's 71 eye-region outputs, in its order, as mesh indices (eye contour
# lower 9 + upper 7, then four halo rings and the brow): MediaPipe's mapping tables.
IRIS_CONTOUR_TO_MESH_RIGHT = np.array(
    [33, 7, 163, 144, 145, 153, 154, 155, 133,
     246, 161, 160, 159, 158, 157, 173,
     130, 25, 110, 24, 23, 22, 26, 112, 243,
     247, 30, 29, 27, 28, 56, 190,
     226, 31, 228, 229, 230, 231, 232, 233, 244,
     113, 225, 224, 223, 222, 221, 189,
     35, 124, 46, 53, 52, 65,
     143, 111, 117, 118, 119, 120, 121, 128, 245,
     156, 70, 63, 105, 66, 107, 55, 193],
    dtype=np.int64,
)
IRIS_CONTOUR_TO_MESH_LEFT = np.array(
    [263, 249, 390, 373, 374, 380, 381, 382, 362,
     466, 388, 387, 386, 385, 384, 398,
     359, 255, 339, 254, 253, 252, 256, 341, 463,
     467, 260, 259, 257, 258, 286, 414,
     446, 261, 448, 449, 450, 451, 452, 453, 464,
     342, 445, 444, 443, 442, 441, 413,
     265, 353, 276, 283, 282, 295,
     372, 340, 346, 347, 348, 349, 350, 357, 465,
     383, 300, 293, 334, 296, 336, 285, 417],
    dtype=np.int64,
)

# Points that move only with the head (forehead, temples, nose bridge, eye corners):
# used to estimate the rigid (similarity) motion for smoothing and alignment.
RIGID_POINTS = np.array(
    [10, 338, 297, 109, 67, 151, 9, 8, 168, 6, 197, 195, 5, 4,
     33, 133, 263, 362, 127, 356, 234, 454, 21, 251, 54, 284, 103, 332],
    dtype=np.int64,
)

# Points that move fast during speech, blinks and expressions: everything below the
# nose (lips, cheeks, jaw), eyelids, brows and irises. The lower-face set is the mesh
# points lying below the subnasale (point 2) on the mean frontal MEAD mesh. The
# landmark filter smooths them less so lip motion does not lag.
_LOWER_FACE = [
    0, 2, 11, 12, 13, 14, 15, 16, 17, 18, 32, 37, 38, 39, 40, 41, 42, 43, 57, 58, 61, 62, 72,
    73, 74, 76, 77, 78, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 95, 96, 97, 98, 99,
    106, 132, 135, 136, 138, 140, 146, 147, 148, 149, 150, 152, 164, 165, 167, 169, 170, 171,
    172, 175, 176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 191, 192, 194, 199,
    200, 201, 202, 203, 204, 205, 206, 207, 208, 210, 211, 212, 213, 214, 215, 216, 240, 262,
    267, 268, 269, 270, 271, 272, 273, 287, 288, 291, 292, 302, 303, 304, 306, 307, 308, 310,
    311, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321, 322, 324, 325, 326, 327, 328, 335,
    361, 364, 365, 367, 369, 375, 376, 377, 378, 379, 391, 393, 394, 395, 396, 397, 400, 401,
    402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 415, 416, 418, 421, 422, 423, 424, 425,
    426, 427, 428, 430, 431, 432, 433, 434, 435, 436, 460,
]
_BROWS = [70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 300, 293, 334, 296, 336, 285, 295, 282, 283,
          276]
MOBILE_POINTS = np.unique(
    np.concatenate([np.array(_LOWER_FACE + _BROWS, dtype=np.int64), LIPS_OUTER, LIPS_INNER,
                    RIGHT_EYE_CONTOUR, LEFT_EYE_CONTOUR, RIGHT_IRIS, LEFT_IRIS])
)
