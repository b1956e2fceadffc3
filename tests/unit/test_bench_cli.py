"""The benchmark's own user interface: a smoke run gives figures, never verdicts; the replay's
default input is in the repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench.__main__ as bench_main
from bench import replay, report


def _table(mode: str) -> str:
    return report.markdown(report.summarize([[]]), {"mode": mode, "runs": 1, "machine": "test machine"})


def test_a_smoke_run_prints_no_verdict() -> None:
    table = _table("smoke")
    assert table.startswith(f"**{report.SMOKE_LABEL}**")
    assert "smoke: not a measurement" in table
    assert "Met" not in table
    assert "yes" not in table and "**no**" not in table


def test_a_full_run_prints_the_targets() -> None:
    table = _table("full")
    assert "| Target | Bound | Measured | Met |" in table
    assert "not a measurement" not in table


def test_replay_runs_without_arguments_on_the_trace_in_the_repository(capsys: pytest.CaptureFixture[str]) -> None:
    assert replay.DEFAULT_TRACE.is_file()
    assert replay.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sent 73 spans; rejected 0; arrived 73")
    assert out.rstrip().endswith("OK")


def test_the_smoke_command_writes_no_verdict(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # The phases themselves are replaced (they take a minute); what is checked is what the command
    # makes of their results.
    monkeypatch.setattr(bench_main, "one_run", lambda _plan, _index, with_sweep: ([], []))
    monkeypatch.setattr(report, "plot", lambda _sweeps, _path: None)
    assert bench_main.main(["--smoke", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "smoke: not a measurement" in printed and "Met" not in printed
    assert "targets" not in json.loads((tmp_path / "latest.json").read_text())["summary"]
