"""Golden table: every row of JAEGER-MAPPING.md, checked on the bytes that went out on a socket.

Each case is (input span(s) of one resource, the exact Jaeger Batch expected). The spans go through
the agent exporter to a real UDP agent sink AND through the collector exporter to a real HTTP
collector sink; what the sinks decode must equal the expected Batch, tag order included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import StatusCode

from bench.jaeger_sinks import HttpCollectorSink, UdpAgentSink, jaeger
from relay.exporters.agent import JaegerAgentExporter
from relay.exporters.collector import JaegerCollectorExporter
from tests.strategies import DroppedSpan, relay_span, status

TRACE_ID = 0xFEDCBA9876543210_0123456789ABCDEF
TRACE_HIGH, TRACE_LOW = -0x0123456789ABCDF0, 0x0123456789ABCDEF  # 0xFEDC... as signed i64
SPAN_ID = 0x8000000000000001
SPAN_SIGNED = -0x7FFFFFFFFFFFFFFF
PARENT_ID = 0x00000000000000FF
START_NS = 1_700_000_000_123_456_789
END_NS = 1_700_000_001_000_000_999
START_US = 1_700_000_000_123_456
DURATION_US = 1_700_000_001_000_000 - START_US
WAIT = 10.0

S, D, B, L, BIN = 0, 1, 2, 3, 4


def tag(key: str, vtype: int, value: Any) -> Any:
    field_name = {S: "vStr", D: "vDouble", B: "vBool", L: "vLong", BIN: "vBinary"}[vtype]
    return jaeger.Tag(key=key, vType=vtype, **{field_name: value})


SCOPE_TAGS = [tag("otel.scope.name", S, "buildkit"), tag("otel.scope.version", S, "0.12"),
              tag("otel.library.name", S, "buildkit"), tag("otel.library.version", S, "0.12")]
DEFAULT_RESOURCE = Resource({"service.name": "buildkitd"})


def span(**overrides: Any) -> DroppedSpan:
    kwargs: dict[str, Any] = {
        "name": "solve",
        "context": SpanContext(TRACE_ID, SPAN_ID, False, TraceFlags(1)),
        "parent": None,
        "resource": DEFAULT_RESOURCE,
        "attributes": {},
        "kind": SpanKind.INTERNAL,
        "start_time": START_NS,
        "end_time": END_NS,
        "instrumentation_scope": InstrumentationScope("buildkit", "0.12"),
    }
    kwargs.update(overrides)
    return relay_span(**kwargs)


def expected_span(tags: list[Any] | None = None, **overrides: Any) -> Any:
    fields: dict[str, Any] = {
        "traceIdLow": TRACE_LOW, "traceIdHigh": TRACE_HIGH, "spanId": SPAN_SIGNED,
        "parentSpanId": 0, "operationName": "solve", "references": None, "flags": 1,
        "startTime": START_US, "duration": DURATION_US, "logs": None,
        "tags": [*SCOPE_TAGS, *(tags if tags is not None else [tag("span.kind", S, "internal")])],
    }
    fields.update(overrides)
    return jaeger.Span(**fields)


def batch(*spans: Any, service: str = "buildkitd", process_tags: list[Any] | None = None) -> Any:
    return jaeger.Batch(process=jaeger.Process(serviceName=service, tags=process_tags),
                        spans=list(spans))


KIND = [tag("span.kind", S, "internal")]


@dataclass
class Case:
    id: str
    spans: list[DroppedSpan]
    expected: Any
    notes: list[str] = field(default_factory=list)


def attribute_case(name: str, value: Any, expected_tag: Any) -> Case:
    return Case(f"attr-{name}", [span(attributes={"k": value})],
                batch(expected_span([expected_tag, *KIND])))


CASES = [
    # identity, times, ids, flags, name, one resource -> one batch
    Case("plain", [span()], batch(expected_span())),
    Case("parent-and-unsampled",
         [span(parent=SpanContext(TRACE_ID, PARENT_ID, False),
               context=SpanContext(TRACE_ID, SPAN_ID, False, TraceFlags(0)))],
         batch(expected_span(parentSpanId=PARENT_ID, flags=0))),
    Case("random-flag-bit-not-jaeger-debug",
         [span(context=SpanContext(TRACE_ID, SPAN_ID, False, TraceFlags(0x03)))],
         batch(expected_span(flags=1))),
    Case("max-ids",
         [span(context=SpanContext(2**128 - 1, 2**64 - 1, False, TraceFlags(1)))],
         batch(expected_span(traceIdLow=-1, traceIdHigh=-1, spanId=-1))),
    Case("sub-microsecond-times", [span(start_time=1999, end_time=3001)],
         batch(expected_span(startTime=1, duration=2))),
    # resource
    Case("resource-tags-not-on-spans",
         [span(resource=Resource({"service.name": "svc", "host.name": "h", "pid": 7}))],
         batch(expected_span(), service="svc",
               process_tags=[tag("host.name", S, "h"), tag("pid", L, 7)])),
    Case("no-service-name", [span(resource=Resource({"host.name": "h"}))],
         batch(expected_span(), service="OTLPResourceNoServiceName",
               process_tags=[tag("host.name", S, "h")])),
    Case("empty-service-name", [span(resource=Resource({"service.name": ""}))],
         batch(expected_span(), service="OTLPResourceNoServiceName",
               process_tags=[tag("service.name", S, "")])),
    Case("empty-resource", [span(resource=Resource({}))],
         batch(expected_span(), service="OTLPResourceNoServiceName")),
    # AnyValue kinds
    attribute_case("string", "v", tag("k", S, "v")),
    attribute_case("empty-string", "", tag("k", S, "")),
    attribute_case("bool", False, tag("k", B, False)),
    attribute_case("int", -(2**63), tag("k", L, -(2**63))),
    attribute_case("double", 0.1, tag("k", D, 0.1)),
    attribute_case("bytes", b"\x00\xff", tag("k", BIN, b"\x00\xff")),
    attribute_case("array", ("a", "b"), tag("k", S, '["a","b"]')),
    attribute_case("array-mixed", (1, 2.0, 1e21, 1.5e-7, True, None, b"\x01", "é\"\n"),
                   tag("k", S, '[1,2,1e+21,1.5e-7,true,null,"AQ==","é\\"\\n"]')),
    attribute_case("array-empty", (), tag("k", S, "[]")),
    attribute_case("array-nested", (("a",), {"x": (1,)}), tag("k", S, '[["a"],{"x":[1]}]')),
    attribute_case("kvlist", {"b": 1, "a": {"c": None}}, tag("k", S, '{"a":{"c":null},"b":1}')),
    attribute_case("kvlist-empty", {}, tag("k", S, "{}")),
    attribute_case("empty-value", None, tag("k", S, "")),
    # kinds
    *[Case(f"kind-{kind.name}", [span(kind=kind)],
           batch(expected_span([tag("span.kind", S, name)])))
      for kind, name in [(SpanKind.CLIENT, "client"), (SpanKind.SERVER, "server"),
                         (SpanKind.PRODUCER, "producer"), (SpanKind.CONSUMER, "consumer"),
                         (SpanKind.INTERNAL, "internal")]],
    Case("kind-unspecified", [span(kind_unspecified=True)], batch(expected_span([]))),
    # status
    Case("status-unset", [span(status=status(StatusCode.UNSET, None))], batch(expected_span())),
    Case("status-ok", [span(status=status(StatusCode.OK, None))],
         batch(expected_span([*KIND, tag("otel.status_code", S, "OK")]))),
    Case("status-ok-with-description", [span(status=status(StatusCode.OK, "fine"))],
         batch(expected_span([*KIND, tag("otel.status_code", S, "OK"),
                              tag("otel.status_description", S, "fine")]))),
    Case("status-unset-with-description", [span(status=status(StatusCode.UNSET, "odd"))],
         batch(expected_span([*KIND, tag("otel.status_description", S, "odd")]))),
    Case("status-error", [span(status=status(StatusCode.ERROR, "boom"))],
         batch(expected_span([*KIND, tag("otel.status_code", S, "ERROR"), tag("error", B, True),
                              tag("otel.status_description", S, "boom")]))),
    Case("status-error-no-description", [span(status=status(StatusCode.ERROR, ""))],
         batch(expected_span([*KIND, tag("otel.status_code", S, "ERROR"),
                              tag("error", B, True)]))),
    # trace state, dropped counts
    Case("trace-state",
         [span(context=SpanContext(TRACE_ID, SPAN_ID, False, TraceFlags(1),
                                   TraceState([("rojo", "00f067aa0ba902b7"), ("congo", "t61")])))],
         batch(expected_span([*KIND,
                              tag("w3c.tracestate", S, "rojo=00f067aa0ba902b7,congo=t61")]))),
    Case("dropped-counts", [span(dropped=(3, 2**31, 1))],
         batch(expected_span([*KIND, tag("otel.dropped_attributes_count", L, 3),
                              tag("otel.dropped_events_count", L, 2**31),
                              tag("otel.dropped_links_count", L, 1)]))),
    # events
    Case("events",
         [span(events=[Event("started", {"n": 1}, 5_000_999),
                       Event("named", {"event": "custom", "x": "y"}, 6_000),
                       Event("", {"a": ("b",)}, 7_000)])],
         batch(expected_span(logs=[
             jaeger.Log(timestamp=5_000, fields=[tag("event", S, "started"), tag("n", L, 1)]),
             jaeger.Log(timestamp=6, fields=[tag("event", S, "custom"), tag("x", S, "y")]),
             jaeger.Log(timestamp=7, fields=[tag("a", S, '["b"]')]),
         ]))),
    # links
    Case("links",
         [span(links=[Link(SpanContext(TRACE_ID, 5, False), {"opentracing.ref_type": "child_of"}),
                      Link(SpanContext(1, 2**64 - 2, False), {"a": 1}),
                      Link(SpanContext(3, 4, False), {"opentracing.ref_type": "follows_from"})])],
         batch(expected_span(references=[
             jaeger.SpanRef(refType=0, traceIdLow=TRACE_LOW, traceIdHigh=TRACE_HIGH, spanId=5),
             jaeger.SpanRef(refType=1, traceIdLow=1, traceIdHigh=0, spanId=-2),
             jaeger.SpanRef(refType=1, traceIdLow=3, traceIdHigh=0, spanId=4),
         ]))),
    # tag order with everything at once
    Case("tag-order",
         [span(attributes={"a": 1}, kind=SpanKind.SERVER, status=status(StatusCode.ERROR, "x"),
               context=SpanContext(TRACE_ID, SPAN_ID, False, TraceFlags(1),
                                   TraceState([("k", "v")])),
               dropped=(1, 0, 0))],
         batch(expected_span([tag("a", L, 1), tag("span.kind", S, "server"),
                              tag("otel.status_code", S, "ERROR"), tag("error", B, True),
                              tag("otel.status_description", S, "x"),
                              tag("w3c.tracestate", S, "k=v"),
                              tag("otel.dropped_attributes_count", L, 1)]))),
    Case("several-spans-one-batch",
         [span(name="a"), span(name="b", attributes={"x": "y"})],
         batch(expected_span(operationName="a"),
               expected_span([tag("x", S, "y"), *KIND], operationName="b"))),
]
CASES.append(Case(
    "scope-name-only", [span(instrumentation_scope=InstrumentationScope("x", ""))],
    batch(jaeger.Span(**{**expected_span().__dict__,
                         "tags": [tag("otel.scope.name", S, "x"), tag("otel.library.name", S, "x"),
                                  *KIND]})),
))
CASES.append(Case(
    "no-scope", [span(instrumentation_scope=None)],
    batch(jaeger.Span(**{**expected_span().__dict__, "tags": KIND})),
))


@pytest.fixture(scope="module")
def agent_sink() -> Any:
    with UdpAgentSink() as sink:
        yield sink


@pytest.fixture(scope="module")
def collector_sink() -> Any:
    with HttpCollectorSink() as sink:
        yield sink


def _deliver(exporter: Any, spans: list[DroppedSpan], sink: Any) -> Any:
    before = len(sink.batches)
    encoded = exporter.encode(spans)
    assert encoded.dropped == {}
    assert len(encoded.payloads) == 1
    exporter.send(encoded.payloads[0])
    assert sink.wait_for_batches(before + 1, WAIT)
    assert sink.undecodable == 0
    return sink.batches[before]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_agent_output_matches_golden(case: Case, agent_sink: UdpAgentSink) -> None:
    exporter = JaegerAgentExporter("127.0.0.1", agent_sink.port)
    try:
        assert _deliver(exporter, case.spans, agent_sink) == case.expected
    finally:
        exporter.shutdown()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_collector_output_matches_golden(case: Case, collector_sink: HttpCollectorSink) -> None:
    exporter = JaegerCollectorExporter(collector_sink.url)
    try:
        assert _deliver(exporter, case.spans, collector_sink) == case.expected
    finally:
        exporter.shutdown()


def test_golden_table_covers_every_mapping_row() -> None:
    ids = {case.id for case in CASES}
    required = {
        "resource-tags-not-on-spans", "no-service-name", "empty-service-name",
        "parent-and-unsampled",
        "plain", "attr-string", "attr-bool", "attr-int", "attr-double", "attr-bytes", "attr-array",
        "attr-kvlist", "attr-empty-value", "attr-array-nested", "kind-CLIENT", "kind-SERVER",
        "kind-PRODUCER", "kind-CONSUMER", "kind-INTERNAL", "kind-unspecified", "status-ok",
        "status-error", "status-unset", "status-ok-with-description", "scope-name-only",
        "trace-state", "dropped-counts", "events", "links", "several-spans-one-batch",
    }
    assert required <= ids
