"""A dead or wedged exporter worker is visible from outside: /healthz and /readyz fail, gRPC
health says NOT_SERVING, and Export refuses with UNAVAILABLE + RetryInfo until it recovers."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from relay.exporters.base import Payload
from tests.conftest import RelayFactory
from tests.fakes import GatedExporter, RecordingExporter
from tests.otlp import raw_export
from tests.probes import grpc_health, http_status
from tests.waiting import wait_until

STALL_FLAGS = ("--jaeger-timeout", "100ms", "--worker-stall-timeout", "400ms")


def _request(name: str) -> ExportTraceServiceRequest:
    span = Span(name=name, trace_id=b"\x01" * 16, span_id=b"\x02" * 8, start_time_unix_nano=1,
                end_time_unix_nano=2)
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])


def _assert_refused_with_retry_info(port: int) -> None:
    with pytest.raises(grpc.RpcError) as info:
        raw_export(port, _request("refused"))
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    details = dict(info.value.trailing_metadata() or ())["grpc-status-details-bin"]
    retry = error_details_pb2.RetryInfo()
    assert status_pb2.Status.FromString(details).details[0].Unpack(retry)
    assert retry.retry_delay.seconds >= 1


def test_a_wedged_worker_is_unhealthy_and_refuses_export_until_it_moves(make_relay: RelayFactory) -> None:
    exporter = GatedExporter()  # a send that never returns: the worker makes no progress
    relay = make_relay(*STALL_FLAGS, exporter=exporter)
    raw_export(relay.otlp_port, _request("stuck"))
    assert exporter.entered.wait(10)
    assert wait_until(lambda: grpc_health(relay.otlp_port) == "NOT_SERVING")
    assert grpc_health(relay.otlp_port, "") == "NOT_SERVING"
    assert http_status(relay.admin_port, "/readyz") == 503
    assert http_status(relay.admin_port, "/healthz") == 503
    _assert_refused_with_retry_info(relay.otlp_port)
    assert relay.metrics.ledger.snapshot().refused == {"worker_unavailable": 1}
    exporter.release.set()  # the send returns: progress again
    assert wait_until(lambda: grpc_health(relay.otlp_port) == "SERVING")
    assert http_status(relay.admin_port, "/healthz") == 200
    assert http_status(relay.admin_port, "/readyz") == 200
    raw_export(relay.otlp_port, _request("after"))
    assert exporter.wait_for_spans(2)


def test_an_idle_worker_is_never_called_stalled(make_relay: RelayFactory) -> None:
    """Nothing waits: however long since the last export, the relay stays healthy."""
    exporter = RecordingExporter()
    relay = make_relay(*STALL_FLAGS, exporter=exporter)
    raw_export(relay.otlp_port, _request("one"))
    assert exporter.wait_for_spans(1)
    # The idle worker waits in take() for up to a second between turns: longer than the bound.
    assert wait_until(lambda: relay.worker.idle_for() > relay.health.stall_timeout)
    assert relay.health.worker_problem() is None
    assert grpc_health(relay.otlp_port) == "SERVING"
    assert http_status(relay.admin_port, "/healthz") == 200


class ExitingExporter(RecordingExporter):
    """A library that calls sys.exit() inside send: SystemExit ends the worker thread."""

    def send(self, payload: Payload) -> None:
        raise SystemExit(3)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # killed on purpose
def test_a_dead_worker_is_unhealthy_and_refuses_export(make_relay: RelayFactory) -> None:
    relay = make_relay(exporter=ExitingExporter())
    raw_export(relay.otlp_port, _request("fatal"))
    assert wait_until(lambda: not relay.worker.is_alive())
    assert wait_until(lambda: grpc_health(relay.otlp_port) == "NOT_SERVING")
    assert http_status(relay.admin_port, "/healthz") == 503
    assert http_status(relay.admin_port, "/readyz") == 503
    _assert_refused_with_retry_info(relay.otlp_port)
    assert relay.shutdown().lost == 1  # the span the worker held when it died is reported lost
