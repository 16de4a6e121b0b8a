#!/usr/bin/env python
"""Calibrate each emotion's brow shape for label mode -> ``ned/data/brow_offsets.json``.

    python scripts/calibrate_brows.py [--media ../shared/media/mead_crops] [-o ned/data/brow_offsets.json]

Inputs: the MEAD-style clips the emotion targets are calibrated on
(``<actor>_front_<emotion>_level<n>_001.mp4``, each actor with a ``neutral`` clip). They
are read at calibration time only; only the resulting numbers are committed.

Method (the measurement reference mode makes, :mod:`ned.appearance.brows`): per actor, the
neutral clip's calmest frames are the neutral face; every frame of each emotion clip gets
its brow-vertex offsets against them (:func:`ned.appearance.brows.brow_vertex_offsets`:
texture-space flow, capped), and the actor's offset of the emotion is their per-vertex
median over the clip. Actors are averaged. Label mode adds the result, spread to the
forehead, scaled by how much of the emotion's calibrated target a frame takes
(:func:`ned.appearance.brows.frame_brow_offsets`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ned.appearance.brows import brow_vertex_offsets, brow_vertices
from ned.appearance.options import AppearanceOptions
from ned.appearance.pipeline import load_reference_clip
from ned.appearance.ratio import luminance_uv
from ned.appearance.texture import uv_raster
from ned.labels import discover_clips
from ned.layout import atomic_write_json
from ned.morph.topology import load_topology
from ned.pipeline import analyse_clip

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("calibrate_brows")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", type=Path, default=ROOT.parent / "shared" / "media" / "mead_crops")
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "ned" / "data" / "brow_offsets.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    raster = uv_raster(AppearanceOptions().texture_size)
    topology, vertices = load_topology(), brow_vertices().tolist()
    inner = [vertices.index(v) for g in ("brow_r_inner", "brow_l_inner") for v in topology.group(g)]
    outer = [vertices.index(v) for g in ("brow_r_outer", "brow_l_outer") for v in topology.group(g)]
    by_actor: dict[str, dict[str, Path]] = {}
    for clip in discover_clips(args.media):
        by_actor.setdefault(clip.actor, {})[clip.emotion] = clip.path
    per_actor: dict[str, dict[str, list[list[float]]]] = {}
    for actor, clips in sorted(by_actor.items()):
        if "neutral" not in clips:
            logger.warning("%s: no neutral clip, skipped", actor)
            continue
        neutral = analyse_clip(clips["neutral"], quiet=True)
        calm = load_reference_clip(clips["neutral"], neutral.landmarks, neutral.expressions(), neutral_only=True).neutral
        base = np.median(np.stack([luminance_uv(f.image, f.points, raster) for f in calm]), axis=0)
        per_actor[actor] = {}
        for emotion, path in sorted(clips.items()):
            if emotion == "neutral":
                continue
            clip = analyse_clip(path, quiet=True, identity=neutral.model.identity)
            frames = load_reference_clip(path, clip.landmarks, clip.expressions()).frames
            offsets = np.stack([brow_vertex_offsets(base, luminance_uv(f.image, f.points, raster), raster)
                                for f in frames])
            median = np.median(offsets, axis=0)
            per_actor[actor][emotion] = median.round(4).tolist()
            logger.info("%s %s: inner brows rise %.3f IOD, outer %.3f (%d frames)", actor, emotion,
                        -float(median[inner, 1].mean()), -float(median[outer, 1].mean()), len(frames))
    emotions = sorted({e for table in per_actor.values() for e in table})
    pooled = {e: np.mean([table[e] for table in per_actor.values() if e in table], axis=0).round(4).tolist()
              for e in emotions}
    atomic_write_json(args.out, {
        "version": 1,
        "method": "median texture-space brow offset over each real emotion clip against the actor's neutral "
                  "frames (ned.appearance.brows.brow_vertex_offsets), actors averaged; canonical IOD, x right, y down",
        "texture_size": raster.size,
        "vertices": brow_vertices().tolist(),
        "emotions": pooled,
        "per_actor": per_actor,
        "clips": {a: {e: p.name for e, p in sorted(c.items())} for a, c in sorted(by_actor.items())},
    }, sort_keys=False)
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
