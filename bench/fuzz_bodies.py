"""Hypothesis strategies for fuzzing the Export path: arbitrary bytes, mutated valid requests, and
structurally valid requests full of weird values. Used by tests/hostile/test_fuzz.py (bounded, in
CI) and by ``python -m bench.fuzz --minutes N`` (long)."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from relay.testtrace import buildkit_trace

SEEDS = [buildkit_trace(random.Random(seed), 1_700_000_000_000_000_000, steps=2).SerializeToString()
         for seed in range(4)]

_scalars = st.one_of(
    st.builds(lambda v: AnyValue(string_value=v), st.text(max_size=40)),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(lambda v: AnyValue(int_value=v), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda v: AnyValue(double_value=v), st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=40)),
    st.just(AnyValue()),
)


def _compound(children: Any) -> Any:
    arrays = st.lists(children, max_size=4).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs)))
    kvlists = st.lists(st.tuples(st.text(max_size=8), children), max_size=4).map(
        lambda kvs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs])))
    return st.one_of(arrays, kvlists)


any_values = st.recursive(_scalars, _compound, max_leaves=12)
attributes = st.lists(st.builds(lambda k, v: KeyValue(key=k, value=v), st.text(max_size=12), any_values),
                      max_size=6)
ids16 = st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=20))
ids8 = st.one_of(st.binary(min_size=8, max_size=8), st.binary(max_size=12))
uint64 = st.integers(0, 2**64 - 1)


@st.composite
def weird_spans(draw: st.DrawFn) -> Span:
    span = Span(
        trace_id=draw(ids16), span_id=draw(ids8), parent_span_id=draw(ids8),
        name=draw(st.text(max_size=30)), kind=draw(st.integers(0, 2**31 - 1)),
        start_time_unix_nano=draw(uint64), end_time_unix_nano=draw(uint64),
        trace_state=draw(st.text(max_size=30)), flags=draw(st.integers(0, 2**32 - 1)),
        attributes=draw(attributes),
        dropped_attributes_count=draw(st.integers(0, 2**32 - 1)),
        status=Status(code=draw(st.integers(0, 2**31 - 1)), message=draw(st.text(max_size=20))),
    )
    for _ in range(draw(st.integers(0, 2))):
        span.events.add(time_unix_nano=draw(uint64), name=draw(st.text(max_size=10)),
                        attributes=draw(attributes))
    for _ in range(draw(st.integers(0, 2))):
        span.links.add(trace_id=draw(ids16), span_id=draw(ids8), trace_state=draw(st.text(max_size=10)),
                       flags=draw(st.integers(0, 2**32 - 1)), attributes=draw(attributes))
    return span


@st.composite
def weird_requests(draw: st.DrawFn) -> bytes:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 3))):
        resource_spans = request.resource_spans.add(schema_url=draw(st.text(max_size=10)))
        resource_spans.resource.attributes.extend(draw(attributes))
        for _ in range(draw(st.integers(0, 2))):
            scope = resource_spans.scope_spans.add()
            scope.scope.name = draw(st.text(max_size=10))
            scope.spans.extend(draw(st.lists(weird_spans(), max_size=4)))
    return request.SerializeToString()


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(("flip", "insert", "delete", "truncate")))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


bodies = st.one_of(st.binary(max_size=512), mutated_requests(), weird_requests())
