"""The relay as users run it: a subprocess, real traffic, a real SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.jaeger_sinks import UdpAgentSink
from tests.otlp import tracer_provider

PORTS = re.compile(r"OTLP/gRPC on \S+ \(port (\d+)\), admin on port (\d+)")


class Process:
    def __init__(self, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "--otlp-grpc-endpoint", "127.0.0.1:0",
             "--admin-endpoint", "127.0.0.1:0", *flags],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.otlp_port = self.admin_port = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(30):
            self.close()
            raise AssertionError("relay did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            match = PORTS.search(line)
            if match:
                self.otlp_port, self.admin_port = int(match[1]), int(match[2])
                self._ready.set()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.fixture
def sink() -> Iterator[UdpAgentSink]:
    with UdpAgentSink() as udp:
        yield udp


def test_sigterm_drains_everything_accepted_and_exits_0(sink: UdpAgentSink) -> None:
    relay = Process("--jaeger-agent", f"127.0.0.1:{sink.port}", "--batch-timeout", "2s",
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
    relay = Process("--jaeger-agent", f"127.0.0.1:{sink.port}")
    result = subprocess.run([sys.executable, "-m", "relay", "send-test-trace", "--endpoint",
                             f"127.0.0.1:{relay.otlp_port}"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: ")
    trace_id = re.search(r"trace ([0-9a-f]{32})", result.stdout)
    assert trace_id is not None
    assert sink.wait_for_spans(20, timeout=10)
    high, low = int(trace_id[1][:16], 16), int(trace_id[1][16:], 16)
    assert all((s.traceIdHigh % 2**64, s.traceIdLow % 2**64) == (high, low) for s in sink.spans())
    assert relay.terminate() == 0


def test_send_test_trace_says_when_no_relay_answers() -> None:
    with UdpAgentSink() as unused:  # a port that no gRPC server listens on
        result = subprocess.run([sys.executable, "-m", "relay", "send-test-trace", "--endpoint",
                                 f"127.0.0.1:{unused.port}", "--timeout", "2"], capture_output=True,
                                text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stdout.startswith("FAILED: ")


def test_a_taken_port_is_one_line_and_exit_2(sink: UdpAgentSink) -> None:
    relay = Process("--jaeger-agent", f"127.0.0.1:{sink.port}")
    result = subprocess.run([sys.executable, "-m", "relay", "--otlp-grpc-endpoint", f"127.0.0.1:{relay.otlp_port}",
                             "--admin-endpoint", "127.0.0.1:0"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("trace-relay: error: --otlp-grpc-endpoint: cannot listen")
    assert len(result.stderr.strip().splitlines()) == 1
    assert relay.terminate() == 0
