"""/api/builds and /builds on a real relay process: real BuildKit v0.32 traces replayed as buildkitd
sent them, and `send-test-trace`'s build; the Jaeger side is a real UDP agent that decodes."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.jaeger_sinks import UdpAgentSink
from bench.relay_process import RelayProcess
from bench.replay import to_request
from tests.otlp import raw_export

REAL_TRACES = Path(__file__).parents[1] / "data" / "buildkit-v0.32-builds.otlp.jsonl"
BAKE_TRACE = Path(__file__).parents[1] / "data" / "buildx-bake-trace.spanstubs.json"


@pytest.fixture
def sink() -> Iterator[UdpAgentSink]:
    with UdpAgentSink() as agent:
        yield agent


@pytest.fixture
def relay(sink: UdpAgentSink) -> Iterator[RelayProcess]:
    process = RelayProcess("--jaeger-agent", f"127.0.0.1:{sink.port}", "--batch-timeout", "50ms")
    yield process
    assert process.terminate() == 0, "".join(process.lines)


def get(port: int, path: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.headers["Content-Type"], response.read()


def api_builds(port: int) -> list[dict[str, Any]]:
    content_type, body = get(port, "/api/builds")
    assert content_type == "application/json"
    builds: list[dict[str, Any]] = json.loads(body)["builds"]
    return builds


def otlp_json_request(line: str) -> ExportTraceServiceRequest:
    """One line of the capture: OTLP/JSON with hex ids -> the protobuf buildkitd sent."""
    message = json.loads(line)
    for resource in message["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:  # protobuf's JSON mapping writes bytes as base64
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return json_format.ParseDict(message, ExportTraceServiceRequest())


def test_real_buildkit_builds_through_a_real_relay(relay: RelayProcess, sink: UdpAgentSink) -> None:
    lines = REAL_TRACES.read_text(encoding="utf-8").splitlines()
    for line in lines:
        raw_export(relay.otlp_port, otlp_json_request(line).SerializeToString())
    assert sink.wait_for_spans(177, timeout=20)  # the observer runs before encode: all observed
    builds = {b["trace_id"]: b for b in api_builds(relay.admin_port)}
    summary = {trace_id[:8]: (b["status"], b["steps_executed"], b["steps_cached"], b["slowest_steps"][0]["name"],
                              b["slowest_steps"][0]["duration_seconds"], b["idle_gaps"])
               for trace_id, b in builds.items()}
    # counts from the capture's README: 35 executed vertex spans, one `load cache:`, one failed build
    assert summary == {
        "dda552c3": ("success", 11, 0, "[stage2 2/2] COPY nums.txt /data/nums.txt", 0.012692, []),
        "60fcf608": ("success", 8, 0, '[base 2/2] RUN ["/bin/busybox", "--install", "-s", "/bin"]', 0.071246, []),
        "b8558635": ("success", 3, 1, "[internal] load build definition from Dockerfile", 0.00332, []),
        "f9a608a0": ("failure", 6, 0, '[2/3] RUN ["/bin/busybox", "--install", "-s", "/bin"]', 0.090405, []),
        "c0cf7284": ("success", 7, 0, "[stage-1 1/2] RUN sleep 2", 2.050752, []),
    }
    assert [t[:8] for t in builds] == ["c0cf7284", "f9a608a0", "b8558635", "60fcf608", "dda552c3"]  # newest first
    failed = builds["f9a608a04cde753f6f6a8e7fd3edb1f3"]
    assert failed["failed_steps"] == ["[3/3] RUN sh -c 'echo failing; exit 3'"]
    assert failed["duration_seconds"] == 0.197121
    slow = builds["c0cf72845bf446c6d23cd21ecfb6b0ac"]
    assert [s["name"] for s in slow["slowest_steps"]] == [
        "[stage-1 1/2] RUN sleep 2", '[base 2/2] RUN ["/bin/busybox", "--install", "-s", "/bin"]',
        "[internal] load build context", "[stage-1 2/2] COPY p.txt /p.txt", "[base 1/2] COPY busybox /bin/busybox"]
    assert slow["time_by_kind"]["run"] == round(2.050752273 + 0.082586709, 6)
    assert slow["time_by_kind"]["export"] == 0.042579  # "exporting to client directory"
    _, metrics = get(relay.admin_port, "/metrics")
    assert b'trace_relay_buildkit_builds_total{status="failure"} 1.0' in metrics
    assert b'trace_relay_buildkit_steps_total{cached="true",instruction="COPY"} 1.0' in metrics


def test_send_test_trace_fills_the_report_at_once(relay: RelayProcess, sink: UdpAgentSink) -> None:
    result = subprocess.run([sys.executable, "-m", "relay", "send-test-trace", "--endpoint",
                             f"127.0.0.1:{relay.otlp_port}"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sink.wait_for_spans(22, timeout=20)
    (build,) = api_builds(relay.admin_port)
    assert build["trace_id"] in result.stdout
    assert (build["status"], build["duration_seconds"]) == ("success", 6.15)
    assert (build["steps_executed"], build["steps_cached"]) == (8, 1)
    assert build["slowest_steps"][0] == {
        "name": "[build 4/4] RUN --mount=type=cache,target=/root/.cache go build -o /out/app ./cmd/app",
        "duration_seconds": 3.2}
    assert build["time_by_kind"] == {"source": 0.78, "context": 0.12, "run": 3.2, "copy": 0.195, "export": 0.3,
                                     "other": 0.005}
    assert build["idle_gaps"] == [{"start_offset_seconds": 1.0, "duration_seconds": 1.5}]
    content_type, page = get(relay.admin_port, "/builds")
    assert content_type == "text/html; charset=utf-8"
    assert build["trace_id"].encode() in page


def test_real_buildx_bake_trace_is_one_build(relay: RelayProcess, sink: UdpAgentSink) -> None:
    stubs = json.loads(BAKE_TRACE.read_text(encoding="utf-8"))
    raw_export(relay.otlp_port, to_request(stubs).SerializeToString())
    assert sink.wait_for_spans(len(stubs), timeout=20)
    (build,) = api_builds(relay.admin_port)  # two server Solve spans (bake), one build
    assert (build["trace_id"], build["status"]) == ("0555ce1903feb85770d102846273073b", "success")
    assert (build["steps_executed"], build["steps_cached"]) == (10, 3)
    assert build["duration_seconds"] == 89.176693
    assert build["slowest_steps"][0]["name"].startswith("[test-go 2/2] RUN --mount=type=cache,target=/pkg-cache")
    assert build["slowest_steps"][0]["duration_seconds"] == 85.956687
