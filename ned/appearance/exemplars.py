"""Exemplar banks: real expression detail from a user's own labelled emotion footage.

``ned exemplars build <folder> -o <bank dir>`` turns a folder of labelled clips into a
bank: per actor, a few neutral frames; per (actor, emotion), a few representative
frames (the most strongly expressed, spread over the clip). For each exemplar the bank
stores the aligned 256 px crop (PNG), its mesh and expression weights, its *detail
map*: the band-limited log-luminance ratio over the actor's neutral frames in texture
space (:func:`ned.appearance.ratio.detail_map`), and its *brow offset*: how its brows moved
against the mesh from those neutral frames (:func:`ned.appearance.brows.brow_offset`). In label mode a bank drives both halves of
the edit, as a reference clip does in reference mode: the manipulator's targets become the
bank's real acted expressions (:meth:`ExemplarBank.emotion_targets`), and the appearance
step blends the detail of the exemplars whose emotion change is closest to the frame's
(:meth:`ExemplarBank.blend`; the appearance step weights it per texel,
:mod:`ned.appearance.weighting`) and of their brows (:meth:`ExemplarBank.blend_brows`).

A bank built from third-party clips stays on the user's disk: nothing of it is shipped.

Labels come from (first match wins):

- a CSV (``--csv``) with a header and columns ``path,emotion[,actor]`` (paths relative
  to the CSV's folder or absolute);
- MEAD-style file names ``<actor>_<view>_<emotion>_level<k>_<nnn>.mp4``;
- the MEAD tree ``<actor>/video/<view>/<emotion>/level_<k>/<nnn>.mp4``.

Layout of a bank folder::

    bank.npz        arrays (see :func:`load_bank`), written last, atomically
    index.json      human-readable list of the exemplars and their source frames
    crops/<actor>_<emotion>_<k>.png, crops/<actor>_neutral_<k>.png
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from ned.labels import LabelledClip, discover_clips
from ned.manipulate.emotions import EMOTIONS, EmotionTargets, canonical_emotion
from ned.manipulate.envelope import limit_emotion_motion
from ned.manipulate.lids import BLINK
from ned.appearance.brows import brow_offset
from ned.appearance.hook import emotion_delta
from ned.appearance.options import AppearanceOptions
from ned.appearance.ratio import detail_map, luminance_uv
from ned.appearance.texture import uv_raster
from ned.errors import InputError, ModelFileError, OutputError
from ned.morph.rig import Blendshape
from ned.morph.topology import NUM_VERTICES

__all__ = [
    "EMOTIONS",
    "LabelledClip",
    "BankOptions",
    "ExemplarBank",
    "BankSummary",
    "discover_clips",
    "select_frames",
    "build_bank",
    "load_bank",
    "bank_from_frames",
    "concat_banks",
    "BANK_VERSION",
]

logger = logging.getLogger(__name__)

#: 2: with each exemplar's brow offset (version-1 banks still load, without it)
BANK_VERSION = 2


def normalise_emotion(name: str) -> str:
    """A bank emotion name for ``name`` (case-insensitive, aliases accepted).

    Raises:
        InputError: an unknown name.
    """
    return canonical_emotion(name)


@dataclass(frozen=True)
class BankOptions:
    """Options of :func:`build_bank`.

    Attributes:
        per_emotion: exemplars kept per (actor, emotion), 1..32.
        neutral_frames: neutral frames kept per actor, 1..64.
        min_gap_s: least time between two exemplars of one clip, seconds, >= 0.
        max_frames: frames read per clip at most (the start of the clip), >= 1.
        appearance: texture size and band-pass of the detail maps.
    """

    per_emotion: int = 4
    neutral_frames: int = 8
    min_gap_s: float = 0.4
    max_frames: int = 600
    appearance: AppearanceOptions = field(default_factory=AppearanceOptions)

    def __post_init__(self) -> None:
        for name, low, high in (("per_emotion", 1, 32), ("neutral_frames", 1, 64), ("max_frames", 1, 10 ** 7)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"BankOptions.{name} must be an integer in [{low}, {high}], got {value!r}")
        if not isinstance(self.min_gap_s, (int, float)) or isinstance(self.min_gap_s, bool) or self.min_gap_s < 0:
            raise ValueError(f"BankOptions.min_gap_s must be >= 0, got {self.min_gap_s!r}")
        if not isinstance(self.appearance, AppearanceOptions):
            raise ValueError(f"BankOptions.appearance must be an AppearanceOptions, got "
                             f"{type(self.appearance).__name__}")


# ---------------------------------------------------------------------------------------
# Selecting frames
# ---------------------------------------------------------------------------------------
def select_frames(score: np.ndarray, count: int, min_gap: int, largest: bool = True) -> np.ndarray:
    """Indices of up to ``count`` frames with the best scores, at least ``min_gap`` apart.

    Args:
        score: ``(T,)`` per-frame score; NaN frames are never chosen.
        count: how many, >= 1.
        min_gap: least index distance between two chosen frames, >= 0.
        largest: pick the largest scores (else the smallest).

    Returns:
        ``(n,) int64`` sorted indices, ``n <= count``.
    """
    s = np.asarray(score, np.float64)
    order = np.argsort(-s if largest else s, kind="stable")
    chosen: list[int] = []
    for i in order:
        if np.isnan(s[i]):
            continue
        if all(abs(int(i) - j) > min_gap for j in chosen):
            chosen.append(int(i))
            if len(chosen) == count:
                break
    return np.array(sorted(chosen), np.int64)


# ---------------------------------------------------------------------------------------
# The bank
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ExemplarBank:
    """Loaded exemplars (see :func:`load_bank`).

    Attributes:
        emotions: ``(M,)`` str, each exemplar's emotion.
        actors: ``(M,)`` str.
        expressions: ``(M, K) float32`` fitted weights.
        deltas: ``(M, K) float32`` emotion change over the actor's neutral frames
            (:func:`ned.appearance.hook.emotion_delta`).
        details: ``(M, S, S) float32`` detail maps (log gain, texture space).
        crops: ``(M,)`` str, crop file names (relative to ``root``).
        root: the bank folder.
        brow_offsets: ``(M, 468, 2) float32`` how each exemplar's brows moved against its
            mesh from the actor's neutral frames (:mod:`ned.appearance.brows`), canonical
            IOD; None for banks of version 1 (built before it was measured).
    """

    emotions: np.ndarray
    actors: np.ndarray
    expressions: np.ndarray
    deltas: np.ndarray
    details: np.ndarray
    crops: np.ndarray
    root: Path
    brow_offsets: np.ndarray | None = None

    def __len__(self) -> int:
        return int(len(self.emotions))

    @property
    def size(self) -> int:
        """``S``, texels per side of the detail maps."""
        return int(self.details.shape[-1]) if len(self) else 0

    def select(self, delta: np.ndarray, emotion: str | None = None, count: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """The exemplars closest to an emotion change, and their blend weights.

        Candidates are the exemplars of ``emotion`` (all when None or when the bank has
        none of it); the ``count`` nearest by Euclidean distance of emotion change get
        weights ``exp(-d^2 / 2 tau^2)`` (``tau`` = the median of their distances, so the
        blend stays soft), normalised to sum 1.

        Args:
            delta: ``(K,)`` the frame's emotion change (target - source).
            emotion: target emotion name, or None.
            count: exemplars to blend, >= 1.

        Returns:
            ``indices (n,) int64`` and ``weights (n,) float32`` (empty for an empty bank).

        Raises:
            ValueError: on a bad delta shape.
        """
        d = np.asarray(delta, np.float32)
        if d.shape != (len(Blendshape),):
            raise ValueError(f"delta: expected shape ({len(Blendshape)},), got {d.shape}")
        if not len(self):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        cand = np.arange(len(self))
        if emotion is not None:
            same = cand[self.emotions == normalise_emotion(emotion)]
            if same.size:
                cand = same
        dist = np.linalg.norm(self.deltas[cand] - d, axis=1)
        order = np.argsort(dist, kind="stable")[:max(1, int(count))]
        idx, dd = cand[order], dist[order]
        tau = max(float(np.median(dd)), 1e-3)
        w = np.exp(-0.5 * (dd / tau) ** 2)
        return idx.astype(np.int64), (w / w.sum()).astype(np.float32)

    def emotion_targets(self, fallback: EmotionTargets, limit_iod: float | None = None) -> EmotionTargets:
        """Label-mode targets from the bank's real acted expressions.

        Per emotion in the bank: each actor's median emotion change over its exemplars of
        that emotion (the most strongly expressed frames of its clips, measured from the
        actor's neutral frames), averaged over the actors, its lower/mid-face part softly
        limited to ``limit_iod`` (:func:`ned.manipulate.envelope.limit_emotion_motion`; None: not
        limited), without lip-corner pull unless the emotion smiles
        (:func:`ned.manipulate.emotions.without_stray_smile`). Emotions the bank lacks keep
        ``fallback``'s offsets (the calibrated targets).
        The held lid narrowing of an emotion is, likewise, the actors' mean of their
        exemplars' median blink weight (the exemplars are frames of held expressions;
        the median ignores the odd blink among them).

        Returns:
            :class:`EmotionTargets` with ``(K,) float32`` offsets (zero off the emotion part,
            as every delta is) and per-emotion lid closure.
        """
        offsets, closure = dict(fallback.offsets), dict(fallback.lid_closure)
        for emotion in sorted(set(self.emotions.tolist())):
            rows = self.emotions == emotion
            actors = [rows & (self.actors == a) for a in sorted(set(self.actors[rows].tolist()))]
            acted = np.mean([np.median(self.deltas[r], axis=0) for r in actors], axis=0)
            offsets[emotion] = limit_emotion_motion(acted, emotion, limit_iod)
            closure[emotion] = float(np.mean([np.median(self.expressions[r][:, BLINK]) for r in actors]))
        return EmotionTargets(offsets, fallback.baseline_percentile, f"exemplar bank {self.root}",
                              {"fallback": fallback.source}, closure)

    def blend(self, delta: np.ndarray, emotion: str | None = None,
              count: int = 3) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Blended detail map of the closest exemplars and their blended emotion change.

        Returns:
            ``(S, S) float32`` detail and ``(K,) float32`` change, both None for an empty bank.
        """
        return self._blend(self.details, delta, emotion, count)

    def blend_brows(self, delta: np.ndarray, emotion: str | None = None,
                    count: int = 3) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Blended brow offset ``(468, 2) float32`` of the exemplars :meth:`blend` picks, and
        their blended emotion change ``(K,)``; both None for an empty bank or one without
        brow offsets."""
        return self._blend(self.brow_offsets, delta, emotion, count)

    def _blend(self, values: np.ndarray | None, delta: np.ndarray, emotion: str | None,
               count: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``values`` ``(M, ...)`` of the exemplars :meth:`select` picks, blended by its
        weights, and their blended emotion change; both None when it picks none or
        ``values`` is None."""
        idx, w = self.select(delta, emotion, count)
        if idx.size == 0 or values is None:
            return None, None
        return np.tensordot(w, values[idx], axes=1).astype(np.float32), (w @ self.deltas[idx]).astype(np.float32)


@dataclass(frozen=True)
class BankSummary:
    """What :func:`build_bank` did.

    Attributes:
        root: the bank folder.
        exemplars: number of emotion exemplars written.
        neutral: number of neutral frames written.
        per_emotion: exemplar count per emotion.
        skipped: ``(path, reason)`` of clips left out.
    """

    root: Path
    exemplars: int
    neutral: int
    per_emotion: dict[str, int]
    skipped: tuple[tuple[str, str], ...]


def _track_clip(path: Path, max_frames: int) -> tuple[list[np.ndarray], np.ndarray, float]:
    """Frames ``(H, W, 3) uint8`` (up to ``max_frames``), landmarks ``(T, 478, 3)`` and fps."""
    from ned import media
    from ned.face import FaceTracker

    info = media.probe(path)
    frames: list[np.ndarray] = []
    marks: list[np.ndarray] = []
    tracker = FaceTracker()
    for decoded, obs in tracker.track(media.iter_frames(path, max_frames=max_frames), fps=info.fps, source=path):
        frames.append(decoded.rgb)
        marks.append(obs.landmarks)
    return frames, np.stack(marks).astype(np.float32), float(info.fps)


def _crop(frame: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Aligned 256 px crop and the mesh in its pixels."""
    from ned.face.align import crop_from_frame, transform_points, warp_to_crop

    m = crop_from_frame(landmarks)
    return warp_to_crop(frame, m, border="replicate"), transform_points(landmarks, m)


def build_bank(folder: str | os.PathLike, out_dir: str | os.PathLike, *, csv_path: str | os.PathLike | None = None,
               options: BankOptions = BankOptions(), clips: Sequence[LabelledClip] | None = None) -> BankSummary:
    """Build an exemplar bank from labelled clips.

    Per actor: the actor's neutral clips give the identity (neutral face) for fitting,
    ``neutral_frames`` neutral frames (the least expressive) and their luminance in
    texture space; each emotion clip gives its ``per_emotion`` most expressive frames
    (largest emotion change over the neutral mean, at least ``min_gap_s`` apart), each
    stored with its detail map relative to those neutral frames. Actors without a
    neutral clip are skipped (logged), as are clips where no face is found.

    Args:
        folder: the clips (see :func:`discover_clips`).
        out_dir: the bank folder (created; an existing bank in it is replaced).
        csv_path: optional labels CSV.
        options: :class:`BankOptions`.
        clips: the labelled clips to use instead of discovering them.

    Returns:
        :class:`BankSummary`.

    Raises:
        InputError: no labelled clips, or no actor with both neutral and emotion clips.
        OutputError: the bank folder cannot be written.
    """
    from ned.morph.fit import FaceModel, FitOptions
    from ned.layout import atomic_write_image

    if not isinstance(options, BankOptions):
        raise ValueError(f"options must be a BankOptions, got {type(options).__name__}")
    labelled = list(clips) if clips is not None else discover_clips(folder, csv_path)
    out = Path(out_dir)
    try:
        (out / "crops").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{out}: cannot create the bank folder ({err.strerror or err})") from err
    raster = uv_raster(options.appearance.texture_size)
    by_actor: dict[str, list[LabelledClip]] = {}
    for c in labelled:
        by_actor.setdefault(c.actor, []).append(c)

    skipped: list[tuple[str, str]] = []
    records: list[dict] = []
    details: list[np.ndarray] = []
    brows: list[np.ndarray] = []
    expressions: list[np.ndarray] = []
    deltas: list[np.ndarray] = []
    neutral_count = 0
    for actor, actor_clips in sorted(by_actor.items()):
        neutral_clips = [c for c in actor_clips if c.emotion == "neutral"]
        if not neutral_clips:
            for c in actor_clips:
                skipped.append((str(c.path), f"no neutral clip of actor {actor}"))
            logger.warning("actor %s: no neutral clip, skipped", actor)
            continue
        tracked: dict[Path, tuple[list[np.ndarray], np.ndarray, float]] = {}
        for c in actor_clips:
            try:
                tracked[c.path] = _track_clip(c.path, options.max_frames)
            except InputError as err:
                skipped.append((str(c.path), str(err)))
                logger.warning("%s: skipped (%s)", c.path, err)
        neutral_tracks = [tracked[c.path] for c in neutral_clips if c.path in tracked]
        if not neutral_tracks:
            continue
        neutral_marks = np.concatenate([m for _, m, _ in neutral_tracks])
        ok = np.isfinite(neutral_marks).all(axis=(1, 2))
        model = FaceModel.from_sequence(neutral_marks[ok], options=FitOptions())
        # neutral frames: the least expressive of all neutral clips
        n_frames = [f for fr, m, _ in neutral_tracks for f, ok_ in zip(fr, np.isfinite(m).all(axis=(1, 2))) if ok_]
        n_marks = neutral_marks[ok]
        n_expr = model.fit_batch(n_marks).expression
        mean_neutral = n_expr.mean(0)
        activity = np.linalg.norm(emotion_delta(mean_neutral, n_expr), axis=1)
        gap = int(round(options.min_gap_s * neutral_tracks[0][2]))
        pick = select_frames(activity, options.neutral_frames, gap, largest=False)
        neutral_uv = []
        for k, i in enumerate(pick):
            crop, pts = _crop(n_frames[i], n_marks[i])
            neutral_uv.append(luminance_uv(crop, pts, raster))
            atomic_write_image(out / "crops" / f"{actor}_neutral_{k:02d}.png", crop)
            neutral_count += 1
        neutral_expr = n_expr[pick].mean(0)
        neutral_base = np.median(np.stack(neutral_uv), axis=0)  # once, not per exemplar (detail_map takes it too)
        for c in actor_clips:
            if c.emotion == "neutral" or c.path not in tracked:
                continue
            frames, marks, fps = tracked[c.path]
            ok = np.isfinite(marks).all(axis=(1, 2))
            if not ok.any():
                skipped.append((str(c.path), "no face"))
                continue
            expr = np.full((len(marks), len(Blendshape)), np.nan, np.float32)
            expr[ok] = model.fit_batch(marks[ok]).expression
            delta = np.stack([emotion_delta(neutral_expr, e) if np.isfinite(e).all() else np.full_like(e, np.nan)
                              for e in expr])
            pick = select_frames(np.linalg.norm(delta, axis=1), options.per_emotion,
                                 int(round(options.min_gap_s * fps)))
            for i in pick:
                crop, pts = _crop(frames[i], marks[i])
                k = sum(1 for r in records if r["actor"] == actor and r["emotion"] == c.emotion)
                name = f"crops/{actor}_{c.emotion}_{k:02d}.png"
                atomic_write_image(out / name, crop)
                emotion_uv = luminance_uv(crop, pts, raster)
                details.append(detail_map(neutral_base, emotion_uv, raster, options.appearance))
                brows.append(brow_offset(neutral_base, emotion_uv, raster))
                expressions.append(expr[i])
                deltas.append(delta[i])
                records.append({"actor": actor, "emotion": c.emotion, "crop": name, "source": str(c.path),
                                "frame": int(i), "mesh": pts[:, :2].round(2).tolist()})
    if not records:
        raise InputError(f"{folder}: no actor has both a neutral clip and emotion clips with a face; "
                         "a bank needs both")
    _write_bank(out, records, np.stack(details), np.stack(brows), np.stack(expressions), np.stack(deltas), options)
    per_emotion: dict[str, int] = {}
    for r in records:
        per_emotion[r["emotion"]] = per_emotion.get(r["emotion"], 0) + 1
    logger.info("bank %s: %d exemplars (%s), %d neutral frames", out, len(records),
                ", ".join(f"{k} {v}" for k, v in sorted(per_emotion.items())), neutral_count)
    return BankSummary(out, len(records), neutral_count, per_emotion, tuple(skipped))


def _write_bank(out: Path, records: list[dict], details: np.ndarray, brows: np.ndarray, expressions: np.ndarray,
                deltas: np.ndarray, options: BankOptions) -> None:
    index = {"version": BANK_VERSION, "texture_size": options.appearance.texture_size,
             "blendshapes": [b.name for b in Blendshape], "exemplars": records}
    tmp_json = out / "index.json.tmp"
    tmp_npz = out / "bank.tmp.npz"
    try:
        tmp_json.write_text(json.dumps(index, indent=1))
        np.savez_compressed(tmp_npz, version=np.int32(BANK_VERSION),
                            emotions=np.array([r["emotion"] for r in records]),
                            actors=np.array([r["actor"] for r in records]),
                            crops=np.array([r["crop"] for r in records]),
                            expressions=expressions.astype(np.float32), deltas=deltas.astype(np.float32),
                            details=details.astype(np.float16), brow_offsets=brows.astype(np.float32),
                            blendshapes=np.array([b.name for b in Blendshape]))
        os.replace(tmp_json, out / "index.json")
        os.replace(tmp_npz, out / "bank.npz")
    except OSError as err:
        for p in (tmp_json, tmp_npz):
            p.unlink(missing_ok=True)
        raise OutputError(f"{out}: cannot write the bank ({err.strerror or err})") from err


def load_bank(folder: str | os.PathLike) -> ExemplarBank:
    """Load a bank written by :func:`build_bank`.

    Args:
        folder: the bank folder (holds ``bank.npz``).

    Returns:
        :class:`ExemplarBank`.

    Raises:
        ModelFileError: missing or malformed bank, another version, or built for other
            blendshape names.
    """
    root = Path(folder)
    path = root / "bank.npz"
    if not path.is_file():
        raise ModelFileError(f"{root}: no exemplar bank here (bank.npz missing); build one with "
                             "`ned exemplars build <clips folder> -o {root}`")
    try:
        with np.load(path, allow_pickle=False) as z:
            version = int(z["version"])
            names = [str(n) for n in z["blendshapes"]]
            bank = ExemplarBank(emotions=z["emotions"].astype(str), actors=z["actors"].astype(str),
                                expressions=z["expressions"].astype(np.float32),
                                deltas=z["deltas"].astype(np.float32), details=z["details"].astype(np.float32),
                                crops=z["crops"].astype(str), root=root,
                                brow_offsets=z["brow_offsets"].astype(np.float32) if version >= 2 else None)
    except (KeyError, ValueError, OSError) as err:
        raise ModelFileError(f"{path}: not an exemplar bank ({err}); rebuild it with `ned exemplars build`") from err
    if version not in (1, BANK_VERSION):
        raise ModelFileError(f"{path}: bank version {version}, expected {BANK_VERSION}; rebuild it with "
                             "`ned exemplars build`")
    if version == 1:
        logger.warning("%s: a version-1 bank holds no brow motion; rebuild it with `ned exemplars build` "
                       "to transfer the exemplars' brow shapes too", path)
    if names != [b.name for b in Blendshape]:
        raise ModelFileError(f"{path}: built for other blendshapes; rebuild it with `ned exemplars build`")
    return bank


def bank_from_frames(neutral: Sequence[tuple[np.ndarray, np.ndarray]],
                     frames: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                     emotion: str | None = None, neutral_expression: np.ndarray | None = None,
                     options: AppearanceOptions = AppearanceOptions()) -> ExemplarBank:
    """An in-memory bank from any frames, e.g. the actor's own footage.

    Frames of the same clip (or the actor's other footage) whose expression is close to a
    frame's target lend their real detail (folds, creases of this very face) through the
    same selection as a built bank.

    Args:
        neutral: ``(image, points)`` of the actor's neutral frames (images ``(H, W, 3)
            uint8``, points ``(>= 468, 2|3)`` in their pixels).
        frames: ``(image, points, expression (K,))`` candidate frames.
        emotion: their emotion label, if known (None: chosen by expression only).
        neutral_expression: ``(K,)`` the neutral frames' weights; default zeros.
        options: texture size and band-pass of the detail maps.

    Returns:
        :class:`ExemplarBank` (its ``root`` is ``Path()``: no files).

    Raises:
        ValueError: no neutral frame, or bad shapes.
    """
    if not neutral:
        raise ValueError("give at least one neutral frame")
    raster = uv_raster(options.texture_size)
    neutral_uv = [luminance_uv(img, pts, raster) for img, pts in neutral]
    neutral_base = np.median(np.stack(neutral_uv), axis=0)
    base = np.zeros(len(Blendshape), np.float32) if neutral_expression is None else \
        np.asarray(neutral_expression, np.float32)
    details, brows, exprs, deltas = [], [], [], []
    for img, pts, expr in frames:
        emotion_uv = luminance_uv(img, pts, raster)
        details.append(detail_map(neutral_base, emotion_uv, raster, options))
        brows.append(brow_offset(neutral_base, emotion_uv, raster))
        exprs.append(np.asarray(expr, np.float32))
        deltas.append(emotion_delta(base, expr))
    m = len(details)
    label = normalise_emotion(emotion) if emotion is not None else "unknown"
    return ExemplarBank(emotions=np.array([label] * m), actors=np.array(["self"] * m),
                        expressions=np.stack(exprs) if m else np.zeros((0, len(Blendshape)), np.float32),
                        deltas=np.stack(deltas) if m else np.zeros((0, len(Blendshape)), np.float32),
                        details=np.stack(details) if m else np.zeros((0, raster.size, raster.size), np.float32),
                        crops=np.array([""] * m), root=Path(),
                        brow_offsets=np.stack(brows) if m else np.zeros((0, NUM_VERTICES, 2), np.float32))


def concat_banks(banks: Sequence[ExemplarBank]) -> ExemplarBank:
    """One bank holding the exemplars of several (same texture size; ``root`` of the first).

    Raises:
        ValueError: no bank, or banks of different texture sizes.
    """
    banks = [b for b in banks if b is not None]
    if not banks:
        raise ValueError("no bank to concatenate")
    if len({b.size for b in banks if len(b)}) > 1:
        raise ValueError(f"banks of different texture sizes: {sorted({b.size for b in banks if len(b)})}")
    if len(banks) == 1:
        return banks[0]
    return ExemplarBank(emotions=np.concatenate([b.emotions for b in banks]),
                        actors=np.concatenate([b.actors for b in banks]),
                        expressions=np.concatenate([b.expressions for b in banks]),
                        deltas=np.concatenate([b.deltas for b in banks]),
                        details=np.concatenate([b.details for b in banks if len(b)]),
                        crops=np.concatenate([b.crops for b in banks]), root=banks[0].root,
                        brow_offsets=np.concatenate([_brows_or_zeros(b) for b in banks]))


def _brows_or_zeros(bank: ExemplarBank) -> np.ndarray:
    """A bank's brow offsets, zeros for a bank without them: ``(M, 468, 2) float32``."""
    return bank.brow_offsets if bank.brow_offsets is not None else np.zeros((len(bank), NUM_VERTICES, 2), np.float32)


def iter_exemplar_images(bank: ExemplarBank) -> Iterable[tuple[str, np.ndarray]]:
    """``(emotion, crop (256, 256, 3) uint8)`` of every exemplar (for contact sheets)."""
    for emotion, name in zip(bank.emotions, bank.crops):
        img = cv2.imread(str(bank.root / name), cv2.IMREAD_COLOR)
        if img is not None:
            yield str(emotion), cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
