"""convert.py against OpenTelemetry's own encoder: SDK spans -> encode_spans -> convert -> same spans."""

from __future__ import annotations

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as PbResource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import StatusCode

from relay.convert import RelaySpan, convert_request

TRACE_ID = bytes(range(1, 17))
SPAN_ID = bytes(range(1, 9))
PARENT_ID = bytes(range(9, 17))


def sdk_spans() -> list[ReadableSpan]:
    finished: list[ReadableSpan] = []
    limits = SpanLimits(max_span_attributes=4, max_events=2, max_links=1)
    resources = [Resource.create({"service.name": "buildx", "host.arch": "amd64"}),
                 Resource.create({"service.name": "buildkitd", "replica": 3})]
    for resource in resources:
        memory = InMemorySpanExporter()
        provider = TracerProvider(resource=resource, span_limits=limits)
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracer = provider.get_tracer("otelgrpc", "0.46.1")
        remote_parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1),
                                    trace_state=TraceState([("vendor", "v1")]))
        link_ctx = SpanContext(0x1234, 0x5678, is_remote=False)
        ctx = trace_api.set_span_in_context(NonRecordingSpan(remote_parent))
        with tracer.start_as_current_span("Solve", context=ctx, kind=SpanKind.SERVER,
                                          links=[Link(link_ctx, {"opentracing.ref_type": "child_of"}),
                                                 Link(link_ctx)]) as root:
            root.set_attributes({"rpc.system": "grpc", "n": 7, "ok": True, "ratio": 0.5,
                                 "tags": ("a", "b"), "extra": "dropped?"})
            for name in ("ExecOp started", "Container created", "Container started"):
                root.add_event(name, {"id": 1})
            with tracer.start_as_current_span("RUN make", kind=SpanKind.INTERNAL) as child:
                child.set_status(StatusCode.ERROR, "exit code 2")
            with tracer.start_as_current_span("client", kind=SpanKind.CLIENT) as client:
                client.set_status(StatusCode.OK)
        finished.extend(memory.get_finished_spans())
        provider.shutdown()
    return finished


def _ctx(ctx: SpanContext | None) -> tuple[object, ...] | None:
    if ctx is None:
        return None
    return (ctx.trace_id, ctx.span_id, ctx.is_remote, ctx.trace_state.to_header())


def _view(span: ReadableSpan) -> dict[str, object]:
    return {
        "name": span.name,
        "context": _ctx(span.context),
        "parent": _ctx(span.parent),
        "kind": span.kind,
        "status": (span.status.status_code, span.status.description),
        "attributes": dict(span.attributes or {}),
        "events": [(e.name, e.timestamp, dict(e.attributes or {})) for e in span.events],
        "links": [(_ctx(link.context), dict(link.attributes or {})) for link in span.links],
        "resource": dict(span.resource.attributes),
        "scope": (span.instrumentation_scope.name, span.instrumentation_scope.version)
        if span.instrumentation_scope else None,
        "times": (span.start_time, span.end_time),
        "dropped": (span.dropped_attributes, span.dropped_events, span.dropped_links),
    }


def test_round_trip_through_opentelemetrys_own_encoder() -> None:
    originals = sdk_spans()
    assert any(s.dropped_attributes and s.dropped_events and s.dropped_links for s in originals)
    converted = convert_request(encode_spans(originals))
    assert converted.rejected == {}
    assert len(converted.batches) == 2  # one per resource
    spans = [span for batch in converted.batches for span in batch]
    assert all(isinstance(span, ReadableSpan) for span in spans)
    assert sorted(map(_view, spans), key=repr) == sorted(map(_view, originals), key=repr)


def _kv(key: str, **value: object) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def _request(*spans: Span, resource: PbResource | None = None) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=resource or PbResource(attributes=[_kv("service.name", string_value="svc")]),
        scope_spans=[ScopeSpans(spans=list(spans))])])


def _span(**fields: object) -> Span:
    base: dict[str, object] = {"trace_id": TRACE_ID, "span_id": SPAN_ID, "name": "op",
                               "start_time_unix_nano": 10, "end_time_unix_nano": 20}
    base.update(fields)
    return Span(**base)  # type: ignore[arg-type]


def _one(span: Span) -> RelaySpan:
    converted = convert_request(_request(span))
    assert converted.rejected == {}, converted.first_error
    (result,) = converted.batches[0]
    assert isinstance(result, RelaySpan)
    return result


def test_every_anyvalue_kind_is_kept() -> None:
    nested = KeyValueList(values=[_kv("k", string_value="v"), _kv("n", int_value=1)])
    span = _one(_span(attributes=[
        _kv("s", string_value="text"), _kv("empty_string", string_value=""), _kv("b", bool_value=False),
        _kv("i", int_value=-(2**63)), _kv("d", double_value=1.5), _kv("raw", bytes_value=b"\x00\xff"),
        _kv("arr", array_value=ArrayValue(values=[AnyValue(string_value="a"), AnyValue(int_value=2),
                                                   AnyValue(kvlist_value=nested)])),
        _kv("map", kvlist_value=nested), KeyValue(key="none"),
    ]))
    assert span.attributes == {
        "s": "text", "empty_string": "", "b": False, "i": -(2**63), "d": 1.5, "raw": b"\x00\xff",
        "arr": ("a", 2, {"k": "v", "n": 1}), "map": {"k": "v", "n": 1}, "none": None,
    }


def test_ids_flags_parent_kind_and_status() -> None:
    span = _one(_span(parent_span_id=PARENT_ID, flags=0x301, kind=Span.SPAN_KIND_PRODUCER,
                      trace_state="a=1,b=2", status=Status(code=Status.STATUS_CODE_OK, message="fine")))
    assert span.context.trace_id == int.from_bytes(TRACE_ID, "big")
    assert span.context.span_id == int.from_bytes(SPAN_ID, "big")
    assert span.context.trace_flags.sampled
    assert span.context.trace_state.to_header() == "a=1,b=2"
    assert span.parent is not None and span.parent.span_id == int.from_bytes(PARENT_ID, "big")
    assert span.parent.is_remote
    assert span.kind is SpanKind.PRODUCER and not span.kind_unspecified
    # OTLP and Jaeger keep a description on a non-error status; the SDK's Status() would drop it.
    assert (span.status.status_code, span.status.description) == (StatusCode.OK, "fine")


def test_unspecified_kind_and_all_zero_parent() -> None:
    span = _one(_span(kind=Span.SPAN_KIND_UNSPECIFIED, parent_span_id=bytes(8)))
    assert span.kind_unspecified and span.kind is SpanKind.INTERNAL
    assert span.parent is None


def test_events_links_and_dropped_counts() -> None:
    span = _one(_span(
        events=[Span.Event(time_unix_nano=15, name="ExecOp started", attributes=[_kv("a", int_value=1)],
                           dropped_attributes_count=2)],
        links=[Span.Link(trace_id=TRACE_ID, span_id=PARENT_ID, attributes=[_kv("l", bool_value=True)]),
               Span.Link(trace_id=b"short", span_id=PARENT_ID)],
        dropped_attributes_count=3, dropped_events_count=4, dropped_links_count=5))
    (event,) = span.events
    assert (event.name, event.timestamp, dict(event.attributes or {})) == ("ExecOp started", 15, {"a": 1})
    assert event.dropped_attributes == 2
    (link,) = span.links
    assert link.context.span_id == int.from_bytes(PARENT_ID, "big")
    assert link.attributes == {"l": True}
    # The malformed link cannot be kept; it is counted, not lost silently.
    assert (span.dropped_attributes, span.dropped_events, span.dropped_links) == (3, 4, 6)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"trace_id": b""}, "invalid_trace_id"),
        ({"trace_id": bytes(16)}, "invalid_trace_id"),
        ({"trace_id": bytes(range(15))}, "invalid_trace_id"),
        ({"span_id": bytes(8)}, "invalid_span_id"),
        ({"span_id": b"\x01" * 9}, "invalid_span_id"),
        ({"parent_span_id": b"\x01" * 4}, "invalid_parent_span_id"),
        ({"start_time_unix_nano": 30}, "end_before_start"),
    ],
)
def test_a_bad_span_is_rejected_alone(fields: dict[str, object], reason: str) -> None:
    converted = convert_request(_request(_span(name="good-1"), _span(name="bad", **fields), _span(name="good-2")))
    assert converted.rejected == {reason: 1}
    assert "'bad'" in converted.first_error
    assert [span.name for span in converted.batches[0]] == ["good-1", "good-2"]


def test_resources_stay_apart_and_missing_service_name_is_kept_absent() -> None:
    request = _request(_span())
    no_service = ResourceSpans(resource=PbResource(), scope_spans=[ScopeSpans(spans=[_span(name="x")])])
    request.resource_spans.append(no_service)
    converted = convert_request(request)
    assert [dict(batch[0].resource.attributes) for batch in converted.batches] == [{"service.name": "svc"}, {}]


def test_resource_keeps_values_the_sdk_resource_would_refuse() -> None:
    resource = PbResource(attributes=[_kv("service.name", string_value="svc"), _kv("blob", bytes_value=b"\x01"),
                                      _kv("m", kvlist_value=KeyValueList(values=[_kv("k", int_value=1)]))])
    span = _one_with(resource)
    assert dict(span.resource.attributes) == {"service.name": "svc", "blob": b"\x01", "m": {"k": 1}}


def _one_with(resource: PbResource) -> ReadableSpan:
    converted = convert_request(_request(_span(), resource=resource))
    return converted.batches[0][0]


def test_trace_state_travels_as_received_without_warnings(caplog: pytest.LogCaptureFixture) -> None:
    from relay.exporters.translate import to_batch

    for header in ("Foo=bar", "a=1, b=2", ",".join(f"k{i}=v" for i in range(33))):
        span = _one(_span(trace_state=header))
        assert span.trace_state_header == header
        (jaeger_span,) = to_batch([span]).spans
        tags = {tag.key: tag.vStr for tag in jaeger_span.tags}
        assert tags["w3c.tracestate"] == header
    assert not [r for r in caplog.records if r.levelno >= 30]
    valid = _one(_span(trace_state="vendor=v1,other=o2"))
    assert dict(valid.context.trace_state) == {"vendor": "v1", "other": "o2"}
