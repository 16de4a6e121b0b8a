"""benchmarks/gpu_check.py runs its CPU smoke profile end to end (a few seconds) and isolates failures."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from ned.manipulate import networks

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture()
def gpu_check(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The script as a module; its arch registration and sys.path entry are undone afterwards."""
    monkeypatch.setattr(networks, "_ARCHS", dict(networks._ARCHS))
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)
    spec.loader.exec_module(module)
    return module


def test_cpu_smoke_run(gpu_check: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--device", "cpu", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    result = json.loads(out_json.read_text())
    status = {c["name"]: c["status"] for c in result["checks"]}
    assert list(status) == list(gpu_check.CHECKS)
    skipped = {"renderer.train_fp16", "ddp.torchrun_renderer", "ddp.torchrun_manipulator", "ddp.two_procs_one_gpu"}
    assert {name for name, s in status.items() if s == "SKIP"} == skipped
    assert all(s == "PASS" for name, s in status.items() if name not in skipped)
    for name in status:
        assert any(line.split()[:2] == [status[name], name] for line in out.splitlines()), name
    assert result["profile"]["name"] == "smoke" and "8 passed, 0 failed, 4 skipped" in out


def test_a_failing_check_does_not_stop_the_others(gpu_check: ModuleType, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    def broken(ctx, numbers):
        numbers.add(before=1.0)
        raise RuntimeError("boom on purpose")

    def out_of_bounds(ctx, numbers):
        numbers.below("max_diff", 0.5, 1e-3)

    monkeypatch.setitem(gpu_check.CHECKS, "renderer.forward", broken)
    monkeypatch.setitem(gpu_check.CHECKS, "renderer.train", out_of_bounds)
    out_json = tmp_path / "r.json"
    rc = gpu_check.main(["--device", "cpu", "--json", str(out_json), "--checks", "renderer.forward",
                         "renderer.train", "deca.backend"])
    out = capsys.readouterr().out
    checks = {c["name"]: c for c in json.loads(out_json.read_text())["checks"]}
    assert rc == 1
    assert checks["renderer.forward"]["status"] == "FAIL" and "boom on purpose" in checks["renderer.forward"]["error"]
    assert "RuntimeError: boom on purpose" in out and checks["renderer.forward"]["values"] == {"before": 1.0}
    assert checks["renderer.train"]["failed"] == ["max_diff=0.5 not < 0.001"] and "bound: max_diff" in out
    assert checks["deca.backend"]["status"] == "PASS"


def test_help_lists_the_checks(gpu_check: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(name in text for name in gpu_check.CHECKS) and "--ddp_on_cpu" in text
