"""Exporter behaviour on real loopback sockets: failures, auth, splitting, dropping, recovery."""

from __future__ import annotations

import base64
import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, TraceFlags

from bench.jaeger_sinks import HttpCollectorSink, UdpAgentSink
from relay.config import Config, HostPort
from relay.exporters.agent import JaegerAgentExporter
from relay.exporters.base import ExportError, Payload
from relay.exporters.collector import JaegerCollectorExporter
from relay.exporters.factory import build_exporter
from relay.exporters.jaeger_compat import emit_batch_message, encode_binary
from relay.exporters.translate import to_batch
from tests.jaeger_expectations import expected_process, expected_spans
from tests.strategies import DroppedSpan, relay_span, resource_batches
from tests.thriftpy_decode import as_plain, decode_body, decode_datagram

WAIT = 10.0
SECRET = "s3cr3t-Pa55"
RESOURCE = Resource({"service.name": "svc"})


def make_span(i: int, **overrides: Any) -> DroppedSpan:
    kwargs: dict[str, Any] = {
        "name": f"span-{i}",
        "context": SpanContext(0xABC, i + 1, False, TraceFlags(1)),
        "resource": RESOURCE,
        "attributes": {"i": i, "text": "x" * 50},
        "start_time": 1_000_000 * i,
        "end_time": 1_000_000 * i + 5_000,
    }
    kwargs.update(overrides)
    return relay_span(**kwargs)


# --- collector -----------------------------------------------------------------------------------

@pytest.fixture
def collector_sink() -> Any:
    with HttpCollectorSink() as sink:
        yield sink


def _one_payload(exporter: Any, n: int = 3) -> Payload:
    encoded = exporter.encode([make_span(i) for i in range(n)])
    assert len(encoded.payloads) == 1
    return encoded.payloads[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (500, True), (429, True),
                                                   (408, True), (400, False), (401, False),
                                                   (404, False)])
def test_collector_non_2xx_raises(collector_sink: HttpCollectorSink, status: int,
                                  retryable: bool) -> None:
    exporter = JaegerCollectorExporter(collector_sink.url)
    collector_sink.fail_next(1, status=status)
    with pytest.raises(ExportError) as info:
        exporter.send(_one_payload(exporter))
    assert info.value.reason == f"http_{status}"
    assert info.value.retryable is retryable
    exporter.shutdown()


def test_collector_503_then_202_delivers_once(collector_sink: HttpCollectorSink) -> None:
    exporter = JaegerCollectorExporter(collector_sink.url)
    payload = _one_payload(exporter, 4)
    collector_sink.status_for = lambda number, _request: 503 if number < 2 else 202
    for _ in range(2):
        with pytest.raises(ExportError, match="http_503"):
            exporter.send(payload)
    exporter.send(payload)
    assert collector_sink.wait_for_spans(4, WAIT)
    assert len(collector_sink.batches) == 1
    assert [span.operationName for span in collector_sink.spans()] == [
        f"span-{i}" for i in range(4)]
    exporter.shutdown()


def test_collector_basic_auth_and_content_type(collector_sink: HttpCollectorSink) -> None:
    exporter = JaegerCollectorExporter(collector_sink.url, username="user", password=SECRET)
    exporter.send(_one_payload(exporter))
    assert collector_sink.wait_for_spans(3, WAIT)
    headers = collector_sink.requests[0].headers
    assert headers["authorization"] == "Basic " + base64.b64encode(
        f"user:{SECRET}".encode()).decode()
    assert headers["content-type"] == "application/x-thrift"
    exporter.shutdown()


def test_collector_keeps_the_connection_alive(collector_sink: HttpCollectorSink) -> None:
    exporter = JaegerCollectorExporter(collector_sink.url)
    payload = _one_payload(exporter, 1)
    exporter.send(payload)
    first = exporter._conn
    exporter.send(payload)
    assert exporter._conn is first
    assert first is not None
    assert collector_sink.wait_for_spans(2, WAIT)
    exporter.shutdown()


def test_collector_password_never_in_errors(collector_sink: HttpCollectorSink) -> None:
    exporter = JaegerCollectorExporter(collector_sink.url, username="user", password=SECRET)
    collector_sink.fail_next(1, status=401)
    with pytest.raises(ExportError) as info:
        exporter.send(_one_payload(exporter))
    refused = _closed_port()
    other = JaegerCollectorExporter(f"http://user:{SECRET}@127.0.0.1:{refused}/api/traces")
    with pytest.raises(ExportError) as info2:
        other.send(_one_payload(other))
    for exc in (info.value, info2.value):
        assert SECRET not in str(exc)
        assert SECRET not in exc.detail
        assert SECRET not in repr(exc)
    assert SECRET not in repr(exporter)
    exporter.shutdown()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_collector_connection_refused_is_retryable() -> None:
    exporter = JaegerCollectorExporter(f"http://127.0.0.1:{_closed_port()}/api/traces")
    with pytest.raises(ExportError) as info:
        exporter.send(_one_payload(exporter))
    assert (info.value.reason, info.value.retryable) == ("connection", True)


def test_collector_timeout() -> None:
    with socket.socket() as server:  # accepts (backlog) but never answers
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        exporter = JaegerCollectorExporter(f"http://127.0.0.1:{port}/api/traces", timeout=0.3)
        with pytest.raises(ExportError) as info:
            exporter.send(_one_payload(exporter))
        exporter.shutdown()
    assert (info.value.reason, info.value.retryable) == ("timeout", True)


def test_collector_unresolvable_host() -> None:
    exporter = JaegerCollectorExporter("http://no-such-host.invalid:14268/api/traces")
    with pytest.raises(ExportError) as info:
        exporter.send(_one_payload(exporter))
    assert (info.value.reason, info.value.retryable) == ("resolve", True)


def test_collector_chunks_large_batches(collector_sink: HttpCollectorSink) -> None:
    exporter = JaegerCollectorExporter(collector_sink.url, max_body_size=2_000)
    spans = [make_span(i) for i in range(60)]
    encoded = exporter.encode(spans)
    assert len(encoded.payloads) > 1
    assert sum(p.span_count for p in encoded.payloads) == 60
    for payload in encoded.payloads:
        exporter.send(payload)
    assert collector_sink.wait_for_spans(60, WAIT)
    assert sorted(s.spanId for s in collector_sink.spans()) == list(range(1, 61))
    exporter.shutdown()


# --- agent ---------------------------------------------------------------------------------------

@pytest.fixture
def agent_sink() -> Any:
    with UdpAgentSink() as sink:
        yield sink


def test_agent_splits_into_decodable_datagrams(agent_sink: UdpAgentSink) -> None:
    exporter = JaegerAgentExporter("127.0.0.1", agent_sink.port, max_packet_size=1_500)
    spans = [make_span(i) for i in range(200)]
    encoded = exporter.encode(spans)
    assert encoded.dropped == {}
    assert len(encoded.payloads) > 5
    assert all(len(p.data) <= 1_500 for p in encoded.payloads)
    assert sum(p.span_count for p in encoded.payloads) == 200
    for payload in encoded.payloads:
        exporter.send(payload)
    assert agent_sink.wait_for_spans(200, WAIT)
    assert agent_sink.undecodable == 0
    assert sorted(s.spanId for s in agent_sink.spans()) == list(range(1, 201))  # each once
    assert {b.process.serviceName for b in agent_sink.batches} == {"svc"}
    assert [len(b.spans) for b in agent_sink.batches] == [p.span_count for p in encoded.payloads]
    exporter.shutdown()


def test_agent_datagrams_are_what_the_stock_client_would_write() -> None:
    exporter = JaegerAgentExporter("127.0.0.1", 9, max_packet_size=1_000)
    spans = [make_span(i) for i in range(40)]
    start = 0
    for payload in exporter.encode(spans).payloads:
        chunk = spans[start:start + payload.span_count]
        assert payload.data == emit_batch_message(to_batch(chunk))
        start += payload.span_count
    assert start == 40


def test_agent_packs_datagrams_tightly() -> None:
    exporter = JaegerAgentExporter("127.0.0.1", 9, max_packet_size=1_000)
    spans = [make_span(i) for i in range(40)]
    payloads = exporter.encode(spans).payloads
    start = 0
    for payload in payloads[:-1]:  # adding the next span would have overflowed
        start += payload.span_count
        bigger = emit_batch_message(to_batch(spans[start - payload.span_count:start + 1]))
        assert len(bigger) > 1_000


def test_agent_drops_only_the_oversize_span(agent_sink: UdpAgentSink) -> None:
    exporter = JaegerAgentExporter("127.0.0.1", agent_sink.port, max_packet_size=2_000)
    spans = [make_span(0), make_span(1, attributes={"big": "x" * 5_000}), make_span(2)]
    encoded = exporter.encode(spans)
    assert encoded.dropped == {"too_large": 1}
    for payload in encoded.payloads:
        exporter.send(payload)
    assert agent_sink.wait_for_spans(2, WAIT)
    assert sorted(s.spanId for s in agent_sink.spans()) == [1, 3]
    exporter.shutdown()


def test_agent_encode_error_drops_only_that_span_and_recovers(agent_sink: UdpAgentSink) -> None:
    exporter = JaegerAgentExporter("127.0.0.1", agent_sink.port)
    spans = [make_span(0), make_span(1, attributes={"n": 2**64}), make_span(2)]
    encoded = exporter.encode(spans)
    assert encoded.dropped == {"encode_error": 1}
    again = exporter.encode([make_span(3)])  # nothing left poisoned
    for payload in [*encoded.payloads, *again.payloads]:
        exporter.send(payload)
    assert agent_sink.wait_for_spans(3, WAIT)
    assert sorted(s.spanId for s in agent_sink.spans()) == [1, 3, 4]
    exporter.shutdown()


def test_agent_unresolvable_host() -> None:
    exporter = JaegerAgentExporter("no-such-host.invalid", 6831)
    payload = exporter.encode([make_span(0)]).payloads[0]
    with pytest.raises(ExportError) as info:
        exporter.send(payload)
    assert (info.value.reason, info.value.retryable) == ("resolve", True)


def test_agent_send_failure_is_connection_error() -> None:
    exporter = JaegerAgentExporter("127.0.0.1", 9, max_packet_size=70_000)
    payload = exporter.encode([make_span(0, attributes={"big": "x" * 66_000})]).payloads[0]
    with pytest.raises(ExportError) as info:  # bigger than any UDP datagram: EMSGSIZE
        exporter.send(payload)
    assert (info.value.reason, info.value.retryable) == ("connection", True)
    exporter.shutdown()


def test_empty_input_encodes_nothing() -> None:
    for exporter in (JaegerAgentExporter("127.0.0.1", 9), JaegerCollectorExporter("http://h/")):
        encoded = exporter.encode([])
        assert (encoded.payloads, encoded.dropped) == ([], {})


def test_collector_body_is_a_plain_binary_batch() -> None:
    exporter = JaegerCollectorExporter("http://127.0.0.1:9/api/traces")
    spans = [make_span(i) for i in range(20)]
    assert exporter.encode(spans).payloads[0].data == encode_binary(to_batch(spans))


# --- factory -------------------------------------------------------------------------------------

def test_factory_builds_agent_by_default() -> None:
    exporter = build_exporter(Config(jaeger_agent=HostPort("agent.example", 6832)))
    assert isinstance(exporter, JaegerAgentExporter)
    assert (exporter.name, exporter.host, exporter.port) == ("jaeger_agent", "agent.example", 6832)


def test_factory_builds_collector_with_explicit_arguments(
        monkeypatch: pytest.MonkeyPatch, collector_sink: HttpCollectorSink) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_JAEGER_PASSWORD", "from-env")
    monkeypatch.setenv("OTEL_EXPORTER_JAEGER_ENDPOINT", "http://elsewhere:1/api/traces")
    config = Config(jaeger_collector=collector_sink.url, jaeger_user="u", jaeger_password="p",
                    jaeger_timeout=3.5)
    exporter = build_exporter(config)
    assert isinstance(exporter, JaegerCollectorExporter)
    assert (exporter.name, exporter.timeout) == ("jaeger_collector", 3.5)
    exporter.send(_one_payload(exporter, 1))
    assert collector_sink.wait_for_spans(1, WAIT)
    assert collector_sink.requests[0].headers["authorization"] == "Basic " + base64.b64encode(
        b"u:p").decode()
    exporter.shutdown()


# --- property: random spans survive the agent path -----------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(spans=resource_batches())
def test_property_every_mapped_field_survives_udp(spans: list[DroppedSpan]) -> None:
    with UdpAgentSink() as sink:
        exporter = JaegerAgentExporter("127.0.0.1", sink.port)
        encoded = exporter.encode(spans)
        assert encoded.dropped == {}  # no drawn span comes near a datagram's size
        assert sum(p.span_count for p in encoded.payloads) == len(spans)
        for payload in encoded.payloads:
            exporter.send(payload)
        assert sink.wait_for_spans(len(spans), WAIT)
        exporter.shutdown()
        assert sink.undecodable == 0
    # What went out, decoded by thriftpy2 from our IDL, is what the mapping says, in order;
    # the expectation comes from the input spans, not from the translator under test.
    batches = [as_plain(decode_datagram(data)) for data in sink.datagrams]
    process = expected_process(spans[0].resource)
    assert [batch["process"] for batch in batches] == [process] * len(batches)
    assert [span for batch in batches for span in batch["spans"]] == expected_spans(spans)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(spans=resource_batches())
def test_property_every_mapped_field_survives_http(spans: list[DroppedSpan]) -> None:
    """The same through the collector exporter: binary-protocol bodies decoded by thriftpy2."""
    with HttpCollectorSink() as sink:
        exporter = JaegerCollectorExporter(sink.url)
        encoded = exporter.encode(spans)
        assert encoded.dropped == {}
        for payload in encoded.payloads:
            exporter.send(payload)
        assert sink.wait_for_spans(len(spans), WAIT)
        exporter.shutdown()
        assert sink.undecodable == 0
    batches = [as_plain(decode_body(request.body)) for request in sink.requests]
    process = expected_process(spans[0].resource)
    assert [batch["process"] for batch in batches] == [process] * len(batches)
    assert [span for batch in batches for span in batch["spans"]] == expected_spans(spans)


def test_sdk_spans_from_a_real_tracer_provider(agent_sink: UdpAgentSink) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "sdk"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("scope", "1")
    with tracer.start_as_current_span("outer", attributes={"l": ["a", "b"], "t": (1, 2)}) as outer:
        outer.add_event("e", {"f": [1.5]})
        with tracer.start_as_current_span("inner"):
            pass
    provider.shutdown()
    spans = memory.get_finished_spans()
    exporter = JaegerAgentExporter("127.0.0.1", agent_sink.port)
    for payload in exporter.encode(spans).payloads:
        exporter.send(payload)
    assert agent_sink.wait_for_spans(2, WAIT)
    by_name = {s.operationName: s for s in agent_sink.spans()}
    tags = {t.key: t.vStr for t in by_name["outer"].tags}
    assert (tags["l"], tags["t"]) == ('["a","b"]', "[1,2]")
    assert by_name["outer"].logs[0].fields[1].vStr == "[1.5]"
    assert by_name["inner"].parentSpanId == by_name["outer"].spanId
    exporter.shutdown()


def test_agent_prefers_ipv4_when_ipv6_resolves_first(agent_sink: UdpAgentSink,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """"localhost" must reach an agent listening on IPv4 even where ::1 is listed first."""
    real = socket.getaddrinfo

    def ipv6_first(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        infos = real(host, port, *args, **kwargs)
        ipv6 = (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("::1", port, 0, 0))
        return [ipv6, *infos]

    monkeypatch.setattr(socket, "getaddrinfo", ipv6_first)
    exporter = JaegerAgentExporter("localhost", agent_sink.port)
    encoded = exporter.encode([make_span(1)])
    exporter.send(encoded.payloads[0])
    assert agent_sink.wait_for_spans(1, WAIT)
    exporter.shutdown()
