"""`trace-relay send-test-trace` as a new user runs it: BuildKit's endpoint forms, a clear word when
nothing listens, durations, and whether the relay could deliver the trace to Jaeger."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.jaeger_sinks import UdpAgentSink
from tests.conftest import RelayFactory
from tests.faults.backends import ControllableCollector
from tests.security.certs import make_pki


@pytest.fixture
def sink() -> Iterator[UdpAgentSink]:
    with UdpAgentSink() as udp:
        yield udp


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _send(*flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relay", "send-test-trace", *flags], capture_output=True,
                          text=True, timeout=60, check=False)


def test_buildkits_http_url_form_is_accepted_and_delivery_confirmed(make_relay: RelayFactory,
                                                                     sink: UdpAgentSink) -> None:
    relay = make_relay("--jaeger-agent", f"127.0.0.1:{sink.port}", "--batch-timeout", "10ms")
    result = _send("--endpoint", f"http://127.0.0.1:{relay.otlp_port}",
                   "--admin-endpoint", f"127.0.0.1:{relay.admin_port}", "--timeout", "10s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: the relay accepted 22 spans of trace "), result.stdout
    assert "delivered them to Jaeger" in result.stdout
    assert sink.wait_for_spans(22, timeout=10)


def test_https_url_form_uses_tls(make_relay: RelayFactory, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    with UdpAgentSink() as udp:
        relay = make_relay("--jaeger-agent", f"127.0.0.1:{udp.port}", "--tls-cert-file", str(pki.server_cert),
                           "--tls-key-file", str(pki.server_key))
        result = _send("--endpoint", f"https://127.0.0.1:{relay.otlp_port}", "--tls-ca-file", str(pki.ca),
                       "--admin-endpoint", f"127.0.0.1:{relay.admin_port}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: ")


def test_nothing_listening_is_said_so_and_timeout_takes_a_duration() -> None:
    port = _free_port()
    result = _send("--endpoint", f"127.0.0.1:{port}", "--timeout", "2s")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith(f"FAILED: nothing is listening on 127.0.0.1:{port}"), result.stdout


def test_a_relay_that_cannot_deliver_is_not_ok(make_relay: RelayFactory) -> None:
    with ControllableCollector(up=False) as jaeger:  # connections refused: no Jaeger anywhere
        relay = make_relay("--jaeger-collector", jaeger.url, "--batch-timeout", "10ms")
        result = _send("--endpoint", f"127.0.0.1:{relay.otlp_port}",
                       "--admin-endpoint", f"127.0.0.1:{relay.admin_port}", "--timeout", "10s")
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.match(r"FAILED: the relay accepted 22 spans of trace [0-9a-f]{32} over grpc; it delivered 0 of them to "
                    r"Jaeger: exporter send failures: \w+ \(\d+ spans\)", result.stdout), result.stdout


def test_an_unreachable_admin_endpoint_is_not_reported_as_delivered(make_relay: RelayFactory,
                                                                    sink: UdpAgentSink) -> None:
    relay = make_relay("--jaeger-agent", f"127.0.0.1:{sink.port}")
    port = _free_port()
    result = _send("--endpoint", f"127.0.0.1:{relay.otlp_port}", "--admin-endpoint", f"127.0.0.1:{port}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ACCEPTED: the relay accepted 22 spans"), result.stdout
    assert f"nothing is listening on 127.0.0.1:{port}" in result.stdout


@pytest.mark.parametrize(("endpoint", "message"), [
    ("ftp://127.0.0.1:4317", "expected HOST:PORT, http://HOST:PORT or https://HOST:PORT"),
    ("http://127.0.0.1:4318/v1/traces", "OTLP/gRPC takes no path"),
])
def test_a_bad_endpoint_is_one_line_and_exit_2(endpoint: str, message: str) -> None:
    result = _send("--endpoint", endpoint)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("trace-relay send-test-trace: error: --endpoint: ") and message in line, line
