"""Hypothesis strategies for spans in the relay's representation (reusable end to end).

``attribute_values()`` draws every OTLP AnyValue kind as the converter represents it: str, bool,
int (i64), float, bytes, tuple (array), dict (kvlist), None (empty). ``readable_spans()`` draws a
``ReadableSpan`` (subclass with OTLP dropped counts); ``resource_batches()`` a list of spans
sharing one Resource.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status, StatusCode

from relay.convert import RelaySpan

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(max_size=20)
KEYS = st.text(min_size=1, max_size=12)
NS = st.integers(min_value=0, max_value=2**62)


DroppedSpan = RelaySpan  # the converter's ReadableSpan: OTLP dropped counts and unspecified kind


def relay_span(*, name: str, context: SpanContext, parent: SpanContext | None = None,
               resource: Resource | None = None, attributes: dict[str, Any] | None = None,
               events: Any = (), links: Any = (), kind: SpanKind = SpanKind.INTERNAL,
               status: Status | None = None, start_time: int = 0, end_time: int = 0,
               instrumentation_scope: InstrumentationScope | None = None,
               dropped: tuple[int, int, int] = (0, 0, 0), kind_unspecified: bool = False) -> RelaySpan:
    """A span as ``relay.convert`` builds it, with defaults for what a test leaves out."""
    return RelaySpan(name, context, parent, resource if resource is not None else Resource({}),
                     attributes if attributes is not None else {}, list(events), list(links), kind,
                     status if status is not None else Status(StatusCode.UNSET), start_time, end_time,
                     instrumentation_scope,  # type: ignore[arg-type]
                     dropped, kind_unspecified)


def scalar_values() -> st.SearchStrategy[Any]:
    return st.one_of(TEXT, st.booleans(), I64, st.floats(allow_nan=False), st.binary(max_size=16))


def attribute_values(max_depth: int = 2) -> st.SearchStrategy[Any]:
    """Every AnyValue kind, nested arrays/kvlists included."""
    leaves = st.one_of(scalar_values(), st.none())
    return st.recursive(
        leaves,
        lambda inner: st.one_of(st.lists(inner, max_size=4).map(tuple),
                                st.dictionaries(KEYS, inner, max_size=4)),
        max_leaves=8,
    ) if max_depth else leaves


def attributes(max_size: int = 6) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(KEYS, attribute_values(), max_size=max_size)


trace_ids = st.integers(min_value=1, max_value=2**128 - 1)
span_ids = st.integers(min_value=1, max_value=2**64 - 1)
trace_states = st.lists(
    st.tuples(st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True),
              st.from_regex(r"[a-zA-Z0-9]{1,8}", fullmatch=True)),
    max_size=3, unique_by=lambda kv: kv[0],
).map(TraceState)


@st.composite
def span_contexts(draw: st.DrawFn, trace_id: int | None = None) -> SpanContext:
    return SpanContext(
        trace_id=trace_id if trace_id is not None else draw(trace_ids),
        span_id=draw(span_ids), is_remote=False,
        trace_flags=TraceFlags(draw(st.sampled_from([0, 1]))),
        trace_state=draw(trace_states),
    )


@st.composite
def events(draw: st.DrawFn) -> Event:
    return Event(draw(TEXT), draw(attributes(4)), draw(NS))  # type: ignore[arg-type]


@st.composite
def links(draw: st.DrawFn) -> Link:
    attrs = draw(attributes(3))
    if draw(st.booleans()):
        attrs["opentracing.ref_type"] = draw(st.sampled_from(["child_of", "follows_from"]))
    return Link(draw(span_contexts()), attrs)


resources = st.builds(
    lambda name, attrs: Resource({**attrs, **({} if name is None else {"service.name": name})}),
    st.one_of(st.none(), TEXT), attributes(4),
)
scopes = st.builds(InstrumentationScope, TEXT, st.one_of(st.none(), TEXT))


def status(code: StatusCode, description: str | None) -> Status:
    """A Status keeping its description for any code, as the converter builds it."""
    result = Status(code)
    result._description = description  # Status() would discard it unless ERROR
    return result


@st.composite
def readable_spans(draw: st.DrawFn, resource: Resource | None = None) -> DroppedSpan:
    context = draw(span_contexts())
    start = draw(NS)
    code = draw(st.sampled_from(list(StatusCode)))
    description = draw(st.one_of(st.none(), TEXT))
    return relay_span(
        name=draw(TEXT),
        context=context,
        parent=draw(st.one_of(st.none(), span_contexts(trace_id=context.trace_id))),
        resource=resource if resource is not None else draw(resources),
        attributes=draw(attributes()),
        events=draw(st.lists(events(), max_size=3)),
        links=draw(st.lists(links(), max_size=3)),
        kind=draw(st.sampled_from(list(SpanKind))),
        kind_unspecified=draw(st.booleans()),
        status=status(code, description),
        start_time=start,
        end_time=start + draw(st.integers(min_value=0, max_value=10**12)),
        instrumentation_scope=draw(scopes),
        dropped=draw(st.tuples(*[st.integers(min_value=0, max_value=2**31)] * 3)),
    )


@st.composite
def resource_batches(draw: st.DrawFn, max_size: int = 8) -> list[DroppedSpan]:
    """Spans that share one Resource (the relay's unit of export)."""
    resource = draw(resources)
    return draw(st.lists(readable_spans(resource=resource), min_size=1, max_size=max_size))
