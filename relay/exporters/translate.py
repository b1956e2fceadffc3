"""ReadableSpans of one resource -> one Jaeger thrift ``Batch``; see the README, "Jaeger output: the mapping".

Follows the OpenTelemetry Collector's translator (``pkg/translator/jaeger``), plus the rows of
JAEGER-MAPPING.md the Collector lacks (dropped counts, ``otel.library.*``). Tag order per span is
the Collector's: scope tags, attributes, ``span.kind``, ``otel.status_code``, ``error``,
``otel.status_description``, ``w3c.tracestate``; then ours: ``otel.dropped_*_count``.

Times: ``startTime = start_ns // 1000`` and ``duration = end_ns // 1000 - startTime``, both floor
(the Collector truncates too), so ``startTime + duration`` is the truncated end and each is within
1 µs of the source.

This is the hot path: module-level lookup tables, no copies of attribute dicts.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from opentelemetry.trace.status import StatusCode

from relay.exporters.jaeger_compat import jaeger

NO_SERVICE_NAME = "OTLPResourceNoServiceName"
SERVICE_NAME = "service.name"

# Generated constructors are called positionally: ~3x faster than keywords on this hot path.
# Tag(key, vType, vStr, vDouble, vBool, vLong, vBinary); Log(timestamp, fields);
# SpanRef(refType, traceIdLow, traceIdHigh, spanId); Span(traceIdLow, traceIdHigh, spanId,
# parentSpanId, operationName, references, flags, startTime, duration, tags, logs).
_Tag = jaeger.Tag
_Log = jaeger.Log
_SpanRef = jaeger.SpanRef
_Span = jaeger.Span
_STRING, _DOUBLE, _BOOL, _LONG, _BINARY = 0, 1, 2, 3, 4
_CHILD_OF, _FOLLOWS_FROM = jaeger.SpanRefType.CHILD_OF, jaeger.SpanRefType.FOLLOWS_FROM

_KIND_NAMES = {
    SpanKind.CLIENT: "client",
    SpanKind.SERVER: "server",
    SpanKind.PRODUCER: "producer",
    SpanKind.CONSUMER: "consumer",
    SpanKind.INTERNAL: "internal",
}
# Constant tags are built once and shared (nothing ever mutates a Tag after construction).
_KIND_TAGS = {kind: _Tag("span.kind", _STRING, name) for kind, name in _KIND_NAMES.items()}
_STATUS_TAGS = {
    StatusCode.OK: (_Tag("otel.status_code", _STRING, "OK"),),
    StatusCode.ERROR: (_Tag("otel.status_code", _STRING, "ERROR"),
                       _Tag("error", _BOOL, None, None, True)),
}
_SIGNED_PAIR = struct.Struct(">qq")
_SIGNED = struct.Struct(">q")
_SAMPLED = 0x01


# --- attribute values ----------------------------------------------------------------------------

def _str_tag(key: str, value: Any) -> Any:
    return _Tag(key, _STRING, value)


def _bool_tag(key: str, value: Any) -> Any:
    return _Tag(key, _BOOL, None, None, value)


def _long_tag(key: str, value: Any) -> Any:
    return _Tag(key, _LONG, None, None, None, value)


def _double_tag(key: str, value: Any) -> Any:
    return _Tag(key, _DOUBLE, None, value)


def _binary_tag(key: str, value: Any) -> Any:
    return _Tag(key, _BINARY, None, None, None, None, value)


def _json_tag(key: str, value: Any) -> Any:
    return _Tag(key, _STRING, json_value(value))


def _empty_tag(key: str, value: Any) -> Any:
    return _Tag(key, _STRING, "")


_TAG_BUILDERS: dict[type, Callable[[str, Any], Any]] = {
    str: _str_tag, bool: _bool_tag, int: _long_tag, float: _double_tag, bytes: _binary_tag,
    tuple: _json_tag, list: _json_tag, dict: _json_tag, type(None): _empty_tag,
}
# For subclasses (IntEnum, str subclasses, ...): the first base that matches. bool before int.
_TAG_BASES = (bool, int, float, str, bytes, tuple, list, dict)


def attribute_tag(key: str, value: Any) -> Any:
    """One OTLP attribute -> one Jaeger ``Tag`` (see the AnyValue table)."""
    build = _TAG_BUILDERS.get(type(value))
    if build is None:
        build = next((_TAG_BUILDERS[base] for base in _TAG_BASES if isinstance(value, base)),
                     _fallback_tag)
    return build(key, value)


def _fallback_tag(key: str, value: Any) -> Any:
    return _Tag(key, _STRING, str(value))


def _tags(attributes: Mapping[str, Any] | None, tags: list[Any]) -> list[Any]:
    if attributes:
        append = tags.append
        for key, value in attributes.items():
            if type(value) is str:  # the common case, inlined
                append(_Tag(key, _STRING, value))
            else:
                append(attribute_tag(key, value))
    return tags


# --- JSON for arrays and kvlists -----------------------------------------------------------------

def json_value(value: Any) -> str:
    """Compact JSON of an OTLP array/kvlist, as the Collector's ``Value.AsString`` renders it.

    Go ``encoding/json`` of ``AsRaw()``: no spaces, map keys sorted, bytes as base64, empty values
    as ``null``, floats in Go's shortest form (``1`` not ``1.0``; exponent only below 1e-6 or from
    1e21, as ``1e+21`` / ``1e-7``). Non-ASCII stays UTF-8. Where Go fails (NaN, ±Inf make the
    Collector emit an empty string) we keep the value as the JSON strings ``"NaN"``, ``"+Inf"``,
    ``"-Inf"``. Go additionally escapes ``<>&`` as ``\\u003c`` etc.; we do not (same JSON value).
    """
    return _JSON_WRITERS.get(type(value), _json_any)(value)


def _json_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _json_float(value: float) -> str:
    if not math.isfinite(value):
        return '"NaN"' if math.isnan(value) else ('"+Inf"' if value > 0 else '"-Inf"')
    text = repr(value)  # the shortest digits that round-trip, as Go's strconv uses
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        # repr uses an exponent here too ("1.5e-07", "1e+21"); Go trims "e-07" to "e-7".
        mantissa, _, exponent = text.partition("e")
        if len(exponent) == 3 and exponent.startswith("-0"):
            exponent = "-" + exponent[2]
        return f"{mantissa}e{exponent}"
    text = format(Decimal(text), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _json_bytes(value: bytes) -> str:
    return '"' + base64.b64encode(value).decode("ascii") + '"'


def _json_array(value: Sequence[Any]) -> str:
    return "[" + ",".join([json_value(item) for item in value]) + "]"


def _json_object(value: Mapping[str, Any]) -> str:
    return "{" + ",".join([f"{_json_str(key)}:{json_value(value[key])}"
                           for key in sorted(value)]) + "}"


def _json_any(value: Any) -> str:
    for base, writer in _JSON_BASES:
        if isinstance(value, base):
            return writer(value)
    return _json_str(str(value))


_JSON_WRITERS: dict[type, Callable[[Any], str]] = {
    str: _json_str, bool: lambda v: "true" if v else "false", int: str, float: _json_float,
    bytes: _json_bytes, tuple: _json_array, list: _json_array, dict: _json_object,
    type(None): lambda v: "null",
}
_JSON_BASES = tuple((base, _JSON_WRITERS[base]) for base in _TAG_BASES)


# --- resource, ids, span -------------------------------------------------------------------------

def process_from_resource(resource: Resource | None) -> Any:
    """Resource -> ``Process``: ``service.name`` names it, every other attribute is a tag."""
    attributes = resource.attributes if resource is not None else {}
    name = attributes.get(SERVICE_NAME)
    has_name = isinstance(name, str) and name != ""
    tags = [attribute_tag(key, value) for key, value in attributes.items()
            if not (has_name and key == SERVICE_NAME)]
    return jaeger.Process(serviceName=name if has_name else NO_SERVICE_NAME, tags=tags or None)


def signed_id_pair(trace_id: int) -> tuple[int, int]:
    """128-bit trace id -> (high, low) as signed i64."""
    high, low = _SIGNED_PAIR.unpack(trace_id.to_bytes(16, "big"))
    return high, low


def signed_id(span_id: int) -> int:
    """64-bit span id -> signed i64."""
    return int(_SIGNED.unpack(span_id.to_bytes(8, "big"))[0])


@functools.lru_cache(maxsize=256)
def scope_tags(name: str | None, version: str | None) -> tuple[Any, ...]:
    """``otel.scope.*`` then the deprecated ``otel.library.*`` tags; empty parts are left out."""
    tags = []
    if name:
        tags.append(_Tag("otel.scope.name", _STRING, name))
    if version:
        tags.append(_Tag("otel.scope.version", _STRING, version))
    if name:
        tags.append(_Tag("otel.library.name", _STRING, name))
    if version:
        tags.append(_Tag("otel.library.version", _STRING, version))
    return tuple(tags)


def _status_tags(span: ReadableSpan, tags: list[Any]) -> None:
    if not getattr(span, "kind_unspecified", False):
        kind = _KIND_TAGS.get(span.kind)
        if kind is not None:
            tags.append(kind)
    status = span.status
    code_tags = _STATUS_TAGS.get(status.status_code)
    if code_tags is not None:
        tags.extend(code_tags)
    if status.description:
        tags.append(_Tag("otel.status_description", _STRING, status.description))


def _trailing_tags(span: ReadableSpan, tags: list[Any]) -> None:
    # The header as received when the converter kept it (RelaySpan), else the SDK's TraceState.
    header = getattr(span, "trace_state_header", "")
    if not header and span.context is not None and span.context.trace_state:
        header = span.context.trace_state.to_header()
    if header:
        tags.append(_Tag("w3c.tracestate", _STRING, header))
    if span.dropped_attributes:
        tags.append(_long_tag("otel.dropped_attributes_count", span.dropped_attributes))
    if span.dropped_events:
        tags.append(_long_tag("otel.dropped_events_count", span.dropped_events))
    if span.dropped_links:
        tags.append(_long_tag("otel.dropped_links_count", span.dropped_links))


def _span_tags(span: ReadableSpan) -> list[Any] | None:
    scope = span.instrumentation_scope
    tags: list[Any] = [] if scope is None else [*scope_tags(scope.name, scope.version)]
    _tags(span.attributes, tags)
    _status_tags(span, tags)
    _trailing_tags(span, tags)
    return tags or None


def _logs(span: ReadableSpan) -> list[Any] | None:
    events = span.events
    if not events:
        return None
    logs = []
    for event in events:
        attributes = event.attributes
        fields: list[Any] = []
        if event.name and not (attributes and "event" in attributes):
            fields.append(_Tag("event", _STRING, event.name))
        logs.append(_Log(event.timestamp // 1000, _tags(attributes, fields)))
    return logs


def _references(span: ReadableSpan) -> list[Any] | None:
    links = span.links
    if not links:
        return None
    refs = []
    for link in links:
        high, low = signed_id_pair(link.context.trace_id)
        attributes = link.attributes
        child = attributes is not None and attributes.get("opentracing.ref_type") == "child_of"
        refs.append(_SpanRef(_CHILD_OF if child else _FOLLOWS_FROM, low, high,
                             signed_id(link.context.span_id)))
    return refs


def span_to_jaeger(span: ReadableSpan) -> Any:
    """One span -> one Jaeger ``Span`` (without its Process)."""
    context = span.context
    assert context is not None  # a ReadableSpan always has one  # noqa: S101
    high, low = signed_id_pair(context.trace_id)
    parent = span.parent
    start_us = (span.start_time or 0) // 1000
    end_us = (span.end_time or span.start_time or 0) // 1000
    return _Span(
        low, high, signed_id(context.span_id),
        signed_id(parent.span_id) if parent is not None else 0,
        span.name, _references(span), context.trace_flags & _SAMPLED,
        start_us, end_us - start_us, _span_tags(span), _logs(span),
    )


def to_batch(spans: Sequence[ReadableSpan]) -> Any:
    """Spans that share one Resource -> one ``Batch``; the Process comes from the first span."""
    resource = spans[0].resource if spans else None
    return jaeger.Batch(process=process_from_resource(resource),
                        spans=[span_to_jaeger(span) for span in spans])
