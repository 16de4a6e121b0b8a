"""`ned bench` runs end to end on a tiny clip and reports every field (no timing asserts)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ned.bench import STAGES, StageResult, format_table, results_json, run_bench
from ned.cli import main
from ned.media import probe
from ned.sample import make_sample_clip


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    """Half a second of the built-in sample (12 frames, with audio)."""
    return make_sample_clip(tmp_path_factory.mktemp("bench") / "tiny.mp4", seconds=0.5, size=256)


def _check_result(r: StageResult, frames: int) -> None:
    assert r.frames == frames
    assert r.seconds > 0 and r.cpu_seconds > 0 and r.peak_rss_mb > 0
    assert math.isclose(r.fps, r.frames / r.seconds)
    assert len(r.seconds_runs) == len(r.cpu_seconds_runs) >= 1


def test_references_and_edit_with_memory_on_the_looped_clip(tiny_clip, tmp_path):
    frames = probe(tiny_clip).frame_count
    results = run_bench(tiny_clip, stages=("baseline", "transcode", "edit"), loop_memory=True, workdir=tmp_path)
    assert [r.stage for r in results] == ["baseline", "transcode", "edit"]
    for r in results:
        _check_result(r, frames)
        assert r.ratio_to_baseline is not None and r.ratio_to_transcode is not None
        assert r.cpu_ratio_to_baseline is not None
        assert r.peak_rss_mb_looped4 is not None and r.peak_rss_mb_looped4 > 0
    base, transcode, edit = results
    assert base.ratio_to_baseline == pytest.approx(1.0) and transcode.ratio_to_transcode == pytest.approx(1.0)
    assert edit.ratio_to_baseline == pytest.approx(edit.seconds / base.seconds)
    assert edit.ratio_to_transcode == pytest.approx(edit.seconds / transcode.seconds)
    assert edit.cpu_ratio_to_baseline == pytest.approx(edit.cpu_seconds / base.cpu_seconds)
    assert list(tmp_path.iterdir()) == []  # temporary outputs removed

    table = format_table(results).splitlines()
    for word in ("stage", "frames", "seconds", "fps", "cpu s", "x baseline", "x transcode", "peak MB", "peak MB x4"):
        assert word in table[0]
    assert [line.split()[0] for line in table[2:]] == ["baseline", "transcode", "edit"]

    figures = json.loads(json.dumps(results_json(results, tiny_clip)))
    assert figures["clip"] == str(tiny_clip) and figures["cpu_count"] >= 1
    assert [s["stage"] for s in figures["stages"]] == ["baseline", "transcode", "edit"]
    assert set(figures["stages"][2]) >= {"frames", "seconds", "fps", "cpu_seconds", "peak_rss_mb", "ratio_to_baseline",
                                         "ratio_to_transcode", "cpu_ratio_to_baseline", "peak_rss_mb_looped4",
                                         "seconds_runs", "cpu_seconds_runs"}


@pytest.mark.slow
def test_every_stage_runs(tiny_clip, tmp_path):
    frames = probe(tiny_clip).frame_count
    results = run_bench(tiny_clip, loop_memory=False, workdir=tmp_path)
    assert [r.stage for r in results] == list(STAGES)
    for r in results:
        _check_result(r, frames)
        assert r.peak_rss_mb_looped4 is None


def test_repeat_runs_round_robin(tiny_clip, tmp_path):
    results = run_bench(tiny_clip, stages=("baseline", "tracking"), loop_memory=False, repeat=2, workdir=tmp_path)
    for r in results:
        assert len(r.seconds_runs) == 2 and min(r.seconds_runs) <= r.seconds <= max(r.seconds_runs)
    assert results[1].ratio_to_transcode is None  # no transcode run
    assert "-" in format_table(results).splitlines()[3].split()  # the missing ratio


def test_cli_prints_table_and_json_and_writes_json(tiny_clip, tmp_path, capsys):
    out = tmp_path / "figures.json"
    code = main(["bench", "--clip", str(tiny_clip), "--stages", "baseline", "tracking", "--no-loop",
                 "--out", str(out), "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split()[:3] == ["stage", "frames", "seconds"]
    start = printed.index("{")
    figures = json.loads(printed[start:printed.rindex("}") + 1])
    assert [s["stage"] for s in figures["stages"]] == ["baseline", "tracking"]
    assert json.loads(out.read_text()) == figures


def test_bad_arguments(tiny_clip):
    with pytest.raises(ValueError, match="unknown stage"):
        run_bench(tiny_clip, stages=("baseline", "nope"))
    with pytest.raises(ValueError, match="repeat"):
        run_bench(tiny_clip, stages=("baseline",), repeat=0)
    assert main(["bench", "--clip", str(tiny_clip), "--stages", "baseline", "--repeat", "0", "-q"]) != 0
