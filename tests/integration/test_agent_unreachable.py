"""An absent Jaeger agent is noticed: a real closed UDP port on 127.0.0.1, then a real agent on it.

Also the DNS look-ups of the agent and the collector: bounded in time, and a failed look-up keeps
the last good address (a hand-written resolver stands in for DNS; the spans go to real sinks)."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bench.jaeger_sinks import HttpCollectorSink, UdpAgentSink
from relay.convert import request_span_count
from relay.exporters.agent import JaegerAgentExporter
from relay.exporters.base import ExportError
from relay.exporters.collector import JaegerCollectorExporter
from relay.testtrace import buildkit_trace
from relay.worker import RetryPolicy
from tests.conftest import RelayFactory
from tests.integration.test_jaeger_exporters import make_span
from tests.otlp import raw_export
from tests.probes import scrape
from tests.waiting import wait_until

PATIENT_RETRY = RetryPolicy(max_elapsed=60.0, initial=0.05, multiplier=1.5, max_interval=0.2)


@pytest.fixture
def agent_sink() -> Iterator[UdpAgentSink]:
    with UdpAgentSink() as sink:
        yield sink


@pytest.fixture
def collector_sink() -> Iterator[HttpCollectorSink]:
    with HttpCollectorSink() as sink:
        yield sink


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_spans_to_a_closed_agent_port_are_not_sent_until_an_agent_listens(make_relay: RelayFactory) -> None:
    port = _closed_udp_port()
    relay = make_relay("--jaeger-agent", f"127.0.0.1:{port}", retry=PATIENT_RETRY)
    request = buildkit_trace(random.Random(7), time.time_ns(), steps=2)
    sent = request_span_count(request)
    raw_export(relay.otlp_port, request)
    assert wait_until(lambda: scrape(relay.admin_port).value(
        "exporter_send_failed_spans_total", "connection_refused") >= sent)
    assert scrape(relay.admin_port).exported == 0
    with UdpAgentSink(port) as agent:  # the agent starts on that port: the retries get through
        assert agent.wait_for_spans(sent, timeout=30)
        assert wait_until(lambda: scrape(relay.admin_port).exported == sent)
    assert scrape(relay.admin_port).dropped == {}


class FakeDns:
    """getaddrinfo's shape; answers from ``answers`` in turn (an exception is raised), the last
    answer repeating. ``gate`` (when given) holds every look-up until it is set."""

    def __init__(self, *answers: object, gate: threading.Event | None = None) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.returned = threading.Event()
        self._gate = gate

    def __call__(self, host: str, port: int, **kwargs: Any) -> list[tuple[Any, ...]]:
        self.calls += 1
        if self._gate is not None:
            self._gate.wait(30)
        answer = self.answers[0] if len(self.answers) == 1 else self.answers.pop(0)
        self.returned.set()
        if isinstance(answer, BaseException):
            raise answer
        return [(socket.AF_INET, kwargs["type"], 0, "", answer)]


def test_a_failed_look_up_keeps_the_last_good_address(agent_sink: UdpAgentSink) -> None:
    dns = FakeDns(("127.0.0.1", agent_sink.port), socket.gaierror(-2, "Name or service not known"))
    exporter = JaegerAgentExporter("agent.example", 6831, lookup=dns, resolve_interval=0)
    sent = 0
    for i in range(200):  # bounded: until a failed look-up has been seen and one more send after it
        exporter.send(exporter.encode([make_span(i)]).payloads[0])
        sent += 1
        if dns.calls >= 3:
            break
    assert dns.calls >= 3  # the first answer, then failures
    assert agent_sink.wait_for_spans(sent, timeout=10)
    exporter.shutdown()


def test_a_look_up_that_hangs_holds_the_worker_only_for_the_resolve_timeout(agent_sink: UdpAgentSink) -> None:
    gate = threading.Event()
    dns = FakeDns(("127.0.0.1", agent_sink.port), gate=gate)
    exporter = JaegerAgentExporter("agent.example", 6831, lookup=dns, resolve_timeout=0.2)
    payload = exporter.encode([make_span(1)]).payloads[0]
    try:
        with pytest.raises(ExportError) as info:
            exporter.send(payload)
        assert not dns.returned.is_set()  # the send gave up while DNS still had not answered
        assert (info.value.reason, info.value.retryable) == ("resolve", True)
        assert "longer than 0.2s" in info.value.detail
    finally:
        gate.set()
    assert dns.returned.wait(10)
    assert wait_until(lambda: _sends(exporter, payload))
    assert agent_sink.wait_for_spans(1, timeout=10)
    assert dns.calls == 1  # one look-up, never a second one started while the first hung
    exporter.shutdown()


def _sends(exporter: JaegerAgentExporter, payload: Any) -> bool:
    try:
        exporter.send(payload)
    except ExportError:
        return False
    return True


def test_a_connect_that_fails_is_a_retryable_export_error() -> None:
    """An answer the socket cannot connect to (an IPv4 address filed as IPv6) is a counted,
    retryable failure, not an exporter bug that drops the spans."""

    def mislabelled(host: str, port: int, **_kwargs: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", port))]

    exporter = JaegerAgentExporter("agent.example", 6831, lookup=mislabelled)
    with pytest.raises(ExportError) as info:
        exporter.send(exporter.encode([make_span(1)]).payloads[0])
    assert (info.value.reason, info.value.retryable) == ("connection", True)
    exporter.shutdown()


def test_the_collector_look_up_is_bounded(
        collector_sink: HttpCollectorSink) -> None:
    """The collector's host is looked up by the same bounded resolver: a hung look-up costs one
    --jaeger-timeout at most, and once answered the exporter connects to that address."""
    gate = threading.Event()
    dns = FakeDns(("127.0.0.1", collector_sink.port), gate=gate)
    exporter = JaegerCollectorExporter(f"http://collector.example:{collector_sink.port}/api/traces",
                                       timeout=0.3, lookup=dns)
    payload = exporter.encode([make_span(1)]).payloads[0]
    try:
        with pytest.raises(ExportError) as info:
            exporter.send(payload)
        assert not dns.returned.is_set()
        assert info.value.reason == "resolve"
    finally:
        gate.set()
    assert dns.returned.wait(10)
    assert wait_until(lambda: _sends(exporter, payload))
    assert collector_sink.wait_for_spans(1, timeout=10)
    assert collector_sink.requests[-1].headers["host"] == f"collector.example:{collector_sink.port}"
    exporter.shutdown()
