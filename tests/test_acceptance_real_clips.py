"""Acceptance on the real clips of ../shared/media (``make acceptance``; skipped without them).

- preprocessing (issue 2): every folder holds one file per frame on the 1080p MEAD clip,
  the vertical phone clip d13 and the 512 talking clip d10, and the crop boxes follow the face;
- editing (issue 4): frame count, fps, resolution and audio kept; mouth aperture measured
  with dlib correlates with the input's at r >= 0.9; identity distance <= 0.35; the target
  emotion is not recognised less often than on the input; landmark jitter <= 1.2x the input's.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from ned.evaluate.evaluate import EvaluateOptions, evaluate_videos
from ned.layout import count_frame_files, folders_for_mode
from ned.manipulate.plan import ManipulationSpec
from ned.media import probe
from ned.pipeline import EditOptions, edit_video
from ned.preprocess import PreprocessOptions, preprocess_celeb

pytestmark = pytest.mark.acceptance

PREPROCESS_CLIPS = ("mead_1080p/W015_level_1_neutral_030.mp4", "talking/d13.mp4", "talking/d10.mp4")
EDIT_CASES = (("talking/d10.mp4", "happy"), ("talking/d10.mp4", "sad"),
              ("mead_1080p/W015_level_1_neutral_030.mp4", "sad"),
              ("mead_crops/W009_front_neutral_level1_001.mp4", "surprised"),
              ("mead_crops/M030_front_neutral_level1_001.mp4", "angry"))


@pytest.mark.parametrize("clip", PREPROCESS_CLIPS)
def test_preprocess_real_clip(tmp_path, shared_media, clip):
    source = shared_media / clip
    celeb = tmp_path / "celeb"
    (celeb / "videos").mkdir(parents=True)
    os.symlink(source, celeb / "videos" / source.name)
    report = preprocess_celeb(celeb, PreprocessOptions(mode="test", quiet=True))
    n = probe(source).frame_count
    assert report.frame_count == n
    for folder, ext in folders_for_mode("test").items():
        assert count_frame_files(celeb / folder, ext) == n, folder
    boxes = np.loadtxt(celeb / "videos" / f"{source.stem}.txt", comments="#")
    assert boxes.shape == (n, 4)
    side = boxes[:, 2] - boxes[:, 0]
    assert np.all(side > 32) and np.ptp(side) < 0.5 * side.mean()  # a stable box around the face


@pytest.mark.parametrize("clip,emotion", EDIT_CASES)
def test_edit_real_clip(tmp_path, shared_media, clip, emotion):
    source = shared_media / clip
    out = tmp_path / f"{emotion}.mp4"
    edit_video(source, out, EditOptions(manipulation=ManipulationSpec.from_strings([emotion]), quiet=True))
    r = evaluate_videos(source, out, EvaluateOptions(emotion=emotion, contact_frames=0, quiet=True,
                                                     detect_upsample=1 if "1080p" in clip else 0))
    c = r.container
    assert c.frame_count_equal and c.fps_equal and c.resolution_equal and c.audio_presence_equal
    if c.audio_duration_diff_s is not None:
        assert abs(c.audio_duration_diff_s) <= 1.0 / float(probe(source).fps)
    assert r.speech.aperture_r >= 0.9
    assert r.identity.mean_distance <= 0.35
    assert r.emotion.accuracy_out >= r.emotion.accuracy_in
    assert r.temporal.jitter_ratio <= 1.2
