"""OTLP protobuf -> OpenTelemetry SDK ``ReadableSpan``s. Pure: imports only protobuf and SDK types.

It mirrors OpenTelemetry's own OTLP encoder (opentelemetry-exporter-otlp-proto-common) in reverse:
module-level maps for kind and status, one small function per proto message, one entry point,
:func:`convert_request`. ``ReadableSpan`` is built in exactly one place, :func:`_span`.

Attribute values keep every OTLP ``AnyValue`` kind: str, bool, int, float, bytes, tuple (array),
dict (kvlist) and None (an empty value). The Jaeger translator renders each one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as PbResource
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope as SdkScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.span import _member_pattern
from opentelemetry.trace.status import Status, StatusCode

AttrValue = Any  # str | bool | int | float | bytes | tuple[AttrValue, ...] | dict[str, AttrValue] | None

# OTLP Span.SpanKind -> SDK SpanKind. UNSPECIFIED (0) has no SDK twin: it becomes INTERNAL with
# RelaySpan.kind_unspecified set, so the Jaeger output can omit the span.kind tag as the spec says.
_KINDS = {
    0: SpanKind.INTERNAL,
    1: SpanKind.INTERNAL,
    2: SpanKind.SERVER,
    3: SpanKind.CLIENT,
    4: SpanKind.PRODUCER,
    5: SpanKind.CONSUMER,
}
_STATUS_CODES = {0: StatusCode.UNSET, 1: StatusCode.OK, 2: StatusCode.ERROR}
_PLAIN_STATUS = {code: Status(status) for code, status in _STATUS_CODES.items()}
_TRACE_FLAGS = tuple(TraceFlags(value) for value in range(256))
_EMPTY_TRACE_STATE = TraceState()
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_ZERO_SPAN_ID = bytes(8)
_MAX_TRACE_STATE_MEMBERS = 32  # W3C trace-context
_TRACE_STATE_MEMBER = _member_pattern  # the SDK's own member syntax, so it never warns
_SCALARS = frozenset({"string_value", "bool_value", "int_value", "double_value", "bytes_value"})


class RelaySpan(ReadableSpan):
    """A ReadableSpan that keeps OTLP's dropped counts and an unspecified kind.

    Built only by :func:`_span`, positionally. It sets the fields ``ReadableSpan.__init__`` sets
    (tests/unit/test_convert.py checks they stay the same set) without its keyword call: this is
    the hot path, one call per span.
    """

    def __init__(self, name: str, context: SpanContext, parent: SpanContext | None,
                 resource: Resource, attributes: dict[str, AttrValue], events: list[Event],
                 links: list[Link], kind: SpanKind, status: Status, start_time: int,
                 end_time: int, instrumentation_scope: SdkScope, dropped: tuple[int, int, int],
                 kind_unspecified: bool, trace_state_header: str = "") -> None:
        self._name = name
        self._context = context
        self._kind = kind
        self._instrumentation_info = None
        self._instrumentation_scope = instrumentation_scope
        self._parent = parent
        self._start_time = start_time
        self._end_time = end_time
        self._attributes = attributes
        self._events = events
        self._links = links
        self._resource = resource
        self._status = status
        self._dropped = dropped
        self.kind_unspecified = kind_unspecified
        # The W3C tracestate exactly as received: Jaeger's w3c.tracestate tag carries it as is
        # (the SDK's TraceState drops or rewrites headers it does not accept).
        self.trace_state_header = trace_state_header

    @property
    def dropped_attributes(self) -> int:
        return self._dropped[0]

    @property
    def dropped_events(self) -> int:
        return self._dropped[1]

    @property
    def dropped_links(self) -> int:
        return self._dropped[2]


class RelayEvent(Event):
    """An SDK Event that keeps OTLP's dropped attribute count."""

    def __init__(self, name: str, attributes: dict[str, AttrValue], timestamp: int, dropped: int) -> None:
        super().__init__(name, attributes, timestamp)
        self._dropped = dropped

    @property
    def dropped_attributes(self) -> int:
        return self._dropped


class RelayLink(Link):
    """An API Link that keeps OTLP's dropped attribute count."""

    def __init__(self, context: SpanContext, attributes: dict[str, AttrValue], dropped: int) -> None:
        super().__init__(context, attributes)
        self._dropped = dropped

    @property
    def dropped_attributes(self) -> int:
        return self._dropped


class InvalidSpan(ValueError):
    """One span cannot be converted. ``reason`` is a metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass
class Converted:
    """One request's result: one list of spans per resource, plus what was rejected."""

    batches: list[list[ReadableSpan]] = field(default_factory=list)
    batch_bytes: list[int] = field(default_factory=list)  # each batch's encoded (protobuf) size
    rejected: dict[str, int] = field(default_factory=dict)
    first_error: str = ""

    @property
    def span_count(self) -> int:
        return sum(len(batch) for batch in self.batches)

    @property
    def nbytes(self) -> int:
        return sum(self.batch_bytes)

    @property
    def rejected_count(self) -> int:
        return sum(self.rejected.values())


def convert_request(request: ExportTraceServiceRequest) -> Converted:
    """Convert every span of a request; invalid spans are rejected alone."""
    result = Converted()
    for resource_spans in request.resource_spans:
        resource = _resource(resource_spans.resource, resource_spans.schema_url)
        spans: list[ReadableSpan] = []
        size = 0
        for scope_spans in resource_spans.scope_spans:
            scope = _scope(scope_spans.scope, scope_spans.schema_url)
            for pb_span in scope_spans.spans:
                try:
                    spans.append(_span(pb_span, resource, scope))
                    size += pb_span.ByteSize()
                except InvalidSpan as exc:
                    result.rejected[exc.reason] = result.rejected.get(exc.reason, 0) + 1
                    if not result.first_error:
                        result.first_error = f"span {pb_span.name!r}: {exc}"
        if spans:
            result.batches.append(spans)
            result.batch_bytes.append(size)
    return result


def any_value(value: AnyValue) -> AttrValue:
    kind = value.WhichOneof("value")
    if kind in _SCALARS:
        return getattr(value, kind)
    if kind == "array_value":
        return tuple(any_value(item) for item in value.array_value.values)
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return None  # an empty AnyValue


def attributes(key_values: Sequence[KeyValue]) -> dict[str, AttrValue]:
    # Hot path. A non-empty string_value can only mean a string (it is a oneof), which skips the
    # WhichOneof call for the most common kind; anything else takes the general path.
    return {kv.key: kv.value.string_value or any_value(kv.value) for kv in key_values}


def _resource(pb: PbResource, schema_url: str) -> Resource:
    # Resource() would run every value through BoundedAttributes, which refuses bytes and kvlist
    # values; the relay must carry them, so the attributes are set as converted.
    resource = Resource({}, schema_url)
    resource._attributes = attributes(pb.attributes)  # type: ignore[assignment]
    return resource


def _scope(pb: InstrumentationScope, schema_url: str) -> SdkScope:
    return SdkScope(pb.name, pb.version or None, schema_url or None)


def _id(raw: bytes, size: int, what: str) -> int:
    if len(raw) != size:
        raise InvalidSpan(f"invalid_{what}", f"{what} must be {size} bytes, got {len(raw)}")
    value = int.from_bytes(raw, "big")
    if value == 0:
        raise InvalidSpan(f"invalid_{what}", f"{what} must not be all zeros")
    return value


def _trace_state(header: str) -> TraceState:
    """The SDK's view of a tracestate header. A header the SDK would refuse (it logs a warning
    per span, then keeps nothing) is an empty TraceState here, silently: the raw header travels
    on ``RelaySpan.trace_state_header`` for the Jaeger output."""
    if not header:
        return _EMPTY_TRACE_STATE
    members = [member.strip(" \t") for member in header.split(",")]
    if len(members) > _MAX_TRACE_STATE_MEMBERS or not all(
            _TRACE_STATE_MEMBER.fullmatch(member) for member in members if member):
        return _EMPTY_TRACE_STATE
    return TraceState.from_header([header])


def _status(code: int, message: str) -> Status:
    if not message:
        return _PLAIN_STATUS.get(code, _PLAIN_STATUS[0])
    status = Status(_STATUS_CODES.get(code, StatusCode.UNSET))
    # Status() discards a description unless the code is ERROR; OTLP and Jaeger keep it.
    status._description = message
    return status


def _event(pb: PbSpan.Event) -> Event:
    return RelayEvent(pb.name, attributes(pb.attributes), pb.time_unix_nano, pb.dropped_attributes_count)


def _link(pb: PbSpan.Link) -> Link | None:
    if len(pb.trace_id) != 16 or len(pb.span_id) != 8:
        return None
    context = SpanContext(
        int.from_bytes(pb.trace_id, "big"),
        int.from_bytes(pb.span_id, "big"),
        is_remote=bool(pb.flags & _IS_REMOTE),
        trace_flags=_TRACE_FLAGS[pb.flags & 0xFF],
        trace_state=_trace_state(pb.trace_state),
    )
    return RelayLink(context, attributes(pb.attributes), pb.dropped_attributes_count)


def _links(pb_links: Sequence[PbSpan.Link]) -> tuple[list[Link], int]:
    """Valid links, and how many were dropped for malformed ids (added to the dropped count)."""
    links = [link for link in map(_link, pb_links) if link is not None]
    return links, len(pb_links) - len(links)


def _context(trace_id: int, span_id: int, is_remote: bool, flags: TraceFlags,
             trace_state: TraceState) -> SpanContext:
    # SpanContext.__new__ only range-checks the ids into ``is_valid``; _id has checked them
    # already (sized and non-zero), so the tuple is built directly: the same value, ~1 µs less.
    return tuple.__new__(SpanContext, (trace_id, span_id, is_remote, flags, trace_state, True))


def _span(pb: PbSpan, resource: Resource, scope: SdkScope) -> ReadableSpan:
    # Hot path: every upb field access costs ~0.2-0.4 µs, so each field is read once.
    trace_id = _id(pb.trace_id, 16, "trace_id")
    span_id = _id(pb.span_id, 8, "span_id")
    start, end = pb.start_time_unix_nano, pb.end_time_unix_nano
    if end < start:
        raise InvalidSpan("end_before_start", "end_time_unix_nano is before start_time_unix_nano")
    flags = pb.flags
    trace_flags = _TRACE_FLAGS[flags & 0xFF]
    header = pb.trace_state
    trace_state = _trace_state(header)
    parent = None
    parent_id = pb.parent_span_id
    if parent_id and parent_id != _ZERO_SPAN_ID:  # all zeros: a root, as in the Collector
        parent = _context(trace_id, _id(parent_id, 8, "parent_span_id"), bool(flags & _IS_REMOTE),
                          trace_flags, trace_state)
    pb_links = pb.links
    links, bad_links = _links(pb_links) if pb_links else ([], 0)
    pb_events = pb.events
    status = pb.status
    kind = pb.kind
    return RelaySpan(
        pb.name,
        _context(trace_id, span_id, False, trace_flags, trace_state),
        parent,
        resource,
        attributes(pb.attributes),
        [_event(event) for event in pb_events] if pb_events else [],
        links,
        _KINDS.get(kind, SpanKind.INTERNAL),
        _status(status.code, status.message),
        start,
        end,
        scope,
        (pb.dropped_attributes_count, pb.dropped_events_count, pb.dropped_links_count + bad_links),
        kind == 0,
        header,
    )


def request_span_count(request: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)




# --- the native parser's tuples (relay/native/_otlp.c) -> the same spans ------------------------
# Mirrors convert_request/_span above field for field, over the tuples parse_request returns;
# tests/unit/test_native_parse.py proves both give equal results for the same bytes.

# The native parser builds every Python object of a request at once (~13x its wire size for the
# worst shapes: tiny spans, many attributes), where upb's message is lazy (~5.5x, the factor the
# README's memory bound and tests/memory/test_memory_bound.py use). Bigger requests go to upb, so
# in-flight requests stay within that bound for any --max-recv-msg-size-mib (>= 1 MiB).
NATIVE_MAX_BYTES = 256 * 1024


class ParsedRequest:
    """One Export request's bytes, parsed by the native parser (``parser``, the ``_otlp``
    extension) when it accepts them, else by upb, which raises DecodeError for malformed ones."""

    def __init__(self, data: bytes, parser: Any = None) -> None:
        native = parser is not None and len(data) <= NATIVE_MAX_BYTES
        self._native = parser.parse_request(data) if native else None
        self._message = ExportTraceServiceRequest.FromString(data) if self._native is None else None

    @property
    def span_count(self) -> int:
        if self._message is not None:
            return request_span_count(self._message)
        return sum(len(scope[3]) for resource in self._native or () for scope in resource[2])

    def convert(self) -> Converted:
        if self._message is not None:
            return convert_request(self._message)
        return convert_parsed(self._native or [])


def convert_bytes(data: bytes, parser: Any = None) -> Converted:
    """``convert_request(ExportTraceServiceRequest.FromString(data))``, natively when it can."""
    return ParsedRequest(data, parser).convert()


def convert_parsed(parsed: list[tuple[Any, ...]]) -> Converted:
    result = Converted()
    for resource_attributes, resource_schema, scopes in parsed:
        resource = Resource({}, resource_schema)
        resource._attributes = resource_attributes
        spans: list[ReadableSpan] = []
        size = 0
        for name, version, schema_url, fields in scopes:
            scope = SdkScope(name, version or None, schema_url or None)
            for span_fields in fields:
                try:
                    spans.append(_span_of(span_fields, resource, scope))
                    size += span_fields[17]  # the span's wire size: upb's ByteSize()
                except InvalidSpan as exc:
                    result.rejected[exc.reason] = result.rejected.get(exc.reason, 0) + 1
                    if not result.first_error:
                        result.first_error = f"span {span_fields[4]!r}: {exc}"
        if spans:
            result.batches.append(spans)
            result.batch_bytes.append(size)
    return result


def _link_of(fields: tuple[Any, ...]) -> Link | None:
    trace_id, span_id, header, attrs, dropped, flags = fields
    if len(trace_id) != 16 or len(span_id) != 8:
        return None
    context = SpanContext(int.from_bytes(trace_id, "big"), int.from_bytes(span_id, "big"),
                          is_remote=bool(flags & _IS_REMOTE), trace_flags=_TRACE_FLAGS[flags & 0xFF],
                          trace_state=_trace_state(header))
    return RelayLink(context, attrs, dropped)


def _span_of(fields: tuple[Any, ...], resource: Resource, scope: SdkScope) -> ReadableSpan:
    (raw_trace_id, raw_span_id, header, parent_id, name, kind, start, end, attrs, dropped_attributes,
     events, dropped_events, raw_links, dropped_links, code, message, flags, _size) = fields
    trace_id = _id(raw_trace_id, 16, "trace_id")
    span_id = _id(raw_span_id, 8, "span_id")
    if end < start:
        raise InvalidSpan("end_before_start", "end_time_unix_nano is before start_time_unix_nano")
    trace_flags = _TRACE_FLAGS[flags & 0xFF]
    trace_state = _trace_state(header)
    parent = None
    if parent_id and parent_id != _ZERO_SPAN_ID:
        parent = _context(trace_id, _id(parent_id, 8, "parent_span_id"), bool(flags & _IS_REMOTE),
                          trace_flags, trace_state)
    links = [link for link in map(_link_of, raw_links) if link is not None]
    return RelaySpan(
        name, _context(trace_id, span_id, False, trace_flags, trace_state), parent, resource, attrs,
        [RelayEvent(event_name, event_attrs, time, dropped) for time, event_name, event_attrs, dropped in events],
        links, _KINDS.get(kind, SpanKind.INTERNAL), _status(code, message), start, end, scope,
        (dropped_attributes, dropped_events, dropped_links + len(raw_links) - len(links)), kind == 0, header,
    )
