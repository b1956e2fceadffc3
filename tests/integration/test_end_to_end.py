"""Real OTLP clients in, real Jaeger peers out (a UDP agent socket and an HTTP collector that
decode the thrift they receive)."""

from __future__ import annotations

import random
import time

from opentelemetry.sdk.trace.export import SpanExportResult

from bench.jaeger_sinks import HttpCollectorSink, UdpAgentSink
from relay.app import Relay
from relay.convert import request_span_count
from relay.testtrace import buildkit_trace
from tests.conftest import RelayFactory
from tests.integration.test_one_exporter_thread import CLIENTS, TOTAL, run_clients
from tests.otlp import raw_export, tracer_provider
from tests.waiting import wait_until


def _tags(span: object) -> dict[str, object]:
    out: dict[str, object] = {}
    for tag in span.tags or ():  # type: ignore[attr-defined]
        out[tag.key] = next(v for v in (tag.vStr, tag.vBool, tag.vLong, tag.vDouble, tag.vBinary) if v is not None)
    return out


def _send_build(port: int) -> None:
    """What BuildKit and buildx would send: two services, a parent chain, attributes."""
    client = tracer_provider(port, "buildx")
    daemon = tracer_provider(port, "buildkitd", **{"host.name": "builder-0"})
    from opentelemetry import trace as trace_api

    with client.get_tracer("buildx").start_as_current_span("bake", attributes={"command": "bake test"}) as bake:
        ctx = trace_api.set_span_in_context(bake)
        with daemon.get_tracer("buildkit").start_as_current_span(
                "[build 2/3] RUN make", context=ctx, kind=trace_api.SpanKind.SERVER,
                attributes={"vertex": "sha256:abc", "cached": False, "retries": 2}) as step:
            step.add_event("ExecOp started")
    client.shutdown()
    daemon.shutdown()


def _check_build(spans: list[object], processes: dict[int, str]) -> None:
    by_name = {s.operationName: s for s in spans}  # type: ignore[attr-defined]
    bake, step = by_name["bake"], by_name["[build 2/3] RUN make"]
    assert processes[id(bake)] == "buildx" and processes[id(step)] == "buildkitd"
    assert step.parentSpanId == bake.spanId and bake.parentSpanId == 0
    assert (step.traceIdHigh, step.traceIdLow) == (bake.traceIdHigh, bake.traceIdLow)
    tags = _tags(step)
    assert tags["vertex"] == "sha256:abc" and tags["cached"] is False and tags["retries"] == 2
    assert tags["span.kind"] == "server"
    assert "host.name" not in tags  # resource attributes belong to the Process
    assert [f.vStr for log in step.logs for f in log.fields if f.key == "event"] == ["ExecOp started"]
    assert _tags(bake)["command"] == "bake test"


def _processes(sink: UdpAgentSink | HttpCollectorSink) -> dict[int, str]:
    return {id(span): batch.process.serviceName for batch in sink.batches for span in batch.spans}


def test_real_client_to_udp_agent(make_relay: RelayFactory) -> None:
    with UdpAgentSink() as sink:
        relay = make_relay("--jaeger-agent", f"127.0.0.1:{sink.port}")
        _send_build(relay.otlp_port)
        assert sink.wait_for_spans(2, timeout=10)
        _check_build(sink.spans(), _processes(sink))
        assert sink.undecodable == 0


def test_real_client_to_http_collector_with_basic_auth(make_relay: RelayFactory) -> None:
    with HttpCollectorSink() as sink:
        relay = make_relay("--jaeger-collector", sink.url, "--jaeger-user", "ci", "--jaeger-password", "pw")
        _send_build(relay.otlp_port)
        assert sink.wait_for_spans(2, timeout=10)
        _check_build(sink.spans(), _processes(sink))
        assert all(r.headers.get("authorization", "").startswith("Basic ") for r in sink.requests)


def test_64_clients_through_the_real_agent_output_every_span_once(make_relay: RelayFactory) -> None:
    with UdpAgentSink() as sink:
        relay = make_relay("--jaeger-agent", f"127.0.0.1:{sink.port}", "--max-batch-size", "200")
        results = run_clients(relay)
        assert results == [SpanExportResult.SUCCESS] * (CLIENTS * 5)
        assert sink.wait_for_spans(TOTAL, timeout=60)
        names = [span.operationName for span in sink.spans()]
        assert sink.undecodable == 0
        assert len(names) == len(set(names)) == TOTAL
        for batch in sink.batches:  # each batch is one service, each span in the right one
            assert {span.operationName.split("-")[0] for span in batch.spans} <= {
                f"c{n}" for n in range(CLIENTS) if n % 4 == int(batch.process.serviceName[-1])}


def _balanced(relay: Relay, delivered: int) -> bool:
    """The ledger against what is outside it: ``delivered`` is what the sink decoded, and the
    queue's own count of what it holds (not a remainder of the counters)."""
    snap = relay.metrics.ledger.snapshot()
    return snap.exported == delivered and snap.queued == relay.queue.held and \
        snap.received == snap.exported + sum(snap.dropped.values()) + sum(snap.refused.values()) \
        + sum(snap.rejected.values()) + snap.queued


def test_collector_503_for_a_while_then_202_loses_nothing(make_relay: RelayFactory) -> None:
    with HttpCollectorSink() as sink:
        sink.fail_next(4, status=503)
        relay = make_relay("--jaeger-collector", sink.url)
        request = buildkit_trace(random.Random(3), time.time_ns())
        count = request_span_count(request)
        raw_export(relay.otlp_port, request)
        assert sink.wait_for_spans(count, timeout=30)
        assert wait_until(lambda: relay.metrics.ledger.snapshot().exported == count)
        snap = relay.metrics.ledger.snapshot()
        assert snap.dropped == {}
        assert snap.send_failed.get("http_503", 0) > 0
        assert _balanced(relay, delivered=sink.span_count())


def test_past_the_retry_bound_dropped_counted_and_still_serving(make_relay: RelayFactory) -> None:
    with HttpCollectorSink() as sink:
        sink.status_for = lambda number, request: 503
        relay = make_relay("--jaeger-collector", sink.url, "--retry-max-elapsed", "300ms")
        request = buildkit_trace(random.Random(4), time.time_ns(), steps=2)
        count = request_span_count(request)
        raw_export(relay.otlp_port, request)
        assert wait_until(lambda: relay.metrics.ledger.snapshot().dropped.get("retry_exhausted") == count)
        assert _balanced(relay, delivered=sink.span_count())
        sink.status_for = None  # Jaeger is back: the relay serves on
        raw_export(relay.otlp_port, request)
        assert sink.wait_for_spans(count, timeout=30)
        assert relay.worker.is_alive()
