"""Did a relay deliver what it accepted? Read from its admin endpoint's ``/metrics``, for
``send-test-trace``: the counts before and after a test trace say delivered, failing or queued."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

SENT = "trace_relay_exporter_sent_spans_total"
SEND_FAILED = "trace_relay_exporter_send_failed_spans_total"
DROPPED = "trace_relay_dropped_spans_total"
QUEUED = "trace_relay_queue_size"


class AdminUnreachable(OSError):
    """The admin endpoint could not be read; the message says why, in one line."""


@dataclass(frozen=True)
class Counts:
    sent: float = 0.0
    send_failed: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    queued: float = 0.0

    def since(self, before: Counts) -> Counts:
        return Counts(self.sent - before.sent, self.send_failed - before.send_failed,
                      self.dropped - before.dropped, self.queued)


def parse(text: str) -> Counts:
    values: dict[str, float] = {}
    failed: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == SEND_FAILED and sample.value:
                failed[sample.labels.get("reason", "unknown")] += int(sample.value)
            elif sample.name == DROPPED and sample.value:
                dropped[sample.labels.get("reason", "unknown")] += int(sample.value)
            else:
                values[sample.name] = sample.value
    return Counts(values.get(SENT, 0.0), failed, dropped, values.get(QUEUED, 0.0))


def read(host: str, port: int, timeout: float) -> Counts:
    """The relay's counts now, from ``http://host:port/metrics``."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read()
    except ConnectionRefusedError:
        raise AdminUnreachable(f"nothing is listening on {host}:{port}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise AdminUnreachable(f"{host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        conn.close()
    if response.status != 200:
        raise AdminUnreachable(f"{host}:{port}/metrics answered {response.status} {response.reason}")
    return parse(body.decode("utf-8", "replace"))


@dataclass(frozen=True)
class Verdict:
    delivered: int  # of the test's spans (the counters are the relay's, all clients together)
    failures: Counts  # what went wrong since the test began

    @property
    def failing(self) -> bool:
        return bool(self.failures.send_failed or self.failures.dropped)


def wait_for_delivery(host: str, port: int, before: Counts, count: int, timeout: float,
                      poll: float = 0.2) -> Verdict:
    """Poll until ``count`` more spans were sent, a send failed or a span was dropped, or
    ``timeout`` passed; what was seen last."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: a wait that is not a bare sleep
    while True:
        change = read(host, port, timeout=max(0.1, min(2.0, deadline - time.monotonic()))).since(before)
        verdict = Verdict(min(count, int(change.sent)), change)
        if verdict.delivered >= count or verdict.failing or time.monotonic() >= deadline:
            return verdict
        pause.wait(min(poll, max(0.0, deadline - time.monotonic())))


def describe(verdict: Verdict) -> str:
    """'exporter send failures: connection (20 spans); dropped: retry_exhausted (20 spans)'"""
    parts = []
    if verdict.failures.send_failed:
        parts.append("exporter send failures: " + _reasons(verdict.failures.send_failed))
    if verdict.failures.dropped:
        parts.append("dropped: " + _reasons(verdict.failures.dropped))
    if not parts:
        parts.append(f"{int(verdict.failures.queued)} spans still queued in the relay")
    return "; ".join(parts)


def _reasons(counts: Counter[str]) -> str:
    return ", ".join(f"{reason} ({count} spans)" for reason, count in sorted(counts.items()))
