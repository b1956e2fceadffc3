"""Fuzz the Export path through a real gRPC channel, bounded for CI (a few hundred examples).
The long run is ``python -m bench.fuzz --minutes N``."""

from __future__ import annotations

import logging

import grpc
import pytest
from hypothesis import HealthCheck, given, settings

from bench.fuzz_bodies import bodies
from bench.jaeger_sinks import UdpAgentSink
from tests.conftest import RelayFactory
from tests.probes import assert_serving, scrape
from tests.waiting import wait_until

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


def test_fuzzed_requests_get_only_clear_answers(make_relay: RelayFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    with UdpAgentSink() as agent:
        relay = make_relay("--jaeger-agent", f"127.0.0.1:{agent.port}", "--queue-size", "1000000")
        seen: dict[str, int] = {}
        with grpc.insecure_channel(f"127.0.0.1:{relay.otlp_port}") as channel:
            call = channel.unary_unary(EXPORT)

            @settings(max_examples=300, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
            @given(body=bodies)
            def export(body: bytes) -> None:
                try:
                    call(body, timeout=30)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    code = exc.code()
                seen[code.name] = seen.get(code.name, 0) + 1
                assert code in ALLOWED, code

            export()
        assert relay.worker.is_alive()
        assert wait_until(lambda: scrape(relay.admin_port).queued == 0, timeout=60)
        metrics = scrape(relay.admin_port)
        assert metrics.unbalanced() == 0
        assert set(metrics.dropped) <= {"too_large"}  # nothing failed to encode or crashed the worker
        assert metrics.requests.get("OK", 0) > 0
        assert metrics.requests.get("INVALID_ARGUMENT", 0) > 0
        assert sum(seen.values()) >= 300
        assert_serving(relay.otlp_port, relay.admin_port)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
