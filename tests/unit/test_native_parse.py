"""Differential test: the native OTLP parser (relay/native/_otlp.c) against upb + convert_request.

For any bytes (valid requests full of odd values, mutated and truncated requests, random bytes,
deep nesting), ``convert_bytes`` with the native parser gives what upb + ``convert_request`` give:
the same spans field for field (and the same Jaeger bytes), the same rejected reasons, counts and
first error, or the same DecodeError.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.fuzz_bodies import mutated_requests, weird_requests
from bench.profiles import build_requests
from relay import native
from relay.testtrace import buildkit_trace
from tests.native_oracle import outcome

PARSER = native.load_parser({})
pytestmark = pytest.mark.skipif(PARSER is None, reason="the relay.native._otlp extension is not built")


def assert_same(data: bytes) -> None:
    assert outcome(data, PARSER) == outcome(data, None)


SETTINGS = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(data=weird_requests())
def test_valid_requests_parse_natively_to_the_same_spans(data: bytes) -> None:
    assert PARSER is not None
    assert PARSER.parse_request(data) is not None, "canonical OTLP is parsed natively"
    assert_same(data)


@SETTINGS
@given(data=weird_requests())
def test_native_span_sizes_are_upbs_byte_sizes(data: bytes) -> None:
    """Each span's wire size, as the native parser reports it (the receiver's batch_bytes), is
    upb's ``ByteSize()`` of the same span."""
    assert PARSER is not None
    parsed = PARSER.parse_request(data)
    assert parsed is not None
    native_sizes = [fields[17] for _attrs, _schema, scopes in parsed for scope in scopes for fields in scope[3]]
    request = ExportTraceServiceRequest.FromString(data)
    assert native_sizes == [span.ByteSize() for rs in request.resource_spans for ss in rs.scope_spans
                            for span in ss.spans]


@pytest.mark.parametrize("raw", [
    bytes.fromhex("0a06120412023000"),  # a span with kind 0 written out (0x30 0x00)
    bytes.fromhex("0a0712051203308100"),  # kind 1 as an overlong varint (0x81 0x00)
])
def test_non_canonical_requests_are_left_to_upb(raw: bytes) -> None:
    assert PARSER is not None
    assert PARSER.parse_request(raw) is None
    assert_same(raw)


@SETTINGS
@given(data=st.one_of(mutated_requests(), st.binary(max_size=256)))
def test_malformed_requests_get_upbs_answer(data: bytes) -> None:
    assert_same(data)


@pytest.mark.parametrize("profile", ["standard", "buildkit"])
def test_bench_profiles_parse_natively(profile: str) -> None:
    assert PARSER is not None
    for data, _count in build_requests(profile, 3):
        assert PARSER.parse_request(data) is not None
        assert_same(data)


def test_buildkit_traces_parse_natively() -> None:
    assert PARSER is not None
    data = buildkit_trace(random.Random(3), 1_700_000_000_000_000_000, steps=5).SerializeToString()
    assert PARSER.parse_request(data) is not None
    assert_same(data)


def _len(field: int, payload: bytes) -> bytes:
    size, out = len(payload), bytearray()
    while size > 0x7F:
        out.append((size & 0x7F) | 0x80)
        size >>= 7
    out.append(size)
    return bytes([field << 3 | 2]) + bytes(out) + payload


def nested_request(depth: int) -> bytes:
    """One span whose one attribute is an array nested ``depth`` deep."""
    value = _len(1, b"leaf")  # AnyValue{string_value}
    for _ in range(depth):
        value = _len(5, _len(1, value))  # AnyValue{array_value: ArrayValue{values: [value]}}
    span = _len(1, bytes(range(1, 17))) + _len(2, bytes(range(1, 9))) + _len(9, _len(1, b"k") + _len(2, value))
    return _len(1, _len(2, _len(2, span)))


@pytest.mark.parametrize("depth", [0, 10, 30, 31, 33, 45, 60, 200])
def test_deep_nesting_gets_upbs_answer(depth: int) -> None:
    assert_same(nested_request(depth))


@pytest.mark.parametrize("cut", range(1, 40))
def test_every_truncation_gets_upbs_answer(cut: int) -> None:
    data = build_requests("buildkit", 1)[0][0]
    assert_same(data[:len(data) * cut // 40])


def test_repeated_and_many_keys_parse_to_the_same_attributes() -> None:
    """Keys shared by many spans, more distinct keys than the per-request key cache holds, keys
    longer than it caches, keys that differ in one byte: the same attributes as upb's."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    keys = ["vertex", "vertez", "k" * 200, "k" * 199 + "j", *(f"key.{n}" for n in range(400)), "vertex"]
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for index in range(6):
        attributes = [KeyValue(key=key, value=AnyValue(int_value=index)) for key in keys[index::3]]
        spans.append(Span(trace_id=bytes(range(1, 17)), span_id=bytes([index + 1] * 8), name=f"s{index}",
                          attributes=attributes))
    data = request.SerializeToString()
    assert PARSER is not None
    assert PARSER.parse_request(data) is not None
    assert_same(data)


class _RecordingParser:
    """A stand-in for the extension that records what it was asked to parse."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def parse_request(self, data: bytes) -> None:
        """Records the size; answers None, "not handled here", so upb parses."""
        self.sizes.append(len(data))


def test_requests_over_the_native_size_limit_go_to_upb() -> None:
    """The native parser materialises a whole request at once (~13x its size at worst); bigger
    requests go to upb, whose lazy message the memory bound is computed for."""
    from relay.convert import NATIVE_MAX_BYTES, ParsedRequest

    big = buildkit_trace(random.Random(4), 1_700_000_000_000_000_000, steps=2000).SerializeToString()
    small = buildkit_trace(random.Random(4), 1_700_000_000_000_000_000, steps=4).SerializeToString()
    assert len(small) <= NATIVE_MAX_BYTES < len(big)
    parser = _RecordingParser()
    assert ParsedRequest(big, parser).span_count == ParsedRequest(big).span_count
    assert ParsedRequest(small, parser).span_count == ParsedRequest(small).span_count
    assert parser.sizes == [len(small)]
