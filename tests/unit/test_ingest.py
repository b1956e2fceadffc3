"""The receivers' shared core, directly: the Outcome of each decision and the parse budget."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from relay import ingest as ingest_module
from relay.ingest import Ingest, Outcome, Verdict
from relay.metrics import Ledger
from relay.spanqueue import SpanQueue

GOOD = {"trace_id": b"\x01" * 16, "span_id": b"\x02" * 8, "start_time_unix_nano": 1, "end_time_unix_nano": 2}


def _request(n: int, bad: int = 0) -> ExportTraceServiceRequest:
    spans = [Span(name=f"s{i}", **GOOD) for i in range(n)]
    spans += [Span(name="bad", **{**GOOD, "trace_id": bytes(16)}) for _ in range(bad)]
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])


def test_each_decision_is_one_outcome_and_one_ledger_entry() -> None:
    ledger = Ledger(capacity=5)
    queue = SpanQueue(ledger, max_spans=5, max_bytes=10**6)
    core = Ingest(queue, ledger)
    ok = core.traces(_request(2, bad=1), "http")
    assert ok.verdict is Verdict.OK
    assert ok.response.partial_success.rejected_spans == 1
    too_large = core.traces(_request(6), "grpc")
    assert (too_large.verdict, too_large.code, too_large.retry_after) == (Verdict.TOO_LARGE, "RESOURCE_EXHAUSTED", 0)
    full = core.traces(_request(4), "grpc")  # 2 queued + 4 > 5
    assert (full.verdict, full.retry_after) == (Verdict.REFUSED, 2)
    core.shutting_down = True
    assert "shutting down" in core.traces(_request(1), "http").message
    snap = ledger.snapshot()
    assert snap.requests == {"OK": 1, "RESOURCE_EXHAUSTED": 1, "UNAVAILABLE": 2}
    assert snap.by_transport[("http", "OK")] == 1
    assert snap.by_transport[("grpc", "refused:queue_full")] == 4
    assert snap.by_transport[("http", "refused:shutting_down")] == 1
    assert queue.held == 2 == snap.queued
    assert snap.by_transport[("http", "accepted")] == 2


def _queue(spans: int) -> tuple[SpanQueue, Ledger]:
    ledger = Ledger(capacity=spans)
    return SpanQueue(ledger, max_spans=spans, max_bytes=10**6), ledger


def _export(core: Ingest, body: bytes, decode: Callable[[bytes], ExportTraceServiceRequest]) -> Outcome:
    """What both receivers do: admission, then export."""
    with core.admission(len(body), "http") as refused:
        return refused or core.export_traces(body, decode, "http")


@pytest.mark.parametrize("budget", [100, None])
def test_the_parse_budget_refuses_what_would_exceed_it(budget: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a budget of 100 bytes, a 10-byte body waits while a 100-byte one is being parsed and
    is refused (retryable) when the wait ends; without one it goes straight through."""
    monkeypatch.setattr(ingest_module, "PARSE_WAIT", 0.2)
    core = Ingest(*_queue(100), parse_budget=budget)
    inside, release = threading.Event(), threading.Event()

    def slow_decode(_body: bytes) -> ExportTraceServiceRequest:
        inside.set()
        release.wait(10)
        return _request(1)

    big = threading.Thread(target=_export, args=(core, b"x" * 100, slow_decode))
    big.start()
    try:
        assert inside.wait(10)
        small = _export(core, b"y" * 10, lambda _body: _request(1))
    finally:
        release.set()
        big.join(10)
    if budget is None:
        assert small.verdict is Verdict.OK
        return
    assert (small.verdict, small.retry_after) == (Verdict.REFUSED, 2)
    assert "busy" in small.message
    assert _export(core, b"y" * 10, lambda _body: _request(1)).verdict is Verdict.OK
    assert _export(core, b"z" * 500, lambda _body: _request(1)).verdict is Verdict.OK  # larger: takes all of it


def test_undecodable_bodies_are_invalid() -> None:
    core = Ingest(*_queue(10), parse_budget=10)

    def broken(_body: bytes) -> ExportTraceServiceRequest:
        raise ValueError("truncated")

    outcome = _export(core, b"\x0a", broken)
    assert outcome.verdict is Verdict.INVALID
    assert "truncated" in outcome.message
