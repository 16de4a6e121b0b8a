"""Tests of the training-free manipulators: emotions, label- and reference-driven edits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ned.errors import InputError, ModelFileError
from ned.manipulate.emotions import (
    EMOTIONS,
    NED_EMOTIONS,
    EmotionSpec,
    EmotionTargets,
    emfacs_pattern,
    load_emotion_targets,
    parse_emotion,
    parse_emotions,
    targets_from_json,
    without_stray_smile,
)
from ned.manipulate.label import (
    LABEL_GAIN,
    LABEL_LIMIT_IOD,
    MIN_FRAMES,
    ManipulateOptions,
    label_targets,
    manipulate_labels,
    strengthen_targets,
    neutral_baseline,
    segment_weights,
    split_dynamics,
)
from ned.manipulate.envelope import (
    LIMITED_SHAPES,
    NO_SMILE_RISE_IOD,
    SMILE_RISE_IOD,
    corner_rise,
    infer_smile,
    limit_lower_face,
    lower_face_motion,
)
from ned.manipulate.lids import DEFAULT_CLOSURE_LIMIT, add_closure, closure_over_baseline, held_closure
from ned.manipulate.reference import manipulate_reference, time_map
from ned.morph.rig import BLINK_SHAPES, EMOTION_SHAPES, KEPT_SHAPES, Blendshape, load_rig, shape_mask

K = len(Blendshape)
FPS = 25.0
EMO = shape_mask(EMOTION_SHAPES)
KEPT = shape_mask(KEPT_SHAPES)
BLINK = shape_mask(BLINK_SHAPES)
# Largest allowed frame-to-frame change of any weight at a segment boundary, for a
# 0.5 s raised-cosine crossfade (12.5 frames): pi/2 / 12.5 * |target jump| < 0.13 * jump.
MAX_STEP_PER_UNIT_JUMP = 0.15


def _source(t: int = 100, seed: int = 0) -> np.ndarray:
    """A plausible expression sequence: speech oscillating, small emotion noise, blinks."""
    rng = np.random.default_rng(seed)
    x = np.clip(rng.normal(0.1, 0.05, size=(t, K)), 0, None).astype(np.float32)
    time = np.arange(t) / FPS
    x[:, Blendshape.JAW_OPEN] = 0.3 + 0.25 * np.sin(2 * np.pi * 4 * time)
    x[:, Blendshape.LIPS_PART] = 0.2 + 0.15 * np.sin(2 * np.pi * 3 * time + 1)
    x[:, Blendshape.MOUTH_SHIFT] = 0.05 * np.sin(time)
    x[::30, Blendshape.EYE_BLINK_L] = 1.0
    x[::30, Blendshape.EYE_BLINK_R] = 1.0
    return x


@pytest.fixture(scope="module")
def targets() -> EmotionTargets:
    """Synthetic targets (independent of the calibrated file): EMFACS patterns x 0.6."""
    return EmotionTargets({e: 0.6 * emfacs_pattern(e) for e in EMOTIONS if e != "neutral"}, None, "test")


# ---------------------------------------------------------------------------- emotions
class TestParseEmotion:
    @pytest.mark.parametrize("text,name,intensity", [
        ("happy", "happy", 1.0), ("Happy:0.5", "happy", 0.5), ("surprise", "surprised", 1.0),
        ("fearful:1.5", "fear", 1.5), ("disgust:0", "disgusted", 0.0), ("contempt", "contempt", 1.0),
    ])
    def test_unit(self, text, name, intensity):
        spec = parse_emotion(text)
        assert spec == EmotionSpec(name, intensity)

    def test_all_ned_emotions(self):
        assert [parse_emotion(e).name for e in NED_EMOTIONS] == list(NED_EMOTIONS)
        assert str(EmotionSpec("happy", 0.5)) == "happy:0.5" and str(EmotionSpec("sad")) == "sad"

    def test_unknown_lists_valid(self):
        with pytest.raises(InputError) as err:
            parse_emotion("joyous")
        for e in EMOTIONS:
            assert e in str(err.value)

    @pytest.mark.parametrize("text", ["happy:2", "happy:-0.1", "happy:abc", "happy:nan"])
    def test_bad_intensity(self, text):
        with pytest.raises(InputError, match="intensity"):
            parse_emotion(text)

    def test_parse_many(self):
        assert [s.name for s in parse_emotions(["happy", "angry:0.3"])] == ["happy", "angry"]
        with pytest.raises(InputError, match="no target emotion"):
            parse_emotions([])

    def test_spec_validation(self):
        with pytest.raises(ValueError):
            EmotionSpec("joy")
        with pytest.raises(ValueError):
            EmotionSpec("happy", 3.0)


class TestTargets:
    def test_packaged_targets(self):
        t = load_emotion_targets()
        for e in EMOTIONS:
            off = t.offset(e)
            assert off.shape == (K,)
            assert np.all(off[KEPT] == 0)  # never touches speech, blinks, gaze
        assert np.all(t.offset("neutral") == 0)
        happy = t.offset("happy")
        assert happy[Blendshape.LIP_CORNER_PULL_L] > 0.3 and happy[Blendshape.LIP_CORNER_PULL_R] > 0.3
        assert t.offset("surprised")[Blendshape.BROW_INNER_UP_L] > 0.1

    def test_emfacs(self):
        p = emfacs_pattern("happy")
        assert p[Blendshape.CHEEK_RAISE_L] == 1 and p[Blendshape.LIP_CORNER_PULL_R] == 1 and p.sum() == 4
        assert emfacs_pattern("neutral").sum() == 0

    def test_json_round_trip(self, tmp_path):
        data = {"baseline_percentile": 10, "targets": {"happy": {"LIP_CORNER_PULL_L": 0.5, "JAW_OPEN": 1.0}}}
        path = tmp_path / "t.json"
        path.write_text(json.dumps(data))
        t = load_emotion_targets(path)
        assert t.baseline_percentile == 10
        assert t.offset("happy")[Blendshape.LIP_CORNER_PULL_L] == pytest.approx(0.5)
        assert t.offset("happy")[Blendshape.JAW_OPEN] == 0  # speech is dropped
        with pytest.raises(InputError, match="no calibrated target"):
            t.offset("sad")

    def test_bad_files(self, tmp_path):
        with pytest.raises(ModelFileError, match="not found"):
            load_emotion_targets(tmp_path / "missing.json")
        with pytest.raises(ModelFileError, match="not an emotion-targets"):
            targets_from_json({"targets": {"happy": {"NOT_A_SHAPE": 1}}, "baseline_percentile": 20}, "x")


# ---------------------------------------------------------------------------- segments
class TestSegmentWeights:
    @pytest.mark.parametrize("t,s", [(10, 1), (100, 2), (101, 3), (250, 4)])
    def test_partition_of_unity(self, t, s):
        w = segment_weights(t, s, FPS, 0.5)
        assert w.shape == (t, s)
        assert np.allclose(w.sum(1), 1.0) and (w >= 0).all()

    def test_equal_parts(self):
        w = segment_weights(120, 3, FPS, 0.0)
        assert np.array_equal(w.argmax(1), np.repeat([0, 1, 2], 40))
        assert set(np.unique(w)) == {0.0, 1.0}

    def test_smooth_transition(self):
        w = segment_weights(200, 2, FPS, 0.5)
        step = np.abs(np.diff(w[:, 1])).max()
        assert step < MAX_STEP_PER_UNIT_JUMP
        assert w[100 - 3, 1] > 0 and w[100 + 3, 0] > 0  # the crossfade straddles the boundary
        assert w[0, 0] == 1 and w[-1, 1] == 1

    def test_exceptions(self):
        with pytest.raises(ValueError):
            segment_weights(0, 1, FPS, 0.5)
        with pytest.raises(ValueError):
            segment_weights(10, 1, 0.0, 0.5)


class TestHelpers:
    def test_baseline_and_dynamics(self):
        x = np.tile(np.linspace(0, 1, 50)[:, None], (1, 3))
        assert np.allclose(neutral_baseline(x, 0), 0.0)
        assert np.allclose(neutral_baseline(x, 50), 0.5)
        assert np.array_equal(neutral_baseline(x + 1, None), np.zeros(3))  # the face model's neutral
        slow, fast = split_dynamics(x, 5)
        assert np.allclose(slow + fast, x)
        assert np.abs(fast[5:-5]).max() < 1e-9  # a ramp is all "slow"


# ---------------------------------------------------------------------------- label
class TestManipulateLabels:
    def test_intensity_zero_is_identity(self, targets):
        src = _source()
        out = manipulate_labels(src, [EmotionSpec("happy", 0.0)], FPS, targets=targets)
        assert np.array_equal(out, src)
        out = manipulate_labels(src, [EmotionSpec("sad")], FPS, ManipulateOptions(intensity=0.0), targets)
        assert np.array_equal(out, src)

    def test_speech_blinks_gaze_kept(self, targets):
        src = _source()
        for e in EMOTIONS:
            out = manipulate_labels(src, [EmotionSpec(e, 1.5)], FPS, targets=targets)
            assert np.array_equal(out[:, KEPT], src[:, KEPT]), e

    def test_emotion_applied(self, targets):
        src = _source()
        out = manipulate_labels(src, [EmotionSpec("happy")], FPS, targets=targets)
        gain = out[:, Blendshape.LIP_CORNER_PULL_L].mean() - src[:, Blendshape.LIP_CORNER_PULL_L].mean()
        assert gain == pytest.approx(0.6, abs=0.1)
        half = manipulate_labels(src, [EmotionSpec("happy", 0.5)], FPS, targets=targets)
        assert half[:, Blendshape.LIP_CORNER_PULL_L].mean() == pytest.approx(
            (src[:, Blendshape.LIP_CORNER_PULL_L].mean() + out[:, Blendshape.LIP_CORNER_PULL_L].mean()) / 2, abs=0.02)

    def test_neutral_removes_expression(self, targets):
        src = _source()
        src[:, Blendshape.BROW_DOWN_L] = 0.05
        src[40:80, Blendshape.BROW_DOWN_L] = 0.8  # a frown in the middle
        opts = ManipulateOptions(keep_dynamics=0.0)
        out = manipulate_labels(src, [EmotionSpec("neutral")], FPS, opts, targets)
        assert out[40:80, Blendshape.BROW_DOWN_L].max() < 0.1

    def test_neutral_removes_held_expression(self, targets):
        src = _source()
        src[:, Blendshape.LIP_CORNER_PULL_L] = 0.8  # smiling through the whole clip
        src[:, Blendshape.LIP_CORNER_PULL_R] = 0.8
        pull = [Blendshape.LIP_CORNER_PULL_L, Blendshape.LIP_CORNER_PULL_R]
        out = manipulate_labels(src, [EmotionSpec("neutral")], FPS, targets=targets)
        assert out[:, pull].max() < 0.05
        sad = manipulate_labels(src, [EmotionSpec("sad")], FPS, targets=targets)
        assert sad[:, pull].max() < 0.05 and sad[:, Blendshape.LIP_CORNER_DEPRESS_L].mean() > 0.5
        # with a clip percentile as the baseline, a clip-long smile counts as the actor's neutral
        kept = manipulate_labels(src, [EmotionSpec("neutral")], FPS, ManipulateOptions(baseline_percentile=20.0),
                                 targets)
        assert kept[:, pull].min() > 0.75

    def test_bounds(self, targets):
        rig = load_rig()
        out = manipulate_labels(_source(), [EmotionSpec("angry", 1.5)], FPS, targets=targets)
        assert (out >= rig.lower).all() and (out <= rig.upper).all()

    def test_deterministic(self, targets):
        src = _source()
        segs = [EmotionSpec("happy"), EmotionSpec("sad", 0.7), EmotionSpec("surprised")]
        a = manipulate_labels(src, segs, FPS, ManipulateOptions(seed=1), targets)
        b = manipulate_labels(src.copy(), segs, FPS, ManipulateOptions(seed=1), targets)
        assert np.array_equal(a, b)

    def test_segments_and_transitions(self, targets):
        src = np.zeros((150, K), np.float32)
        segs = [EmotionSpec("happy"), EmotionSpec("sad"), EmotionSpec("surprised")]
        out = manipulate_labels(src, segs, FPS, targets=targets)
        pull, brow = Blendshape.LIP_CORNER_PULL_L, Blendshape.BROW_OUTER_UP_L
        assert out[10, pull] > 0.5 and out[60:90, pull].max() < 0.05 and out[140, brow] > 0.5
        jump = np.abs(np.diff(out[:, EMO], axis=0)).max()
        assert jump < MAX_STEP_PER_UNIT_JUMP * 0.6 * 2  # target jumps are <= 0.6 per weight, twice at most
        hard = manipulate_labels(src, segs, FPS, ManipulateOptions(transition_s=0.0), targets)
        assert np.abs(np.diff(hard[:, EMO], axis=0)).max() > 0.5  # the option matters

    @pytest.mark.parametrize("field,value", [("intensity", 2.0), ("transition_s", -1.0), ("baseline_percentile", 80.0),
                                             ("keep_dynamics", 1.5), ("dynamics_window_s", 0.0), ("seed", 1.5)])
    def test_options_validation(self, field, value):
        with pytest.raises(ValueError, match=field):
            ManipulateOptions(**{field: value})

    def test_keep_dynamics_option(self, targets):
        src = _source()
        a = manipulate_labels(src, [EmotionSpec("happy")], FPS, ManipulateOptions(keep_dynamics=1.0), targets)
        b = manipulate_labels(src, [EmotionSpec("happy")], FPS, ManipulateOptions(keep_dynamics=0.0), targets)
        assert a[:, EMO].std(0).mean() > b[:, EMO].std(0).mean()

    def test_bad_input(self, targets):
        with pytest.raises(InputError, match=str(MIN_FRAMES)):
            manipulate_labels(_source(MIN_FRAMES - 1), [EmotionSpec("happy")], FPS, targets=targets)
        bad = _source()
        bad[3] = np.nan
        with pytest.raises(InputError, match="NaN"):
            manipulate_labels(bad, [EmotionSpec("happy")], FPS, targets=targets)
        with pytest.raises(InputError, match="no target"):
            manipulate_labels(_source(), [], FPS, targets=targets)
        with pytest.raises(ValueError, match="source expressions"):
            manipulate_labels(np.zeros((20, 3)), [EmotionSpec("happy")], FPS, targets=targets)

    def test_packaged_targets_work(self):
        src = _source()
        out = manipulate_labels(src, [EmotionSpec("happy")], FPS)
        assert out.dtype == np.float32 and out.shape == src.shape
        assert out[:, Blendshape.LIP_CORNER_PULL_L].mean() > src[:, Blendshape.LIP_CORNER_PULL_L].mean() + 0.3


class TestLabelStrength:
    """Label mode acts the calibrated expressions LABEL_GAIN times as strongly, its lower face held."""

    def test_stronger_than_the_calibrated_mean(self):
        calibrated, label = load_emotion_targets(), label_targets()
        for e in ("fear", "sad", "surprised"):  # small lower-face motion: below the envelope's knee
            np.testing.assert_allclose(label.offset(e), LABEL_GAIN * calibrated.offset(e), rtol=1e-6, atol=1e-7)
        brows = [Blendshape.BROW_DOWN_L, Blendshape.BROW_DOWN_R, Blendshape.BROW_INNER_UP_L]
        np.testing.assert_allclose(label.offset("angry")[brows], LABEL_GAIN * calibrated.offset("angry")[brows], rtol=1e-6)
        assert label.lid_closure == calibrated.lid_closure

    def test_lower_face_held_within_the_envelope(self):
        calibrated, label = load_emotion_targets(), label_targets()
        for e in ("angry", "happy", "disgusted"):
            strong = lower_face_motion(LABEL_GAIN * calibrated.offset(e)[None].astype(np.float64))[0]
            held = lower_face_motion(label.offset(e)[None])[0]
            assert held < strong, e
        assert lower_face_motion(label.offset("angry")[None])[0] <= LABEL_LIMIT_IOD + 1e-6
        assert label.meta["label_gain"] == LABEL_GAIN

    def test_default_edit_uses_the_label_targets(self):
        src = _source()
        default = manipulate_labels(src, [EmotionSpec("surprised")], FPS)
        np.testing.assert_array_equal(default, manipulate_labels(src, [EmotionSpec("surprised")], FPS,
                                                                 targets=label_targets()))
        mean = manipulate_labels(src, [EmotionSpec("surprised")], FPS, targets=load_emotion_targets())
        up = Blendshape.UPPER_LID_UP_L
        assert default[:, up].mean() - src[:, up].mean() > 1.3 * (mean[:, up].mean() - src[:, up].mean())

    def test_bad_gain(self):
        with pytest.raises(ValueError, match="gain"):
            strengthen_targets(load_emotion_targets(), gain=0.0)


# ---------------------------------------------------------------------------- reference
class TestTimeMap:
    def test_loop_is_pingpong(self):
        assert time_map(7, 3, "loop").tolist() == [0, 1, 2, 1, 0, 1, 2]
        assert np.abs(np.diff(time_map(50, 7, "loop"))).max() <= 1  # no jump

    def test_stretch(self):
        pos = time_map(5, 3, "stretch")
        assert pos[0] == 0 and pos[-1] == 2 and np.all(np.diff(pos) > 0)

    def test_exceptions(self):
        with pytest.raises(ValueError, match="mode"):
            time_map(5, 3, "bounce")
        with pytest.raises(ValueError):
            time_map(0, 3)


class TestTransferLimit:
    """Another actor's strong lower-face motion is softly limited; brows and lids are not."""

    def _grimace(self, t: int = 60) -> np.ndarray:
        ref = np.zeros((t, K), np.float32)
        for b in (Blendshape.LIP_STRETCH_L, Blendshape.LIP_STRETCH_R, Blendshape.LIP_CORNER_PULL_L,
                  Blendshape.LIP_CORNER_PULL_R, Blendshape.NOSE_WRINKLE):
            ref[:, b] = 1.2
        ref[:, Blendshape.BROW_DOWN_L] = 0.9
        return ref

    def test_soft_limit_function(self):
        small = np.zeros(K, np.float32)
        small[Blendshape.LIP_CORNER_PULL_L] = 0.2  # 0.11 IOD: under the knee (0.4)
        assert np.array_equal(limit_lower_face(small, 0.5), small)
        big = self._grimace(1)[0]
        sizes = [lower_face_motion(limit_lower_face(a * big, 0.5)) for a in (0.3, 0.5, 1.0, 2.0)]
        assert lower_face_motion(big) > 1.0
        assert all(s <= 0.5 for s in sizes) and np.all(np.diff(sizes) >= 0) and sizes[0] < sizes[2]  # bounded, monotone
        limited = limit_lower_face(big, 0.5)
        assert limited[Blendshape.BROW_DOWN_L] == big[Blendshape.BROW_DOWN_L]
        # one factor for the whole lower face: the expression keeps its direction
        ratio = limited[shape_mask(LIMITED_SHAPES)] / big[shape_mask(LIMITED_SHAPES)].clip(1e-9)
        assert np.ptp(ratio[big[shape_mask(LIMITED_SHAPES)] > 0]) < 1e-6
        assert np.array_equal(limit_lower_face(big, None), big)
        with pytest.raises(ValueError, match="> 0"):
            limit_lower_face(big, 0.0)

    def test_reference_grimace_is_limited(self):
        src = np.zeros((120, K), np.float32)
        out = manipulate_reference(src, [self._grimace()], FPS)
        assert lower_face_motion(out[30:90]).max() <= ManipulateOptions().transfer_limit_iod + 1e-6
        assert out[30:90, Blendshape.BROW_DOWN_L].mean() == pytest.approx(0.9, abs=0.01)
        free = manipulate_reference(src, [self._grimace()], FPS, ManipulateOptions(transfer_limit_iod=None))
        assert lower_face_motion(free[30:90]).min() > 1.0
        with pytest.raises(ValueError, match="transfer_limit_iod"):
            ManipulateOptions(transfer_limit_iod=-1.0)


class TestNoStraySmile:
    """Only emotions whose prototype smiles (happy, contempt) keep lip-corner pull."""

    def test_calibrated_targets(self):
        targets = load_emotion_targets()
        pull = [Blendshape.LIP_CORNER_PULL_L, Blendshape.LIP_CORNER_PULL_R]
        for emotion in ("angry", "disgusted", "fear", "sad", "surprised"):
            assert np.all(targets.offset(emotion)[pull] == 0), emotion
        assert np.all(targets.offset("happy")[pull] > 0.5)

    def test_other_shapes_kept(self):
        offset = np.full(K, 0.4, np.float32)
        out = without_stray_smile(offset, "disgust")
        assert out[Blendshape.LIP_CORNER_PULL_L] == 0 and out[Blendshape.LIP_CORNER_PULL_R] == 0
        assert np.count_nonzero(out != offset) == 2 and offset[Blendshape.LIP_CORNER_PULL_L] == 0.4
        assert np.array_equal(without_stray_smile(offset, "happy"), offset)


class TestNamedReferenceEmotion:
    def _angry_with_pull(self) -> np.ndarray:
        ref = np.zeros((60, K), np.float32)
        ref[:, [Blendshape.LIP_CORNER_PULL_L, Blendshape.LIP_CORNER_PULL_R]] = 0.5
        ref[:, Blendshape.BROW_DOWN_L] = 0.8
        return ref

    def test_named_emotion_drops_the_pull(self):
        src = np.zeros((90, K), np.float32)
        pull = [Blendshape.LIP_CORNER_PULL_L, Blendshape.LIP_CORNER_PULL_R]
        plain = manipulate_reference(src, [self._angry_with_pull()], FPS)
        angry = manipulate_reference(src, [self._angry_with_pull()], FPS, emotions=["angry"])
        happy = manipulate_reference(src, [self._angry_with_pull()], FPS, emotions=["happy"])
        assert plain[45, pull].min() > 0.4 and np.array_equal(happy, plain)
        assert np.all(angry[:, pull] == 0) and angry[45, Blendshape.BROW_DOWN_L] == pytest.approx(0.8, abs=1e-5)
        with pytest.raises(ValueError, match="emotions"):
            manipulate_reference(src, [self._angry_with_pull()], FPS, emotions=["angry", "sad"])

    def test_named_smile_counts_less_towards_the_limit(self):
        src = np.zeros((90, K), np.float32)
        smile = np.zeros((60, K), np.float32)
        smile[:, [Blendshape.LIP_CORNER_PULL_L, Blendshape.LIP_CORNER_PULL_R]] = 1.5  # a broad grin
        smile[:, Blendshape.CHIN_RAISE] = 0.6
        unnamed = manipulate_reference(src, [smile], FPS)
        happy = manipulate_reference(src, [smile], FPS, emotions=["happy"])
        free = manipulate_reference(src, [smile], FPS, ManipulateOptions(transfer_limit_iod=None), emotions=["happy"])
        pull, chin = Blendshape.LIP_CORNER_PULL_L, Blendshape.CHIN_RAISE
        assert unnamed[45, pull] + 0.1 < happy[45, pull] < free[45, pull] - 0.1
        # still one factor for the lower face: the grin keeps its shape
        assert happy[45, chin] / happy[45, pull] == pytest.approx(0.4, rel=1e-4)

    def test_plan_passes_the_named_emotion(self):
        from ned.manipulate.plan import ManipulationSpec, plan_expressions

        src = np.zeros((90, K), np.float32)
        pull = [Blendshape.LIP_CORNER_PULL_L, Blendshape.LIP_CORNER_PULL_R]
        named = plan_expressions(src, ManipulationSpec.from_strings(["angry"], ["ref.mp4"]), [self._angry_with_pull()], FPS)
        bare = plan_expressions(src, ManipulationSpec.from_strings([], ["ref.mp4"]), [self._angry_with_pull()], FPS)
        assert np.all(named[:, pull] == 0) and bare[45, pull].min() > 0.4


class TestInferredSmile:
    """Unnamed references measured from their actor's neutral face: the corners tell a smile."""

    PULL = [Blendshape.LIP_CORNER_PULL_L, Blendshape.LIP_CORNER_PULL_R]

    def _grimace(self) -> np.ndarray:
        """Pull the fit puts into a grimace, held down by depress and stretch: corners do not rise."""
        ref = np.zeros((60, K), np.float32)
        ref[:, self.PULL] = 0.8
        ref[:, [Blendshape.LIP_CORNER_DEPRESS_L, Blendshape.LIP_CORNER_DEPRESS_R]] = 0.7
        ref[:, [Blendshape.LIP_STRETCH_L, Blendshape.LIP_STRETCH_R]] = 0.6
        ref[:, Blendshape.BROW_DOWN_L] = 0.8
        return ref

    def _grin(self) -> np.ndarray:
        ref = np.zeros((60, K), np.float32)
        ref[:, self.PULL] = 1.5
        ref[:, Blendshape.CHIN_RAISE] = 0.6
        return ref

    def test_corners_tell_smile_from_grimace(self):
        assert infer_smile(self._grimace()) is False and infer_smile(self._grin()) is True
        undecided = np.zeros((60, K), np.float32)
        undecided[:, self.PULL] = (SMILE_RISE_IOD + NO_SMILE_RISE_IOD) / 2 / corner_rise(np.eye(K, dtype=np.float32)[self.PULL].sum(0))
        assert infer_smile(undecided) is None and infer_smile(np.zeros((0, K), np.float32)) is None

    def test_inferred_like_named(self):
        src = np.zeros((90, K), np.float32)
        for ref, emotion in ((self._grimace(), "angry"), (self._grin(), "happy")):
            inferred = manipulate_reference(src, [ref], FPS, infer_smiles=True)
            named = manipulate_reference(src, [ref], FPS, emotions=[emotion])
            np.testing.assert_array_equal(inferred, named)
        kept = manipulate_reference(src, [self._grimace()], FPS)  # from the clip's own face: not judged
        assert kept[45, self.PULL].min() > 0.5
        dropped = manipulate_reference(src, [self._grimace()], FPS, reference_neutral=[np.zeros((30, K), np.float32)])
        assert np.all(dropped[:, self.PULL] == 0) and dropped[45, Blendshape.BROW_DOWN_L] == pytest.approx(0.8, abs=1e-5)

    def test_plan_judges_with_a_reference_neutral(self):
        from ned.manipulate.plan import ManipulationSpec, plan_expressions
        src = np.zeros((90, K), np.float32)
        with_neutral = ManipulationSpec.from_strings([], ["ref.mp4"], reference_neutral=Path("neutral.mp4"))
        judged = plan_expressions(src, with_neutral, [self._grimace()], FPS)
        bare = plan_expressions(src, ManipulationSpec.from_strings([], ["ref.mp4"]), [self._grimace()], FPS)
        assert np.all(judged[:, self.PULL] == 0) and bare[45, self.PULL].min() > 0.5


class TestLidClosure:
    """A reference's held lid narrowing reaches the target; its blinks and the target's stay."""

    def _drooping(self, t: int = 90) -> np.ndarray:
        ref = np.zeros((t, K), np.float32)
        ref[:, BLINK] = 0.7  # eyes held narrowed (sad) ...
        ref[20:26, BLINK] = 1.0  # ... with a blink of its own
        ref[:, Blendshape.BROW_INNER_UP_L] = 0.6
        return ref

    def test_held_part_ignores_blinks(self):
        blink = np.zeros((90, 2))
        blink[::30] = 1.0  # one-frame blinks
        blink[40:46] = 1.0  # a 0.24 s blink
        assert held_closure(blink, FPS).max() < 0.05
        blink[:] = 0.6
        assert np.allclose(held_closure(blink, FPS), 0.6)

    def test_droop_transferred_blinks_kept(self):
        src = np.zeros((120, K), np.float32)
        src[::30, BLINK] = 1.0  # the target's own blinks
        out = manipulate_reference(src, [self._drooping()], FPS)
        open_eyes = np.flatnonzero(src[:, Blendshape.EYE_BLINK_L] == 0)
        held = out[open_eyes[(open_eyes > 40) & (open_eyes < 80)]][:, BLINK]
        assert np.all(held > 0.8 * DEFAULT_CLOSURE_LIMIT) and np.all(held < DEFAULT_CLOSURE_LIMIT)  # 0.7, limited
        assert np.ptp(held) < 0.05  # the reference's own blink is not copied
        assert np.all(out[::30, BLINK] == 1.0)  # the target's blinks still close the eye
        off = manipulate_reference(src, [self._drooping()], FPS, ManipulateOptions(lid_closure_limit=None))
        assert np.array_equal(off[:, BLINK], src[:, BLINK])

    def test_label_targets_with_closure(self, targets):
        src = _source(120)
        with_lids = EmotionTargets(targets.offsets, targets.baseline_percentile, "test", lid_closure={"sad": 0.9})
        sad = manipulate_labels(src, [EmotionSpec("sad")], FPS, targets=with_lids)
        opened = np.flatnonzero(src[:, Blendshape.EYE_BLINK_L] < 0.5)
        assert np.all(sad[opened][:, BLINK] > src[opened][:, BLINK] + 0.2)
        assert np.all(sad[::30, BLINK] >= 1.0)  # blinks still close
        happy = manipulate_labels(src, [EmotionSpec("happy")], FPS, targets=with_lids)
        assert np.array_equal(happy[:, BLINK], src[:, BLINK])  # no closure listed for happy
        none = manipulate_labels(src, [EmotionSpec("sad")], FPS, ManipulateOptions(lid_closure_limit=None),
                                 targets=with_lids)
        assert np.array_equal(none[:, BLINK], src[:, BLINK])

    def test_limit_and_validation(self):
        c = closure_over_baseline(np.full((30, 2), 1.0), np.zeros(2), FPS, limit=0.3)
        assert np.all(c < 0.3) and np.all(c > 0.2)
        assert np.all(closure_over_baseline(np.full((30, 2), 0.1), np.full(2, 0.2), FPS) == 0)
        assert np.allclose(add_closure(np.array([[0.0, 1.0]]), np.array([[0.5, 0.5]])), [[0.5, 1.0]])
        with pytest.raises(ValueError, match="lid_closure_limit"):
            ManipulateOptions(lid_closure_limit=1.5)


class TestManipulateReference:
    def _reference(self, t: int = 60) -> np.ndarray:
        ref = _source(t, seed=5)
        ref[:, Blendshape.BROW_INNER_UP_L] = 0.05
        ref[t // 3:, Blendshape.BROW_INNER_UP_L] = 0.85  # expressive after a neutral start
        return ref

    def test_transfers_relative_emotion(self):
        src = _source(120)
        out = manipulate_reference(src, [self._reference()], FPS)
        # 2/3 of the reference frames are +0.8 above its own baseline
        gain = out[:, Blendshape.BROW_INNER_UP_L].mean() - neutral_baseline(src, 20)[Blendshape.BROW_INNER_UP_L]
        assert 0.3 < gain < 0.8
        speech_gaze = KEPT & ~BLINK
        assert np.array_equal(out[:, speech_gaze], src[:, speech_gaze])
        assert np.all(out[:, BLINK] >= src[:, BLINK])  # held lid narrowing only adds

    def test_reference_neutral(self):
        src = _source(120)
        ref = np.tile(self._reference()[-1:], (40, 1))  # expressive all the way through
        neutral = self._reference()[:15]
        b = Blendshape.BROW_INNER_UP_L
        # default baseline: the reference's face-model neutral (weight 0), so a clip-long
        # expression transfers; a neutral clip of the reference actor is subtracted instead
        plain = manipulate_reference(src, [ref], FPS)
        assert plain[:, b].mean() == pytest.approx(ref[0, b], abs=0.01)
        with_neutral = manipulate_reference(src, [ref], FPS, reference_neutral=[neutral])
        assert with_neutral[:, b].mean() == pytest.approx(ref[0, b] - neutral_baseline(neutral, 20)[b], abs=0.01)
        # with clip percentiles as baselines a clip-long expression is its own baseline,
        # and only a neutral clip of the reference actor recovers it
        pct = ManipulateOptions(baseline_percentile=20.0)
        old = manipulate_reference(src, [ref], FPS, pct)
        old_with_neutral = manipulate_reference(src, [ref], FPS, pct, reference_neutral=[neutral])
        assert old_with_neutral[:, b].mean() > old[:, b].mean() + 0.5

    def test_speech_rate_motion_stays_the_targets(self):
        """The reference's fast lip-corner motion (its own speech) is not copied; the
        target's own fast motion is kept there, so the mouth moves with the target's speech."""
        t = np.arange(200)
        c = Blendshape.LIP_STRETCH_L
        src = np.zeros((200, K), np.float32)
        src[:, c] = 0.1 + 0.08 * np.sin(2 * np.pi * t / 6.0)  # the target's speech, 4 Hz
        ref = np.zeros((150, K), np.float32)
        ref[:, c] = 0.5 + 0.2 * np.sin(2 * np.pi * np.arange(150) / 5.0)  # the reference's, 5 Hz
        out = manipulate_reference(src, [ref], FPS)[:, c]
        assert 0.45 < out[40:160].mean() < 0.55  # the reference's expression level
        assert np.corrcoef(out[40:160], src[40:160, c])[0, 1] > 0.9
        copied = manipulate_reference(src, [ref], FPS, ManipulateOptions(keep_dynamics=0.0))[:, c]
        assert np.corrcoef(copied[40:160], src[40:160, c])[0, 1] < 0.5
        # brows are not speech: the reference's brow flicks are its style, copied frame by frame
        b = Blendshape.BROW_INNER_UP_L
        ref[:, b] = 0.3 + 0.2 * np.sin(2 * np.pi * np.arange(150) / 5.0)
        brows = manipulate_reference(src, [ref], FPS)[:, b]
        assert np.corrcoef(brows[40:140], ref[40:140, b])[0, 1] > 0.9

    def test_intensity_zero_and_determinism(self):
        src = _source(80)
        ref = self._reference()
        assert np.array_equal(manipulate_reference(src, [ref], FPS, intensities=[0.0]), src)
        a = manipulate_reference(src, [ref, ref[::-1]], FPS, time_mode="stretch")
        b = manipulate_reference(src, [ref, ref[::-1]], FPS, time_mode="stretch")
        assert np.array_equal(a, b)

    def test_several_references_smooth(self):
        src = np.zeros((120, K), np.float32)
        r1 = np.zeros((30, K), np.float32)
        r2 = np.zeros((30, K), np.float32)
        # a frown growing smoothly after a neutral start (its baseline, p20, is 0)
        r2[:, Blendshape.BROW_DOWN_L] = np.clip(np.linspace(-0.3, 0.9, 30), 0.0, 0.6)
        out = manipulate_reference(src, [r1, r2], FPS, time_mode="stretch")
        assert out[:40, Blendshape.BROW_DOWN_L].max() < 0.05 and out[-20:, Blendshape.BROW_DOWN_L].mean() > 0.4
        assert np.abs(np.diff(out[:, EMO], axis=0)).max() < 0.1

    def test_bad_input(self):
        src = _source(40)
        with pytest.raises(InputError, match="no reference"):
            manipulate_reference(src, [], FPS)
        with pytest.raises(InputError, match="usable"):
            manipulate_reference(src, [np.full((5, K), np.nan)], FPS)
        with pytest.raises(InputError, match="intensity"):
            manipulate_reference(src, [src], FPS, intensities=[2.0])
        with pytest.raises(ValueError, match="time_mode"):
            manipulate_reference(src, [src], FPS, time_mode="bounce")
        with pytest.raises(InputError, match=str(MIN_FRAMES)):
            manipulate_reference(src[:5], [src], FPS)
