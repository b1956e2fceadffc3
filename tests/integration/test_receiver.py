"""The Export handler with real OTLP clients: what the client sees, and what is accounted for."""

from __future__ import annotations

import threading

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.trace.export import SpanExportResult

from relay.app import Relay
from tests.conftest import RelayFactory
from tests.fakes import GatedExporter, RecordingExporter
from tests.otlp import otlp_exporter, raw_export, tracer_provider
from tests.unit.test_convert import sdk_spans
from tests.waiting import wait_until

GOOD = {"trace_id": b"\x01" * 16, "span_id": b"\x02" * 8, "start_time_unix_nano": 1, "end_time_unix_nano": 2}


def _request(*spans: Span) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])])


def _balanced(relay: Relay, exporter: RecordingExporter) -> None:
    """The ledger against what is outside it: the spans the exporter really got, and the queue's
    own count of what it holds (not a remainder of the counters)."""
    snap = relay.metrics.ledger.snapshot()
    assert snap.exported == len(exporter.spans())
    assert snap.queued == relay.queue.held
    assert snap.received == snap.exported + sum(snap.dropped.values()) + sum(snap.refused.values()) \
        + sum(snap.rejected.values()) + snap.queued


def test_real_otlp_client_spans_reach_the_exporter(make_relay: RelayFactory) -> None:
    exporter = RecordingExporter()
    relay = make_relay(exporter=exporter)
    provider = tracer_provider(relay.otlp_port, "buildx")
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("bake"), tracer.start_as_current_span("solve"):
        pass
    provider.shutdown()
    assert exporter.wait_for_spans(2)
    names = sorted(span.name for span in exporter.spans())
    assert names == ["bake", "solve"]
    assert {span.resource.attributes["service.name"] for span in exporter.spans()} == {"buildx"}
    _balanced(relay, exporter)


def test_garbage_is_invalid_argument_and_costs_nothing_else(make_relay: RelayFactory) -> None:
    exporter = RecordingExporter()
    relay = make_relay(exporter=exporter)
    with pytest.raises(grpc.RpcError) as info:
        raw_export(relay.otlp_port, b"\x0a\xff\xff\xff\xff\x0f")
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "ExportTraceServiceRequest" in (info.value.details() or "")
    raw_export(relay.otlp_port, _request(Span(name="after", **GOOD)))
    assert exporter.wait_for_spans(1)
    assert relay.metrics.ledger.snapshot().requests == {"INVALID_ARGUMENT": 1, "OK": 1}


def test_bad_spans_are_rejected_alone_with_partial_success(make_relay: RelayFactory) -> None:
    exporter = RecordingExporter()
    relay = make_relay(exporter=exporter)
    bad_trace = Span(name="bad", **{**GOOD, "trace_id": b"\x00" * 16})
    bad_span = Span(name="short", **{**GOOD, "span_id": b"\x01\x02"})
    response = raw_export(relay.otlp_port, _request(Span(name="ok-1", **GOOD), bad_trace, bad_span,
                                                    Span(name="ok-2", **GOOD)))
    assert response.partial_success.rejected_spans == 2
    assert "invalid_trace_id" in response.partial_success.error_message
    assert "invalid_span_id" in response.partial_success.error_message
    assert exporter.wait_for_spans(2)
    assert sorted(s.name for s in exporter.spans()) == ["ok-1", "ok-2"]
    assert relay.metrics.ledger.snapshot().rejected == {"invalid_trace_id": 1, "invalid_span_id": 1}
    _balanced(relay, exporter)


def test_empty_request_is_ok(make_relay: RelayFactory) -> None:
    relay = make_relay(exporter=RecordingExporter())
    response = raw_export(relay.otlp_port, ExportTraceServiceRequest())
    assert not response.HasField("partial_success")


def test_full_queue_answers_unavailable_with_retry_info_and_loses_nothing(make_relay: RelayFactory) -> None:
    exporter = GatedExporter()
    relay = make_relay("--queue-size", "10", "--max-batch-size", "10", exporter=exporter)
    spans = [Span(name=f"s{i}", **{**GOOD, "span_id": (i + 1).to_bytes(8, "big")}) for i in range(6)]
    raw_export(relay.otlp_port, _request(*spans))           # 6 queued; the worker takes them and blocks
    assert exporter.entered.wait(10)
    raw_export(relay.otlp_port, _request(*spans[:4]))       # 10 outstanding: full
    with pytest.raises(grpc.RpcError) as info:
        raw_export(relay.otlp_port, _request(spans[0]))     # one more does not fit
    error = info.value
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    details = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry)
    assert 1 <= retry.retry_delay.seconds <= 10
    snap = relay.metrics.ledger.snapshot()
    assert snap.refused == {"queue_full": 1}
    assert snap.accepted == 10
    exporter.release.set()
    assert exporter.wait_for_spans(10)
    assert wait_until(lambda: relay.metrics.ledger.snapshot().exported == 10)
    _balanced(relay, exporter)


def test_the_python_otlp_exporter_retries_a_refusal_and_gets_through(make_relay: RelayFactory) -> None:
    exporter = GatedExporter()
    relay = make_relay("--queue-size", "3", "--max-batch-size", "3", exporter=exporter)
    raw_export(relay.otlp_port, _request(*[Span(name=f"f{i}", **GOOD) for i in range(3)]))
    assert exporter.entered.wait(10)
    # Queue full now; the real OTLP exporter is refused, honours RetryInfo and retries.
    client = otlp_exporter(relay.otlp_port)
    result: list[SpanExportResult] = []
    spans = sdk_spans()[:2]
    sender = threading.Thread(target=lambda: result.append(client.export(spans)))
    sender.start()
    assert wait_until(lambda: relay.metrics.ledger.snapshot().refused.get("queue_full", 0) >= 2)
    exporter.release.set()
    sender.join(30)
    assert result == [SpanExportResult.SUCCESS]
    assert exporter.wait_for_spans(5)
    client.shutdown()


def test_grpc_health_and_admin_endpoints(make_relay: RelayFactory) -> None:
    import urllib.request

    relay = make_relay(exporter=RecordingExporter())
    with grpc.insecure_channel(f"127.0.0.1:{relay.otlp_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "opentelemetry.proto.collector.trace.v1.TraceService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    base = f"http://127.0.0.1:{relay.admin_port}"
    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as reply:  # noqa: S310
        assert reply.status == 200
    with urllib.request.urlopen(f"{base}/readyz", timeout=5) as reply:  # noqa: S310
        assert reply.status == 200
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as reply:  # noqa: S310
        body = reply.read().decode()
    assert "trace_relay_queue_capacity 20000.0" in body
    relay.shutdown()
    with grpc.insecure_channel(f"127.0.0.1:{relay.otlp_port}") as channel, pytest.raises(grpc.RpcError):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)


def test_gzip_compressed_requests_are_accepted(make_relay: RelayFactory) -> None:
    """The OpenTelemetry Collector's OTLP exporter compresses with gzip by default."""
    from opentelemetry.exporter.otlp.proto.grpc.exporter import Compression

    exporter = RecordingExporter()
    relay = make_relay(exporter=exporter)
    client = otlp_exporter(relay.otlp_port, compression=Compression.Gzip)
    spans = sdk_spans()
    assert client.export(spans) is SpanExportResult.SUCCESS
    client.shutdown()
    assert exporter.wait_for_spans(len(spans))
    assert sorted(s.name for s in exporter.spans()) == sorted(s.name for s in spans)


def test_a_request_larger_than_the_queue_is_refused_for_good_and_counted(make_relay: RelayFactory) -> None:
    """It could never be queued whole: a server limit, RESOURCE_EXHAUSTED without RetryInfo (OTLP
    clients do not retry that; with RetryInfo they would loop until they give up)."""
    exporter = RecordingExporter()
    relay = make_relay("--queue-size", "5", "--max-batch-size", "5", exporter=exporter)
    spans = [Span(name=f"s{i}", **{**GOOD, "span_id": (i + 1).to_bytes(8, "big")}) for i in range(6)]
    with pytest.raises(grpc.RpcError) as info:
        raw_export(relay.otlp_port, _request(*spans))
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--queue-size" in (info.value.details() or "")
    details = dict(info.value.trailing_metadata() or ()).get("grpc-status-details-bin")
    status = status_pb2.Status.FromString(details or b"")
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert not any(detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for detail in status.details)
    assert relay.metrics.ledger.snapshot().rejected == {"request_exceeds_queue": 6}
    raw_export(relay.otlp_port, _request(*spans[:5]))  # a request that fits still goes through
    assert exporter.wait_for_spans(5)
    assert wait_until(lambda: relay.metrics.ledger.snapshot().queued == 0)
    _balanced(relay, exporter)


@pytest.mark.parametrize(("limit_mib", "code"), [(1, grpc.StatusCode.RESOURCE_EXHAUSTED), (4, grpc.StatusCode.OK)])
def test_the_size_limit_applies_after_gzip_decompression(make_relay: RelayFactory, limit_mib: int,
                                                         code: grpc.StatusCode) -> None:
    """A 2 MiB request that gzip shrinks to a few KiB is over a 1 MiB limit (OTLP: the limit holds
    after decompression, so a bomb costs nothing) and under a 4 MiB one (the control)."""
    relay = make_relay("--max-recv-msg-size-mib", str(limit_mib), exporter=RecordingExporter())
    body = _request(Span(name="x" * (2 * 1024 * 1024), **GOOD)).SerializeToString()
    with grpc.insecure_channel(f"127.0.0.1:{relay.otlp_port}", compression=grpc.Compression.Gzip) as channel:
        call = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        try:
            call(body, timeout=10)
            answered = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            answered = exc.code()
    assert answered is code
