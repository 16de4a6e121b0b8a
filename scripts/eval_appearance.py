#!/usr/bin/env python
"""Measure the appearance step on the MEAD crops: how strongly edited emotions read.

    python scripts/eval_appearance.py [--media ../shared/media/mead_crops] [--stride 3]
        [--cache /tmp/ned_eval_appearance] [--sheets /tmp/ned_sheets] [--json out.json]
        [--second-classifier path/to/other_classifier.tflite]

For each actor (M030, W009) and each of the six emotions it edits the actor's neutral
clip (every ``stride``-th frame) and measures, per emotion:

- (a) ``real``: the actor's real acted emotion clip;
- (b) ``shape``: shape only, label-driven geometry (:func:`ned.manipulate.label.manipulate_labels`);
- (b') ``shape_ref``: shape only, reference-driven geometry (the emotion part of the OTHER
  actor's emotion frames);
- (c) ``maps``: (b) plus the built-in label-driven appearance maps;
- (d) ``ratio``: (b') plus ratio transfer from the other actor's emotion and neutral frames;
- (e) ``bank``: an exemplar bank built from the other actor's clips, as ``--exemplars``
  uses it: label targets from the bank's expressions, plus the closest exemplars' detail.

Measures: the FER2013 recognition rate (fraction of frames whose argmax is the target;
:mod:`ned.evaluate.models`), score = sum over emotions of the edited rate / sum of the
real rates; and, as a second, classifier-free signal, the *detail agreement*: the
Pearson correlation, over skin texels, between the band-limited luminance change of the
edited frames and the one the same actor really shows when acting the emotion (both
relative to the actor's neutral frames, mean over frames, texture space). A gain that
comes from artefacts (blotches, drawn lines, transferred marks) does not raise it.
With ``--second-classifier`` an independent 7-class classifier (a ``.tflite`` taking a
200x200 RGB face in [0, 1], classes anger disgust fear happy neutral sadness surprised,
e.g. the one shipped in the ``facex`` wheel) is run too.

The clips are third-party: they are read from ``--media`` and nothing derived from them
is written inside the repository (caches, banks and sheets go to ``--cache``/``--sheets``).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ned.appearance import (  # noqa: E402
    AppearanceFrame,
    AppearanceOptions,
    ExpressionAppearance,
    ReferenceFrame,
    detail_map,
    luminance_uv,
    skin_mask_uv,
    uv_raster,
)
from ned.appearance.exemplars import build_bank, discover_clips, load_bank  # noqa: E402
from ned.morph.fit import FaceModel, apply_expression_delta  # noqa: E402
from ned.morph.rig import EMOTION_SHAPES, shape_mask  # noqa: E402
from ned.morph.topology import load_topology  # noqa: E402
from ned.render.warp_renderer import RenderOptions, WarpRenderer  # noqa: E402

logger = logging.getLogger("eval_appearance")

EMOTIONS = ("angry", "disgusted", "fear", "happy", "sad", "surprised")
FER_INDEX = {"angry": 0, "disgusted": 1, "fear": 2, "happy": 3, "sad": 4, "surprised": 5, "neutral": 6}
SECOND_LABELS = ("angry", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
MODES = ("real", "shape", "shape_ref", "maps", "ratio", "bank")
_EMO = shape_mask(EMOTION_SHAPES)


class Clips:
    """Tracked clips (cached as npz in ``cache``), per-actor face models and fits."""

    def __init__(self, media: Path, cache: Path) -> None:
        self.media, self.cache = media, cache
        cache.mkdir(parents=True, exist_ok=True)
        self.paths = {(c.actor, c.emotion): c.path for c in discover_clips(media)}
        self.actors = sorted({a for a, _ in self.paths})

    @functools.lru_cache(maxsize=None)
    def get(self, actor: str, emotion: str) -> dict[str, np.ndarray]:
        path = self.paths[(actor, emotion)]
        cached = self.cache / f"{path.stem}.npz"
        if cached.is_file():
            with np.load(cached) as z:
                return {k: z[k] for k in z.files}
        from ned import media
        from ned.face import FaceTracker

        info = media.probe(path)
        frames, marks = [], []
        for decoded, obs in FaceTracker().track(media.iter_frames(path), fps=info.fps, source=path):
            frames.append(decoded.rgb)
            marks.append(obs.landmarks)
        data = {"frames": np.stack(frames), "landmarks": np.stack(marks).astype(np.float32)}
        np.savez_compressed(cached, **data)
        return data

    @functools.lru_cache(maxsize=None)
    def model(self, actor: str) -> FaceModel:
        return FaceModel.from_sequence(self.get(actor, "neutral")["landmarks"])

    @functools.lru_cache(maxsize=None)
    def fits(self, actor: str, emotion: str):
        return self.model(actor).fit_batch(self.get(actor, emotion)["landmarks"])

    @functools.lru_cache(maxsize=None)
    def label_weights(self, actor: str, emotion: str, bank: Path | None = None) -> np.ndarray:
        """Label-driven weights of the actor's neutral clip (targets from ``bank`` when given, as ``--exemplars``)."""
        from ned.manipulate.plan import ManipulationSpec, plan_expressions

        spec = ManipulationSpec.from_strings([emotion], exemplars=bank)
        return plan_expressions(self.fits(actor, "neutral").expression, spec, [], 25.0)

    def neutral_refs(self, actor: str, count: int = 8) -> list[ReferenceFrame]:
        c, f = self.get(actor, "neutral"), self.fits(actor, "neutral")
        idx = np.linspace(0, len(c["frames"]) - 1, count).round().astype(int)
        return [ReferenceFrame(c["frames"][k], c["landmarks"][k], f.expression[k]) for k in idx]


class Measures:
    """FER2013 rates, the optional second classifier and detail agreement."""

    def __init__(self, clips: Clips, second: Path | None) -> None:
        from ned.evaluate.models import load_emotion_classifier, load_face_models

        self.clips = clips
        self.dlib, self.fer = load_face_models(), load_emotion_classifier()
        self.second = None
        if second is not None:
            from ai_edge_litert.interpreter import Interpreter

            self.second = Interpreter(model_path=str(second))
            self.second.allocate_tensors()
        self.raster = uv_raster(192)
        self.skin = skin_mask_uv(192) > 0.5

    def rates(self, frames: list[np.ndarray], emotion: str) -> tuple[float, float]:
        hits, hits2 = [], []
        for f in frames:
            det = self.dlib.detect(f)
            if det is None:
                continue
            hits.append(int(np.argmax(self.fer.classify(f, det.box))) == FER_INDEX[emotion])
            if self.second is not None:
                hits2.append(self._second(f, det.box) == emotion)
        return (float(np.mean(hits)) if hits else float("nan"), float(np.mean(hits2)) if hits2 else float("nan"))

    def _second(self, rgb: np.ndarray, box: np.ndarray) -> str:
        x1, y1, x2, y2 = box
        w, h = x2 - x1, y2 - y1
        x1, x2, y1, y2 = (int(round(v)) for v in (x1 - 0.15 * w, x2 + 0.15 * w, y1 - 0.18 * h, y2 + 0.12 * h))
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[max(y1, 0):y2, max(x1, 0):x2]
        face = cv2.resize(grey, (200, 200), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        inp = np.repeat(face[None, :, :, None], 3, axis=3)
        self.second.set_tensor(self.second.get_input_details()[0]["index"], inp)
        self.second.invoke()
        return SECOND_LABELS[int(np.argmax(self.second.get_tensor(self.second.get_output_details()[0]["index"])[0]))]

    @functools.lru_cache(maxsize=None)
    def _neutral_textures(self, actor: str) -> tuple[np.ndarray, ...]:
        return tuple(luminance_uv(r.image, r.points, self.raster) for r in self.clips.neutral_refs(actor))

    def detail(self, actor: str, frame: np.ndarray, mesh: np.ndarray) -> np.ndarray:
        return detail_map(list(self._neutral_textures(actor)), luminance_uv(frame, mesh, self.raster), self.raster)

    @functools.lru_cache(maxsize=None)
    def real_detail(self, actor: str, emotion: str, stride: int) -> np.ndarray:
        c = self.clips.get(actor, emotion)
        return np.mean([self.detail(actor, c["frames"][k], c["landmarks"][k])
                        for k in range(0, len(c["frames"]), stride)], axis=0)

    def agreement(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a[self.skin], b[self.skin])[0, 1])


def bank_dir(clips: Clips, actor: str) -> Path:
    """The exemplar bank of one actor's clips (built into the cache on first use)."""
    out = clips.cache / f"bank_{actor}"
    if not (out / "bank.npz").is_file():
        build_bank(None, out, clips=[c for c in discover_clips(clips.media) if c.actor == actor])
    return out


def edit(clips: Clips, actor: str, emotion: str, other: str, mode: str, stride: int,
         hook: ExpressionAppearance | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Edited frames and their edited meshes (every ``stride``-th neutral frame)."""
    topo = load_topology()
    renderer = WarpRenderer(topo.triangles, topo.group("face_oval"), RenderOptions(), appearance=hook, n_points=468)
    if hook is not None:
        hook.reset()
    neutral, fits = clips.get(actor, "neutral"), clips.fits(actor, "neutral")
    ref, ref_fits = clips.get(other, emotion), clips.fits(other, emotion)
    label = clips.label_weights(actor, emotion, bank_dir(clips, other) if mode == "bank" else None)
    n, m = len(neutral["frames"]), len(ref["frames"])
    frames, meshes = [], []
    for i in range(0, n, stride):
        j = int(round(i * (m - 1) / max(n - 1, 1)))
        src_w = fits.expression[i]
        if mode in ("shape_ref", "ratio"):
            new = src_w.copy()
            new[_EMO] = ref_fits.expression[j][_EMO]
        else:
            new = label[i].copy()
        dst = apply_expression_delta(neutral["landmarks"][i], fits[i], new)
        reference = ReferenceFrame(ref["frames"][j], ref["landmarks"][j], ref_fits.expression[j]) \
            if mode == "ratio" else None
        payload = None if hook is None else AppearanceFrame(src_w, new, i, emotion, reference=reference)
        frames.append(renderer.render(neutral["frames"][i], neutral["landmarks"][i], dst, payload=payload).frame)
        meshes.append(dst)
    return frames, meshes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=ROOT.parent / "shared" / "media" / "mead_crops")
    parser.add_argument("--stride", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ned_eval_appearance"))
    parser.add_argument("--sheets", type=Path, default=None, help="write contact sheets here (outside the repo)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--second-classifier", type=Path, default=None)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    clips = Clips(args.media, args.cache)
    measures = Measures(clips, args.second_classifier)
    results: dict = {}
    sheets: dict = {}
    for actor in clips.actors:
        other = next(a for a in clips.actors if a != actor)
        hooks = {"shape": None, "shape_ref": None, "maps": ExpressionAppearance(AppearanceOptions(mode="maps"))}
        if "ratio" in args.modes:
            hooks["ratio"] = ExpressionAppearance(AppearanceOptions(mode="reference"),
                                                  reference_neutral=clips.neutral_refs(other))
        if "bank" in args.modes:
            hooks["bank"] = ExpressionAppearance(AppearanceOptions(mode="reference"),
                                                 bank=load_bank(bank_dir(clips, other)))
        for emotion in EMOTIONS:
            real = clips.get(actor, emotion)
            real_frames = [real["frames"][k] for k in range(0, len(real["frames"]), args.stride)]
            target = measures.real_detail(actor, emotion, args.stride)
            for mode in args.modes:
                if mode == "real":
                    frames, agree = real_frames, 1.0
                else:
                    frames, meshes = edit(clips, actor, emotion, other, mode, args.stride, hooks[mode])
                    edited = np.mean([measures.detail(actor, f, m) for f, m in zip(frames, meshes)], axis=0)
                    agree = measures.agreement(edited, target)
                fer, second = measures.rates(frames, emotion)
                results[f"{actor}/{emotion}/{mode}"] = {"fer": fer, "second": second, "agreement": agree}
                sheets.setdefault(mode, {})[(actor, emotion)] = frames[len(frames) // 2]
                logger.info("%s %-9s %-9s FER %.2f  second %.2f  agreement %+.2f", actor, emotion, mode, fer,
                            second, agree)
    summary = {}
    for mode in args.modes:
        for key in ("fer", "second"):
            num = sum(results[f"{a}/{e}/{mode}"][key] for a in clips.actors for e in EMOTIONS)
            den = sum(results[f"{a}/{e}/real"][key] for a in clips.actors for e in EMOTIONS) \
                if "real" in args.modes else float("nan")
            summary[f"{mode}/{key}_score"] = num / den if den else float("nan")
        summary[f"{mode}/agreement_mean"] = float(np.mean([results[f"{a}/{e}/{mode}"]["agreement"]
                                                           for a in clips.actors for e in EMOTIONS]))
    for k, v in summary.items():
        logger.info("%-28s %.3f", k, v)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "summary": summary}, indent=1))
    if args.sheets:
        args.sheets.mkdir(parents=True, exist_ok=True)
        for mode, tiles in sheets.items():
            rows = [np.hstack([tiles[(a, e)] for e in EMOTIONS]) for a in clips.actors]
            cv2.imwrite(str(args.sheets / f"appearance_{mode}.png"), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
