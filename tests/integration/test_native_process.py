"""The relay as users run it, native and pure (TRACE_RELAY_PURE=1): it says at start which one it
runs, and the same OTLP bytes reach Jaeger as the same spans either way."""

from __future__ import annotations

import random

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.jaeger_sinks import UdpAgentSink
from bench.relay_process import RelayProcess
from relay import native
from relay.testtrace import buildkit_trace
from tests.waiting import wait_until

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
REQUESTS = [buildkit_trace(random.Random(seed), 1_700_000_000_000_000_000, steps=6) for seed in range(3)]
SPANS = sum(len(ss.spans) for request in REQUESTS for rs in request.resource_spans for ss in rs.scope_spans)


def _relay_output(env: dict[str, str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(the relay's log lines, every span delivered with its process, in a stable order)."""
    with UdpAgentSink() as sink:
        relay = RelayProcess("--jaeger-agent", f"127.0.0.1:{sink.port}", env=env)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{relay.otlp_port}") as channel:
                call = channel.unary_unary(EXPORT)
                for request in REQUESTS:
                    call(ExportTraceServiceRequest.SerializeToString(request), timeout=30)
            assert wait_until(lambda: any("native accelerator" in line for line in relay.lines), timeout=10)
            assert relay.terminate() == 0, "".join(relay.lines)  # SIGTERM drains what was accepted
        finally:
            relay.close()
        assert sink.wait_for_spans(SPANS, timeout=10)
        delivered = sorted((repr(batch.process), repr(span)) for batch in sink.batches for span in batch.spans or ())
        return relay.lines, delivered


@pytest.mark.skipif(native.load({}) is None or native.load_parser({}) is None,
                    reason="the relay.native._thrift / _otlp extensions are not built")
def test_native_and_pure_relays_deliver_the_same_jaeger_spans() -> None:
    native_lines, native_spans = _relay_output({})
    pure_lines, pure_spans = _relay_output({"TRACE_RELAY_PURE": "1"})
    assert any("OTLP parser native, Jaeger span encoder native" in line for line in native_lines)
    assert any("OTLP parser pure, Jaeger span encoder pure" in line for line in pure_lines)
    assert len(native_spans) == SPANS
    assert native_spans == pure_spans
