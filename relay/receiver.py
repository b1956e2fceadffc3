"""The OTLP/gRPC receiver: TraceService/Export.

Parse, convert, offer to the queue, answer. It never waits on Jaeger and never imports it.

- not a valid ExportTraceServiceRequest -> INVALID_ARGUMENT
- invalid spans -> rejected alone, reported in ``partial_success``; the rest go through
- the queue cannot take the whole request -> UNAVAILABLE with a RetryInfo delay (OTLP clients
  retry that); nothing of the request is queued, so nothing is acknowledged and then dropped
- with a bearer token configured, a request without it -> UNAUTHENTICATED (compared in constant time)
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from relay.convert import convert_request, request_span_count
from relay.metrics import Ledger
from relay.spanqueue import SpanQueue

logger = logging.getLogger(__name__)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
RETRY_DELAY_SECONDS = 2
_EMPTY_RESPONSE: bytes = ExportTraceServiceResponse().SerializeToString()


def _unavailable_status(message: str) -> grpc.Status:
    retry_info = any_pb2.Any()
    retry_info.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=RETRY_DELAY_SECONDS)))
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message, details=[retry_info])
    return rpc_status.to_status(status)


_QUEUE_FULL = _unavailable_status("trace-relay queue is full; retry later")
_SHUTTING_DOWN = _unavailable_status("trace-relay is shutting down; retry later")


class TraceReceiver:
    def __init__(self, queue: SpanQueue, ledger: Ledger, auth_token: bytes | None = None) -> None:
        self._queue = queue
        self._ledger = ledger
        self._expected_auth = b"Bearer " + auth_token if auth_token else None
        self.shutting_down = False

    def handler(self) -> grpc.GenericRpcHandler:
        # Raw bytes in: a parse failure must be INVALID_ARGUMENT, which grpc's own deserializer
        # hook cannot produce.
        method = grpc.unary_unary_rpc_method_handler(self.export)
        return grpc.method_handlers_generic_handler(SERVICE, {"Export": method})

    def export(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        if self._expected_auth is not None and not self._authorized(context):
            self._ledger.request("UNAUTHENTICATED")
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
        try:
            request = ExportTraceServiceRequest.FromString(data)
        except DecodeError as exc:
            self._ledger.request("INVALID_ARGUMENT")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"not a valid ExportTraceServiceRequest: {exc}")
        return self._export(request, context)

    def _export(self, request: ExportTraceServiceRequest, context: grpc.ServicerContext) -> bytes:
        converted = convert_request(request)
        rejected = converted.rejected.items()
        if converted.batches:
            refusal = self._offer(converted.batches)
            if refusal is not None:
                reason, status = refusal
                refused_count = request_span_count(request) - converted.rejected_count
                self._ledger.request("UNAVAILABLE", refused=(reason, refused_count), rejected=rejected)
                context.abort_with_status(status)
        self._ledger.request("OK", accepted=converted.span_count, rejected=rejected)
        if not converted.rejected:
            return _EMPTY_RESPONSE
        partial = ExportTracePartialSuccess(rejected_spans=converted.rejected_count,
                                            error_message=_rejection_message(converted.rejected,
                                                                             converted.first_error))
        response: bytes = ExportTraceServiceResponse(partial_success=partial).SerializeToString()
        return response

    def _offer(self, batches: list[Any]) -> tuple[str, grpc.Status] | None:
        if self.shutting_down:
            return "shutting_down", _SHUTTING_DOWN
        if self._queue.offer(batches):
            return None
        if self.shutting_down:
            return "shutting_down", _SHUTTING_DOWN
        return "queue_full", _QUEUE_FULL

    def _authorized(self, context: grpc.ServicerContext) -> bool:
        if self._expected_auth is None:
            return True
        for key, value in context.invocation_metadata():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(given, self._expected_auth)
        return False


def _rejection_message(rejected: dict[str, int], first_error: str) -> str:
    counts = ", ".join(f"{count} {reason}" for reason, count in sorted(rejected.items()))
    return f"rejected {sum(rejected.values())} invalid spans ({counts}); first: {first_error}"
