"""Tests of ned.checkpoint_io: atomic writes and the CSV log."""

from __future__ import annotations

import csv

import pytest
import torch

from ned.checkpoint_io import CsvLog, atomic_torch_save, atomic_write, atomic_write_bytes

torch.set_num_threads(1)


class TestAtomicWrite:
    def test_round_trip_and_parents(self, tmp_path):
        path = atomic_torch_save(tmp_path / "a" / "b.pt", {"x": torch.arange(3)})
        assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(3))
        assert atomic_write_bytes(tmp_path / "c.bin", b"abc").read_bytes() == b"abc"

    def test_failure_keeps_old_file_and_no_temp(self, tmp_path, monkeypatch):
        target = tmp_path / "t.pt"
        atomic_torch_save(target, {"a": torch.ones(2)})

        def fail(*args, **kwargs):
            raise OSError("disk full")

        monkeypatch.setattr(torch, "save", fail)
        with pytest.raises(OSError, match="disk full"):
            atomic_torch_save(target, {"a": torch.zeros(2)})
        assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(2))
        assert [p.name for p in tmp_path.iterdir()] == ["t.pt"]

    def test_partial_write_removed(self, tmp_path):
        def write(tmp):
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            atomic_write(tmp_path / "x", write)
        assert list(tmp_path.iterdir()) == []


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


class TestCsvLog:
    def test_fresh_log_and_formatting(self, tmp_path):
        log = CsvLog(tmp_path / "sub" / "log.csv", ("step", "loss", "note"))
        log.append({"step": 1, "loss": 0.123456789, "extra": 5})
        assert (tmp_path / "sub" / "log.csv").read_text().splitlines() == ["step,loss,note", "1,0.123457,"]

    def test_resume_drops_rows_after_step(self, tmp_path):
        path = tmp_path / "log.csv"
        log = CsvLog(path, ("step", "loss"))
        for step in range(1, 6):
            log.append({"step": step, "loss": float(step)})
        CsvLog(path, ("step", "loss"), resume_step=3)
        assert [r["step"] for r in _rows(path)] == ["1", "2", "3"]

    def test_fresh_log_truncates(self, tmp_path):
        path = tmp_path / "log.csv"
        CsvLog(path, ("step",)).append({"step": 1})
        CsvLog(path, ("step",))
        assert _rows(path) == []

    def test_resume_without_file_starts_one(self, tmp_path):
        CsvLog(tmp_path / "log.csv", ("step",), resume_step=10)
        assert (tmp_path / "log.csv").read_text().splitlines() == ["step"]
