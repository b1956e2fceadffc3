"""Jaeger down, hanging, failing, flapping or unresolvable; the queue full with clients that retry.

For each fault: the relay keeps serving (gRPC health, /healthz, /readyz), and the metrics an
operator scrapes from /metrics balance: received = exported + dropped + refused + rejected + queued.
Within the retry bound nothing accepted is lost; past it, every loss is counted with its reason.
"""

from __future__ import annotations

import random
import threading
import time

from opentelemetry.sdk.trace.export import SpanExportResult

from relay.app import Relay
from relay.convert import request_span_count
from relay.testtrace import buildkit_trace
from relay.worker import RetryPolicy
from tests.conftest import RelayFactory
from tests.faults.backends import ControllableCollector, SilentListener
from tests.otlp import otlp_exporter, raw_export
from tests.probes import Scrape, assert_serving, scrape
from tests.unit.test_convert import sdk_spans
from tests.waiting import wait_until

SHORT_RETRY = RetryPolicy(max_elapsed=0.6, initial=0.05, multiplier=1.5, max_interval=0.2)


def _send(relay: Relay, seed: int, steps: int = 3) -> int:
    """One BuildKit-shaped build trace through the real gRPC port; returns its span count."""
    request = buildkit_trace(random.Random(seed), time.time_ns(), steps=steps)
    raw_export(relay.otlp_port, request)
    return request_span_count(request)


def _settled(relay: Relay) -> Scrape:
    """The scrape once nothing is queued any more (every accepted span exported or dropped)."""
    assert wait_until(lambda: scrape(relay.admin_port).queued == 0, timeout=30)
    return scrape(relay.admin_port)


def _failed(relay: Relay, reason: str) -> float:
    return scrape(relay.admin_port).value("exporter_send_failed_spans_total", reason)


def _nothing_lost(metrics: Scrape, sent: int) -> None:
    assert metrics.unbalanced() == 0
    assert metrics.received == sent
    assert metrics.exported == sent
    assert metrics.dropped == {}


def test_collector_refusing_connections_then_back_loses_nothing(make_relay: RelayFactory) -> None:
    with ControllableCollector(up=False) as jaeger:
        relay = make_relay("--jaeger-collector", jaeger.url)
        sent = _send(relay, 1) + _send(relay, 2)
        assert wait_until(lambda: _failed(relay, "connection") > 0)
        assert_serving(relay.otlp_port, relay.admin_port)
        assert scrape(relay.admin_port).unbalanced() == 0
        jaeger.up()
        assert jaeger.wait_for_spans(sent, timeout=30)
        _nothing_lost(_settled(relay), sent)
        assert jaeger.span_count() == sent


def test_collector_refusing_past_the_retry_bound_counts_each_loss(make_relay: RelayFactory) -> None:
    with ControllableCollector(up=False) as jaeger:
        relay = make_relay("--jaeger-collector", jaeger.url, retry=SHORT_RETRY)
        sent = _send(relay, 3)
        metrics = _settled(relay)
        assert metrics.dropped == {"retry_exhausted": sent}
        assert metrics.value("exporter_send_failed_spans_total", "connection") >= sent
        assert metrics.unbalanced() == 0
        assert_serving(relay.otlp_port, relay.admin_port)
        jaeger.up()  # Jaeger back: the next build goes through
        again = _send(relay, 4)
        assert jaeger.wait_for_spans(again, timeout=30)
        assert _settled(relay).exported == again


def test_collector_that_never_answers_times_out_and_recovers(make_relay: RelayFactory) -> None:
    with ControllableCollector() as jaeger:
        jaeger.hang_next(2)
        relay = make_relay("--jaeger-collector", jaeger.url, "--jaeger-timeout", "200ms")
        sent = _send(relay, 5)
        assert jaeger.wait_for_spans(sent, timeout=30)
        assert jaeger.hung == 2
        metrics = _settled(relay)
        assert metrics.value("exporter_retries_total") == 2  # one per hung request
        assert metrics.value("exporter_send_failed_spans_total", "timeout") > 0
        _nothing_lost(metrics, sent)


def test_stalled_collector_past_the_retry_bound(make_relay: RelayFactory) -> None:
    with SilentListener() as jaeger:
        relay = make_relay("--jaeger-collector", jaeger.url, "--jaeger-timeout", "150ms",
                           retry=SHORT_RETRY)
        sent = _send(relay, 6)
        assert wait_until(lambda: _failed(relay, "timeout") > 0)
        assert_serving(relay.otlp_port, relay.admin_port)
        metrics = _settled(relay)
        assert metrics.dropped == {"retry_exhausted": sent}
        assert metrics.unbalanced() == 0


def test_collector_5xx_for_a_while_then_recovering(make_relay: RelayFactory) -> None:
    with ControllableCollector() as jaeger:
        for status in (500, 502, 503, 504, 503, 503):
            jaeger.fail_next(1, status)
        relay = make_relay("--jaeger-collector", jaeger.url)
        sent = _send(relay, 7)
        assert wait_until(lambda: _failed(relay, "http_503") > 0)
        assert_serving(relay.otlp_port, relay.admin_port)
        assert jaeger.wait_for_spans(sent, timeout=30)
        metrics = _settled(relay)
        _nothing_lost(metrics, sent)
        assert set(metrics.by_label("exporter_send_failed_spans_total")) == {
            "http_500", "http_502", "http_503", "http_504"}
        assert metrics.value("exporter_retries_total") == 6


def test_flapping_collector_delivers_every_span_once(make_relay: RelayFactory) -> None:
    with ControllableCollector() as jaeger:
        jaeger.status_for = lambda number, _request: 503 if number % 2 == 0 else 202
        relay = make_relay("--jaeger-collector", jaeger.url, "--max-batch-size", "8")
        sent = sum(_send(relay, seed) for seed in range(10, 15))
        assert jaeger.wait_for_spans(sent, timeout=30)
        _nothing_lost(_settled(relay), sent)
        span_ids = [span.spanId for span in jaeger.spans()]
        assert len(span_ids) == len(set(span_ids)) == sent


def test_agent_host_that_does_not_resolve(make_relay: RelayFactory) -> None:
    relay = make_relay("--jaeger-agent", "no-such-host.invalid:6831", retry=SHORT_RETRY)
    sent = _send(relay, 20)
    assert wait_until(lambda: _failed(relay, "resolve") > 0)
    assert_serving(relay.otlp_port, relay.admin_port)
    metrics = _settled(relay)
    assert metrics.dropped == {"retry_exhausted": sent}
    assert metrics.unbalanced() == 0
    assert relay.worker.is_alive()


def test_full_queue_real_clients_retry_and_nothing_is_lost(make_relay: RelayFactory) -> None:
    """Jaeger fails while 4 real OTLP exporters send; the small queue fills, they are refused with
    UNAVAILABLE + RetryInfo, retry, and every span they were told succeeded reaches Jaeger once."""
    recovered = threading.Event()
    with ControllableCollector() as jaeger:
        jaeger.status_for = lambda _number, _request: 202 if recovered.is_set() else 503
        relay = make_relay("--jaeger-collector", jaeger.url, "--queue-size", "12",
                           "--max-batch-size", "12")
        results: list[SpanExportResult] = []
        lock = threading.Lock()

        def client(index: int) -> None:
            exporter = otlp_exporter(relay.otlp_port)
            spans = sdk_spans()[:4]
            for span in spans:
                span._name = f"client{index}-{span.name}"
            result = exporter.export(spans)
            exporter.shutdown()
            with lock:
                results.append(result)

        clients = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for thread in clients:
            thread.start()
        assert wait_until(lambda: scrape(relay.admin_port).total("receiver_refused_spans_total") > 0)
        assert_serving(relay.otlp_port, relay.admin_port)
        assert scrape(relay.admin_port).unbalanced() == 0
        recovered.set()
        for thread in clients:
            thread.join(60)
        assert results == [SpanExportResult.SUCCESS] * 4
        assert jaeger.wait_for_spans(16, timeout=30)
        metrics = _settled(relay)
        assert metrics.refused.keys() == {"queue_full"}
        assert metrics.exported == 16
        assert metrics.dropped == {}
        assert metrics.unbalanced() == 0
        ids = [(span.traceIdHigh, span.traceIdLow, span.spanId) for span in jaeger.spans()]
        assert len(ids) == len(set(ids)) == 16
