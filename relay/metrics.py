"""Span accounting and Prometheus metrics, built on an injected registry.

Every span that reaches the receiver, or that the disk queue recovered at start, ends in exactly
one bucket:

    received + recovered = exported + dropped + refused + rejected + queued

``queued`` is not computed from the others: it is the queue's own count of the spans it holds,
read under the same lock as the counters (the queue uses the ledger's lock as its own), so a test
that checks the equation checks the queue against the counters, and a scrape sees one moment.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "trace_relay"
TRANSPORTS = ("grpc", "http")
SIGNALS = ("metrics", "logs")  # pushed by BuildKit beside its traces; accepted, not forwarded


@dataclass(frozen=True)
class Snapshot:
    accepted: int
    refused: dict[str, int]
    rejected: dict[str, int]
    exported: int
    dropped: dict[str, int]
    send_failed: dict[str, int]
    retries: int
    requests: dict[str, int]
    capacity: int
    queued: int
    recovered: int = 0
    possible_duplicates: int = 0
    torn_tails: int = 0
    corrupt_records: int = 0
    # (transport, name) -> count, name a status code, "received"/"accepted", or "refused:<reason>" /
    # "rejected:<reason>": the receiver series by transport. The plain fields above are their sums.
    by_transport: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def received(self) -> int:
        return self.accepted + sum(self.refused.values()) + sum(self.rejected.values())


@dataclass
class Ledger:
    """The span counts; all updates and reads under one lock, which the queue shares."""

    capacity: int
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _held: Callable[[], int] = field(default=lambda: 0, repr=False)
    _accepted: int = 0
    _exported: int = 0
    _retries: int = 0
    _recovered: int = 0
    _duplicates: int = 0
    _torn: int = 0
    _corrupt: int = 0
    _refused: Counter[str] = field(default_factory=Counter)
    _rejected: Counter[str] = field(default_factory=Counter)
    _dropped: Counter[str] = field(default_factory=Counter)
    _send_failed: Counter[str] = field(default_factory=Counter)
    _requests: Counter[str] = field(default_factory=Counter)
    _by_transport: Counter[tuple[str, str]] = field(default_factory=Counter)

    def attach(self, held: Callable[[], int]) -> None:
        """The queue's count of the spans it holds, called with the lock held."""
        self._held = held

    def request(self, code: str, *, refused: tuple[str, int] | None = None,
                rejected: Iterable[tuple[str, int]] = (), transport: str = "grpc") -> None:
        """Record one Export call and the fate of its spans that were not accepted (the queue
        counts the accepted ones, by transport, as it takes them)."""
        with self.lock:
            self._requests[code] += 1
            tally = self._by_transport
            tally[transport, code] += 1
            received = 0
            if refused is not None:
                self._refused[refused[0]] += refused[1]
                tally[transport, f"refused:{refused[0]}"] += refused[1]
                received += refused[1]
            for reason, count in rejected:
                self._rejected[reason] += count
                tally[transport, f"rejected:{reason}"] += count
                received += count
            tally[transport, "received"] += received

    def signal(self, signal: str, transport: str) -> None:
        """One metric or log push: accepted, counted, not forwarded."""
        with self.lock:
            self._by_transport[transport, f"signal:{signal}"] += 1

    # The queue calls these with the lock held, as it changes what it holds.
    def accepted_locked(self, count: int, transport: str) -> None:
        self._accepted += count
        self._by_transport[transport, "accepted"] += count
        self._by_transport[transport, "received"] += count

    def exported_locked(self, count: int) -> None:
        self._exported += count

    def dropped_locked(self, reason: str, count: int) -> None:
        if count:
            self._dropped[reason] += count

    def recovered(self, count: int, possible_duplicates: int, *, torn: int, corrupt: int) -> None:
        with self.lock:
            self._recovered += count
            self._duplicates += possible_duplicates
            self._torn += torn
            self._corrupt += corrupt

    def send_failed(self, reason: str, count: int, *, retrying: bool) -> None:
        with self.lock:
            self._send_failed[reason] += count
            self._retries += retrying

    def snapshot(self) -> Snapshot:
        with self.lock:
            return Snapshot(
                accepted=self._accepted,
                refused=dict(self._refused),
                rejected=dict(self._rejected),
                exported=self._exported,
                dropped=dict(self._dropped),
                send_failed=dict(self._send_failed),
                retries=self._retries,
                requests=dict(self._requests),
                capacity=self.capacity,
                queued=self._held(),
                recovered=self._recovered,
                possible_duplicates=self._duplicates,
                torn_tails=self._torn,
                corrupt_records=self._corrupt,
                by_transport=dict(self._by_transport),
            )


class _LedgerCollector(Collector):
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        snap = self._ledger.snapshot()
        yield from _receiver_families(snap.by_transport)
        yield _counter("exporter_sent_spans", "Spans delivered to Jaeger.", snap.exported)
        yield _labelled("exporter_send_failed_spans",
                        "Spans in failed send attempts (each failed attempt counts its spans).",
                        "reason", snap.send_failed, ())
        yield _counter("exporter_retries", "Failed send attempts that were retried.", snap.retries)
        yield _labelled("dropped_spans", "Accepted spans that will never reach Jaeger, by reason.",
                        "reason", snap.dropped,
                        ("too_large", "encode_error", "export_error", "retry_exhausted", "not_retryable",
                         "shutdown", "corrupt"))
        yield GaugeMetricFamily(f"{PREFIX}_queue_size",
                                "Spans accepted but not yet exported or dropped.", value=snap.queued)
        yield GaugeMetricFamily(f"{PREFIX}_queue_capacity", "Queue capacity in spans.", value=snap.capacity)
        yield _counter("queue_recovered_spans", "Spans found in the disk queue at start.", snap.recovered)
        yield _counter("queue_possible_duplicate_spans",
                       "Recovered spans that were being sent at a crash: they may reach Jaeger twice.",
                       snap.possible_duplicates)
        corrupt = CounterMetricFamily(f"{PREFIX}_queue_corrupt_records",
                                      "Disk queue records found damaged at start, by kind.", labels=["kind"])
        corrupt.add_metric(["torn_tail"], snap.torn_tails)
        corrupt.add_metric(["checksum"], snap.corrupt_records)
        yield corrupt


ALWAYS_REFUSED = ("queue_full", "shutting_down", "disk_full", "worker_unavailable")


def _receiver_families(tally: dict[tuple[str, str], int]) -> Iterator[CounterMetricFamily]:
    """The receiver series, each labelled by ``transport`` (grpc, http); both always present."""
    received = CounterMetricFamily(f"{PREFIX}_receiver_received_spans", "Spans received in Export requests.",
                                   labels=["transport"])
    accepted = CounterMetricFamily(f"{PREFIX}_receiver_accepted_spans", "Spans accepted and queued for export.",
                                   labels=["transport"])
    refused = CounterMetricFamily(f"{PREFIX}_receiver_refused_spans",
                                  "Spans refused with UNAVAILABLE / HTTP 503 (client retries).",
                                  labels=["reason", "transport"])
    rejected = CounterMetricFamily(f"{PREFIX}_receiver_rejected_spans",
                                   "Invalid spans rejected via partial_success.", labels=["reason", "transport"])
    requests = CounterMetricFamily(f"{PREFIX}_receiver_requests",
                                   "Export requests by gRPC status code (HTTP answers by their gRPC twin).",
                                   labels=["code", "transport"])
    for transport in TRANSPORTS:
        received.add_metric([transport], tally.get((transport, "received"), 0))
        accepted.add_metric([transport], tally.get((transport, "accepted"), 0))
        for reason in ALWAYS_REFUSED:
            refused.add_metric([reason, transport], tally.get((transport, f"refused:{reason}"), 0))
        requests.add_metric(["OK", transport], tally.get((transport, "OK"), 0))
    for (transport, name), value in sorted(tally.items()):
        kind, _, reason = name.partition(":")
        if kind == "rejected":
            rejected.add_metric([reason, transport], value)
        elif kind == "refused" and reason not in ALWAYS_REFUSED:
            refused.add_metric([reason, transport], value)
        elif name.isupper() and name != "OK":
            requests.add_metric([name, transport], value)
    yield from (received, accepted, refused, rejected, requests)
    for signal in SIGNALS:
        pushes = CounterMetricFamily(f"{PREFIX}_receiver_{signal}_requests",
                                     f"OTLP {signal} pushes answered success; counted, not forwarded.",
                                     labels=["transport"])
        for transport in TRANSPORTS:
            pushes.add_metric([transport], tally.get((transport, f"signal:{signal}"), 0))
        yield pushes


def _counter(name: str, doc: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _labelled(name: str, doc: str, label: str, values: dict[str, int],
              always: tuple[str, ...]) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=[label])
    for key in sorted(set(values) | set(always)):
        family.add_metric([key], values.get(key, 0))
    return family


class QueueStatsLike(Protocol):
    @property
    def spans(self) -> int: ...
    @property
    def room_bytes(self) -> int: ...
    @property
    def oldest_age(self) -> float: ...
    @property
    def disk_bytes(self) -> int: ...


class _QueueCollector(Collector):
    def __init__(self, stats: Callable[[], QueueStatsLike], max_bytes: int, durable: bool) -> None:
        self._stats = stats
        self._max_bytes = max_bytes
        self._durable = durable

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._stats()
        yield GaugeMetricFamily(f"{PREFIX}_queue_bytes",
                                "Encoded (protobuf) bytes of the spans the queue holds or has reserved.",
                                value=stats.room_bytes)
        yield GaugeMetricFamily(f"{PREFIX}_queue_capacity_bytes", "Queue capacity in bytes (--queue-max-mib).",
                                value=self._max_bytes)
        yield GaugeMetricFamily(f"{PREFIX}_queue_oldest_age_seconds",
                                "Age of the oldest span waiting in the queue (0 when empty).",
                                value=stats.oldest_age)
        if self._durable:
            yield GaugeMetricFamily(f"{PREFIX}_queue_disk_bytes", "Bytes of the disk queue's segment files.",
                                    value=stats.disk_bytes)
            yield GaugeMetricFamily(f"{PREFIX}_queue_disk_spans", "Spans on disk, not yet exported or dropped.",
                                    value=stats.spans)


class Metrics:
    """All of the relay's metrics, registered on one injected registry."""

    def __init__(self, registry: CollectorRegistry, queue_capacity: int) -> None:
        self.registry = registry
        self.ledger = Ledger(capacity=queue_capacity)
        registry.register(_LedgerCollector(self.ledger))
        self.send_duration = Histogram(
            f"{PREFIX}_exporter_send_duration_seconds", "Duration of one send attempt to Jaeger.",
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.worker_errors = PromCounter(
            f"{PREFIX}_worker_errors", "Unexpected errors caught by the exporter worker loop.",
            registry=registry,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_exporter_batch_spans", "Spans handed to the exporter in one batch.",
            registry=registry, buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
        )
        self.redacted_values = PromCounter(
            f"{PREFIX}_redacted_values", "String values in received spans whose secrets were redacted.",
            registry=registry,
        )

    def watch_queue(self, stats: Callable[[], QueueStatsLike], max_bytes: int, *, durable: bool) -> None:
        self.registry.register(_QueueCollector(stats, max_bytes, durable))
