"""Bounded waits: a Jaeger collector that trickles its reply (one byte a second, a reply that would
complete only after ~19 s) frees the one worker after --jaeger-timeout, the failure is counted,
and shutdown completes within its deadline."""

from __future__ import annotations

from relay.worker import RetryPolicy
from tests.conftest import RelayFactory
from tests.faults.backends import TricklingCollector
from tests.faults.test_faults import SHORT_RETRY, _failed, _send, _settled
from tests.waiting import wait_until


def test_a_trickling_collector_is_a_counted_timeout_not_a_success(make_relay: RelayFactory) -> None:
    with TricklingCollector(interval=1.0) as jaeger:
        relay = make_relay("--jaeger-collector", jaeger.url, "--jaeger-timeout", "1500ms", retry=SHORT_RETRY)
        sent = _send(relay, 30)
        assert wait_until(lambda: _failed(relay, "timeout") >= sent, timeout=60)
        metrics = _settled(relay)
        assert metrics.exported == 0
        assert metrics.dropped == {"retry_exhausted": sent}
        assert jaeger.replies_finished == 0


def test_shutdown_completes_while_a_collector_trickles(make_relay: RelayFactory) -> None:
    with TricklingCollector(interval=1.0) as jaeger:
        relay = make_relay("--jaeger-collector", jaeger.url, "--jaeger-timeout", "1500ms",
                           "--shutdown-timeout", "4s",
                           retry=RetryPolicy(max_elapsed=600, initial=0.05, max_interval=0.1))
        sent = _send(relay, 31)
        assert jaeger.wait_for_requests(1, timeout=30)  # the worker is inside a send
        report = relay.shutdown()
        assert report.clean  # the worker stopped (and shut the exporter down) within the deadline
        assert report.lost == sent
        assert jaeger.replies_finished == 0
