from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from prometheus_client import CollectorRegistry

from relay.exporters.base import Encoded, ExportError, Payload
from relay.metrics import Ledger, Metrics
from relay.spanqueue import SpanQueue, Take
from relay.worker import THREAD_NAME, RetryPolicy, Worker
from tests.fakes import GatedExporter, RecordingExporter
from tests.queueing import offer
from tests.waiting import wait_until

FAST = RetryPolicy(max_elapsed=2.0, initial=0.01, multiplier=2.0, max_interval=0.05)


def spans(count: int, service: str) -> list[ReadableSpan]:
    resource = Resource({"service.name": service})
    return [ReadableSpan(name=f"{service}-{i}", resource=resource) for i in range(count)]


class Harness:
    def __init__(self, exporter: object, retry: RetryPolicy = FAST, capacity: int = 1000) -> None:
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry, capacity)
        self.queue = SpanQueue(self.metrics.ledger, max_spans=capacity, max_bytes=10**9)
        self.worker = Worker(self.queue, exporter, self.metrics, max_batch_size=100,  # type: ignore[arg-type]
                             batch_timeout=0.01, retry=retry)
        self.worker.start()

    def offer(self, *batches: list[ReadableSpan]) -> None:
        assert offer(self.queue, *batches)
        self.metrics.ledger.request("OK")

    def settled(self, timeout: float = 10.0) -> bool:
        """Every span has a fate and the worker handed its takes back: all the room is free."""
        return wait_until(lambda: self.metrics.ledger.snapshot().queued == 0 and self._all_room_free(), timeout)

    def _all_room_free(self) -> bool:
        reservation = self.queue.reserve(self.queue.capacity, 0)
        if reservation is None:
            return False
        self.queue.cancel(reservation)
        return True

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def test_resources_are_exported_separately_and_in_one_named_thread() -> None:
    exporter = RecordingExporter()
    calls: list[str] = []
    original = exporter.encode

    def encode(batch: Sequence[ReadableSpan]) -> Encoded:
        calls.append(threading.current_thread().name)
        assert len({span.resource for span in batch}) == 1, "two resources in one export"
        return original(batch)

    exporter.encode = encode  # type: ignore[method-assign]
    harness = Harness(exporter)
    harness.offer(spans(3, "buildx"), spans(2, "buildkitd"), spans(4, "buildx"))
    assert harness.settled()
    services = sorted({batch[0].resource.attributes["service.name"] for batch in exporter.exported})
    assert services == ["buildkitd", "buildx"]
    assert len(exporter.spans()) == 9
    assert set(calls) == {THREAD_NAME}
    assert harness.worker.stop(5)
    assert exporter.shut_down


def test_retryable_failures_are_retried_then_delivered() -> None:
    failures = [ExportError("http_503", "unavailable"), ExportError("connection", "refused"), None]
    exporter = RecordingExporter(failures)
    harness = Harness(exporter)
    harness.offer(spans(5, "svc"))
    assert harness.settled()
    assert len(exporter.spans()) == 5
    assert harness.value("trace_relay_exporter_sent_spans_total") == 5
    assert harness.value("trace_relay_exporter_send_failed_spans_total", reason="http_503") == 5
    assert harness.value("trace_relay_exporter_retries_total") == 2
    assert harness.value("trace_relay_dropped_spans_total", reason="retry_exhausted") == 0
    harness.worker.stop(5)


def test_not_retryable_is_dropped_and_counted_and_the_next_batch_goes_out() -> None:
    exporter = RecordingExporter([ExportError("http_400", "bad request", retryable=False)])
    harness = Harness(exporter)
    harness.offer(spans(3, "svc"))
    assert harness.settled()
    harness.offer(spans(2, "svc"))
    assert harness.settled()
    assert harness.value("trace_relay_dropped_spans_total", reason="not_retryable") == 3
    assert harness.value("trace_relay_exporter_sent_spans_total") == 2
    harness.worker.stop(5)


class AlwaysFailing(RecordingExporter):
    def send(self, payload: Payload) -> None:
        self.attempts += 1
        raise ExportError("timeout", "no answer")


def test_past_the_retry_bound_spans_are_dropped_and_counted() -> None:
    exporter = AlwaysFailing()
    harness = Harness(exporter, RetryPolicy(max_elapsed=0.3, initial=0.02, multiplier=2, max_interval=0.05))
    harness.offer(spans(4, "svc"))
    assert harness.settled()
    assert exporter.attempts > 1
    assert harness.value("trace_relay_dropped_spans_total", reason="retry_exhausted") == 4
    assert harness.worker.is_alive()
    harness.worker.stop(5)


def test_a_retry_bound_of_zero_retries_until_jaeger_takes_it() -> None:
    """--retry-max-elapsed 0 is the Collector's "retry forever": many more attempts than a 0.3 s
    bound would allow, and the spans arrive once the exporter recovers; nothing dropped."""
    failures = [ExportError("timeout", "no answer")] * 40  # ~40 x 20-50 ms: well past 0.3 s
    exporter = RecordingExporter(failures)
    harness = Harness(exporter, RetryPolicy(max_elapsed=0, initial=0.02, multiplier=2, max_interval=0.05))
    harness.offer(spans(3, "svc"))
    assert exporter.wait_for_spans(3, timeout=30)
    assert harness.settled()
    assert exporter.attempts == 41
    assert harness.value("trace_relay_dropped_spans_total", reason="retry_exhausted") == 0
    harness.worker.stop(5)


class Exploding(RecordingExporter):
    """Raises things that are not ExportError, from encode and from send."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def encode(self, batch: Sequence[ReadableSpan]) -> Encoded:
        self.calls += 1
        if self.calls == 1:
            raise OverflowError("int too big to convert")
        return super().encode(batch)

    def send(self, payload: Payload) -> None:
        if self.calls == 2:
            raise RuntimeError("bug")
        super().send(payload)


def test_the_worker_survives_exceptions_of_any_kind() -> None:
    exporter = Exploding()
    harness = Harness(exporter)
    for count in (1, 2, 3):
        harness.offer(spans(count, "svc"))
        assert harness.settled()
    assert harness.worker.is_alive()
    assert harness.value("trace_relay_dropped_spans_total", reason="encode_error") == 1
    assert harness.value("trace_relay_dropped_spans_total", reason="not_retryable") == 2
    assert harness.value("trace_relay_exporter_sent_spans_total") == 3
    harness.worker.stop(5)


def test_shutdown_deadline_cuts_retries_and_counts_the_loss() -> None:
    exporter = AlwaysFailing()
    harness = Harness(exporter, RetryPolicy(max_elapsed=600, initial=0.05, multiplier=1, max_interval=0.05))
    harness.offer(spans(6, "svc"))
    finished = harness.worker.stop(0.3)
    assert finished
    snapshot = harness.metrics.ledger.snapshot()
    assert snapshot.dropped == {"shutdown": 6}
    assert snapshot.queued == 0


def test_resources_that_differ_only_in_value_type_stay_apart() -> None:
    """Python's 1 == True must not merge an int attribute with a bool one into one Process."""
    exporter = RecordingExporter()
    harness = Harness(exporter)
    as_int = [ReadableSpan(name="int", resource=Resource({"service.name": "svc", "replica": 1}))]
    as_bool = [ReadableSpan(name="bool", resource=Resource({"service.name": "svc", "replica": True}))]
    harness.offer(as_int, as_bool)
    assert harness.settled()
    assert sorted([s.name for s in batch] for batch in exporter.exported) == [["bool"], ["int"]]
    harness.worker.stop(5)


def test_shutdown_does_not_wait_for_a_send_that_hangs() -> None:
    exporter = GatedExporter()  # a Jaeger that never answers
    harness = Harness(exporter)
    harness.offer(spans(2, "svc"))
    assert exporter.entered.wait(10)
    assert harness.worker.stop(0.1) is False  # returned while the send is still stuck
    assert exporter.spans() == []
    exporter.release.set()  # the send returns at last: the worker ends on its own, exporter shut
    assert exporter.wait_for_spans(2)
    assert wait_until(lambda: not harness.worker.is_alive(), timeout=10)
    assert exporter.shut_down


class FlakyQueue(SpanQueue):
    """take() fails once, as a queue bug would: the loop must survive it."""

    def __init__(self, ledger: Ledger, capacity: int) -> None:
        super().__init__(ledger, max_spans=capacity, max_bytes=10**9)
        self.failures = 1

    def take(self, max_spans: int, linger: float, wait: float) -> Take | None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("queue bug")
        return super().take(max_spans, linger, wait)


def test_an_error_in_take_does_not_kill_the_worker() -> None:
    exporter = RecordingExporter()
    harness = Harness(exporter)
    harness.worker.stop(5)
    metrics = Metrics(CollectorRegistry(), 100)
    queue = FlakyQueue(metrics.ledger, 100)
    worker = Worker(queue, exporter, metrics, max_batch_size=10, batch_timeout=0.01, retry=FAST)
    worker.start()
    assert offer(queue, spans(2, "svc"))
    assert exporter.wait_for_spans(2)
    assert worker.is_alive()
    assert metrics.registry.get_sample_value("trace_relay_worker_errors_total") == 1
    assert worker.stop(5)


class ResourcelessSpan(ReadableSpan):
    @property
    def resource(self) -> Resource:
        raise RuntimeError("no resource")


def test_spans_that_cannot_be_grouped_are_dropped_counted_and_settled() -> None:
    exporter = RecordingExporter()
    harness = Harness(exporter)
    harness.offer([ResourcelessSpan(name="broken")])
    assert harness.settled()
    harness.offer(spans(1, "svc"))
    assert exporter.wait_for_spans(1)
    assert harness.worker.is_alive()
    assert harness.value("trace_relay_dropped_spans_total", reason="export_error") == 1
    assert harness.queue.held == 0
    assert harness.queue.reserve(1000, 0) is not None  # all the room is back
    harness.worker.stop(5)
