"""Hostile input gets a clear gRPC status and costs nothing else: after each one, another client's
good request goes through, the worker is alive, and the metrics balance."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace.export import SpanExportResult

from bench.jaeger_sinks import HttpCollectorSink
from relay.app import Relay
from tests.conftest import RelayFactory
from tests.hostile import requests as hostile
from tests.otlp import otlp_exporter
from tests.probes import scrape
from tests.unit.test_convert import sdk_spans
from tests.waiting import wait_until

MIB = 1024 * 1024
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture
def jaeger() -> Iterator[HttpCollectorSink]:
    with HttpCollectorSink() as sink:
        yield sink


@pytest.fixture
def relay(make_relay: RelayFactory, jaeger: HttpCollectorSink) -> Relay:
    return make_relay("--jaeger-collector", jaeger.url, "--max-recv-msg-size-mib", "1")


def _call(relay: Relay, body: bytes) -> tuple[grpc.StatusCode, ExportTraceServiceResponse | None]:
    with grpc.insecure_channel(f"127.0.0.1:{relay.otlp_port}") as channel:
        call = channel.unary_unary(EXPORT, response_deserializer=ExportTraceServiceResponse.FromString)
        try:
            return grpc.StatusCode.OK, call(body, timeout=30)
        except grpc.RpcError as exc:
            return exc.code(), None


def _still_serves(relay: Relay, jaeger: HttpCollectorSink) -> None:
    """Another client (the real OTLP exporter, its own channel) gets through; nothing unaccounted."""
    before = jaeger.span_count()
    exporter = otlp_exporter(relay.otlp_port)
    assert exporter.export(sdk_spans()[:2]) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert jaeger.wait_for_spans(before + 2, timeout=30)
    assert relay.worker.is_alive()
    assert wait_until(lambda: scrape(relay.admin_port).queued == 0)
    assert scrape(relay.admin_port).unbalanced() == 0


def _jaeger_span(jaeger: HttpCollectorSink, name: str) -> Any:
    assert wait_until(lambda: any(s.operationName == name for s in jaeger.spans()), timeout=30)
    return next(s for s in jaeger.spans() if s.operationName == name)


def _tags(span: Any) -> dict[str, Any]:
    return {tag.key: tag for tag in span.tags or ()}


@pytest.mark.parametrize("name", sorted(hostile.MALFORMED))
def test_malformed_protobuf_is_invalid_argument(relay: Relay, jaeger: HttpCollectorSink, name: str) -> None:
    code, _ = _call(relay, hostile.MALFORMED[name])
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert scrape(relay.admin_port).requests == {"INVALID_ARGUMENT": 1}
    _still_serves(relay, jaeger)


def test_over_the_size_limit_is_resource_exhausted(relay: Relay, jaeger: HttpCollectorSink) -> None:
    code, _ = _call(relay, hostile.huge_string(MIB + 100).SerializeToString())
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert scrape(relay.admin_port).requests == {}  # refused by gRPC before the handler
    _still_serves(relay, jaeger)


@pytest.mark.parametrize("depth", [32, 33, 100, 20_000])
def test_kvlist_nested_past_protobufs_recursion_limit_is_invalid_argument(
        relay: Relay, jaeger: HttpCollectorSink, depth: int) -> None:
    code, _ = _call(relay, hostile.with_deep_attribute(depth))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    _still_serves(relay, jaeger)


def test_kvlist_nested_as_deep_as_protobuf_parses_reaches_jaeger_as_json(
        relay: Relay, jaeger: HttpCollectorSink) -> None:
    code, _ = _call(relay, hostile.with_deep_attribute(31))
    assert code is grpc.StatusCode.OK
    tag = _tags(_jaeger_span(jaeger, "deep"))["deep"]
    assert tag.vStr == '{"k":' * 31 + '"leaf"' + "}" * 31
    _still_serves(relay, jaeger)


def test_huge_attribute_count(relay: Relay, jaeger: HttpCollectorSink) -> None:
    count = 40_000
    body = hostile.many_attributes(count).SerializeToString()
    assert len(body) < MIB
    code, _ = _call(relay, body)
    assert code is grpc.StatusCode.OK
    tags = _tags(_jaeger_span(jaeger, "many-attributes"))
    assert tags["k39999"].vLong == 39_999
    assert sum(key.startswith("k") for key in tags) == count
    _still_serves(relay, jaeger)


def test_huge_string(relay: Relay, jaeger: HttpCollectorSink) -> None:
    code, _ = _call(relay, hostile.huge_string(MIB - 200).SerializeToString())
    assert code is grpc.StatusCode.OK
    assert _tags(_jaeger_span(jaeger, "huge-string"))["log"].vStr == "x" * (MIB - 200)
    _still_serves(relay, jaeger)


def test_nan_and_infinite_doubles_reach_jaeger_as_doubles(relay: Relay, jaeger: HttpCollectorSink) -> None:
    code, _ = _call(relay, hostile.doubles().SerializeToString())
    assert code is grpc.StatusCode.OK
    tags = _tags(_jaeger_span(jaeger, "doubles"))
    assert all(tags[key].vType == 1 for key in ("nan", "inf", "-inf", "tiny", "max", "-0"))
    assert math.isnan(tags["nan"].vDouble)
    assert tags["inf"].vDouble == math.inf
    assert tags["-inf"].vDouble == -math.inf
    assert tags["tiny"].vDouble == 5e-324
    assert math.copysign(1, tags["-0"].vDouble) == -1
    assert tags["array"].vStr == '["NaN","+Inf","-Inf",1.5]'
    _still_serves(relay, jaeger)


def _rejected(relay: Relay, request: ExportTraceServiceRequest) -> ExportTraceServiceResponse:
    code, response = _call(relay, request.SerializeToString())
    assert code is grpc.StatusCode.OK
    assert response is not None
    return response


def test_end_before_start_is_rejected_alone(relay: Relay, jaeger: HttpCollectorSink) -> None:
    response = _rejected(relay, hostile.end_before_start())
    assert response.partial_success.rejected_spans == 1
    assert "end_before_start" in response.partial_success.error_message
    _jaeger_span(jaeger, "fine-1")
    assert scrape(relay.admin_port).rejected == {"end_before_start": 1}
    _still_serves(relay, jaeger)


def test_ids_of_the_wrong_length_are_rejected_alone(relay: Relay, jaeger: HttpCollectorSink) -> None:
    response = _rejected(relay, hostile.wrong_ids())
    assert response.partial_success.rejected_spans == 7
    _jaeger_span(jaeger, "fine-2")
    assert scrape(relay.admin_port).rejected == {"invalid_trace_id": 4, "invalid_span_id": 2,
                                                 "invalid_parent_span_id": 1}
    assert [s.operationName for s in jaeger.spans()] == ["fine-2"]
    _still_serves(relay, jaeger)


def test_a_malformed_link_is_dropped_and_counted_on_the_span(relay: Relay, jaeger: HttpCollectorSink) -> None:
    assert _rejected(relay, hostile.bad_link()).partial_success.rejected_spans == 0
    span = _jaeger_span(jaeger, "bad-link")
    assert len(span.references) == 1
    assert _tags(span)["otel.dropped_links_count"].vLong == 1
    _still_serves(relay, jaeger)


EMPTY: dict[str, Callable[[], bytes]] = {
    "no-bytes": lambda: b"",
    "no-resource-spans": lambda: ExportTraceServiceRequest().SerializeToString(),
    "no-scope-spans": lambda: b"\x0a\x00",
    "no-spans": lambda: hostile.request().SerializeToString(),
}


@pytest.mark.parametrize("name", sorted(EMPTY))
def test_empty_requests_are_ok(relay: Relay, jaeger: HttpCollectorSink, name: str) -> None:
    code, response = _call(relay, EMPTY[name]())
    assert code is grpc.StatusCode.OK
    assert response is not None
    assert not response.HasField("partial_success")
    assert scrape(relay.admin_port).received == 0
    _still_serves(relay, jaeger)
