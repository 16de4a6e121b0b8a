#!/usr/bin/env python
"""Real-data check of the learned manipulator: train on one MEAD actor, test on the other.

    python scripts/check_learned_manipulator.py [--media ../shared/media/mead_crops]
        [--work /tmp/ned_learned_check] [--steps 800] [--arch ned_small] [--sheet SHEET.png]

For each fold (train actor A -> test actor B, both ways):

1. every clip's expression vectors come from the default ``face3d`` backend (tracking +
   our face model, identity per clip), cached under ``--work``;
2. ``ned train-manipulator``'s library call trains on A's clips for ``--steps`` steps on
   the CPU, validating on B;
3. B's neutral clip is converted to each emotion E with the learned manipulator
   (label-driven, seed 0; and reference-driven with A's real E clip as reference) and
   with the training-free label manipulator using targets calibrated on A only (the same
   data the learned one saw). Measured on the parameters, as the calibration check:
   ``ratio`` = |mean emotion part of converted - of B's real E clip| / |... of the
   unconverted neutral clip - of the real E clip| (< 1: moved towards E), ``cos`` = the
   cosine between the change made and the change needed, and ``mouth_r`` = Pearson r of
   the inner-lip aperture of the edited mesh with the source's (the learned output
   applied in full, speech shapes included; the training-free one copies speech).
4. a contact sheet renders B's neutral frames edited by both manipulators with the
   default (warp) renderer. Write it outside the repository (real people).

Writes ``<work>/results.json``; nothing under the repository.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ned.manipulate.backends import face3d_extract  # noqa: E402
from ned.manipulate.checkpoint import load_manipulator  # noqa: E402
from ned.manipulate.dataset import (DataOptions, discover_clips, extract_expressions,  # noqa: E402
                                    load_clips)
from ned.manipulate.learned import style_from_reference, translate_sequence  # noqa: E402
from ned.manipulate.networks import EMOTIONS  # noqa: E402
from ned.manipulate.train import TrainOptions, train_manipulator  # noqa: E402

logger = logging.getLogger("check_learned_manipulator")
FPS = 25.0


def mouth_aperture(points: np.ndarray) -> np.ndarray:
    """Mean inner-lip gap per frame of (T, 468+, 3) points: (T,)."""
    from ned.morph.topology import INNER_LIP_PAIRS

    up = [u for u, _ in INNER_LIP_PAIRS]
    lo = [l for _, l in INNER_LIP_PAIRS]
    return np.linalg.norm(points[:, lo, :2] - points[:, up, :2], axis=-1).mean(-1)


def measure(src: np.ndarray, conv: np.ndarray, real: np.ndarray, emo: np.ndarray, lm: np.ndarray, fits,
            keep: tuple) -> dict[str, float]:
    """ratio / cos / mouth_r of one conversion (see the module doc)."""
    from ned.morph.fit import apply_expression_delta

    m_src, m_conv, m_real = (x[:, emo].astype(np.float64).mean(0) for x in (src, conv, real))
    need, made = m_real - m_src, m_conv - m_src
    edited = apply_expression_delta(lm, fits, conv, keep=keep)
    a_src, a_new = mouth_aperture(lm), mouth_aperture(edited)
    return {"ratio": float(np.linalg.norm(m_conv - m_real) / max(np.linalg.norm(need), 1e-12)),
            "cos": float(made @ need / max(np.linalg.norm(made) * np.linalg.norm(need), 1e-12)),
            "mouth_r": float(np.corrcoef(a_src, a_new)[0, 1]),
            "change": float(np.linalg.norm(made))}


def actor_targets(clips: dict[str, np.ndarray], percentile: float):
    """Training-free targets from one actor: mean(E) - percentile baseline of neutral, emotion part."""
    from ned.manipulate.emotions import EmotionTargets
    from ned.manipulate.label import neutral_baseline
    from ned.morph.rig import EMOTION_SHAPES, shape_mask

    emo = shape_mask(EMOTION_SHAPES)
    base = neutral_baseline(clips["neutral"], percentile)
    offsets = {}
    for e, x in clips.items():
        if e != "neutral":
            sig = x.astype(np.float64).mean(0) - base
            sig[~emo] = 0
            offsets[e] = sig.astype(np.float32)
    return EmotionTargets(offsets, percentile, "one actor")


def track(path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    from ned import media
    from ned.face import track_video

    obs = track_video(path)
    return np.stack([o.landmarks for o in obs]).astype(np.float32), [f.rgb for f in media.iter_frames(path)]


def contact_sheet(frames: list[np.ndarray], lm: np.ndarray, fits, rows: dict[str, tuple[np.ndarray, np.ndarray]],
                  picks: np.ndarray, out: Path) -> None:
    """Rows: emotions; per picked frame: learned | training-free (first row: source frames)."""
    import cv2

    from ned.morph.fit import apply_expression_delta
    from ned.morph.topology import load_topology
    from ned.render.warp_renderer import RenderOptions, WarpRenderer

    topo = load_topology()
    renderer = WarpRenderer(topo.triangles, topo.group("face_oval"), RenderOptions())
    tile = 192

    def label(img: np.ndarray, text: str) -> np.ndarray:
        img = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
        cv2.putText(img, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 0), 1, cv2.LINE_AA)
        return img

    sheet = [np.hstack([label(frames[k], f"source {k}") for k in picks for _ in (0, 1)])]
    for emotion, (learned, free) in rows.items():
        row = []
        for k in picks:
            for name, w in (("learned", learned), ("free", free)):
                keep = () if name == "learned" else None
                edited = (apply_expression_delta(lm, fits, w, keep=keep) if keep is not None
                          else apply_expression_delta(lm, fits, w))
                row.append(label(renderer.render(frames[k], lm[k], edited[k]).frame, f"{emotion} {name}"))
        sheet.append(np.hstack(row))
    image = np.vstack(sheet)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), image[:, :, ::-1])
    logger.info("wrote %s", out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--media", type=Path, default=ROOT.parent / "shared" / "media" / "mead_crops")
    ap.add_argument("--work", type=Path, default=Path("/tmp/ned_learned_check"))
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--arch", default="ned_small")
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--percentile", type=float, default=20.0)
    ap.add_argument("--sheet", type=Path, default=None, help="contact sheet path (default <work>/sheet_<B>.png)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    from ned.manipulate.label import ManipulateOptions, manipulate_labels
    from ned.manipulate.emotions import EmotionSpec
    from ned.morph.fit import FaceModel
    from ned.morph.rig import EMOTION_SHAPES, shape_mask

    emo = shape_mask(EMOTION_SHAPES)
    cache = args.work / "cache"
    records = discover_clips(args.media)
    extract_expressions(records, face3d_extract, cache, quiet=True)
    data = {(c.actor, EMOTIONS[c.label]): c.expressions for c in load_clips(records, cache)}
    actors = sorted({a for a, _ in data})
    results: dict = {}
    for train_actor in actors:
        for test_actor in [a for a in actors if a != train_actor]:
            ckpt = args.work / f"ckpt_{train_actor}"
            options = TrainOptions(checkpoints_dir=ckpt, backend="face3d", arch=args.arch, epochs=10_000,
                                   max_steps=args.steps, batch_size=args.batch_size, seed=args.seed, device="cpu",
                                   val_actors=tuple(a for a in actors if a != train_actor), val_batches=8)
            start = time.perf_counter()
            report = train_manipulator(DataOptions(root=args.media, cache_dir=cache), options,
                                       extractor=face3d_extract, quiet=True)
            train_s = time.perf_counter() - start
            nets, _ = load_manipulator(ckpt, backend="face3d")
            path = next(r.path for r in records if r.actor == test_actor and r.emotion == "neutral")
            lm_all, frames = track(path)
            ok = np.isfinite(lm_all[:, :468]).all(axis=(1, 2))
            lm = lm_all[ok]
            fits = FaceModel.from_sequence(lm).fit_batch(lm)
            src = data[(test_actor, "neutral")][ok]
            assert np.allclose(fits.expression, src, atol=1e-4), "tracking/fit not reproducible"
            targets = actor_targets({e: x for (a, e), x in data.items() if a == train_actor}, args.percentile)
            fold: dict = {"train_s": round(train_s, 1), "steps": report.steps,
                          "steps_per_s": round(report.steps_per_s, 2),
                          "val": {k: round(v, 4) for k, v in report.val_losses.items()}}
            rows = {}
            for emotion in EMOTIONS[1:]:
                real = data[(test_actor, emotion)]
                real = real[np.isfinite(real).all(1)]
                learned = translate_sequence(nets, src, emotion, seed=args.seed)
                style = style_from_reference(nets, data[(train_actor, emotion)])
                learned_ref = translate_sequence(nets, src, style)
                free = manipulate_labels(src, [EmotionSpec(emotion)], FPS, ManipulateOptions(), targets)
                fold[emotion] = {
                    "learned_label": measure(src, learned, real, emo, lm, fits, keep=()),
                    "learned_reference": measure(src, learned_ref, real, emo, lm, fits, keep=()),
                    "training_free": measure(src, free, real, emo, lm, fits, keep=()),
                }
                rows[emotion] = (learned, free)
            results[f"{train_actor}->{test_actor}"] = fold
            picks = np.linspace(0, len(lm) - 1, 5)[1:-1].round().astype(int)
            frames_ok = [f for f, good in zip(frames, ok) if good]
            contact_sheet(frames_ok, lm, fits, rows, picks,
                          args.sheet or args.work / f"sheet_{train_actor}_to_{test_actor}.png")
    for fold, res in results.items():
        logger.info("%s: trained %d steps in %.0f s (%.2f steps/s); val %s", fold, res["steps"], res["train_s"],
                    res["steps_per_s"], {k: res["val"].get(k) for k in ("G/latent_cyc", "G/latent_mouth")})
        for emotion in EMOTIONS[1:]:
            r = res[emotion]
            logger.info("  %-9s " + " | ".join(f"{m}: ratio {r[m]['ratio']:.2f} cos {r[m]['cos']:+.2f} "
                                                 f"mouth_r {r[m]['mouth_r']:.3f}" for m in r), emotion)
    (args.work / "results.json").write_text(json.dumps(results, indent=1))
    logger.info("wrote %s", args.work / "results.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
