"""The oracle shared by the native parser's differential test and its fuzz harness: what one
Export body turns into (every span field, the Jaeger bytes, the rejections, or the DecodeError)."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError

from relay.convert import Converted, convert_bytes
from relay.exporters.agent import JaegerAgentExporter

AGENT = JaegerAgentExporter("127.0.0.1", 9, max_packet_size=65000)


def _context(context: Any) -> Any:
    if context is None:
        return None
    return (context.trace_id, context.span_id, context.is_remote, int(context.trace_flags),
            context.trace_state.to_header())


def _span(span: Any) -> Any:
    scope = span.instrumentation_scope
    return (
        span.name, _context(span.context), _context(span.parent),
        dict(span.resource.attributes), span.resource.schema_url, dict(span.attributes),
        [(e.name, e.attributes, e.timestamp, e.dropped_attributes) for e in span.events],
        [(_context(li.context), li.attributes, li.dropped_attributes) for li in span.links],
        span.kind, span.status.status_code, span.status.description, span.start_time, span.end_time,
        (scope.name, scope.version, scope.schema_url), span._dropped, span.kind_unspecified,
        span.trace_state_header,
    )


def dump(converted: Converted) -> str:
    """Everything a Converted carries, as text (repr keeps dict order, -0.0 and nan apart)."""
    batches = [[_span(span) for span in batch] for batch in converted.batches]
    return repr((batches, sorted(converted.rejected.items()), converted.first_error))


def outcome(data: bytes, parser: Any) -> tuple[str, str]:
    try:
        converted = convert_bytes(data, parser)
    except DecodeError as exc:
        return "DecodeError", str(exc)
    jaeger = [AGENT.encode(batch) for batch in converted.batches]
    return "ok", dump(converted) + repr(jaeger)


def differs(data: bytes, parser: Any) -> str:
    """"" when the native parser and upb agree on ``data``, else what differs."""
    native, upb = outcome(data, parser), outcome(data, None)
    return "" if native == upb else f"native {native!r}\nupb    {upb!r}"
