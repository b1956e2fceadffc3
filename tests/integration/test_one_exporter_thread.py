"""The guarantee: however many clients export at once, one thread, and only one, is ever inside
the exporter. Shown with 64 concurrent real OTLP/gRPC clients against an exporter that records
every overlapping entry and every calling thread, and shown able to fail against a deliberately
broken relay that runs two workers."""

from __future__ import annotations

import threading

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext, SpanKind

from relay.app import Relay
from relay.worker import RetryPolicy, Worker
from tests.conftest import RelayFactory
from tests.fakes import ConcurrencyDetector
from tests.otlp import otlp_exporter

CLIENTS = 64
EXPORTS_PER_CLIENT = 5
SPANS_PER_EXPORT = 10


def client_spans(client: int, export: int) -> list[ReadableSpan]:
    resource = Resource.create({"service.name": f"buildkitd-{client % 4}"})
    return [
        ReadableSpan(
            name=f"c{client}-e{export}-s{index}",
            context=SpanContext(trace_id=client + 1, span_id=(client << 20) | (export << 8) | (index + 1),
                                is_remote=False),
            resource=resource, kind=SpanKind.INTERNAL, attributes={"client": client},
            start_time=1_000, end_time=2_000,
        )
        for index in range(SPANS_PER_EXPORT)
    ]


def run_clients(relay: Relay) -> list[SpanExportResult]:
    results: list[SpanExportResult] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def client(number: int) -> None:
        exporter = otlp_exporter(relay.otlp_port)
        start.wait(30)
        for export in range(EXPORTS_PER_CLIENT):
            result = exporter.export(client_spans(number, export))
            with lock:
                results.append(result)
        exporter.shutdown()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    return results


TOTAL = CLIENTS * EXPORTS_PER_CLIENT * SPANS_PER_EXPORT


def assert_one_thread_was_ever_inside(detector: ConcurrencyDetector) -> None:
    """The guarantee, as the real test checks it and the broken control must violate it."""
    assert detector.overlaps == [], f"{len(detector.overlaps)} overlapping entries"
    assert len(detector.thread_ids) == 1


def test_64_concurrent_clients_one_thread_inside_the_exporter(make_relay: RelayFactory) -> None:
    detector = ConcurrencyDetector()
    relay = make_relay("--max-batch-size", "50", "--batch-timeout", "5ms", exporter=detector)
    results = run_clients(relay)
    assert results == [SpanExportResult.SUCCESS] * (CLIENTS * EXPORTS_PER_CLIENT)
    assert detector.wait_for_spans(TOTAL, timeout=60)
    relay.shutdown()
    assert_one_thread_was_ever_inside(detector)
    names = [span.name for span in detector.spans()]
    assert len(names) == len(set(names)) == TOTAL  # every span once
    for batch in detector.exported:
        assert len({span.resource for span in batch}) == 1


def test_the_detector_catches_a_broken_two_worker_relay(make_relay: RelayFactory) -> None:
    """The same detector and load against a relay with a second worker on the same exporter: two
    threads are seen inside the exporter at the same time, and the real test's check fails."""
    detector = ConcurrencyDetector()
    relay = make_relay("--max-batch-size", "10", "--batch-timeout", "1ms", exporter=detector)
    second = Worker(relay.queue, detector, relay.metrics, max_batch_size=10, batch_timeout=0.001,
                    retry=RetryPolicy())
    second.start()
    run_clients(relay)
    assert detector.wait_for_spans(TOTAL, timeout=60)
    relay.shutdown()
    assert second.stop(5)
    assert detector.overlaps, "no overlap seen: the detector cannot tell a broken relay"
    assert all(len(together) == 2 for together in detector.overlaps)  # two distinct threads
    assert set().union(*detector.overlaps) == detector.thread_ids
    with pytest.raises(AssertionError):
        assert_one_thread_was_ever_inside(detector)
