"""Issue-4 acceptance run: edit the real clips and evaluate each edit.

    python scripts/acceptance_render.py --media ../shared/media --out /tmp/ned_accept [--quick]

Cases: talking/d10.mp4 -> happy and sad; each mead_1080p clip -> sad (happy where it is
already sad); each mead_crops neutral clip -> the six other emotions. For each edit it
prints frame count / fps / resolution / audio equality, mouth-aperture r (dlib), identity
distance, FER target rate input vs output, and the landmark-jitter ratio, and writes
``results.json``. Outputs are edits of third-party footage: keep them out of the repo.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from ned.evaluate.evaluate import EvaluateOptions, evaluate_videos
from ned.labels import parse_clip_path
from ned.manipulate.plan import ManipulationSpec
from ned.pipeline import EditOptions, edit_video

SIX = ("happy", "angry", "sad", "surprised", "fear", "disgusted")


@dataclass(frozen=True)
class Case:
    source: Path
    emotion: str


def cases(media: Path, quick: bool) -> list[Case]:
    out = [Case(media / "talking" / "d10.mp4", e) for e in ("happy", "sad")]
    for clip in sorted((media / "mead_1080p").glob("*.mp4")):
        out.append(Case(clip, "happy" if "_sad_" in clip.name else "sad"))
    for clip in sorted((media / "mead_crops").glob("*neutral*.mp4")):
        out += [Case(clip, e) for e in SIX]
    return out[:4] if quick else out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=Path("../shared/media"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="only the first four cases")
    args = parser.parse_args()
    rows = []
    for case in cases(args.media, args.quick):
        out = args.out / f"{case.source.stem}_{case.emotion}.mp4"
        if not out.exists():
            edit_video(case.source, out, EditOptions(manipulation=ManipulationSpec.from_strings([case.emotion]),
                                                    quiet=True))
        r = evaluate_videos(case.source, out, EvaluateOptions(emotion=case.emotion, contact_frames=0, quiet=True,
                                                                detect_upsample=1 if "1080p" in str(case.source) else 0))
        c = r.container
        row = {
            "clip": case.source.name, "emotion": case.emotion,
            "container_ok": bool(c.frame_count_equal and c.fps_equal and c.resolution_equal and c.audio_presence_equal),
            "audio_duration_diff_s": c.audio_duration_diff_s,
            "mouth_r": r.speech.aperture_r, "identity": r.identity.mean_distance,
            "rate_in": r.emotion.accuracy_in, "rate_out": r.emotion.accuracy_out,
            "jitter_ratio": r.temporal.jitter_ratio, "labelled": parse_clip_path(case.source) is not None,
        }
        rows.append(row)
        print(f"{row['clip']:<40} {row['emotion']:<10} container {'ok' if row['container_ok'] else 'DIFF'} "
              f"r {row['mouth_r']:.3f} id {row['identity']:.3f} rate {row['rate_in']:.2f}->{row['rate_out']:.2f} "
              f"jitter x{row['jitter_ratio']:.2f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2, default=float))


if __name__ == "__main__":
    main()
