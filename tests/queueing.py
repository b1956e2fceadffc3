"""Test helpers that put spans into a SpanQueue the way the receiver does: reserve, convert, commit."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan

from relay.convert import Converted, convert_request
from relay.spanqueue import SpanQueue

SPAN_BYTES = 100  # the encoded size these helpers give each span


def offer(queue: SpanQueue, *batches: list[ReadableSpan], record: bytes = b"") -> bool:
    """Queue already converted batches (memory queue): all or nothing."""
    count = sum(map(len, batches))
    reservation = queue.reserve(count, count * SPAN_BYTES)
    if reservation is None:
        return False
    converted = Converted(batches=list(batches), batch_bytes=[len(b) * SPAN_BYTES for b in batches])
    return queue.commit(reservation, converted, record) is None


def offer_request(queue: SpanQueue, request: ExportTraceServiceRequest) -> str | None:
    """Queue a protobuf request as the receiver does; None when queued, else the refusal."""
    data = request.SerializeToString()
    converted = convert_request(request)
    reservation = queue.reserve(converted.span_count + converted.rejected_count, len(data))
    if reservation is None:
        return "full"
    return queue.commit(reservation, converted, data)
