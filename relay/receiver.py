"""The OTLP/gRPC receiver: TraceService, MetricsService and LogsService Export.

It decodes the request and writes the :class:`relay.ingest.Outcome` as a gRPC status; every
decision is the shared core's (``relay.ingest``). It never waits on Jaeger and never imports it.

- not a valid ExportTraceServiceRequest -> INVALID_ARGUMENT
- more spans than the queue holds -> RESOURCE_EXHAUSTED, no RetryInfo (a server limit)
- the queue cannot take the whole request now -> UNAVAILABLE with a RetryInfo delay
- over ``--max-recv-msg-size-mib`` (after decompression) -> RESOURCE_EXHAUSTED, by gRPC itself
- with a bearer token configured, a request without it -> UNAUTHENTICATED (decided from the
  metadata alone: the body of such a request is neither read nor parsed)
- a metric or log push -> success, counted, not forwarded
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from relay.ingest import Ingest, Outcome, Verdict

logger = logging.getLogger(__name__)

TRANSPORT = "grpc"
SERVICE: str = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
EXPORT_METHOD = f"/{SERVICE}/Export"
METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
_EMPTY_RESPONSE: bytes = ExportTraceServiceResponse().SerializeToString()
# The other signals: method -> (signal name, request type, empty response)
_SIGNALS: dict[str, tuple[str, type[Message], bytes]] = {
    METRICS_METHOD: ("metrics", ExportMetricsServiceRequest, ExportMetricsServiceResponse().SerializeToString()),
    LOGS_METHOD: ("logs", ExportLogsServiceRequest, ExportLogsServiceResponse().SerializeToString()),
}
_CODES = {verdict: getattr(code_pb2, verdict.value) for verdict in Verdict}


def grpc_status(outcome: Outcome) -> grpc.Status:
    """A non-OK Outcome as a gRPC status; a refusal carries RetryInfo, nothing else does."""
    details = []
    if outcome.retry_after:
        retry_info = any_pb2.Any()
        retry_info.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=outcome.retry_after)))
        details.append(retry_info)
    status = status_pb2.Status(code=_CODES[outcome.verdict], message=outcome.message, details=details)
    return rpc_status.to_status(status)


class TraceReceiver:
    def __init__(self, ingest: Ingest) -> None:
        self._ingest = ingest

    def handler(self) -> grpc.GenericRpcHandler:
        # Raw bytes in: a parse failure must be INVALID_ARGUMENT, which grpc's own deserializer
        # hook cannot produce.
        return _Handler(self)

    def export(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        with self._ingest.admission(len(data), TRANSPORT) as refused:
            outcome = refused or self._ingest.export_traces(data, _decode_traces, TRANSPORT)
        if outcome.verdict is not Verdict.OK:
            context.abort_with_status(grpc_status(outcome))
        if not outcome.response.HasField("partial_success"):
            return _EMPTY_RESPONSE
        response: bytes = outcome.response.SerializeToString()
        return response

    def signal_export(self, method: str) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        signal, request_type, empty = _SIGNALS[method]

        def export(data: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                request_type.FromString(data)
            except DecodeError as exc:
                outcome = self._ingest.invalid(TRANSPORT, f"not a valid {request_type.__name__}: {exc}")
                context.abort_with_status(grpc_status(outcome))
            self._ingest.other_signal(signal, TRANSPORT, _client(context))
            return empty

        return export

    def unauthenticated(self, _requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        """The answer to a request without the bearer token; its body is never read."""
        context.abort_with_status(grpc_status(self._ingest.unauthenticated(TRANSPORT)))
        return _EMPTY_RESPONSE  # not reached: abort raises

    def authorized(self, metadata: Sequence[tuple[str, str | bytes]]) -> bool:
        header = next((value for key, value in metadata if key == "authorization"), None)
        return self._ingest.authorized(header)


class _Handler(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Looks the method up on gRPC's polling thread, before any request byte is read: a call
    without the bearer token is answered UNAUTHENTICATED by a handler that never reads its body."""

    def __init__(self, receiver: TraceReceiver) -> None:
        self._receiver = receiver
        self._methods = {EXPORT_METHOD: grpc.unary_unary_rpc_method_handler(receiver.export)}
        for method in _SIGNALS:
            self._methods[method] = grpc.unary_unary_rpc_method_handler(receiver.signal_export(method))
        self._refuse = grpc.stream_unary_rpc_method_handler(receiver.unauthenticated)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = self._methods.get(handler_call_details.method)
        if method is None:
            return None
        if self._receiver.authorized(handler_call_details.invocation_metadata):
            return method
        return self._refuse


def _decode_traces(data: bytes) -> ExportTraceServiceRequest:
    try:
        request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(data)
    except DecodeError as exc:
        raise ValueError(str(exc)) from None
    return request


def _client(context: grpc.ServicerContext) -> str:
    """The client's address without its port: "ipv4:10.0.0.7:51234" -> "10.0.0.7"."""
    peer = str(context.peer() or "unknown")
    return peer.partition(":")[2].rpartition(":")[0] or peer
