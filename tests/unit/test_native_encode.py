"""Differential test: the native thrift writer (relay/native/_thrift.c) against the pure path.

For every span hypothesis draws (every AnyValue kind, 64-bit extremes, nan/inf, ids, flags, kinds
incl. unspecified, status, events, links, dropped counts, resources), the bytes the exporters
produce with the extension equal the bytes of ``translate.span_to_jaeger`` + the thrift encoder,
for the compact (agent) and binary (collector) protocols, and the same spans fail to encode.
"""

from __future__ import annotations

import enum
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import StatusCode

from relay import native
from relay.convert import RelaySpan
from relay.exporters import encode
from relay.exporters.agent import JaegerAgentExporter
from relay.exporters.collector import JaegerCollectorExporter
from relay.exporters.jaeger_compat import encode_binary, encode_compact
from tests.strategies import KEYS, NS, TEXT, relay_span, scopes, span_ids, status, trace_ids

MODULE = native.load({})
pytestmark = pytest.mark.skipif(MODULE is None, reason="the relay.native._thrift extension is not built")


class Level(enum.IntEnum):
    HIGH = 7


class Label(str):
    pass


class SubSpan(RelaySpan):
    """Not exactly a RelaySpan: the extension reads it through the public properties."""


# Every value kind, and the edges: i64 extremes and beyond (the pure path refuses those), nan,
# inf, -0.0, non-ASCII, lone surrogates (not UTF-8), and subclasses (native hands them back).
plain = st.one_of(
    st.text(max_size=12), st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([-(2**63), 2**63 - 1, 0, -1]),
    st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324]),
    st.binary(max_size=12), st.none(),
)
odd = st.sampled_from([2**63, -(2**63) - 1, 2**64, Level.HIGH, Label("sub"), "\ud800", bytearray(b"ba"), 1.5j])


def nested(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(tuple), st.lists(inner, max_size=3),
        st.dictionaries(KEYS, inner, max_size=3)), max_leaves=6)


values = nested(st.one_of(plain, odd))
attrs = st.dictionaries(KEYS, values, max_size=6)
counts = st.one_of(st.integers(min_value=0, max_value=2**31), st.sampled_from([0, 2**63 - 1, 2**63]))
states = st.sampled_from([TraceState(), TraceState([("a", "1"), ("vendor", "x")])])


@st.composite
def contexts(draw: st.DrawFn, trace_id: int | None = None) -> SpanContext:
    return SpanContext(trace_id if trace_id is not None else draw(trace_ids), draw(span_ids), False,
                       TraceFlags(draw(st.integers(0, 255))), draw(states))


@st.composite
def links(draw: st.DrawFn) -> Link:
    attributes = draw(st.one_of(st.none(), attrs))
    if attributes is not None and draw(st.booleans()):
        attributes["opentracing.ref_type"] = draw(st.sampled_from(["child_of", "follows_from", 3]))
    return Link(draw(contexts()), attributes)


@st.composite
def events(draw: st.DrawFn) -> Event:
    attributes = draw(st.one_of(st.none(), attrs))
    if attributes is not None and draw(st.booleans()):
        attributes["event"] = draw(values)
    return Event(draw(TEXT), attributes, draw(st.one_of(NS, st.just(2**64 - 1))))  # type: ignore[arg-type]


@st.composite
def spans(draw: st.DrawFn, resource: Resource) -> Any:
    context = draw(contexts())
    start = draw(st.one_of(NS, st.just(0), st.just(2**64 - 1)))
    span = relay_span(
        name=draw(TEXT), context=context,
        parent=draw(st.one_of(st.none(), contexts(trace_id=context.trace_id))),
        resource=resource, attributes=draw(attrs),
        events=draw(st.lists(events(), max_size=3)), links=draw(st.lists(links(), max_size=3)),
        kind=draw(st.sampled_from(list(SpanKind))), kind_unspecified=draw(st.booleans()),
        status=status(draw(st.sampled_from(list(StatusCode))), draw(st.one_of(st.none(), TEXT))),
        start_time=start, end_time=draw(st.one_of(st.just(0), st.integers(start, start + 10**12))),
        instrumentation_scope=draw(st.one_of(st.none(), scopes)),
        dropped=draw(st.tuples(counts, counts, counts)),
    )
    span.trace_state_header = draw(st.sampled_from(["", "k=v", "bad header,,x"]))
    if draw(st.booleans()):
        span.__class__ = SubSpan
    return span


@st.composite
def batches(draw: st.DrawFn) -> list[Any]:
    name = draw(st.one_of(st.none(), TEXT))
    resource = Resource({})
    resource._attributes = {**draw(st.dictionaries(KEYS, nested(plain), max_size=4)),  # type: ignore[assignment]
                            **({} if name is None else {"service.name": name})}
    return draw(st.lists(spans(resource), min_size=1, max_size=6))


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pure(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` with the pure path forced, as TRACE_RELAY_PURE=1 does."""
    saved = encode._NATIVE
    encode._NATIVE = None
    try:
        return fn(*args)
    finally:
        encode._NATIVE = saved


@SETTINGS
@given(batch=batches())
def test_native_span_bytes_equal_pure(batch: list[Any]) -> None:
    for pure_encode in (encode_compact, encode_binary):
        native_result = encode.encode_spans(batch, pure_encode)
        assert native_result == pure(encode.encode_spans, batch, pure_encode)
        assert native_result == encode.encode_spans_pure(batch, pure_encode)


@SETTINGS
@given(batch=batches())
def test_native_payloads_equal_pure(batch: list[Any]) -> None:
    for exporter in (JaegerAgentExporter("127.0.0.1", 9, max_packet_size=4000),
                     JaegerCollectorExporter("http://127.0.0.1:9/api/traces", max_body_size=4000)):
        assert exporter.encode(batch) == pure(exporter.encode, batch)


@settings(max_examples=200, deadline=None)
@given(batch=st.lists(spans(Resource({"service.name": "buildkitd"})), min_size=1, max_size=4))
def test_native_handles_ordinary_spans_itself(batch: list[Any]) -> None:
    """Spans of built-in value kinds within range are written natively (never handed back)."""
    ordinary = [span for span in batch if _ordinary(span)]
    for compact in (True, False):
        assert None not in encode.encode_spans_native(ordinary, compact, MODULE)


def _ordinary(span: Any) -> bool:
    kinds = (str, bool, int, float, bytes, tuple, list, dict, type(None))
    def fine(value: Any) -> bool:
        if type(value) not in kinds or value == "\ud800":
            return False
        if type(value) is int:
            return bool(-(2**63) <= value < 2**63)
        if isinstance(value, tuple | list):
            return all(map(fine, value))
        return all(map(fine, value.values())) if isinstance(value, dict) else True
    maps = [span.attributes] + [e.attributes or {} for e in span.events] + [
        {k: v for k, v in (li.attributes or {}).items() if k != "opentracing.ref_type"} for li in span.links]
    return (all(fine(v) for m in maps for v in m.values()) and max(span._dropped) < 2**63
            and span.start_time < 2**63 and span.end_time < 2**63
            and all(e.timestamp < 2**63 for e in span.events)
            and all(type((li.attributes or {}).get("opentracing.ref_type", "")) is str for li in span.links))


def test_pure_env_selects_the_pure_path() -> None:
    assert native.load({"TRACE_RELAY_PURE": "1"}) is None
    assert native.load({"TRACE_RELAY_PURE": "0"}) is MODULE
