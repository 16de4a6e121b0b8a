"""`ned bench`: whole-run speed and peak memory of each stage, against a plain
decode + re-encode of the same clip measured in the same run.

Every stage runs in a fresh child process (``python -m ned.bench <stage> <clip> <workdir>``)
so its peak resident memory (the child's own ``ru_maxrss``) is its own. Peak memory is
measured on the clip and on the same clip looped 4 times: a streaming stage's peak does
not grow with the clip's length.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

STAGES = ("baseline", "tracking", "preprocess", "manipulate", "render", "edit")


@dataclass(frozen=True)
class StageResult:
    """One stage's whole-run figures."""

    stage: str
    frames: int
    seconds: float
    fps: float
    peak_rss_mb: float
    ratio_to_baseline: float | None = None
    peak_rss_mb_looped4: float | None = None


def _run_child(stage: str, clip: Path, workdir: Path) -> tuple[dict, float]:
    """Run one stage in a child process; return its JSON report and its peak RSS in MB
    (``ru_maxrss`` of the child itself, so the parent's memory does not count)."""
    proc = subprocess.run([sys.executable, "-m", "ned.bench", stage, str(clip), str(workdir)],
                          capture_output=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    if proc.returncode != 0:
        raise RuntimeError(f"bench stage {stage} failed: {proc.stderr.decode(errors='replace').strip()[-2000:]}")
    report = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return report, float(report["peak_rss_kb"]) / 1024.0


def _loop_clip(clip: Path, times: int, out: Path) -> Path:
    """Write ``clip`` repeated ``times`` times (video and audio) to ``out``."""
    from ned.media import VideoWriter, iter_frames, probe

    info = probe(clip)
    with VideoWriter(out, width=info.width, height=info.height, fps=info.fps) as writer:
        for _ in range(times):
            for frame in iter_frames(clip):
                writer.write(frame.rgb)
    return out


def run_bench(clip: Path | None = None, *, stages: tuple[str, ...] = STAGES, loop_memory: bool = True,
              workdir: Path | None = None) -> list[StageResult]:
    """Measure each stage on ``clip`` (default: the built-in sample).

    Returns:
        One :class:`StageResult` per stage, with the ratio of its seconds to the baseline's.
    """
    from ned.sample import sample_clip_path

    clip = Path(clip) if clip is not None else sample_clip_path()
    tmp = Path(tempfile.mkdtemp(prefix="ned-bench-", dir=workdir))
    try:
        looped = _loop_clip(clip, 4, tmp / "looped4.mp4") if loop_memory else None
        results: list[StageResult] = []
        baseline_s = None
        for stage in stages:
            report, peak = _run_child(stage, clip, tmp / stage)
            peak4 = None
            if looped is not None:
                _, peak4 = _run_child(stage, looped, tmp / f"{stage}-looped")
            seconds = float(report["seconds"])
            if stage == "baseline":
                baseline_s = seconds
            ratio = seconds / baseline_s if baseline_s else None
            results.append(StageResult(stage, int(report["frames"]), seconds,
                                       report["frames"] / max(seconds, 1e-9), peak, ratio, peak4))
        return results
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def format_table(results: list[StageResult]) -> str:
    """A plain-text table of the results."""
    head = f"{'stage':<11} {'frames':>7} {'seconds':>8} {'fps':>8} {'x baseline':>10} {'peak MB':>8} {'peak MB x4':>10}"
    rows = [head, "-" * len(head)]
    for r in results:
        ratio = f"{r.ratio_to_baseline:.2f}" if r.ratio_to_baseline is not None else "-"
        p4 = f"{r.peak_rss_mb_looped4:.0f}" if r.peak_rss_mb_looped4 is not None else "-"
        rows.append(f"{r.stage:<11} {r.frames:>7} {r.seconds:>8.2f} {r.fps:>8.1f} {ratio:>10} {r.peak_rss_mb:>8.0f} {p4:>10}")
    return "\n".join(rows)


def results_json(results: list[StageResult], clip: Path | None) -> dict:
    return {"clip": str(clip) if clip else "built-in sample", "cpu_count": os.cpu_count(),
            "stages": [asdict(r) for r in results]}


# ----------------------------------------------------------------------------- child side


def _stage_baseline(clip: Path, work: Path) -> int:
    """Plain decode + re-encode with the same encoder settings as ``ned edit`` (and audio)."""
    from ned.media import EncodeOptions, VideoWriter, iter_frames, probe

    info = probe(clip)
    n = 0
    with VideoWriter(work / "baseline.mp4", width=info.width, height=info.height, fps=info.fps,
                     audio_from=clip, options=EncodeOptions()) as writer:
        for frame in iter_frames(clip):
            writer.write(frame.rgb)
            n += 1
    return n


def _stage_tracking(clip: Path, work: Path) -> int:
    from ned.face.tracker import FaceTracker
    from ned.media import iter_frames, probe

    info = probe(clip)
    return sum(1 for _ in FaceTracker().track(iter_frames(clip), fps=info.fps, source=clip))


def _stage_preprocess(clip: Path, work: Path) -> int:
    from ned.preprocess import PreprocessOptions, preprocess_celeb

    (work / "videos").mkdir(parents=True)
    os.symlink(clip.resolve(), work / "videos" / clip.name)
    return preprocess_celeb(work, PreprocessOptions(mode="test", quiet=True)).frame_count


def _analysed(clip: Path):
    from ned.pipeline import analyse_clip

    return analyse_clip(clip, quiet=True)


def _stage_manipulate(clip: Path, work: Path) -> int:
    """Fit + label manipulation + edited landmarks (tracking excluded: timed after it)."""
    from ned.manipulate.plan import ManipulationSpec, plan_expressions
    from ned.pipeline import edited_landmarks

    analysis = _analysed(clip)
    global _T0
    _T0 = time.perf_counter()
    spec = ManipulationSpec.from_strings(["happy"])
    new = plan_expressions(analysis.expressions(), spec, [], fps=float(analysis.info.fps))
    edited_landmarks(analysis, new)
    return len(analysis.valid)


def _stage_render(clip: Path, work: Path) -> int:
    """Decode + warp/blend + encode (analysis excluded: timed after it)."""
    from ned.manipulate.plan import ManipulationSpec, plan_expressions
    from ned.media import EncodeOptions
    from ned.pipeline import edited_landmarks, make_renderer, provenance_comment, render_video
    from ned.render.warp_renderer import RenderOptions

    analysis = _analysed(clip)
    spec = ManipulationSpec.from_strings(["happy"])
    dst = edited_landmarks(analysis, plan_expressions(analysis.expressions(), spec, [], fps=float(analysis.info.fps)))
    global _T0
    _T0 = time.perf_counter()
    render_video(clip, work / "render.mp4", analysis.landmarks, dst, make_renderer(RenderOptions()),
                 info=analysis.info, encode=EncodeOptions(), comment=provenance_comment(spec), quiet=True)
    return analysis.info.frame_count


def _stage_edit(clip: Path, work: Path) -> int:
    from ned.manipulate.plan import ManipulationSpec
    from ned.pipeline import EditOptions, edit_video

    spec = ManipulationSpec.from_strings(["happy"])
    return edit_video(clip, work / "edit.mp4", EditOptions(manipulation=spec, quiet=True)).frames


_T0 = 0.0


def _child_main(stage: str, clip: str, work: str) -> None:
    import resource

    global _T0
    work_dir = Path(work)
    work_dir.mkdir(parents=True, exist_ok=True)
    fn = globals()[f"_stage_{stage}"]
    _T0 = time.perf_counter()
    frames = fn(Path(clip), work_dir)
    seconds = time.perf_counter() - _T0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"stage": stage, "frames": frames, "seconds": seconds, "peak_rss_kb": peak_kb}))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in STAGES:
        sys.exit(f"usage: python -m ned.bench {{{','.join(STAGES)}}} <clip> <workdir>")
    _child_main(*sys.argv[1:])
