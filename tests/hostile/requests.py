"""Hostile Export requests, as bytes on the wire. Shared by the hostile tests, the fuzz test and
``python -m bench.fuzz``."""

from __future__ import annotations

import math
import struct

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

GOOD_IDS = {"trace_id": b"\x01" * 16, "span_id": b"\x02" * 8}


def span(name: str, **fields: object) -> Span:
    values: dict[str, object] = {**GOOD_IDS, "start_time_unix_nano": 1_700_000_000_000_000_000,
                                 "end_time_unix_nano": 1_700_000_000_001_000_000, **fields}
    return Span(name=name, **values)  # type: ignore[arg-type]


def request(*spans: Span) -> ExportTraceServiceRequest:
    out = ExportTraceServiceRequest()
    resource = out.resource_spans.add()
    resource.resource.attributes.add(key="service.name", value=AnyValue(string_value="hostile"))
    resource.scope_spans.add().spans.extend(spans)
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def nested_kvlist(depth: int) -> bytes:
    """An AnyValue holding ``depth`` kvlists inside each other, encoded by hand (the protobuf
    runtime refuses to build what it would refuse to parse)."""
    value = _ld(1, b"leaf")  # AnyValue.string_value
    for _ in range(depth):
        key_value = _ld(1, b"k") + _ld(2, value)  # KeyValue{key, value}
        value = _ld(6, _ld(1, key_value))  # AnyValue.kvlist_value = KeyValueList{values}
    return value


def with_deep_attribute(depth: int) -> bytes:
    """A one-span request whose span has one attribute nested ``depth`` kvlists deep."""
    body = span("deep").SerializeToString() + _ld(9, _ld(1, b"deep") + _ld(2, nested_kvlist(depth)))
    scope = _ld(2, body)  # ScopeSpans.spans
    resource = _ld(2, scope)  # ResourceSpans.scope_spans
    return _ld(1, resource)  # ExportTraceServiceRequest.resource_spans


def doubles() -> ExportTraceServiceRequest:
    attrs = [KeyValue(key=key, value=AnyValue(double_value=value))
             for key, value in (("nan", math.nan), ("inf", math.inf), ("-inf", -math.inf),
                                ("tiny", 5e-324), ("max", 1.7976931348623157e308), ("-0", -0.0))]
    array = ArrayValue(values=[AnyValue(double_value=v) for v in (math.nan, math.inf, -math.inf, 1.5)])
    attrs.append(KeyValue(key="array", value=AnyValue(array_value=array)))
    return request(span("doubles", attributes=attrs))


def many_attributes(count: int) -> ExportTraceServiceRequest:
    attrs = [KeyValue(key=f"k{i}", value=AnyValue(int_value=i)) for i in range(count)]
    return request(span("many-attributes", attributes=attrs))


def huge_string(size: int) -> ExportTraceServiceRequest:
    attrs = [KeyValue(key="log", value=AnyValue(string_value="x" * size))]
    return request(span("huge-string", attributes=attrs))


def end_before_start() -> ExportTraceServiceRequest:
    return request(span("backwards", start_time_unix_nano=2_000, end_time_unix_nano=1_000),
                   span("fine-1"))


def wrong_ids() -> ExportTraceServiceRequest:
    return request(span("trace15", trace_id=b"\x01" * 15), span("trace17", trace_id=b"\x01" * 17),
                   span("span9", span_id=b"\x02" * 9), span("span-empty", span_id=b""),
                   span("trace-empty", trace_id=b""), span("parent7", parent_span_id=b"\x03" * 7),
                   span("zeros", trace_id=bytes(16)), span("fine-2"))


def bad_link() -> ExportTraceServiceRequest:
    bad = Span.Link(trace_id=b"\x01" * 3, span_id=b"\x02" * 8)
    good = Span.Link(trace_id=b"\x05" * 16, span_id=b"\x06" * 8)
    return request(span("bad-link", links=[bad, good]))


MALFORMED = {
    "truncated-length": b"\x0a\xff\xff\xff\xff\x0f",
    "all-ff": b"\xff" * 64,
    "wrong-wire-type": b"\x0b\x01\x02",
    "truncated-valid": request(span("cut")).SerializeToString()[:-3],
    "bad-utf8-name": _ld(1, _ld(2, _ld(2, span("").SerializeToString() + _ld(5, b"\xff\xfe")))),
    "group-end": b"\x0c",
    "fixed64-cut": b"\x09\x01\x02",
    "negative-length": b"\x0a" + _varint(2**64 - 1),
    "float-field": struct.pack("<B", 0x0D) + b"\x00\x00",
}
