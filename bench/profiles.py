"""Pre-serialized OTLP requests: the OpenTelemetry benchmark profile and a BuildKit-shaped one."""

from __future__ import annotations

import random
import string
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from relay.convert import request_span_count
from relay.testtrace import buildkit_trace

PROFILES = ("standard", "buildkit")
SPANS_PER_REQUEST = 100
ATTRIBUTES_PER_SPAN = 10
ATTRIBUTE_VALUE_SIZE = 20
BUILDKIT_STEPS = 48  # 2 spans a step + 4 RPC spans = 100 spans a request

Request = tuple[bytes, int]  # serialized ExportTraceServiceRequest, its span count


def _text(rng: random.Random, size: int) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=size))


def _standard_span(rng: random.Random, trace_id: bytes, now: int) -> Span:
    return Span(
        trace_id=trace_id, span_id=(rng.getrandbits(63) + 1).to_bytes(8, "big"),
        parent_span_id=(rng.getrandbits(63) + 1).to_bytes(8, "big"),
        name="load-generator-span", kind=Span.SPAN_KIND_CLIENT, flags=1,
        start_time_unix_nano=now, end_time_unix_nano=now + 1_000_000,
        attributes=[KeyValue(key=f"attr.{n}", value=AnyValue(string_value=_text(rng, ATTRIBUTE_VALUE_SIZE)))
                    for n in range(ATTRIBUTES_PER_SPAN)],
    )


def standard_request(rng: random.Random, now: int) -> ExportTraceServiceRequest:
    """100 spans, 10 string attributes of 20 characters each (distinct values), one resource."""
    trace_id = rng.getrandbits(128).to_bytes(16, "big")
    spans = [_standard_span(rng, trace_id, now) for _ in range(SPANS_PER_REQUEST)]
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="loadgen"))])
    scope = InstrumentationScope(name="bench.load", version="1.0")
    return ExportTraceServiceRequest(resource_spans=[
        ResourceSpans(resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=spans)]),
    ])


def build_requests(profile: str, count: int, seed: int = 1) -> list[Request]:
    """``count`` distinct pre-serialized requests of ``profile``."""
    rng = random.Random(seed)
    now = time.time_ns()
    requests: list[Request] = []
    for _ in range(count):
        if profile == "standard":
            message = standard_request(rng, now)
        elif profile == "buildkit":
            message = buildkit_trace(rng, now, BUILDKIT_STEPS)
        else:
            raise ValueError(f"unknown profile {profile!r}; choose from {PROFILES}")
        spans = request_span_count(message)
        requests.append((message.SerializeToString(), spans))
    return requests
