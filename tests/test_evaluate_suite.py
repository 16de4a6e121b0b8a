"""`ned evaluate-suite`: clip labels, scores, and a tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ned.cli import main
from ned.errors import InputError
from ned.evaluate.suite import SuiteRow, suite_scores
from ned.labels import discover_clips, parse_clip_path
from ned.media import read_comment
from ned.sample import make_sample_clip


def test_parse_flat_and_tree_names(tmp_path):
    flat = parse_clip_path(Path("M030_front_surprised_level3_001.mp4"))
    assert (flat.actor, flat.emotion, flat.level) == ("M030", "surprised", 3)
    assert parse_clip_path(Path("W009_front_disgust_level_1_002.mp4")).emotion == "disgusted"
    tree = tmp_path / "M003" / "video" / "front" / "fear" / "level_2" / "005.mp4"
    c = parse_clip_path(tree, tmp_path)
    assert (c.actor, c.emotion, c.level) == ("M003", "fear", 2)
    assert parse_clip_path(Path("holiday.mp4")) is None


def test_scores_are_sum_of_edited_over_sum_of_real():
    rows = [SuiteRow("A", "happy", "real", 0.8), SuiteRow("A", "happy", "label", 0.4),
            SuiteRow("A", "sad", "real", 0.2), SuiteRow("A", "sad", "label", 0.2),
            SuiteRow("B", "sad", "label", 0.9)]  # B has no real clip: not scored
    assert suite_scores(rows)["overall"]["score_label"] == pytest.approx(0.6)


def test_folder_without_labels_is_a_clear_error(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="actor"):
        discover_clips(tmp_path)


def test_tiny_suite_run(tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    make_sample_clip(clips / "A_front_neutral_level1_001.mp4", seconds=0.48, fps=25)
    make_sample_clip(clips / "A_front_happy_level3_001.mp4", seconds=0.48, fps=25)
    out = tmp_path / "out"
    assert main(["evaluate-suite", "--clips", str(clips), "--out", str(out), "--emotions", "happy", "--quiet"]) == 0
    data = json.loads((out / "suite.json").read_text())
    modes = {r["mode"] for r in data["rows"]}
    assert modes == {"real", "unedited", "label"}
    assert (out / "A" / "label_happy.mp4").exists()
    assert {"score_label", "score_unedited", "second_score_label"} <= set(data["scores"]["overall"])
    assert all(0 <= r["second_rate"] <= 1 for r in data["rows"])  # the sample face is found in every clip
    printed = capsys.readouterr().out
    assert "happy" in printed and "FER2013/second classifier" in printed


def test_named_references(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for actor in ("A", "B"):
        for emotion, level in (("neutral", 1), ("happy", 3)):
            make_sample_clip(clips / f"{actor}_front_{emotion}_level{level}_001.mp4", seconds=0.48, fps=25)
    out = tmp_path / "out"
    assert main(["evaluate-suite", "--clips", str(clips), "--ref-clips", str(clips), "--out", str(out),
                 "--emotions", "happy", "--name-references", "--quiet"]) == 0
    data = json.loads((out / "suite.json").read_text())
    assert data["references_named"] is True
    assert {r["actor"] for r in data["rows"] if r["mode"] == "reference"} == {"A", "B"}
    assert read_comment(out / "A" / "ref_happy_B.mp4").endswith("reference B_front_happy_level3_001.mp4 acting happy")


def test_clip_votes_follow_a_rewritten_file(tmp_path):
    from ned.evaluate.suite import clip_votes

    clip = tmp_path / "A_front_happy_level3_001.mp4"
    make_sample_clip(clip, seconds=0.2, fps=25)
    first = len(clip_votes(clip)[0])
    make_sample_clip(clip, seconds=0.4, fps=25)  # same name, new content: not the cached votes
    assert first == 5 and len(clip_votes(clip)[0]) == 10
