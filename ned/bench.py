"""`ned bench`: whole-run speed and peak memory of each stage, against a plain
decode + re-encode of the same clip measured in the same run.

Every stage runs in a fresh child process (``python -m ned.bench <stage> <clip> <workdir>``)
so its peak resident memory (the child's own ``ru_maxrss``) and its CPU time
(``ru_utime + ru_stime``) are its own. Peak memory is measured on the clip and on the
same clip looped 4 times: a streaming stage's peak does not grow with the clip's length.

Two references, both decode + re-encode with the encoder settings of ``ned edit``
(:class:`ned.media.EncodeOptions`: H.264 ``veryfast`` CRF 18), the audio copied, and
frames decoded by a background thread as ``ned edit`` does:

- ``baseline``: through RGB, as a numpy pipeline does it (``iter_frames`` ->
  ``VideoWriter.write``: YUV -> RGB -> YUV);
- ``transcode``: the decoded YUV pictures straight into the encoder, as
  ``ffmpeg -i in -c:v libx264 -c:a copy`` does (no RGB at all).

``edit`` is ``ned edit --emotion happy`` with its defaults (the expression-appearance step
included); ``edit_warp`` the same with ``--appearance off`` (the shape edit alone), so the
table shows what the appearance step costs.

Times include each child's imports and model loading (what a user waits for), not the
interpreter's start. On a shared machine the wall-clock figures move with the load;
``repeat`` runs the stages round-robin several times and reports the median, the range
and the CPU time (which depends much less on other processes).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

STAGES = ("baseline", "transcode", "tracking", "preprocess", "manipulate", "render", "edit", "edit_warp")
REFERENCES = ("baseline", "transcode")


@dataclass(frozen=True)
class StageResult:
    """One stage's whole-run figures (medians over the repeats).

    Attributes:
        stage: stage name (see :data:`STAGES`).
        frames: frames processed.
        seconds: wall-clock seconds (median over ``runs``).
        fps: ``frames / seconds``.
        cpu_seconds: user + system CPU seconds of the child, all its threads (median).
        peak_rss_mb: peak resident memory of the child, MB (largest over the runs).
        ratio_to_baseline: ``seconds`` / the baseline's ``seconds`` (None without a baseline).
        ratio_to_transcode: ``seconds`` / the transcode's ``seconds`` (None without one).
        cpu_ratio_to_baseline: ``cpu_seconds`` / the baseline's ``cpu_seconds``.
        peak_rss_mb_looped4: peak memory on the clip looped 4 times (None when not run).
        seconds_runs: wall-clock seconds of every run, in order.
        cpu_seconds_runs: CPU seconds of every run.
    """

    stage: str
    frames: int
    seconds: float
    fps: float
    cpu_seconds: float
    peak_rss_mb: float
    ratio_to_baseline: float | None = None
    ratio_to_transcode: float | None = None
    cpu_ratio_to_baseline: float | None = None
    peak_rss_mb_looped4: float | None = None
    seconds_runs: tuple[float, ...] = field(default_factory=tuple)
    cpu_seconds_runs: tuple[float, ...] = field(default_factory=tuple)


def _run_child(stage: str, clip: Path, workdir: Path) -> dict:
    """Run one stage in a child process; return its JSON report (``frames``, ``seconds``,
    ``cpu_seconds``, ``peak_rss_kb``: the child's own figures)."""
    proc = subprocess.run([sys.executable, "-m", "ned.bench", stage, str(clip), str(workdir)],
                          capture_output=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    shutil.rmtree(workdir, ignore_errors=True)  # outputs are not kept (disk, page cache)
    if proc.returncode != 0:
        raise RuntimeError(f"bench stage {stage} failed: {proc.stderr.decode(errors='replace').strip()[-2000:]}")
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def _loop_clip(clip: Path, times: int, out: Path) -> Path:
    """Write ``clip`` repeated ``times`` times (video only) to ``out``."""
    from ned.media import VideoWriter, iter_frames, probe

    info = probe(clip)
    with VideoWriter(out, width=info.width, height=info.height, fps=info.fps) as writer:
        for _ in range(times):
            for frame in iter_frames(clip):
                writer.write(frame.rgb)
    return out


def run_bench(clip: Path | None = None, *, stages: tuple[str, ...] = STAGES, loop_memory: bool = True,
              repeat: int = 1, workdir: Path | None = None, progress=None) -> list[StageResult]:
    """Measure each stage on ``clip`` (default: the built-in sample).

    Args:
        clip: the video; None = the built-in sample (made on first use).
        stages: stages to run, in this order (see :data:`STAGES`); ratios need
            ``baseline`` / ``transcode`` among them.
        loop_memory: also measure peak memory on the clip looped 4 times (once per stage).
        repeat: runs per stage, round-robin (all stages once, then again, ...), >= 1.
        workdir: where temporary outputs go (default: the system's temporary folder).
        progress: optional ``callable(str)`` told about each run.

    Returns:
        One :class:`StageResult` per stage, in ``stages`` order.

    Raises:
        ValueError: an unknown stage or ``repeat < 1``.
        RuntimeError: a stage failed (its error output is included).
    """
    from ned.sample import sample_clip_path

    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; choose from {STAGES}")
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    clip = Path(clip) if clip is not None else sample_clip_path()
    tmp = Path(tempfile.mkdtemp(prefix="ned-bench-", dir=workdir))
    say = progress or (lambda message: None)
    try:
        runs: dict[str, list[dict]] = {stage: [] for stage in stages}
        for k in range(repeat):
            for stage in stages:
                say(f"run {k + 1}/{repeat}: {stage}")
                runs[stage].append(_run_child(stage, clip, tmp / f"{stage}-{k}"))
        peak4: dict[str, float] = {}
        if loop_memory:
            looped = _loop_clip(clip, 4, tmp / "looped4.mp4")
            for stage in stages:
                say(f"clip looped 4x: {stage}")
                peak4[stage] = float(_run_child(stage, looped, tmp / f"{stage}-looped")["peak_rss_kb"]) / 1024.0
        return _summarise(stages, runs, peak4)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _summarise(stages: tuple[str, ...], runs: dict[str, list[dict]], peak4: dict[str, float]) -> list[StageResult]:
    wall = {s: statistics.median(r["seconds"] for r in runs[s]) for s in stages}
    cpu = {s: statistics.median(r["cpu_seconds"] for r in runs[s]) for s in stages}

    def ratio(value: float, ref: str, table: dict[str, float]) -> float | None:
        return value / table[ref] if ref in table and table[ref] > 0 else None

    results = []
    for s in stages:
        frames = int(runs[s][0]["frames"])
        results.append(StageResult(
            stage=s, frames=frames, seconds=wall[s], fps=frames / max(wall[s], 1e-9), cpu_seconds=cpu[s],
            peak_rss_mb=max(float(r["peak_rss_kb"]) for r in runs[s]) / 1024.0,
            ratio_to_baseline=ratio(wall[s], "baseline", wall), ratio_to_transcode=ratio(wall[s], "transcode", wall),
            cpu_ratio_to_baseline=ratio(cpu[s], "baseline", cpu), peak_rss_mb_looped4=peak4.get(s),
            seconds_runs=tuple(float(r["seconds"]) for r in runs[s]),
            cpu_seconds_runs=tuple(float(r["cpu_seconds"]) for r in runs[s])))
    return results


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(results: list[StageResult]) -> str:
    """A plain-text table of the results (times are medians; ``range`` is min-max wall)."""
    head = (f"{'stage':<11} {'frames':>6} {'seconds':>8} {'range':>13} {'fps':>7} {'cpu s':>7} "
            f"{'x baseline':>10} {'x transcode':>11} {'cpu x base':>10} {'peak MB':>8} {'peak MB x4':>10}")
    rows = [head, "-" * len(head)]
    for r in results:
        span = f"{min(r.seconds_runs):.2f}-{max(r.seconds_runs):.2f}" if len(r.seconds_runs) > 1 else "-"
        rows.append(f"{r.stage:<11} {r.frames:>6} {r.seconds:>8.2f} {span:>13} {r.fps:>7.1f} {r.cpu_seconds:>7.2f} "
                    f"{_fmt(r.ratio_to_baseline, '.2f'):>10} {_fmt(r.ratio_to_transcode, '.2f'):>11} "
                    f"{_fmt(r.cpu_ratio_to_baseline, '.2f'):>10} {r.peak_rss_mb:>8.0f} "
                    f"{_fmt(r.peak_rss_mb_looped4, '.0f'):>10}")
    return "\n".join(rows)


def results_json(results: list[StageResult], clip: Path | None) -> dict:
    """The figures as a JSON-ready dict (``clip``, machine facts, ``stages``)."""
    out = {"clip": str(clip) if clip else "built-in sample", "cpu_count": os.cpu_count(),
           "stages": [asdict(r) for r in results]}
    if hasattr(os, "getloadavg"):
        out["load_avg_1min"] = os.getloadavg()[0]
    if hasattr(os, "sched_getaffinity"):
        out["cpus_usable"] = len(os.sched_getaffinity(0))
    return out


# ----------------------------------------------------------------------------- child side
# Each stage returns the number of frames it processed; a stage may call _restart_clock()
# to exclude its set-up (the analysis that `manipulate` and `render` start from).


def _reencode(clip: Path, work: Path, *, planar: bool) -> int:
    from ned.media import (EncodeOptions, VideoWriter, WriteBehind, YuvImage, iter_frames, iter_planar_frames, probe,
                           read_ahead, tune_malloc)

    # As `ned edit` does it: the references get every advantage the edit has (allocator
    # tuning, decoding and encoding threads).
    tune_malloc()
    info = probe(clip)
    n = 0
    frames = read_ahead(iter_planar_frames(clip) if planar else iter_frames(clip), 4)
    with VideoWriter(work / "out.mp4", width=info.width, height=info.height, fps=info.fps, audio_from=clip,
                     options=EncodeOptions(), time_base=info.time_base) as writer, WriteBehind(writer, 4) as sink:
        for frame in frames:
            image = getattr(frame, "image", None)
            if planar and isinstance(image, YuvImage) and writer.accepts(image):
                sink.write_frame(image.frame, pts=frame.pts)
            else:
                sink.write(frame.rgb, pts=frame.pts)
            n += 1
    return n


def _stage_baseline(clip: Path, work: Path) -> int:
    """Decode -> RGB -> encode with ``ned edit``'s encoder settings and audio."""
    return _reencode(clip, work, planar=False)


def _stage_transcode(clip: Path, work: Path) -> int:
    """Decode -> encode of the decoded YUV pictures (no RGB), same settings and audio."""
    return _reencode(clip, work, planar=True)


def _stage_tracking(clip: Path, work: Path) -> int:
    """Decode + detect + mesh + iris + smoothing, as ``ned edit``'s analysis decodes."""
    from ned.face.tracker import FaceTracker
    from ned.media import iter_planar_frames, probe, read_ahead

    info = probe(clip)
    frames = read_ahead(iter_planar_frames(clip), 4)
    return sum(1 for _ in FaceTracker().track(frames, fps=info.fps, source=clip))


def _stage_preprocess(clip: Path, work: Path) -> int:
    from ned.preprocess import PreprocessOptions, preprocess_celeb

    (work / "videos").mkdir(parents=True)
    os.symlink(clip.resolve(), work / "videos" / clip.name)
    return preprocess_celeb(work, PreprocessOptions(mode="test", quiet=True)).frame_count


def _analysed(clip: Path):
    from ned.pipeline import analyse_clip

    return analyse_clip(clip, quiet=True)


def _stage_manipulate(clip: Path, work: Path) -> int:
    """Label manipulation + edited landmarks (timed after tracking and fitting)."""
    from ned.manipulate.plan import ManipulationSpec, plan_expressions
    from ned.pipeline import edited_landmarks

    analysis = _analysed(clip)
    _restart_clock()
    spec = ManipulationSpec.from_strings(["happy"])
    new = plan_expressions(analysis.expressions(), spec, [], fps=float(analysis.info.fps))
    edited_landmarks(analysis, new)
    return len(analysis.valid)


def _stage_render(clip: Path, work: Path) -> int:
    """Decode + render (warp, appearance step, blend) + encode, as ``ned edit`` renders by
    default (timed after the analysis)."""
    from ned.appearance.options import AppearanceOptions
    from ned.appearance.pipeline import plan_appearance
    from ned.manipulate.plan import ManipulationSpec, plan_expressions
    from ned.media import EncodeOptions
    from ned.pipeline import edited_landmarks, make_renderer, provenance_comment, render_video
    from ned.render.warp_renderer import RenderOptions

    analysis = _analysed(clip)
    spec = ManipulationSpec.from_strings(["happy"])
    fps = float(analysis.info.fps)
    source = analysis.expressions()
    new = plan_expressions(source, spec, [], fps=fps)
    dst = edited_landmarks(analysis, new)
    appearance, payloads = plan_appearance(source, new, fps=fps, emotions=[s.name for s in spec.segments],
                                           transition_s=spec.transition_s, options=AppearanceOptions())
    _restart_clock()
    render_video(clip, work / "render.mp4", analysis.landmarks, dst, make_renderer(RenderOptions(), appearance),
                 info=analysis.info, encode=EncodeOptions(), comment=provenance_comment(spec), quiet=True,
                 payloads=payloads)
    return analysis.info.frame_count


def _stage_edit(clip: Path, work: Path) -> int:
    """The whole ``ned edit`` (to happy), imports and model loading included."""
    from ned.manipulate.plan import ManipulationSpec
    from ned.pipeline import EditOptions, edit_video

    spec = ManipulationSpec.from_strings(["happy"])
    return edit_video(clip, work / "edit.mp4", EditOptions(manipulation=spec, quiet=True)).frames


def _stage_edit_warp(clip: Path, work: Path) -> int:
    """``ned edit --appearance off``: the shape edit only (warp and blend, no appearance step)."""
    from ned.appearance.options import AppearanceOptions
    from ned.manipulate.plan import ManipulationSpec
    from ned.pipeline import EditOptions, edit_video

    spec = ManipulationSpec.from_strings(["happy"])
    options = EditOptions(manipulation=spec, appearance=AppearanceOptions(mode="off"), quiet=True)
    return edit_video(clip, work / "edit.mp4", options).frames


_T0 = 0.0
_CPU0 = 0.0


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _restart_clock() -> None:
    global _T0, _CPU0
    _T0, _CPU0 = time.perf_counter(), _cpu_seconds()


def _child_main(stage: str, clip: str, work: str) -> None:
    import resource

    work_dir = Path(work)
    work_dir.mkdir(parents=True, exist_ok=True)
    fn = globals()[f"_stage_{stage}"]
    _restart_clock()
    frames = fn(Path(clip), work_dir)
    seconds = time.perf_counter() - _T0
    cpu = _cpu_seconds() - _CPU0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"stage": stage, "frames": frames, "seconds": seconds, "cpu_seconds": cpu,
                      "peak_rss_kb": peak_kb}))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in STAGES:
        sys.exit(f"usage: python -m ned.bench {{{','.join(STAGES)}}} <clip> <workdir>")
    _child_main(*sys.argv[1:])
