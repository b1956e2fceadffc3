"""Input spans -> the Jaeger ``Batch`` that JAEGER-MAPPING.md says must arrive, as plain data.

An oracle written from the mapping table, not from ``relay.exporters.translate`` (the code under
test): nothing here imports the relay. The result has the shape of ``tests.thriftpy_decode.as_plain``
(nested ``{"_type": ..., field: value}`` dicts), so a batch decoded from the wire compares with one
``==``. Tag order is the documented one (the Collector's, pinned by the golden table): scope tags,
attributes, ``span.kind``, ``otel.status_code``, ``error``, ``otel.status_description``,
``w3c.tracestate``, then the ``otel.dropped_*_count`` tags; a Log's ``event`` field comes first.

Arrays and kvlists are JSON strings spelled as the Collector's ``AsString`` (Go's encoding/json):
compact, object keys sorted. Their number spelling (Go's float format) the golden table pins;
here values are compared (:class:`JsonOf`), types kept apart (``true`` is not ``1``), bytes as
base64, empty values as ``null``, and infinities as the strings ``"+Inf"`` / ``"-Inf"`` (where
the Collector would write an empty tag, see translate.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

STRING, DOUBLE, BOOL, LONG, BINARY = 0, 1, 2, 3, 4  # TagType in tests/idl/jaeger.thrift
CHILD_OF, FOLLOWS_FROM = 0, 1  # SpanRefType
NO_SERVICE_NAME = "OTLPResourceNoServiceName"
KINDS = {"CLIENT": "client", "SERVER": "server", "PRODUCER": "producer", "CONSUMER": "consumer",
         "INTERNAL": "internal"}
_VALUE_FIELD = {STRING: "vStr", DOUBLE: "vDouble", BOOL: "vBool", LONG: "vLong", BINARY: "vBinary"}


def tag(key: str, vtype: int, value: Any) -> dict[str, Any]:
    fields = dict.fromkeys(("vStr", "vDouble", "vBool", "vLong", "vBinary"))
    fields[_VALUE_FIELD[vtype]] = value
    return {"_type": "Tag", "key": key, "vType": vtype, **fields}


class JsonOf:
    """Equal to a JSON text that holds ``value`` (an OTLP array or kvlist) under the mapping."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, str):
            return NotImplemented
        keys_sorted: list[bool] = []

        def record_order(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            keys = [key for key, _value in pairs]
            keys_sorted.append(keys == sorted(keys))
            return dict(pairs)

        try:
            parsed = json.loads(other, parse_float=Decimal, object_pairs_hook=record_order)
        except ValueError:
            return False
        return _compact(other) and all(keys_sorted) and json_holds(parsed, self.value)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"JsonOf({self.value!r})"


_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')


def _compact(text: str) -> bool:
    """No whitespace outside string literals (Go's encoding/json writes none)."""
    return not any(char.isspace() for char in _STRING_LITERAL.sub('""', text))


def json_holds(parsed: Any, value: Any) -> bool:
    """Whether parsed JSON (floats as Decimal) is what ``value`` must render as."""
    if value is None:
        return parsed is None
    if isinstance(value, bool):
        return parsed is value
    if isinstance(value, int):
        return type(parsed) is int and parsed == value
    if isinstance(value, float):
        return _json_float_holds(parsed, value)
    if isinstance(value, str):
        return parsed == value if isinstance(parsed, str) else False
    if isinstance(value, bytes):
        return isinstance(parsed, str) and _b64(parsed) == value
    if isinstance(value, Mapping):
        return (isinstance(parsed, dict) and parsed.keys() == value.keys()
                and all(json_holds(parsed[key], value[key]) for key in value))
    return (isinstance(parsed, list) and len(parsed) == len(value)
            and all(json_holds(p, v) for p, v in zip(parsed, value, strict=True)))


def _json_float_holds(parsed: Any, value: float) -> bool:
    if math.isinf(value):
        return parsed == ("+Inf" if value > 0 else "-Inf")
    if math.isnan(value):
        return parsed == "NaN"
    return type(parsed) in (int, Decimal) and float(parsed) == value  # Go writes 1.0 as 1


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return None


def attribute_tag(key: str, value: Any) -> dict[str, Any]:
    """The AnyValue table."""
    if value is None:
        return tag(key, STRING, "")
    if isinstance(value, bool):
        return tag(key, BOOL, value)
    if isinstance(value, int):
        return tag(key, LONG, value)
    if isinstance(value, float):
        return tag(key, DOUBLE, value)
    if isinstance(value, str):
        return tag(key, STRING, value)
    if isinstance(value, bytes):
        return tag(key, BINARY, value)
    return tag(key, STRING, JsonOf(value))


def attribute_tags(attributes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [attribute_tag(key, value) for key, value in (attributes or {}).items()]


def signed(value: int, size: int) -> int:
    return int.from_bytes(value.to_bytes(size, "big"), "big", signed=True)


def trace_id_halves(trace_id: int) -> tuple[int, int]:
    """(high, low): the two big-endian 8-byte halves as signed i64."""
    return signed(trace_id >> 64, 8), signed(trace_id & (2**64 - 1), 8)


def expected_process(resource: Any) -> dict[str, Any]:
    attributes = dict(resource.attributes) if resource is not None else {}
    name = attributes.get("service.name")
    if isinstance(name, str) and name:
        del attributes["service.name"]
    else:
        name = NO_SERVICE_NAME
    return {"_type": "Process", "serviceName": name, "tags": attribute_tags(attributes) or None}


def _scope_tags(scope: Any) -> list[dict[str, Any]]:
    name, version = (scope.name, scope.version) if scope is not None else (None, None)
    prefixes = ("otel.scope", "otel.library")
    return [tag(f"{prefix}.{part}", STRING, text)
            for prefix in prefixes for part, text in (("name", name), ("version", version)) if text]


def _status_tags(span: Any) -> list[dict[str, Any]]:
    tags = []
    if not getattr(span, "kind_unspecified", False):
        tags.append(tag("span.kind", STRING, KINDS[span.kind.name]))
    code = span.status.status_code.name
    if code in ("OK", "ERROR"):
        tags.append(tag("otel.status_code", STRING, code))
    if code == "ERROR":
        tags.append(tag("error", BOOL, True))
    if span.status.description:
        tags.append(tag("otel.status_description", STRING, span.status.description))
    return tags


def _trailing_tags(span: Any) -> list[dict[str, Any]]:
    tags = []
    state = span.context.trace_state
    if state:
        tags.append(tag("w3c.tracestate", STRING, ",".join(f"{k}={v}" for k, v in state.items())))
    for what in ("attributes", "events", "links"):
        count = getattr(span, f"dropped_{what}")
        if count:
            tags.append(tag(f"otel.dropped_{what}_count", LONG, count))
    return tags


def _log(event: Any) -> dict[str, Any]:
    attributes = event.attributes or {}
    name_field = [tag("event", STRING, event.name)] if event.name and "event" not in attributes else []
    return {"_type": "Log", "timestamp": event.timestamp // 1000,
            "fields": [*name_field, *attribute_tags(attributes)]}


def _reference(link: Any) -> dict[str, Any]:
    high, low = trace_id_halves(link.context.trace_id)
    child = (link.attributes or {}).get("opentracing.ref_type") == "child_of"
    return {"_type": "SpanRef", "refType": CHILD_OF if child else FOLLOWS_FROM,
            "traceIdLow": low, "traceIdHigh": high, "spanId": signed(link.context.span_id, 8)}


def expected_span(span: Any, *, flags_sent: bool = True) -> dict[str, Any]:
    """One input span -> its Jaeger ``Span``. ``flags_sent=False`` when the input went through an
    encoder that does not carry the trace flags (OpenTelemetry's Python OTLP encoder): flags 0."""
    context = span.context
    high, low = trace_id_halves(context.trace_id)
    start_us = span.start_time // 1000
    tags = [*_scope_tags(span.instrumentation_scope), *attribute_tags(span.attributes),
            *_status_tags(span), *_trailing_tags(span)]
    return {
        "_type": "Span", "traceIdLow": low, "traceIdHigh": high,
        "spanId": signed(context.span_id, 8),
        "parentSpanId": signed(span.parent.span_id, 8) if span.parent is not None else 0,
        "operationName": span.name,
        "references": [_reference(link) for link in span.links] or None,
        "flags": int(context.trace_flags) & 1 if flags_sent else 0,
        "startTime": start_us, "duration": span.end_time // 1000 - start_us,
        "tags": tags or None,
        "logs": [_log(event) for event in span.events] or None,
    }


def expected_spans(spans: Iterable[Any], *, flags_sent: bool = True) -> list[dict[str, Any]]:
    return [expected_span(span, flags_sent=flags_sent) for span in spans]


def unmatched(decoded: Sequence[Any], expected: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """Compare as multisets (arrival order aside): (expected not decoded, decoded not expected)."""
    left = list(decoded)
    missing = []
    for item in expected:
        index = next((i for i, got in enumerate(left) if got == item), None)
        if index is None:
            missing.append(item)
        else:
            del left[index]
    return missing, left


def expected_batch(spans: Sequence[Any], *, flags_sent: bool = True) -> dict[str, Any]:
    """Spans of one resource -> the one ``Batch`` they must arrive as."""
    return {"_type": "Batch", "process": expected_process(spans[0].resource),
            "spans": expected_spans(spans, flags_sent=flags_sent)}
