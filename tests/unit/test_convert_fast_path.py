"""The hot-path shortcuts in relay/convert.py build the same objects as the SDK's own constructors."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status

from relay.convert import RelaySpan, _context

STATE = TraceState([("vendor", "v1")])


def test_context_equals_the_sdk_constructor() -> None:
    built = _context(0xABC, 0xDEF, True, TraceFlags(1), STATE)
    expected = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1), trace_state=STATE)
    assert type(built) is SpanContext
    assert tuple(built) == tuple(expected)
    assert built.is_valid


def test_relay_span_sets_the_fields_readable_span_sets() -> None:
    context = _context(1, 2, False, TraceFlags(1), STATE)
    scope = InstrumentationScope("s", "1")
    resource = Resource({"service.name": "x"})
    sdk = ReadableSpan(name="n", context=context, resource=resource, attributes={}, events=[],
                       links=[], instrumentation_scope=scope)
    ours = RelaySpan("n", context, None, resource, {}, [], [], SpanKind.INTERNAL, Status(), 0, 0,
                     scope, (0, 0, 0), False)
    assert set(vars(sdk)) <= set(vars(ours))
    assert ours.to_json() == sdk.to_json()
