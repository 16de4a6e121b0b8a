"""``evaluate_videos``: compare an edited video with its input, the way a reviewer would.

One streaming pass decodes both videos in lockstep. On every ``stride``-th frame of the
common prefix it runs, on each video, dlib's detector (highest-scoring face), its 68
landmarks and the FER2013 classifier; on up to ``identity_samples`` of those frames the
dlib face embedding; and it compares pixels outside (background PSNR) and inside (flicker)
the face region. Memory does not grow with clip length except for a few numbers per
frame and ``contact_frames`` thumbnails.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
from tqdm import tqdm

from ned.errors import InputError
from ned.evaluate import metrics as M
from ned.evaluate.container import ContainerComparison, compare_containers, read_audio
from ned.evaluate.models import (
    FER_LABELS,
    FER_MARGIN_FRACTION,
    DlibFaceModels,
    EmotionClassifier,
    FaceFinder,
    fer_label,
    load_emotion_classifier,
    load_face_models,
)
from ned.media import DecodedFrame, iter_frames, probe

__all__ = [
    "EvaluateOptions",
    "SpeechMetrics",
    "IdentityMetrics",
    "EmotionMetrics",
    "BackgroundMetrics",
    "TemporalMetrics",
    "FaceCoverage",
    "FrameSeries",
    "ContactFrame",
    "EvaluationResult",
    "evaluate_videos",
]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- options
@dataclass(frozen=True)
class EvaluateOptions:
    """How to evaluate an edited video.

    Attributes:
        emotion: target emotion (NED name or alias); None: no target-emotion metrics.
        max_frames: evaluate only the first N frames (None: all).
        stride: analyse every ``stride``-th frame (1: every frame).
        detect_max_side: longer side of the frame for whole-frame face searches (0: full).
        detect_face_px: None, or fix the detector scale per clip so that the face is about
            this many pixels (faster for large faces, but FER readings depend on the scale:
            compare only runs with the same setting; landmarks always use the full frame).
        redetect_every: 1 (default): search the whole frame on every analysed frame, so
            each frame's measurement depends on that frame only. N > 1: in between, search
            a window around the previous face (faster on large frames, but dlib's box then
            depends on the window, i.e. on the clip's history; see
            :class:`~ned.evaluate.models.FaceFinder`).
        detect_upsample: dlib pyramid upsampling (1 finds faces down to ~40 px, 4x slower).
        detect_threshold: dlib ``adjust_threshold`` (0: dlib's default decision).
        landmark_ensemble: average dlib's landmarks over 7 boxes around the detector's
            (:meth:`~ned.evaluate.models.DlibFaceModels.landmarks`): halves dlib's own
            landmark noise, so speech r and the jitter ratio reflect the video, not dlib.
        identity_samples: face embeddings are computed on at most this many analysed
            frames, evenly spread (about 75 ms each per video).
        face_dilate: face region = landmark hull dilated by this fraction of face size.
        fer_margin: FER crop widening per side, as a fraction of the face box.
        contact_frames: number of input/output frame pairs kept for the contact sheet.
        contact_size: side of each contact-sheet face crop, pixels.
        max_audio_shift_s: largest audio shift searched.
        quiet: no progress bar.
    """

    emotion: str | None = None
    max_frames: int | None = None
    stride: int = 1
    detect_max_side: int = 640
    detect_face_px: int | None = None
    redetect_every: int = 1
    detect_upsample: int = 0
    detect_threshold: float = 0.0
    landmark_ensemble: bool = True
    identity_samples: int = 16
    face_dilate: float = 0.15
    fer_margin: float = FER_MARGIN_FRACTION
    contact_frames: int = 6
    contact_size: int = 224
    max_audio_shift_s: float = 1.0
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.emotion is not None:
            fer_label(self.emotion)  # raises InputError naming the known emotions
        checks = [
            (self.max_frames is None or self.max_frames >= 1, "max_frames must be >= 1"),
            (self.stride >= 1, "stride must be >= 1"),
            (self.detect_max_side == 0 or self.detect_max_side >= 64, "detect_max_side must be 0 or >= 64"),
            (self.detect_face_px is None or self.detect_face_px >= 100, "detect_face_px must be >= 100"),
            (self.redetect_every >= 1, "redetect_every must be >= 1"),
            (0 <= self.detect_upsample <= 2, "detect_upsample must be 0, 1 or 2"),
            (self.identity_samples >= 0, "identity_samples must be >= 0"),
            (0.0 <= self.face_dilate <= 1.0, "face_dilate must be in [0, 1]"),
            (0.0 <= self.fer_margin <= 1.0, "fer_margin must be in [0, 1]"),
            (0 <= self.contact_frames <= 24, "contact_frames must be in [0, 24]"),
            (32 <= self.contact_size <= 1024, "contact_size must be in [32, 1024]"),
            (0.0 < self.max_audio_shift_s <= 10.0, "max_audio_shift_s must be in (0, 10]"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"evaluate options: {message}")


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class SpeechMetrics:
    """Mouth-aperture agreement (dlib inner lips / eye distance) input vs output.

    Attributes:
        aperture_r: Pearson r of the two curves (NaN if undefined, e.g. a still mouth).
        aperture_mad: mean |input - output| (fraction of the eye distance).
        aperture_mean_in, aperture_mean_out: mean aperture of each clip.
        frames: frames with a face in both.
    """

    aperture_r: float
    aperture_mad: float
    aperture_mean_in: float
    aperture_mean_out: float
    frames: int


@dataclass(frozen=True)
class IdentityMetrics:
    """dlib face-embedding distance input vs output (same person: < 0.6 in dlib's terms).

    Attributes:
        mean_distance, max_distance: over the sampled frames (NaN if none).
        frames: sampled frames with a face in both.
    """

    mean_distance: float
    max_distance: float
    frames: int


@dataclass(frozen=True)
class EmotionMetrics:
    """FER2013 classifier on both clips.

    Attributes:
        target: the requested emotion (None: none given).
        fer_label: the FER class measuring it (None: none given, or ``contempt``: n/a).
        accuracy_in, accuracy_out: fraction of frames whose argmax is the target class.
        mean_prob_in, mean_prob_out: mean probability of the target class.
        rates_in, rates_out: argmax rate of every FER class.
        top_in, top_out: most frequent argmax class.
    """

    target: str | None
    fer_label: str | None
    accuracy_in: float
    accuracy_out: float
    mean_prob_in: float
    mean_prob_out: float
    rates_in: dict[str, float]
    rates_out: dict[str, float]
    top_in: str | None
    top_out: str | None


@dataclass(frozen=True)
class BackgroundMetrics:
    """PSNR outside the face region (union of both clips' dilated face regions).

    Attributes:
        psnr_db: from the squared error pooled over all analysed frames (inf: identical).
        min_psnr_db: the worst frame's PSNR.
        frames: frames compared.
    """

    psnr_db: float
    min_psnr_db: float
    frames: int


@dataclass(frozen=True)
class TemporalMetrics:
    """Temporal stability of the output relative to the input (ratios > 1: less stable).

    Attributes:
        jitter_in, jitter_out, jitter_ratio: :func:`ned.evaluate.metrics.landmark_jitter`.
        flicker_in, flicker_out, flicker_ratio: mean frame-to-frame grey change inside the
            face region (:func:`ned.evaluate.metrics.face_flicker`, same region for both).
    """

    jitter_in: float
    jitter_out: float
    jitter_ratio: float
    flicker_in: float
    flicker_out: float
    flicker_ratio: float


@dataclass(frozen=True)
class FaceCoverage:
    """How often dlib found a face: analysed frames, and frames with a face per clip."""

    frames_analysed: int
    faces_in: int
    faces_out: int


@dataclass(frozen=True)
class FrameSeries:
    """Per analysed frame curves (length T), NaN where undefined.

    Attributes:
        frame_index: ``(T,) int64``; time_s ``(T,) float64`` (input's timestamps).
        aperture_in, aperture_out: ``(T,)`` mouth aperture.
        probs_in, probs_out: ``(T, 7)`` FER probabilities (:data:`FER_LABELS` order).
        identity_distance: ``(T,)``, finite only on the sampled frames.
        background_psnr_db: ``(T,)``.
        flicker_in, flicker_out: ``(T,)``.
    """

    frame_index: np.ndarray
    time_s: np.ndarray
    aperture_in: np.ndarray
    aperture_out: np.ndarray
    probs_in: np.ndarray
    probs_out: np.ndarray
    identity_distance: np.ndarray
    background_psnr_db: np.ndarray
    flicker_in: np.ndarray
    flicker_out: np.ndarray


@dataclass(frozen=True)
class ContactFrame:
    """One contact-sheet pair: ``(S, S, 3) uint8`` crops of the same region of both clips."""

    index: int
    time_s: float
    input_rgb: np.ndarray
    output_rgb: np.ndarray


@dataclass(frozen=True)
class EvaluationResult:
    """Everything ``ned evaluate`` measured (see the README's "Reading the report").

    ``to_dict`` gives JSON-ready values: ``inf`` becomes the string ``"inf"`` and NaN
    becomes ``null``; arrays become lists; images are left out.
    """

    input_path: str
    edited_path: str
    options: EvaluateOptions
    frames_compared: int
    container: ContainerComparison
    coverage: FaceCoverage
    speech: SpeechMetrics
    identity: IdentityMetrics
    emotion: EmotionMetrics
    background: BackgroundMetrics
    temporal: TemporalMetrics
    warnings: tuple[str, ...]
    elapsed_s: float
    series: FrameSeries
    contact: tuple[ContactFrame, ...] = field(default=(), repr=False)

    def to_dict(self, include_series: bool = True) -> dict[str, Any]:
        """JSON-ready dict (``series`` optional: it grows with clip length)."""
        out: dict[str, Any] = {
            "input": self.input_path,
            "edited": self.edited_path,
            "options": asdict(self.options),
            "frames_compared": self.frames_compared,
            "container": self.container.to_dict(),
            "coverage": asdict(self.coverage),
            "speech": asdict(self.speech),
            "identity": asdict(self.identity),
            "emotion": asdict(self.emotion),
            "background": asdict(self.background),
            "temporal": asdict(self.temporal),
            "warnings": list(self.warnings),
            "elapsed_s": self.elapsed_s,
        }
        if include_series:
            out["series"] = {f.name: getattr(self.series, f.name) for f in fields(self.series)}
            out["series"]["fer_labels"] = list(FER_LABELS)
        return _json_safe(out)


def _json_safe(value: Any) -> Any:
    """Recursively turn numpy values, inf and NaN into JSON-standard values."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(value, Path):
        return str(value)
    return value


# ----------------------------------------------------------------------------- per frame
@dataclass(frozen=True)
class _FaceMeasure:
    """One clip's face in one frame (all NaN when no face)."""

    box: np.ndarray  # (4,) float32
    landmarks: np.ndarray  # (68, 2) float32
    probs: np.ndarray  # (7,) float32

    @property
    def found(self) -> bool:
        return bool(np.isfinite(self.box).all())


_NO_FACE = _FaceMeasure(
    box=np.full(4, np.nan, np.float32),
    landmarks=np.full((68, 2), np.nan, np.float32),
    probs=np.full(len(FER_LABELS), np.nan, np.float32),
)


def _finder(faces: DlibFaceModels, options: EvaluateOptions) -> FaceFinder:
    return FaceFinder(
        faces,
        max_side=options.detect_max_side,
        face_px=options.detect_face_px,
        redetect_every=options.redetect_every,
        upsample=options.detect_upsample,
        threshold=options.detect_threshold,
    )


@dataclass(frozen=True)
class _Tools:
    """The models of one evaluation, with one (stateful) face finder per clip."""

    faces: DlibFaceModels
    classifier: EmotionClassifier
    finders: tuple[FaceFinder, FaceFinder]
    options: EvaluateOptions

    def measure(self, rgb: np.ndarray, clip: int) -> _FaceMeasure:
        """Face box, landmarks and FER probabilities of clip ``clip`` (0 input, 1 edited)."""
        detection = self.finders[clip](rgb)
        if detection is None:
            return _NO_FACE
        return _FaceMeasure(
            box=detection.box,
            landmarks=self.faces.landmarks(rgb, detection.box, ensemble=self.options.landmark_ensemble),
            probs=self.classifier.classify(rgb, detection.box, self.options.fer_margin),
        )


def _region(measures: tuple[_FaceMeasure, ...], shape: tuple[int, int], dilate: float) -> np.ndarray:
    """Union of the dilated face regions of the measures that found a face."""
    region = np.zeros(shape, bool)
    for m in measures:
        if m.found:
            region |= M.face_region_mask(m.landmarks, shape, dilate)
    return region


def _bbox(mask: np.ndarray) -> tuple[slice, slice] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _contact_crop(rgb: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """A square ``(size, size, 3)`` crop of twice the face box, kept inside the frame where
    it fits (the whole frame, letterboxed, when there is no box)."""
    h, w = rgb.shape[:2]
    if np.isfinite(box).all():
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half = max(1, int(round(max(box[2] - box[0], box[3] - box[1]))))
        half = min(half, max(h, w) // 2)  # no wider than the frame
        # Shift the window inside the frame where it fits (less black border).
        x0 = int(np.clip(round(cx) - half, min(0, w - 2 * half), max(0, w - 2 * half)))
        y0 = int(np.clip(round(cy) - half, min(0, h - 2 * half), max(0, h - 2 * half)))
        x1, y1 = x0 + 2 * half, y0 + 2 * half
        crop = rgb[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
        if crop.size == 0:
            return np.zeros((size, size, 3), np.uint8)
        crop = cv2.copyMakeBorder(crop, max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w),
                                  cv2.BORDER_CONSTANT, value=(0, 0, 0))
        return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    scale = size / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    out = np.zeros((size, size, 3), np.uint8)
    y0, x0 = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    out[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    return out


def _evenly(indices: list[int], count: int) -> set[int]:
    """Up to ``count`` evenly spread members of a sorted index list."""
    if count <= 0 or not indices:
        return set()
    if count >= len(indices):
        return set(indices)
    picks = np.linspace(0, len(indices) - 1, count).round().astype(int)
    return {indices[i] for i in picks}


@dataclass
class _Accumulator:
    """Per analysed frame values collected during the pass (lists, then arrays)."""

    frame_index: list[int] = field(default_factory=list)
    time_s: list[float] = field(default_factory=list)
    landmarks_in: list[np.ndarray] = field(default_factory=list)
    landmarks_out: list[np.ndarray] = field(default_factory=list)
    probs_in: list[np.ndarray] = field(default_factory=list)
    probs_out: list[np.ndarray] = field(default_factory=list)
    identity: list[float] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    flicker_in: list[float] = field(default_factory=list)
    flicker_out: list[float] = field(default_factory=list)
    decoded: int = 0
    bg_sse: float = 0.0
    bg_count: int = 0
    contact: list[ContactFrame] = field(default_factory=list)


def _lockstep(
    input_path: Path, edited_path: Path, limit: int, stack: ExitStack
) -> Iterator[tuple[DecodedFrame, DecodedFrame]]:
    a = iter_frames(input_path, max_frames=limit)
    b = iter_frames(edited_path, max_frames=limit)
    stack.callback(a.close)
    stack.callback(b.close)
    return zip(a, b)


def _analyse(
    input_path: Path,
    edited_path: Path,
    limit: int,
    out_size: tuple[int, int] | None,
    options: EvaluateOptions,
) -> _Accumulator:
    """The streaming pass (see the module docstring)."""
    faces = load_face_models()
    tools = _Tools(faces, load_emotion_classifier(), (_finder(faces, options), _finder(faces, options)), options)
    analysed = list(range(0, limit, options.stride))
    identity_frames = _evenly(analysed, options.identity_samples)
    contact_frames = _evenly(analysed, options.contact_frames)
    acc = _Accumulator()
    previous: tuple[np.ndarray, np.ndarray] | None = None
    with ExitStack() as stack:
        pairs = _lockstep(input_path, edited_path, limit, stack)
        for f_in, f_out in tqdm(pairs, total=limit, disable=options.quiet, desc="evaluate", unit="frame"):
            rgb_in = f_in.rgb
            rgb_out = f_out.rgb
            if out_size is not None:
                rgb_out = cv2.resize(rgb_out, out_size, interpolation=cv2.INTER_AREA)
            if f_in.index % options.stride == 0:
                _analyse_frame(f_in, rgb_in, rgb_out, previous, tools,
                               f_in.index in identity_frames, f_in.index in contact_frames, acc)
            previous = (rgb_in, rgb_out)
            acc.decoded += 1
    return acc


def _analyse_frame(
    frame: DecodedFrame,
    rgb_in: np.ndarray,
    rgb_out: np.ndarray,
    previous: tuple[np.ndarray, np.ndarray] | None,
    tools: _Tools,
    with_identity: bool,
    with_contact: bool,
    acc: _Accumulator,
) -> None:
    """Measure one analysed frame pair and append the values to ``acc``."""
    options, faces = tools.options, tools.faces
    m_in, m_out = tools.measure(rgb_in, 0), tools.measure(rgb_out, 1)
    acc.frame_index.append(frame.index)
    acc.time_s.append(frame.time_s)
    acc.landmarks_in.append(m_in.landmarks)
    acc.landmarks_out.append(m_out.landmarks)
    acc.probs_in.append(m_in.probs)
    acc.probs_out.append(m_out.probs)
    distance = math.nan
    if with_identity and m_in.found and m_out.found:
        e_in = faces.embedding(rgb_in, m_in.box, m_in.landmarks)
        e_out = faces.embedding(rgb_out, m_out.box, m_out.landmarks)
        distance = float(np.linalg.norm(e_in.astype(np.float64) - e_out))
    acc.identity.append(distance)
    region = _region((m_in, m_out), rgb_in.shape[:2], options.face_dilate)
    sse, count = M.masked_mse(rgb_in, rgb_out, ~region)
    acc.bg_sse += sse
    acc.bg_count += count
    acc.psnr.append(M.psnr_from_mse(sse / count) if count else math.nan)
    flicker = (math.nan, math.nan)
    box = _bbox(region)
    if previous is not None and box is not None:
        crop = region[box]
        flicker = (M.face_flicker(previous[0][box], rgb_in[box], crop),
                   M.face_flicker(previous[1][box], rgb_out[box], crop))
    acc.flicker_in.append(flicker[0])
    acc.flicker_out.append(flicker[1])
    if with_contact:
        crop_box = m_in.box if m_in.found else m_out.box
        acc.contact.append(ContactFrame(
            index=frame.index,
            time_s=frame.time_s,
            input_rgb=_contact_crop(rgb_in, crop_box, options.contact_size),
            output_rgb=_contact_crop(rgb_out, crop_box, options.contact_size),
        ))


# ----------------------------------------------------------------------------- summaries
def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def _nanmax(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.max()) if x.size else math.nan


def _nanmin(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    x = x[~np.isnan(x)]
    return float(x.min()) if x.size else math.nan


def _emotion_metrics(probs_in: np.ndarray, probs_out: np.ndarray, target: str | None) -> EmotionMetrics:
    label = fer_label(target) if target is not None else None
    rates_in, rates_out = M.label_rates(probs_in), M.label_rates(probs_out)

    def top(rates: np.ndarray) -> str | None:
        return FER_LABELS[int(np.nanargmax(rates))] if np.isfinite(rates).any() else None

    acc_in = acc_out = p_in = p_out = math.nan
    if label is not None:
        k = FER_LABELS.index(label)
        acc_in, acc_out = M.argmax_rate(probs_in, k), M.argmax_rate(probs_out, k)
        p_in, p_out = _nanmean(probs_in[:, k]), _nanmean(probs_out[:, k])
    return EmotionMetrics(
        target=target,
        fer_label=label,
        accuracy_in=acc_in,
        accuracy_out=acc_out,
        mean_prob_in=p_in,
        mean_prob_out=p_out,
        rates_in=dict(zip(FER_LABELS, map(float, rates_in))),
        rates_out=dict(zip(FER_LABELS, map(float, rates_out))),
        top_in=top(rates_in),
        top_out=top(rates_out),
    )


def _summaries(acc: _Accumulator, target: str | None) -> tuple[FrameSeries, dict[str, Any]]:
    """Arrays of the accumulated curves and the metric groups computed from them."""
    lm_in, lm_out = np.array(acc.landmarks_in, np.float32), np.array(acc.landmarks_out, np.float32)
    ap_in, ap_out = M.mouth_aperture(lm_in), M.mouth_aperture(lm_out)
    probs_in, probs_out = np.array(acc.probs_in, np.float32), np.array(acc.probs_out, np.float32)
    series = FrameSeries(
        frame_index=np.array(acc.frame_index, np.int64),
        time_s=np.array(acc.time_s, np.float64),
        aperture_in=ap_in,
        aperture_out=ap_out,
        probs_in=probs_in,
        probs_out=probs_out,
        identity_distance=np.array(acc.identity, np.float64),
        background_psnr_db=np.array(acc.psnr, np.float64),
        flicker_in=np.array(acc.flicker_in, np.float64),
        flicker_out=np.array(acc.flicker_out, np.float64),
    )
    both = np.isfinite(ap_in) & np.isfinite(ap_out)
    jit_in, jit_out = M.landmark_jitter(lm_in), M.landmark_jitter(lm_out)
    paired = np.isfinite(series.flicker_in) & np.isfinite(series.flicker_out)
    fl_in, fl_out = _nanmean(series.flicker_in[paired]), _nanmean(series.flicker_out[paired])
    ids = series.identity_distance
    groups = {
        "speech": SpeechMetrics(
            aperture_r=M.pearson(ap_in, ap_out),
            aperture_mad=M.mean_abs_diff(ap_in, ap_out),
            aperture_mean_in=_nanmean(ap_in),
            aperture_mean_out=_nanmean(ap_out),
            frames=int(both.sum()),
        ),
        "identity": IdentityMetrics(
            mean_distance=_nanmean(ids), max_distance=_nanmax(ids), frames=int(np.isfinite(ids).sum())
        ),
        "emotion": _emotion_metrics(probs_in, probs_out, target),
        "background": BackgroundMetrics(
            psnr_db=M.psnr_from_mse(acc.bg_sse / acc.bg_count) if acc.bg_count else math.nan,
            min_psnr_db=_nanmin(series.background_psnr_db),
            frames=len(acc.psnr),
        ),
        "temporal": TemporalMetrics(
            jitter_in=jit_in,
            jitter_out=jit_out,
            jitter_ratio=M.safe_ratio(jit_out, jit_in),
            flicker_in=fl_in,
            flicker_out=fl_out,
            flicker_ratio=M.safe_ratio(fl_out, fl_in),
        ),
        "coverage": FaceCoverage(
            frames_analysed=len(acc.frame_index),
            faces_in=int(np.isfinite(lm_in[:, 0, 0]).sum()) if len(lm_in) else 0,
            faces_out=int(np.isfinite(lm_out[:, 0, 0]).sum()) if len(lm_out) else 0,
        ),
    }
    return series, groups


# ----------------------------------------------------------------------------- entry point
def _container_warnings(container: ContainerComparison, limit: int) -> list[str]:
    s_in, s_out = container.input, container.output
    notes = []
    if not container.frame_count_equal:
        notes.append(
            f"frame counts differ (input {s_in.frame_count}, edited {s_out.frame_count}); "
            f"compared the first {limit} frames"
        )
    if not container.fps_equal:
        notes.append(f"frame rates differ (input {s_in.fps_exact}, edited {s_out.fps_exact}); frames compared by index")
    if not container.resolution_equal:
        notes.append(
            f"resolutions differ (input {s_in.width}x{s_in.height}, edited {s_out.width}x{s_out.height}); "
            "the edited frames were resized to the input's size for pixel metrics"
        )
    if not container.audio_presence_equal:
        notes.append(f"audio present in input: {s_in.has_audio}, in edited: {s_out.has_audio}")
    if container.audio_in_sync is False:
        notes.append(f"audio out of sync by {container.audio_shift_s or container.audio_start_diff_s:+.3f} s")
    return notes


def evaluate_videos(
    input_path: str | Path, edited_path: str | Path, options: EvaluateOptions = EvaluateOptions()
) -> EvaluationResult:
    """Measure how an edited video differs from its input (speech, identity, emotion,
    background, stability, container).

    Args:
        input_path: the original video.
        edited_path: the edited video (same length and size expected; when they differ
            the common prefix is compared, the edited frames are resized, and the result's
            ``warnings`` say so).
        options: see :class:`EvaluateOptions`.

    Returns:
        EvaluationResult.

    Raises:
        InputError: a file is missing or not a video, or dlib finds no face in any
            analysed frame of the input.
        ModelFileError: the evaluation models are not installed.
    """
    start = time.perf_counter()
    input_path, edited_path = Path(input_path), Path(edited_path)
    info_in, info_out = probe(input_path), probe(edited_path)
    audio_in = read_audio(input_path, info_in.start_time_s) if info_in.has_audio else None
    audio_out = read_audio(edited_path, info_out.start_time_s) if info_out.has_audio else None
    container = compare_containers(info_in, info_out, audio_in, audio_out, options.max_audio_shift_s)
    limit = min(info_in.frame_count, info_out.frame_count)
    if options.max_frames is not None:
        limit = min(limit, options.max_frames)
    warnings = _container_warnings(container, limit)
    out_size = None if container.resolution_equal else (info_in.width, info_in.height)
    acc = _analyse(input_path, edited_path, limit, out_size, options)
    series, groups = _summaries(acc, options.emotion)
    coverage: FaceCoverage = groups["coverage"]
    if coverage.faces_in == 0:
        raise InputError(
            f"{input_path}: dlib found no face in any of the {coverage.frames_analysed} analysed frames; "
            "evaluation needs a visible frontal face (try --detect-upsample 1 for small faces)"
        )
    if coverage.faces_out < coverage.faces_in:
        warnings.append(
            f"dlib found a face in {coverage.faces_out} edited frames vs {coverage.faces_in} input frames "
            f"(of {coverage.frames_analysed} analysed)"
        )
    if options.emotion is not None and groups["emotion"].fer_label is None:
        warnings.append(f"FER2013 has no '{options.emotion}' class: target-emotion metrics are n/a")
    for note in warnings:
        logger.warning("%s", note)
    elapsed = time.perf_counter() - start
    logger.info("evaluated %d frames in %.1f s", coverage.frames_analysed, elapsed)
    return EvaluationResult(
        input_path=str(input_path),
        edited_path=str(edited_path),
        options=options,
        frames_compared=acc.decoded,
        container=container,
        coverage=coverage,
        speech=groups["speech"],
        identity=groups["identity"],
        emotion=groups["emotion"],
        background=groups["background"],
        temporal=groups["temporal"],
        warnings=tuple(warnings),
        elapsed_s=elapsed,
        series=series,
        contact=tuple(acc.contact),
    )
