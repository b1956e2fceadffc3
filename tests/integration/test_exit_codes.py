"""What the process says about itself: the startup line (TLS, mTLS, token), the shutdown line in
words, the exit code when spans were lost, and a second SIGTERM that ends it at once."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.relay_process import RelayProcess
from relay.config import EXIT_SPANS_LOST
from tests.faults.backends import SilentListener
from tests.otlp import tracer_provider
from tests.security.certs import make_pki
from tests.waiting import wait_until


@pytest.fixture
def stalled_jaeger() -> Iterator[SilentListener]:
    with SilentListener() as jaeger:  # accepts the connection, never answers
        yield jaeger


def _send_spans(relay: RelayProcess, count: int) -> None:
    provider = tracer_provider(relay.otlp_port, "buildkitd")
    tracer = provider.get_tracer("test")
    for index in range(count):
        with tracer.start_as_current_span(f"step-{index}"):
            pass
    provider.shutdown()  # returns once the relay answered OK: the spans are accepted


def _line(relay: RelayProcess, text: str) -> str:
    return next((line for line in relay.lines if text in line), "")


def test_a_second_sigterm_ends_a_stuck_shutdown_at_once(stalled_jaeger: SilentListener) -> None:
    relay = RelayProcess("--jaeger-collector", stalled_jaeger.url, "--jaeger-timeout", "60s",
                         "--shutdown-timeout", "60s", "--batch-timeout", "10ms")
    try:
        _send_spans(relay, 5)
        relay.proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: bool(_line(relay, "shutting down")), timeout=10), "".join(relay.lines)
        relay.proc.send_signal(signal.SIGTERM)
        try:
            code = relay.proc.wait(15)  # the first shutdown alone would wait up to 60 s
        except subprocess.TimeoutExpired:
            pytest.fail("the second SIGTERM did not end the process")
    finally:
        relay.close()
    assert code == EXIT_SPANS_LOST
    assert _line(relay, "exiting now"), "".join(relay.lines)


def test_spans_lost_at_shutdown_give_exit_code_3_and_a_line_in_words(stalled_jaeger: SilentListener) -> None:
    relay = RelayProcess("--jaeger-collector", stalled_jaeger.url, "--jaeger-timeout", "30s",
                         "--shutdown-timeout", "1s", "--batch-timeout", "10ms")
    _send_spans(relay, 5)
    assert relay.terminate() == EXIT_SPANS_LOST, "".join(relay.lines)
    line = _line(relay, "shutdown complete")
    assert re.search(r"shutdown complete: 0 spans exported to Jaeger, \d+ dropped( \(\d+ shutdown\))?, "
                     r"0 refused, 0 rejected$", line.strip()), line
    assert "{" not in line


def test_the_startup_line_says_what_protects_the_receiver(tmp_path: Path) -> None:
    plain = RelayProcess()
    assert plain.terminate() == 0
    assert _line(plain, "OTLP/gRPC on").rstrip().endswith("TLS off, mTLS off, bearer token off")

    pki = make_pki(tmp_path)
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    secured = RelayProcess("--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key),
                           "--tls-client-ca-file", str(pki.ca), "--auth-token-file", str(token))
    assert secured.terminate() == 0
    line = _line(secured, "OTLP/gRPC on")
    assert line.rstrip().endswith("TLS on, mTLS on, bearer token required"), line
    assert "t0ken" not in "".join(secured.lines)


def test_the_startup_line_hides_a_password_in_the_collector_url() -> None:
    relay = RelayProcess("--jaeger-collector", "http://ci:hunter2@127.0.0.1:9/api/traces")
    assert relay.terminate() in (0, EXIT_SPANS_LOST)
    line = _line(relay, "OTLP/gRPC on")
    assert "Jaeger collector http://ci:***@127.0.0.1:9/api/traces" in line, line
    assert "hunter2" not in "".join(relay.lines)
