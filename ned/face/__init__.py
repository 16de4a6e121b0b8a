"""Face detection, tracking, 478 landmarks, alignment and masks (MediaPipe models via LiteRT).

Public API (see each module): :class:`FaceTracker`, :class:`TrackOptions`,
:class:`FaceObservation`, :func:`track_video` (tracking); :mod:`ned.face.align`
(``CROP_SIZE``, ``crop_from_frame``, ``warp_to_crop``, ``transform_points``,
``invert_affine``); :mod:`ned.face.mask` (``face_mask``, ``eye_landmarks``);
:mod:`ned.face.landmarks` (named indices); :mod:`ned.face.models` (the model wrappers).
"""

from ned.face.align import CROP_SIZE, crop_from_frame, invert_affine, transform_points, warp_to_crop
from ned.face.landmarks import IRIS_POINTS, MESH_POINTS, NUM_LANDMARKS, MeshPoint
from ned.face.mask import eye_landmarks, face_mask
from ned.face.tracker import (
    INTERPOLATED,
    MISSING,
    TRACKED,
    FaceObservation,
    FaceTracker,
    TrackOptions,
    TrackStats,
    track_video,
)

__all__ = [
    "CROP_SIZE",
    "IRIS_POINTS",
    "MESH_POINTS",
    "NUM_LANDMARKS",
    "MeshPoint",
    "TRACKED",
    "INTERPOLATED",
    "MISSING",
    "FaceObservation",
    "FaceTracker",
    "TrackOptions",
    "TrackStats",
    "track_video",
    "crop_from_frame",
    "invert_affine",
    "transform_points",
    "warp_to_crop",
    "face_mask",
    "eye_landmarks",
]
