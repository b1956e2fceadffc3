"""The OTLP/gRPC receiver: TraceService/Export.

Parse, convert, offer to the queue, answer. It never waits on Jaeger and never imports it.

- not a valid ExportTraceServiceRequest -> INVALID_ARGUMENT
- invalid spans -> rejected alone, reported in ``partial_success``; the rest go through
- the queue cannot take the whole request (spans or bytes full, disk full) -> UNAVAILABLE with a
  RetryInfo delay (OTLP clients retry that); nothing of the request is queued, so nothing is
  acknowledged and then dropped
- a request the queue could never hold -> RESOURCE_EXHAUSTED, no RetryInfo (a server limit)
- with a bearer token configured, a request without it -> UNAUTHENTICATED (compared in constant time,
  decided from the metadata alone: the body of such a request is neither read nor parsed)
- room in the queue is reserved for a request's spans before they are converted, so a burst of
  requests cannot hold more converted spans than the queue capacity
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterator, Sequence

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
from relay.redact import Redactor
from relay.spanqueue import Reservation, SpanQueue

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
_DISK_FULL = _unavailable_status("trace-relay's disk queue is out of space; retry later")
_DISK_ERROR = _unavailable_status("trace-relay could not write its disk queue; retry later")
_WORKER_UNAVAILABLE = _unavailable_status("trace-relay cannot export now (its exporter worker is stalled or stopped); "
                                          "retry later")


class TraceReceiver:
    def __init__(self, queue: SpanQueue, ledger: Ledger, auth_token: bytes | None = None, *,
                 accepting: Callable[[], bool] = lambda: True, redactor: Redactor | None = None,
                 redacted: Callable[[int], None] | None = None) -> None:
        self._accepting = accepting  # False while the exporter worker is dead or stalled
        self._queue = queue
        self._ledger = ledger
        self._redactor = redactor or Redactor()
        self._count_redacted = redacted or (lambda _count: None)
        self._token = auth_token or None
        self.shutting_down = False

    def handler(self) -> grpc.GenericRpcHandler:
        # Raw bytes in: a parse failure must be INVALID_ARGUMENT, which grpc's own deserializer
        # hook cannot produce.
        return _Handler(self)

    def export(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            request = ExportTraceServiceRequest.FromString(data)
        except DecodeError as exc:
            self._ledger.request("INVALID_ARGUMENT")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"not a valid ExportTraceServiceRequest: {exc}")
        count = request_span_count(request)
        if not self._queue.fits(count, len(data)):
            # It could never be queued whole: retrying cannot help, so no RetryInfo.
            self._ledger.request("RESOURCE_EXHAUSTED", rejected=[("request_exceeds_queue", count)])
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"request has {count} spans in {len(data)} bytes, more than the relay's queue "
                          f"holds ({self._queue.capacity} spans, --queue-size; {self._queue.max_bytes} bytes, "
                          f"--queue-max-mib): send smaller batches")
        reservation = None if self.shutting_down or not self._accepting() \
            else self._queue.reserve(count, len(data))
        if reservation is None:
            reason, status = self._refusal("queue_full")
            self._ledger.request("UNAVAILABLE", refused=(reason, count))
            context.abort_with_status(status)
            return _EMPTY_RESPONSE  # not reached: abort raises
        return self._export(request, data, reservation, context)

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

    def _export(self, request: ExportTraceServiceRequest, data: bytes, reservation: Reservation,
                context: grpc.ServicerContext) -> bytes:
        """Redact, convert and queue into the reserved room, which is used up either way."""
        try:
            redacted = self._redactor.redact(request)  # before anything keeps a string
            self._count_redacted(redacted)
            if redacted:
                data = request.SerializeToString()  # what the disk queue keeps is redacted too
            converted = convert_request(request)
        except BaseException:
            self._queue.cancel(reservation)
            raise
        rejected = converted.rejected.items()
        refusal = self._queue.commit(reservation, converted, data)
        if refusal == "not_durable":  # queued, but the client must not count on it
            self._ledger.request("UNAVAILABLE", rejected=rejected)
            context.abort_with_status(_DISK_ERROR)
        if refusal is not None:
            reason, status = self._refusal(refusal)
            self._ledger.request("UNAVAILABLE", refused=(reason, converted.span_count), rejected=rejected)
            context.abort_with_status(status)
        self._ledger.request("OK", rejected=rejected)
        if not converted.rejected:
            return _EMPTY_RESPONSE
        partial = ExportTracePartialSuccess(rejected_spans=converted.rejected_count,
                                            error_message=_rejection_message(converted.rejected,
                                                                             converted.first_error))
        response: bytes = ExportTraceServiceResponse(partial_success=partial).SerializeToString()
        return response

    def _refusal(self, reason: str) -> tuple[str, grpc.Status]:
        if self.shutting_down or self._queue.closed or reason == "shutting_down":
            return "shutting_down", _SHUTTING_DOWN
        if not self._accepting():
            return "worker_unavailable", _WORKER_UNAVAILABLE
        if reason in ("disk_full", "disk_error"):
            return reason, _DISK_FULL if reason == "disk_full" else _DISK_ERROR
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
