"""A short, bounded atheris run of the native OTLP parser against upb (tests/hostile/fuzz_native.py).
The long run is documented there."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from relay import native

REPO = Path(__file__).resolve().parents[2]
RUNS = 20000


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
@pytest.mark.skipif(native.load_parser({}) is None, reason="the relay.native._otlp extension is not built")
@pytest.mark.timeout(300)
def test_native_parser_survives_a_bounded_atheris_run(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    command = [sys.executable, "-m", "tests.hostile.fuzz_native", "--seed-corpus", str(corpus),
               f"-runs={RUNS}", "-max_total_time=120", "-max_len=8192", f"-artifact_prefix={tmp_path}/",
               str(corpus)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=280, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"Done {RUNS} runs" in result.stderr, result.stderr[-2000:]
    assert not list(tmp_path.glob("crash-*"))
