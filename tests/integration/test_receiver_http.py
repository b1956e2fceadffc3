"""The OTLP/HTTP receiver with real clients and raw requests: every answer of issue 10's table."""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.trace.export import SpanExportResult

from bench.jaeger_sinks import UdpAgentSink
from tests.conftest import RelayFactory
from tests.fakes import GatedExporter, RecordingExporter
from tests.http_client import JSON, PROTOBUF, post, raw_exchange
from tests.otlp import otlp_exporter
from tests.probes import scrape
from tests.unit.test_convert import sdk_spans
from tests.waiting import wait_until

GOOD = {"trace_id": b"\x01" * 16, "span_id": b"\x02" * 8, "start_time_unix_nano": 1, "end_time_unix_nano": 2}


def _request(*spans: Span) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])])


def _spans(n: int) -> list[Span]:
    return [Span(name=f"s{i}", **{**GOOD, "span_id": (i + 1).to_bytes(8, "big")}) for i in range(n)]


@pytest.fixture
def sink() -> Iterator[UdpAgentSink]:
    with UdpAgentSink() as agent:
        yield agent


def _jaeger_view(batches: list[Any]) -> list[tuple[str, str]]:
    """What Jaeger stores, order-independent: (process, span) as the thrift decoder shows them."""
    return sorted((repr(batch.process), repr(span)) for batch in batches for span in batch.spans or ())


# -- real clients ---------------------------------------------------------------------------------


def test_the_http_and_grpc_exporters_arrive_identical(make_relay: RelayFactory, sink: UdpAgentSink) -> None:
    relay = make_relay("--jaeger-agent", f"127.0.0.1:{sink.port}", "--batch-timeout", "10ms")
    spans = sdk_spans()
    grpc_client = otlp_exporter(relay.otlp_port)
    assert grpc_client.export(spans) is SpanExportResult.SUCCESS
    grpc_client.shutdown()
    assert sink.wait_for_spans(len(spans), timeout=15)
    via_grpc = list(sink.batches)
    http_client = HttpSpanExporter(endpoint=f"http://127.0.0.1:{relay.http_port}/v1/traces", timeout=10)
    assert http_client.export(spans) is SpanExportResult.SUCCESS
    http_client.shutdown()
    assert sink.wait_for_spans(2 * len(spans), timeout=15)
    via_http = sink.batches[len(via_grpc):]
    assert _jaeger_view(via_http) == _jaeger_view(via_grpc)
    assert len(_jaeger_view(via_http)) == len(spans)
    metrics = scrape(relay.admin_port)
    assert metrics.value("receiver_accepted_spans_total@http") == len(spans)
    assert metrics.value("receiver_accepted_spans_total@grpc") == len(spans)
    assert metrics.value("receiver_requests_total@http", "OK") == 1


def test_the_http_exporter_with_gzip_and_a_chunked_body(make_relay: RelayFactory) -> None:
    from opentelemetry.exporter.otlp.proto.http import Compression

    exporter = RecordingExporter()
    relay = make_relay(exporter=exporter)
    client = HttpSpanExporter(endpoint=f"http://127.0.0.1:{relay.http_port}/v1/traces", timeout=10,
                              compression=Compression.Gzip)
    spans = sdk_spans()
    assert client.export(spans) is SpanExportResult.SUCCESS
    client.shutdown()
    body = _request(*_spans(3)).SerializeToString()
    conn = http.client.HTTPConnection("127.0.0.1", relay.http_port, timeout=10)
    conn.request("POST", "/v1/traces", body=iter([body[:5], body[5:]]), encode_chunked=True,
                 headers={"Content-Type": PROTOBUF})
    response = conn.getresponse()
    assert response.status == 200
    assert ExportTraceServiceResponse.FromString(response.read()) == ExportTraceServiceResponse()
    first_socket = conn.sock
    conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": PROTOBUF})  # keep-alive
    assert conn.getresponse().status == 200
    assert conn.sock is first_socket
    conn.close()
    assert exporter.wait_for_spans(len(spans) + 6)


# -- every error row ------------------------------------------------------------------------------


def test_wrong_path_is_404_and_names_v1_traces(make_relay: RelayFactory) -> None:
    relay = make_relay(exporter=RecordingExporter())
    reply = post(relay.http_port, _request(*_spans(1)).SerializeToString(), path="/")
    assert reply.status == 404
    message = reply.rpc_status().message
    assert "/v1/traces" in message
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" in message
    # A client that writes its whole body before reading (http.client, requests) still sees the 404.
    big = _request(Span(name="x" * (8 * 1024 * 1024), **GOOD)).SerializeToString()
    reply = post(relay.http_port, big, path="/")
    assert reply.status == 404
    assert "/v1/traces" in reply.rpc_status().message
    assert scrape(relay.admin_port).value("receiver_requests_total@http", "NOT_FOUND") == 2  # visible to operators


def test_wrong_method_is_405(make_relay: RelayFactory) -> None:
    relay = make_relay(exporter=RecordingExporter())
    reply = post(relay.http_port, b"", method="GET", content_type=JSON)
    assert reply.status == 405
    assert reply.headers["allow"] == "POST"
    assert json.loads(reply.body)["code"] == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert scrape(relay.admin_port).value("receiver_requests_total@http", "UNIMPLEMENTED") == 1


def test_wrong_content_type_is_415(make_relay: RelayFactory) -> None:
    relay = make_relay(exporter=RecordingExporter())
    reply = post(relay.http_port, b"{}", content_type="text/plain")
    assert reply.status == 415
    assert "application/x-protobuf" in json.loads(reply.body)["message"]


def test_garbage_is_400_with_a_status_in_the_request_encoding(make_relay: RelayFactory) -> None:
    exporter = RecordingExporter()
    relay = make_relay(exporter=exporter)
    reply = post(relay.http_port, b"\x0a\xff\xff\xff\xff\x0f")
    assert reply.status == 400
    assert "ExportTraceServiceRequest" in reply.rpc_status().message
    reply = post(relay.http_port, b"{not json", content_type=JSON)
    assert reply.status == 400
    assert "ExportTraceServiceRequest" in json.loads(reply.body)["message"]
    reply = post(relay.http_port, b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
                 content_type=JSON)
    assert reply.status == 400
    assert "traceId" in json.loads(reply.body)["message"]
    assert post(relay.http_port, _request(*_spans(1)).SerializeToString()).status == 200  # and it carries on
    assert exporter.wait_for_spans(1)
    assert scrape(relay.admin_port).value("receiver_requests_total@http", "INVALID_ARGUMENT") == 3


def test_oversize_is_413_before_the_body_is_read(make_relay: RelayFactory) -> None:
    relay = make_relay("--max-recv-msg-size-mib", "1", exporter=RecordingExporter())
    big = Span(name="x" * (1024 * 1024 + 10), **GOOD)
    reply = post(relay.http_port, _request(big).SerializeToString())
    assert reply.status == 413
    assert "--max-recv-msg-size-mib" in reply.rpc_status().message
    # Announced but never sent: answered from the header alone.
    answer = raw_exchange(relay.http_port, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: "
                          b"application/x-protobuf\r\nContent-Length: 1073741824\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert scrape(relay.admin_port).value("receiver_requests_total@http", "RESOURCE_EXHAUSTED") == 2


def test_a_gzip_bomb_is_413_after_decompression(make_relay: RelayFactory) -> None:
    exporter = RecordingExporter()
    relay = make_relay("--max-recv-msg-size-mib", "1", exporter=exporter)
    bomb = gzip.compress(b"\x00" * (64 * 1024 * 1024), compresslevel=9)  # 64 MiB in ~64 KiB
    assert len(bomb) < 1024 * 1024
    reply = post(relay.http_port, bomb, headers={"Content-Encoding": "gzip"})
    assert reply.status == 413
    assert "after decompression" in reply.rpc_status().message
    ok = post(relay.http_port, gzip.compress(_request(*_spans(2)).SerializeToString()),
              headers={"Content-Encoding": "gzip"})
    assert ok.status == 200
    assert exporter.wait_for_spans(2)


def test_a_request_larger_than_the_queue_is_413_without_retry_after(make_relay: RelayFactory) -> None:
    relay = make_relay("--queue-size", "5", "--max-batch-size", "5", exporter=RecordingExporter())
    reply = post(relay.http_port, _request(*_spans(6)).SerializeToString())
    assert reply.status == 413
    assert "retry-after" not in reply.headers
    assert reply.retry_info() is None
    assert "--queue-size" in reply.rpc_status().message


def test_full_queue_is_503_with_retry_after_and_retry_info(make_relay: RelayFactory) -> None:
    exporter = GatedExporter()
    relay = make_relay("--queue-size", "3", "--max-batch-size", "3", exporter=exporter)
    assert post(relay.http_port, _request(*_spans(3)).SerializeToString()).status == 200
    assert exporter.entered.wait(10)
    reply = post(relay.http_port, _request(*_spans(1)).SerializeToString())
    assert reply.status == 503
    assert reply.headers["retry-after"] == "2"
    info = reply.retry_info()
    assert info is not None
    assert info.retry_delay.seconds == 2
    assert scrape(relay.admin_port).value("receiver_refused_spans_total@http", "queue_full") == 1
    exporter.release.set()
    assert exporter.wait_for_spans(3)


def test_missing_token_is_401_and_the_right_one_passes(make_relay: RelayFactory, tmp_path: Any) -> None:
    token = tmp_path / "token"
    token.write_text("http-t0ken-77\n")
    exporter = RecordingExporter()
    relay = make_relay("--auth-token-file", str(token), exporter=exporter)
    body = _request(*_spans(1)).SerializeToString()
    assert post(relay.http_port, body).status == 401
    assert post(relay.http_port, body, headers={"Authorization": "Bearer wrong"}).status == 401
    assert post(relay.http_port, body, path="/v1/metrics").status == 401
    assert post(relay.http_port, body, headers={"Authorization": "bearer http-t0ken-77"}).status == 200
    assert exporter.wait_for_spans(1)
    metrics = scrape(relay.admin_port)
    assert metrics.value("receiver_requests_total@http", "UNAUTHENTICATED") == 3


def test_a_slow_client_is_cut_off_at_the_read_deadline(make_relay: RelayFactory) -> None:
    """One byte every half second, forever: the relay answers 408 and closes at the deadline. The
    slow body announces the largest size, so it holds the whole parse budget until then; the next
    client gets through after it."""
    exporter = RecordingExporter()
    relay = make_relay("--otlp-http-read-timeout", "1s", "--max-recv-msg-size-mib", "1", exporter=exporter)
    answer = b""
    with socket.create_connection(("127.0.0.1", relay.http_port), timeout=0.5) as slow:
        slow.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                     b"Content-Length: 1048576\r\n\r\n")
        for _ in range(30):  # 15 s at most
            try:
                slow.sendall(b"\x00")
                chunk = slow.recv(4096)
            except TimeoutError:
                continue
            except OSError:  # reset: the server is gone from this connection
                break
            answer += chunk
            if not chunk:
                break
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert wait_until(lambda: post(relay.http_port, _request(*_spans(1)).SerializeToString()).status == 200)
    assert exporter.wait_for_spans(1)


def test_too_many_connections_are_answered_503(make_relay: RelayFactory) -> None:
    relay = make_relay("--max-concurrent-rpcs", "1", exporter=RecordingExporter())  # 4 connections
    held = [socket.create_connection(("127.0.0.1", relay.http_port), timeout=5) for _ in range(4)]
    try:
        answer = raw_exchange(relay.http_port, b"")
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"Retry-After: 2" in answer
    finally:
        for sock in held:
            sock.close()
    assert wait_until(lambda: _status_or_none(relay.http_port) == 200)


def _status_or_none(port: int) -> int | None:
    try:
        return post(port, _request(*_spans(1)).SerializeToString()).status
    except OSError:  # refused while the closed connections' slots are being freed
        return None


# -- OTLP/JSON ------------------------------------------------------------------------------------

TRACE_HEX = "5b8efff798038103d269b633813fc60c"
ROOT_HEX, CHILD_HEX, LINKED_HEX = "eee19b7ec3c1b174", "eee19b7ec3c1b173", "0102030405060708"
ALL_KINDS_JSON = [  # every AnyValue kind, as the OTLP/JSON specification writes them
    {"key": "str", "value": {"stringValue": "hello"}},
    {"key": "bool", "value": {"boolValue": True}},
    {"key": "int", "value": {"intValue": "-9007199254740993"}},  # beyond a double: as a string
    {"key": "int-as-number", "value": {"intValue": 42}},
    {"key": "double", "value": {"doubleValue": 0.25}},
    {"key": "bytes", "value": {"bytesValue": "AAEC/w=="}},  # base64: only ids are hex
    {"key": "array", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "1"}]}}},
    {"key": "kvlist", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": False}}]}}},
    {"key": "empty", "value": {}},
]


def _json_request() -> dict[str, Any]:
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "buildkitd"}}]},
        "scopeSpans": [{"scope": {"name": "otelgrpc", "version": "0.46.1"}, "spans": [
            {"traceId": TRACE_HEX, "spanId": ROOT_HEX, "name": "Solve", "kind": 2, "flags": 0x301,
             "traceState": "vendor=v1", "startTimeUnixNano": "1700000000000000000",
             "endTimeUnixNano": "1700000001500000000", "attributes": ALL_KINDS_JSON,
             "events": [{"timeUnixNano": "1700000000500000000", "name": "ExecOp started",
                         "attributes": [{"key": "id", "value": {"intValue": "1"}}]}],
             "links": [{"traceId": TRACE_HEX, "spanId": LINKED_HEX, "flags": 1,
                        "attributes": [{"key": "opentracing.ref_type", "value": {"stringValue": "child_of"}}]}],
             "status": {"code": 2, "message": "exit code 2"}, "someFutureField": {"ignored": True}},
            {"traceId": TRACE_HEX, "spanId": CHILD_HEX, "parentSpanId": ROOT_HEX, "name": "RUN make",
             "kind": 3, "startTimeUnixNano": "1700000000100000000", "endTimeUnixNano": "1700000000200000000",
             "status": {"code": 1}},
            {"trace_id": TRACE_HEX, "span_id": LINKED_HEX, "name": "snake_case keys", "kind": 5,
             "start_time_unix_nano": "1700000000300000000", "end_time_unix_nano": "1700000000400000000"},
        ]}]}]}


def _same_request_in_protobuf() -> bytes:
    """Built field by field from the protobuf types, independently of any JSON mapping."""
    from opentelemetry.proto.common.v1.common_pb2 import (
        AnyValue,
        ArrayValue,
        InstrumentationScope,
        KeyValue,
        KeyValueList,
    )
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import Status

    def kv(key: str, **value: Any) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(**value))

    attrs = [kv("str", string_value="hello"), kv("bool", bool_value=True), kv("int", int_value=-9007199254740993),
             kv("int-as-number", int_value=42), kv("double", double_value=0.25),
             kv("bytes", bytes_value=b"\x00\x01\x02\xff"),
             kv("array", array_value=ArrayValue(values=[AnyValue(string_value="a"), AnyValue(int_value=1)])),
             kv("kvlist", kvlist_value=KeyValueList(values=[kv("k", bool_value=False)])), KeyValue(key="empty")]
    trace_id = bytes.fromhex(TRACE_HEX)
    root = Span(trace_id=trace_id, span_id=bytes.fromhex(ROOT_HEX), name="Solve", kind=2, flags=0x301,
                trace_state="vendor=v1", start_time_unix_nano=1700000000000000000,
                end_time_unix_nano=1700000001500000000, attributes=attrs,
                events=[Span.Event(time_unix_nano=1700000000500000000, name="ExecOp started",
                                   attributes=[kv("id", int_value=1)])],
                links=[Span.Link(trace_id=trace_id, span_id=bytes.fromhex(LINKED_HEX), flags=1,
                                 attributes=[kv("opentracing.ref_type", string_value="child_of")])],
                status=Status(code=2, message="exit code 2"))
    child = Span(trace_id=trace_id, span_id=bytes.fromhex(CHILD_HEX), parent_span_id=bytes.fromhex(ROOT_HEX),
                 name="RUN make", kind=3, start_time_unix_nano=1700000000100000000,
                 end_time_unix_nano=1700000000200000000, status=Status(code=1))
    snake = Span(trace_id=trace_id, span_id=bytes.fromhex(LINKED_HEX), name="snake_case keys", kind=5,
                 start_time_unix_nano=1700000000300000000, end_time_unix_nano=1700000000400000000)
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=[kv("service.name", string_value="buildkitd")]),
        scope_spans=[ScopeSpans(scope=InstrumentationScope(name="otelgrpc", version="0.46.1"),
                                spans=[root, child, snake])])])
    return request.SerializeToString()


def test_json_and_protobuf_arrive_in_jaeger_identical(make_relay: RelayFactory, sink: UdpAgentSink) -> None:
    relay = make_relay("--jaeger-agent", f"127.0.0.1:{sink.port}", "--batch-timeout", "10ms")
    reply = post(relay.http_port, json.dumps(_json_request()).encode(), content_type=JSON)
    assert reply.status == 200
    assert reply.headers["content-type"] == JSON
    assert json.loads(reply.body) == {}
    assert sink.wait_for_spans(3, timeout=15)
    via_json = list(sink.batches)
    reply = post(relay.http_port, _same_request_in_protobuf())
    assert reply.status == 200
    assert reply.headers["content-type"] == PROTOBUF
    assert sink.wait_for_spans(6, timeout=15)
    via_protobuf = sink.batches[len(via_json):]
    assert _jaeger_view(via_json) == _jaeger_view(via_protobuf)
    tags = {tag.key for span in via_json[0].spans for tag in span.tags or ()}
    assert {"str", "bool", "int", "double", "bytes", "array", "kvlist"} <= tags


def test_json_partial_success_is_answered_in_json(make_relay: RelayFactory) -> None:
    relay = make_relay(exporter=RecordingExporter())
    request = _json_request()
    request["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["traceId"] = "0" * 32
    reply = post(relay.http_port, json.dumps(request).encode(), content_type="application/json; charset=utf-8")
    assert reply.status == 200
    answer = json.loads(reply.body)
    assert answer["partialSuccess"]["rejectedSpans"] == "1"  # int64 as a string
    assert "invalid_trace_id" in answer["partialSuccess"]["errorMessage"]


# -- metrics and logs -----------------------------------------------------------------------------


def test_metric_and_log_pushes_answer_success_on_both_transports(make_relay: RelayFactory,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    exporter = RecordingExporter()
    relay = make_relay(exporter=exporter)
    metrics_body = ExportMetricsServiceRequest(resource_metrics=[{}]).SerializeToString()
    logs_body = ExportLogsServiceRequest(resource_logs=[{}]).SerializeToString()
    with caplog.at_level(logging.INFO, logger="relay.ingest"):
        for _ in range(3):
            reply = post(relay.http_port, metrics_body, path="/v1/metrics")
            assert reply.status == 200
            assert ExportMetricsServiceResponse.FromString(reply.body) == ExportMetricsServiceResponse()
        reply = post(relay.http_port, b'{"resourceLogs": [{}]}', path="/v1/logs", content_type=JSON)
        assert reply.status == 200
        assert json.loads(reply.body) == {}
        assert post(relay.http_port, b"\x0a\xff\xff", path="/v1/logs").status == 400
        with grpc.insecure_channel(f"127.0.0.1:{relay.otlp_port}") as channel:
            for method, body, response_type in (
                    ("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export", metrics_body,
                     ExportMetricsServiceResponse),
                    ("/opentelemetry.proto.collector.logs.v1.LogsService/Export", logs_body,
                     ExportLogsServiceResponse)):
                call = channel.unary_unary(method, response_deserializer=response_type.FromString)
                assert call(body, timeout=10) == response_type()
    metrics = scrape(relay.admin_port)
    assert metrics.value("receiver_metrics_requests_total@http") == 3
    assert metrics.value("receiver_logs_requests_total@http") == 1
    assert metrics.value("receiver_metrics_requests_total@grpc") == 1
    assert metrics.value("receiver_logs_requests_total@grpc") == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "relay.ingest"]
    assert len([line for line in lines if "OTLP metrics" in line]) == 1  # one line per client
    assert len([line for line in lines if "OTLP logs" in line]) == 1
    assert exporter.spans() == []
    assert metrics.received == 0


def test_shutdown_refuses_with_503_and_closes(make_relay: RelayFactory) -> None:
    relay = make_relay(exporter=RecordingExporter())
    conn = http.client.HTTPConnection("127.0.0.1", relay.http_port, timeout=5)
    conn.request("POST", "/v1/traces", body=b"", headers={"Content-Type": PROTOBUF})
    assert conn.getresponse().read() == b""
    stopper = threading.Thread(target=relay.shutdown)
    stopper.start()
    stopper.join(30)
    assert not stopper.is_alive()
    with pytest.raises(ConnectionRefusedError):
        post(relay.http_port, b"", timeout=2)
    conn.close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_an_ipv6_http_endpoint(make_relay: RelayFactory) -> None:
    exporter = RecordingExporter()
    relay = make_relay("--otlp-http-endpoint", "[::1]:0", exporter=exporter)
    conn = http.client.HTTPConnection("::1", relay.http_port, timeout=10)
    conn.request("POST", "/v1/traces", body=_request(*_spans(1)).SerializeToString(),
                 headers={"Content-Type": PROTOBUF})
    assert conn.getresponse().status == 200
    conn.close()
    assert exporter.wait_for_spans(1)
