"""The relay as users run it: a subprocess, real traffic, a real SIGTERM."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench.jaeger_sinks import UdpAgentSink
from bench.relay_process import RelayProcess
from tests.otlp import tracer_provider


@pytest.fixture
def sink() -> Iterator[UdpAgentSink]:
    with UdpAgentSink() as udp:
        yield udp


def test_sigterm_drains_everything_accepted_and_exits_0(sink: UdpAgentSink) -> None:
    relay = RelayProcess("--jaeger-agent", f"127.0.0.1:{sink.port}", "--batch-timeout", "2s",
                    "--max-batch-size", "10000")
    provider = tracer_provider(relay.otlp_port, "buildkitd")
    tracer = provider.get_tracer("test")
    for index in range(300):
        with tracer.start_as_current_span(f"step-{index}"):
            pass
    provider.shutdown()
    # A 2 s batch timeout keeps the spans queued; SIGTERM must still deliver every one.
    assert relay.terminate() == 0, "".join(relay.lines)
    assert sink.wait_for_spans(300, timeout=10)
    assert sorted(s.operationName for s in sink.spans()) == sorted(f"step-{i}" for i in range(300))
    assert any("shutdown complete" in line for line in relay.lines)


def test_send_test_trace_against_a_running_relay(sink: UdpAgentSink) -> None:
    relay = RelayProcess("--jaeger-agent", f"127.0.0.1:{sink.port}")
    result = subprocess.run([sys.executable, "-m", "relay", "send-test-trace", "--endpoint",
                             f"127.0.0.1:{relay.otlp_port}", "--admin-endpoint", f"127.0.0.1:{relay.admin_port}"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: ")
    trace_id = re.search(r"trace ([0-9a-f]{32})", result.stdout)
    assert trace_id is not None
    assert sink.wait_for_spans(20, timeout=10)
    high, low = int(trace_id[1][:16], 16), int(trace_id[1][16:], 16)
    assert all((s.traceIdHigh % 2**64, s.traceIdLow % 2**64) == (high, low) for s in sink.spans())
    assert relay.terminate() == 0


def test_send_test_trace_over_each_protocol(sink: UdpAgentSink) -> None:
    relay = RelayProcess("--jaeger-agent", f"127.0.0.1:{sink.port}")
    assert relay.http_port, "".join(relay.lines)
    endpoints = {"grpc": f"127.0.0.1:{relay.otlp_port}", "http/protobuf": f"127.0.0.1:{relay.http_port}",
                 "http/json": f"http://127.0.0.1:{relay.http_port}/v1/traces"}
    for protocol, endpoint in endpoints.items():
        result = subprocess.run([sys.executable, "-m", "relay", "send-test-trace", "--protocol", protocol,
                                 "--endpoint", endpoint, "--steps", "3",
                                 "--admin-endpoint", f"127.0.0.1:{relay.admin_port}"],
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("OK: "), result.stdout
        assert f"over {protocol}" in result.stdout
    assert sink.wait_for_spans(3 * 10, timeout=10)
    by_trace: dict[tuple[int, int], list[str]] = {}
    for span in sink.spans():
        by_trace.setdefault((span.traceIdHigh, span.traceIdLow), []).append(span.operationName)
    shapes = {tuple(sorted(names)) for names in by_trace.values()}
    assert len(by_trace) == 3
    assert len(shapes) == 1  # the same build, whichever protocol carried it
    wrong_path = subprocess.run([sys.executable, "-m", "relay", "send-test-trace", "--protocol", "http/protobuf",
                                 "--endpoint", f"http://127.0.0.1:{relay.http_port}/"],
                                capture_output=True, text=True, timeout=60, check=False)
    assert wrong_path.returncode == 1
    assert "HTTP 404" in wrong_path.stdout
    assert "/v1/traces" in wrong_path.stdout
    assert relay.terminate() == 0


def test_a_taken_http_port_is_one_line_and_exit_2(sink: UdpAgentSink) -> None:
    relay = RelayProcess("--jaeger-agent", f"127.0.0.1:{sink.port}")
    result = subprocess.run([sys.executable, "-m", "relay", "--otlp-grpc-endpoint", "127.0.0.1:0",
                             "--otlp-http-endpoint", f"127.0.0.1:{relay.http_port}", "--admin-endpoint", "127.0.0.1:0"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("trace-relay: error: --otlp-http-endpoint: cannot listen on")
    assert len(result.stderr.strip().splitlines()) == 1
    assert relay.terminate() == 0


def test_send_test_trace_says_when_no_relay_answers() -> None:
    with UdpAgentSink() as unused:  # a port that no gRPC server listens on
        result = subprocess.run([sys.executable, "-m", "relay", "send-test-trace", "--endpoint",
                                 f"127.0.0.1:{unused.port}", "--timeout", "2"], capture_output=True,
                                text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stdout.startswith("FAILED: ")


def test_a_taken_port_is_one_line_and_exit_2(sink: UdpAgentSink) -> None:
    relay = RelayProcess("--jaeger-agent", f"127.0.0.1:{sink.port}")
    result = subprocess.run([sys.executable, "-m", "relay", "--otlp-grpc-endpoint", f"127.0.0.1:{relay.otlp_port}",
                             "--otlp-http-endpoint", "127.0.0.1:0", "--admin-endpoint", "127.0.0.1:0"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("trace-relay: error: --otlp-grpc-endpoint: cannot listen")
    assert len(result.stderr.strip().splitlines()) == 1
    assert relay.terminate() == 0
