"""The OTLP/gRPC receiver: TraceService/Export.

Parse, convert, offer to the queue, answer. It never waits on Jaeger and never imports it.

- not a valid ExportTraceServiceRequest -> INVALID_ARGUMENT
- invalid spans -> rejected alone, reported in ``partial_success``; the rest go through
- the queue cannot take the whole request -> UNAVAILABLE with a RetryInfo delay (OTLP clients
  retry that); nothing of the request is queued, so nothing is acknowledged and then dropped
- with a bearer token configured, a request without it -> UNAUTHENTICATED (compared in constant time,
  decided from the metadata alone: the body of such a request is neither read nor parsed)
- room in the queue is reserved for a request's spans before they are converted, so a burst of
  requests cannot hold more converted spans than the queue capacity
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from relay.convert import ParsedRequest
from relay.metrics import Ledger
from relay.spanqueue import SpanQueue

logger = logging.getLogger(__name__)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
EXPORT_METHOD = f"/{SERVICE}/Export"
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
    def __init__(self, queue: SpanQueue, ledger: Ledger, auth_token: bytes | None = None,
                 parser: Any = None) -> None:
        self._queue = queue
        self._parser = parser  # the native OTLP parser (relay.native.load_parser), None: upb only
        self._ledger = ledger
        self._token = auth_token or None
        self.shutting_down = False

    def handler(self) -> grpc.GenericRpcHandler:
        # Raw bytes in: a parse failure must be INVALID_ARGUMENT, which grpc's own deserializer
        # hook cannot produce.
        return _Handler(self)

    def export(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            request = ParsedRequest(data, self._parser)
        except DecodeError as exc:
            self._ledger.request("INVALID_ARGUMENT")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"not a valid ExportTraceServiceRequest: {exc}")
        count = request.span_count
        if count > self._queue.capacity:
            # It could never be queued whole: retrying cannot help, so no RetryInfo.
            self._ledger.request("INVALID_ARGUMENT", rejected=[("request_exceeds_queue", count)])
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"request has {count} spans, more than the relay's queue holds "
                          f"({self._queue.capacity}, --queue-size): send smaller batches")
        if self.shutting_down or not self._queue.reserve(count):
            reason, status = self._refusal()
            self._ledger.request("UNAVAILABLE", refused=(reason, count))
            context.abort_with_status(status)
        committed = False
        try:
            response, committed = self._export(request, count, context)
            return response
        finally:
            if not committed:
                self._queue.cancel(count)

    def unauthenticated(self, _requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        """The answer to a request without the bearer token; its body is never read."""
        self._ledger.request("UNAUTHENTICATED")
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
        return _EMPTY_RESPONSE  # not reached: abort raises

    def authorized(self, metadata: Sequence[tuple[str, str | bytes]]) -> bool:
        """RFC 6750: ``authorization: Bearer <token>``, the scheme case-insensitive (RFC 7235);
        the token compared in constant time."""
        if self._token is None:
            return True
        for key, value in metadata:
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                scheme, _, token = given.strip().partition(b" ")
                valid = scheme.lower() == b"bearer"
                return hmac.compare_digest(token.strip(), self._token) and valid
        return False

    def _export(self, request: ParsedRequest, reserved: int,
                context: grpc.ServicerContext) -> tuple[bytes, bool]:
        """Convert and queue into the reserved room; (response, whether the room was used)."""
        converted = request.convert()
        rejected = converted.rejected.items()
        if converted.batches and not self._queue.commit(converted.batches, reserved):
            reason, status = self._refusal()  # closed for shutdown since the reservation
            self._ledger.request("UNAVAILABLE", refused=(reason, reserved - converted.rejected_count),
                                 rejected=rejected)
            context.abort_with_status(status)
        self._ledger.request("OK", accepted=converted.span_count, rejected=rejected)
        committed = bool(converted.batches)
        if not converted.rejected:
            return _EMPTY_RESPONSE, committed
        partial = ExportTracePartialSuccess(rejected_spans=converted.rejected_count,
                                            error_message=_rejection_message(converted.rejected,
                                                                             converted.first_error))
        response: bytes = ExportTraceServiceResponse(partial_success=partial).SerializeToString()
        return response, committed

    def _refusal(self) -> tuple[str, grpc.Status]:
        if self.shutting_down or self._queue.closed:
            return "shutting_down", _SHUTTING_DOWN
        return "queue_full", _QUEUE_FULL


class _Handler(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Looks the method up on gRPC's polling thread, before any request byte is read: a call
    without the bearer token is answered UNAUTHENTICATED by a handler that never reads its body."""

    def __init__(self, receiver: TraceReceiver) -> None:
        self._receiver = receiver
        self._export = grpc.unary_unary_rpc_method_handler(receiver.export)
        self._refuse = grpc.stream_unary_rpc_method_handler(receiver.unauthenticated)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if handler_call_details.method != EXPORT_METHOD:
            return None
        if self._receiver.authorized(handler_call_details.invocation_metadata):
            return self._export
        return self._refuse


def _rejection_message(rejected: dict[str, int], first_error: str) -> str:
    counts = ", ".join(f"{count} {reason}" for reason, count in sorted(rejected.items()))
    return f"rejected {sum(rejected.values())} invalid spans ({counts}); first: {first_error}"
