#!/usr/bin/env python
"""Calibrate the emotion targets on real acted footage -> ``ned/data/emotion_targets.json``.

    python scripts/calibrate_emotions.py [--media ../shared/media/mead_crops] [--cache DIR]
                                         [-o ned/data/emotion_targets.json] [--percentile 20]

Inputs: MEAD-style clips ``<actor>_front_<emotion>_level<n>_001.mp4`` (each actor needs a
``neutral`` clip; here M030 and W009, neutral level 1 and each emotion level 3, 256x256
tight face crops at 25 fps). They are read at calibration time only; only the resulting
numbers are committed.

Method:

1. Track every clip (:func:`ned.face.track_video`: detection with padding for tight
   crops, 478 landmarks, smoothing) and keep the 468 mesh points.
2. Per actor, estimate the identity from the *neutral* clip
   (:func:`ned.morph.fit.estimate_identity`) and fit that one :class:`FaceModel` to all
   the actor's clips, so every clip's weights are measured against the same neutral face.
3. The actor's neutral baseline is the per-weight ``percentile`` of the neutral clip's
   weights (the same estimator the manipulators apply to any source clip).
4. An emotion's signature for that actor is ``mean over the emotion clip - baseline``,
   on the emotion shapes only (speech and blinks are never transferred).
5. The target offset of each emotion is the mean of the actors' signatures; each
   actor's own signature is stored too (for leave-one-actor-out checks).

The check (also ``tests/test_calibration.py``), for each actor A and emotion E: convert
A's neutral clip to E with :func:`ned.manipulate.label.manipulate_labels`; the distance
between the clip-mean emotion parts of (converted) and (A's real E clip) must be at most
half the distance between (unconverted neutral) and (real E), with targets calibrated on
both actors and on the other actor only; and the mouth aperture of the edited mesh
(:func:`ned.morph.fit.apply_expression_delta`) must correlate with the source's
(Pearson r >= 0.95). The results are written into the JSON under ``"check"``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ned.manipulate.emotions import EMOTIONS, EmotionSpec, EmotionTargets  # noqa: E402
from ned.manipulate.label import ManipulateOptions, manipulate_labels, neutral_baseline  # noqa: E402
from ned.morph.fit import FaceFits, FaceModel, apply_expression_delta  # noqa: E402
from ned.morph.rig import EMOTION_SHAPES, Blendshape, shape_mask  # noqa: E402
from ned.morph.topology import INNER_LIP_PAIRS  # noqa: E402

logger = logging.getLogger("calibrate_emotions")

DEFAULT_MEDIA = ROOT.parent / "shared" / "media" / "mead_crops"
CLIP_RE = re.compile(r"^(?P<actor>[A-Z]\d{3})_front_(?P<emotion>[a-z]+)_level(?P<level>\d)_\d{3}\.mp4$")
DEFAULT_PERCENTILE = 20.0
FPS = 25.0
EMO = shape_mask(EMOTION_SHAPES)


@dataclass
class ActorData:
    """One actor's tracked clips and fits."""

    model: FaceModel
    landmarks: dict[str, np.ndarray]  # emotion -> (T, 478, 3)
    fits: dict[str, FaceFits]  # emotion -> fits


def find_clips(media: Path) -> dict[str, dict[str, Path]]:
    """``{actor: {emotion: path}}`` of MEAD-style clip names in ``media`` (actors with a neutral clip)."""
    out: dict[str, dict[str, Path]] = {}
    for p in sorted(Path(media).glob("*.mp4")):
        m = CLIP_RE.match(p.name)
        if m and m["emotion"] in EMOTIONS:
            out.setdefault(m["actor"], {})[m["emotion"]] = p
    return {a: c for a, c in out.items() if "neutral" in c}


def track_landmarks(path: Path, cache: Path | None = None) -> np.ndarray:
    """(T, 478, 3) float32 tracked landmarks of a clip (cached by content hash when asked)."""
    key = None
    if cache is not None:
        digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]
        key = Path(cache) / f"{Path(path).stem}-{digest}.npy"
        if key.is_file():
            return np.load(key)
    from ned.face import track_video

    obs = track_video(path)
    lm = np.stack([o.landmarks for o in obs]).astype(np.float32)
    if key is not None:
        key.parent.mkdir(parents=True, exist_ok=True)
        np.save(key, lm)
    return lm


def fit_actor(landmarks: dict[str, np.ndarray]) -> ActorData:
    """Fit one actor: identity from the neutral clip, the same model for every clip.

    Frames without a face (NaN rows) are dropped before fitting.
    """
    valid = {e: lm[np.isfinite(lm[:, :468]).all(axis=(1, 2))] for e, lm in landmarks.items()}
    model = FaceModel.from_sequence(valid["neutral"])
    fits = {e: model.fit_batch(lm) for e, lm in valid.items()}
    return ActorData(model, valid, fits)


def signatures(fits: dict[str, FaceFits], percentile: float) -> dict[str, np.ndarray]:
    """Per emotion, ``mean(E) - baseline(neutral)`` on the emotion shapes: (K,) each."""
    base = neutral_baseline(fits["neutral"].expression, percentile)
    out = {}
    for emotion, f in fits.items():
        if emotion == "neutral":
            continue
        sig = f.expression.astype(np.float64).mean(0) - base
        sig[~EMO] = 0.0
        out[emotion] = sig
    return out


def targets_from(sigs: list[dict[str, np.ndarray]], percentile: float, source: str) -> EmotionTargets:
    """Average several actors' signatures into :class:`EmotionTargets`."""
    emotions = sorted(set().union(*[s.keys() for s in sigs]))
    offsets = {e: np.mean([s[e] for s in sigs if e in s], axis=0).astype(np.float32) for e in emotions}
    return EmotionTargets(offsets, percentile, source)


def mouth_aperture(points: np.ndarray) -> np.ndarray:
    """Mean upper-to-lower inner-lip distance per frame of (T, 468+, 3) points: (T,)."""
    up = [u for u, _ in INNER_LIP_PAIRS]
    lo = [l for _, l in INNER_LIP_PAIRS]
    return np.linalg.norm(points[:, lo, :2] - points[:, up, :2], axis=-1).mean(-1)


def check_actor(data: ActorData, targets: EmotionTargets, emotion: str,
                options: ManipulateOptions = ManipulateOptions()) -> dict[str, float]:
    """The issue's two measurements for one actor and emotion (see the module doc)."""
    src = data.fits["neutral"]
    conv = manipulate_labels(src.expression, [EmotionSpec(emotion)], FPS, options, targets)
    real = data.fits[emotion].expression
    m_src = src.expression[:, EMO].mean(0)
    m_conv = conv[:, EMO].mean(0)
    m_real = real[:, EMO].mean(0)
    d_conv = float(np.linalg.norm(m_conv - m_real))
    d_unconv = float(np.linalg.norm(m_src - m_real))
    lm = data.landmarks["neutral"]
    edited = apply_expression_delta(lm, src, conv)
    a_src, a_new = mouth_aperture(lm), mouth_aperture(edited)
    r = float(np.corrcoef(a_src, a_new)[0, 1]) if a_src.std() > 0 else 1.0
    return {"d_converted": d_conv, "d_unconverted": d_unconv, "ratio": d_conv / max(d_unconv, 1e-12),
            "mouth_r": r}


def run_checks(actors: dict[str, ActorData], per_actor: dict[str, dict[str, np.ndarray]],
               percentile: float) -> dict[str, dict[str, dict[str, float]]]:
    """Check every actor and emotion with targets from all actors and from the others only."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    all_targets = targets_from(list(per_actor.values()), percentile, "all actors")
    for actor, data in actors.items():
        others = [s for a, s in per_actor.items() if a != actor]
        loo = targets_from(others, percentile, "other actors") if others else None
        for emotion in per_actor[actor]:
            res = {"all": check_actor(data, all_targets, emotion)}
            if loo is not None and emotion in loo.offsets:
                res["other"] = check_actor(data, loo, emotion)
            out.setdefault(actor, {})[emotion] = res
    return out


def calibrate(media: Path, cache: Path | None, percentile: float
              ) -> tuple[dict[str, ActorData], dict[str, dict[str, np.ndarray]]]:
    """Track and fit every actor; return their data and signatures."""
    clips = find_clips(media)
    if not clips:
        raise SystemExit(f"no MEAD-style clips with a neutral clip in {media}")
    actors, per_actor = {}, {}
    for actor, paths in clips.items():
        logger.info("%s: %s", actor, ", ".join(sorted(paths)))
        data = fit_actor({e: track_landmarks(p, cache) for e, p in paths.items()})
        actors[actor] = data
        per_actor[actor] = signatures(data.fits, percentile)
        logger.info("  residual (IOD): %s", {e: round(float(f.residual.mean()), 4) for e, f in data.fits.items()})
    return actors, per_actor


def _named(w: np.ndarray, ndigits: int = 4) -> dict[str, float]:
    return {b.name: round(float(w[b]), ndigits) for b in Blendshape if EMO[b] and abs(w[b]) >= 5e-5}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--media", type=Path, default=DEFAULT_MEDIA, help="folder of MEAD-style clips")
    ap.add_argument("--cache", type=Path, default=None, help="cache tracked landmarks here (outside the repo)")
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "ned" / "data" / "emotion_targets.json")
    ap.add_argument("--percentile", type=float, default=DEFAULT_PERCENTILE,
                    help="per-weight percentile of a clip taken as its neutral baseline")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    actors, per_actor = calibrate(args.media, args.cache, args.percentile)
    targets = targets_from(list(per_actor.values()), args.percentile, str(args.output))
    checks = run_checks(actors, per_actor, args.percentile)
    for actor, res in checks.items():
        for emotion, r in res.items():
            logger.info("%s %-9s ratio all %.2f other %.2f | mouth r %.4f", actor, emotion, r["all"]["ratio"],
                        r.get("other", {}).get("ratio", float("nan")), r["all"]["mouth_r"])
    data = {
        "version": 1,
        "method": "mean emotion-clip weights minus the actor's neutral-clip per-weight percentile, "
                  "emotion shapes only, averaged over actors (scripts/calibrate_emotions.py)",
        "baseline_percentile": args.percentile,
        "blendshapes": [b.name for b in Blendshape],
        "actors": sorted(per_actor),
        "clips": {a: sorted(s) for a, s in per_actor.items()},
        "targets": {e: _named(w) for e, w in targets.offsets.items()},
        "per_actor": {a: {e: _named(w) for e, w in s.items()} for a, s in per_actor.items()},
        "check": {a: {e: {k: {m: round(v, 4) for m, v in d.items()} for k, d in r.items()} for e, r in res.items()}
                  for a, res in checks.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    tmp.replace(args.output)
    logger.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
