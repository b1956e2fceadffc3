"""The /builds page in a real headless Chromium: what a user sees, and a screenshot artifact."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from bench.jaeger_sinks import UdpAgentSink
from bench.relay_process import RelayProcess
from tests import chromium
from tests.otlp import tracer_provider

ARTIFACTS = Path(__file__).parents[1] / "artifacts"
JAEGER_UI = "http://127.0.0.1:16686"
EVIL = "[evil 1/1] RUN echo <script>document.title='pwned'</script>"

pytestmark = pytest.mark.skipif(chromium.binary() is None, reason=chromium.MISSING)


@pytest.fixture
def relay() -> Iterator[tuple[RelayProcess, UdpAgentSink]]:
    with UdpAgentSink() as sink:
        process = RelayProcess("--jaeger-agent", f"127.0.0.1:{sink.port}", "--batch-timeout", "50ms",
                               "--jaeger-ui-url", JAEGER_UI)
        yield process, sink
        assert process.terminate() == 0, "".join(process.lines)


def send_hostile_build(otlp_port: int) -> str:
    """A build (real OTLP exporter, SDK spans) whose step name carries a script; an hour old."""
    provider = tracer_provider(otlp_port, "buildkitd")
    tracer = provider.get_tracer("test")
    start = time.time_ns() - 3600 * 10**9
    solve = tracer.start_span("moby.buildkit.v1.Control/Solve", kind=SpanKind.SERVER, start_time=start,
                              attributes={"rpc.response.status_code": "OK"})
    trace_id = f"{solve.get_span_context().trace_id:032x}"
    step = tracer.start_span(EVIL, context=trace.set_span_in_context(solve), start_time=start + 10**8,
                             attributes={"vertex": "sha256:" + "e" * 64})
    step.end(end_time=start + 2 * 10**9)
    solve.end(end_time=start + 3 * 10**9)
    provider.shutdown()
    return trace_id


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_builds_page_in_headless_chromium(relay: tuple[RelayProcess, UdpAgentSink]) -> None:
    process, sink = relay
    hostile = send_hostile_build(process.otlp_port)
    result = subprocess.run([sys.executable, "-m", "relay", "send-test-trace", "--endpoint",
                             f"127.0.0.1:{process.otlp_port}"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    sent = re.search(r"trace ([0-9a-f]{32})", result.stdout)
    assert sent is not None
    assert sink.wait_for_spans(22 + 2, timeout=20)
    url = f"http://127.0.0.1:{process.admin_port}/builds"

    dom = chromium.dump_dom(url)
    assert "<title>trace-relay: builds</title>" in dom  # the step's script did not run
    assert "<script" not in dom
    assert EVIL.replace("<", "&lt;").replace(">", "&gt;") in dom  # shown as text
    # the newest build first, its slowest step named, its trace linked to Jaeger's UI
    first = dom.index(sent[1])
    assert first < dom.index(hostile)
    assert dom.index("[build 4/4] RUN --mount=type=cache,target=/root/.cache go build -o /out/app ./cmd/app") > first
    assert f'<a href="{JAEGER_UI}/trace/{sent[1]}">' in dom
    assert f'<a href="{JAEGER_UI}/trace/{hostile}">' in dom

    shot = ARTIFACTS / "builds-page.png"
    shot.unlink(missing_ok=True)
    chromium.screenshot(url, shot)
    assert png_size(shot) == (1200, 900)
