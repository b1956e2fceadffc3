"""Property: random SDK spans, encoded to OTLP by OpenTelemetry's own encoder, sent through the
whole relay (gRPC receiver, conversion, queue, worker, agent exporter), decoded from the UDP wire:
every field the Jaeger mapping covers arrives as the mapping says."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from prometheus_client import CollectorRegistry

from relay.app import Relay
from relay.config import load_config
from relay.exporters.translate import to_batch
from tests.conftest import FAST_RETRY, LOOPBACK_FLAGS
from tests.jaeger_sinks import UdpAgentSink
from tests.otlp import raw_export
from tests.strategies import DroppedSpan, resource_batches


def _key(span: Any) -> tuple[int, int, str]:
    return (span.traceIdLow, span.spanId, repr(span))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spans=resource_batches(max_size=6))
def test_random_sdk_spans_survive_the_whole_relay(spans: list[DroppedSpan]) -> None:
    for span in spans:
        span.kind_unspecified = False  # the SDK has no unspecified kind; its encoder writes INTERNAL
    with UdpAgentSink() as sink:
        config = load_config([*LOOPBACK_FLAGS, "--jaeger-agent", f"127.0.0.1:{sink.port}",
                              "--batch-timeout", "1ms"], {})
        relay = Relay(config, registry=CollectorRegistry(), retry=FAST_RETRY)
        relay.start()
        try:
            response = raw_export(relay.otlp_port, encode_spans(spans))
            assert response.partial_success.rejected_spans == 0, response.partial_success.error_message
            expected = to_batch(spans)
            assert sink.wait_for_spans(len(spans), timeout=15)
        finally:
            relay.shutdown()
    assert sink.undecodable == 0
    assert all(batch.process == expected.process for batch in sink.batches)
    for span in expected.spans:
        span.flags = 0  # OpenTelemetry's Python encoder does not write the trace flags byte
    assert sorted(sink.spans(), key=_key) == sorted(expected.spans, key=_key)
