"""Span accounting and Prometheus metrics, built on an injected registry.

Every span that reaches the receiver ends in exactly one bucket:

    received = accepted + refused + rejected
    accepted = exported + dropped + queued

so ``received = exported + dropped + refused + rejected + queued`` at every moment. The counts that
make up that equation live in one :class:`Ledger` under one lock and are exposed through a custom
collector that reads them in one snapshot, so a scrape can never see the equation broken.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Histogram
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
    # (transport, name) -> count, name a status code, "received"/"accepted", or "refused:<reason>" /
    # "rejected:<reason>": the receiver series by transport. The plain fields above are their sums.
    by_transport: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def received(self) -> int:
        return self.accepted + sum(self.refused.values()) + sum(self.rejected.values())

    @property
    def queued(self) -> int:
        return self.accepted - self.exported - sum(self.dropped.values())


@dataclass
class Ledger:
    """The span counts; all updates and reads under one lock."""

    capacity: int
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _accepted: int = 0
    _exported: int = 0
    _retries: int = 0
    _refused: Counter[str] = field(default_factory=Counter)
    _rejected: Counter[str] = field(default_factory=Counter)
    _dropped: Counter[str] = field(default_factory=Counter)
    _send_failed: Counter[str] = field(default_factory=Counter)
    _requests: Counter[str] = field(default_factory=Counter)
    _by_transport: Counter[tuple[str, str]] = field(default_factory=Counter)

    def request(self, code: str, *, accepted: int = 0, refused: tuple[str, int] | None = None,
                rejected: Iterable[tuple[str, int]] = (), transport: str = "grpc") -> None:
        """Record one Export call and the fate of its spans, atomically."""
        with self._lock:
            self._requests[code] += 1
            self._accepted += accepted
            tally = self._by_transport
            tally[transport, code] += 1
            tally[transport, "accepted"] += accepted
            received = accepted
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
        with self._lock:
            self._by_transport[transport, f"signal:{signal}"] += 1

    def exported(self, count: int) -> None:
        with self._lock:
            self._exported += count

    def dropped(self, reason: str, count: int) -> None:
        if count:
            with self._lock:
                self._dropped[reason] += count

    def send_failed(self, reason: str, count: int, *, retrying: bool) -> None:
        with self._lock:
            self._send_failed[reason] += count
            self._retries += retrying

    def snapshot(self) -> Snapshot:
        with self._lock:
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
                         "shutdown"))
        yield GaugeMetricFamily(f"{PREFIX}_queue_size",
                                "Spans accepted but not yet exported or dropped.", value=snap.queued)
        yield GaugeMetricFamily(f"{PREFIX}_queue_capacity", "Queue capacity in spans.", value=snap.capacity)


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
        for reason in ("queue_full", "shutting_down"):
            refused.add_metric([reason, transport], tally.get((transport, f"refused:{reason}"), 0))
        requests.add_metric(["OK", transport], tally.get((transport, "OK"), 0))
    for (transport, name), value in sorted(tally.items()):
        kind, _, reason = name.partition(":")
        if kind == "rejected":
            rejected.add_metric([reason, transport], value)
        elif kind == "refused" and reason not in ("queue_full", "shutting_down"):
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
        self.batch_size = Histogram(
            f"{PREFIX}_exporter_batch_spans", "Spans handed to the exporter in one batch.",
            registry=registry, buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
        )
