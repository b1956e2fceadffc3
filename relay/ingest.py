"""The receivers' shared core: one decoded Export request in, one :class:`Outcome` out.

Both receivers (OTLP/gRPC in ``receiver``, OTLP/HTTP in ``receiver_http``) call it and differ only
in how they write an Outcome on the wire. Every call to the queue (reserve, commit, cancel) is in
:meth:`Ingest.traces`, in this one place.

    request -> fits the queue at all? -> reserve room -> convert -> commit -> Outcome

- a request with more spans or bytes than the queue holds can never be queued: TOO_LARGE, not
  retryable (gRPC RESOURCE_EXHAUSTED without RetryInfo, HTTP 413)
- no room now (spans, bytes or disk), the exporter worker dead or stalled, or shutting down:
  REFUSED with a retry delay; nothing of the request is queued (gRPC UNAVAILABLE + RetryInfo,
  HTTP 503 + Retry-After)
- secrets are redacted right after the parse, before anything keeps a string (the disk queue
  stores the redacted request)
- invalid spans are rejected alone and reported in ``partial_success``; the rest go through
- metric and log pushes are answered success, counted, and not forwarded
- request bodies are parsed and converted within one byte budget (``parse_budget``, the largest
  request by default): protobuf's parsed copy costs up to ~5.4x the body, so N handlers parsing
  N bodies of the largest size at once would cost N times that; a request that waits longer than
  ``PARSE_WAIT`` seconds for the budget is REFUSED (retryable). The HTTP receiver takes its share
  before it reads the body, so bodies that wait stay in the client's socket, not in memory
"""

from __future__ import annotations

import contextlib
import enum
import hmac
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from relay.convert import Converted, ParsedRequest, convert_request, request_span_count
from relay.metrics import SIGNALS, Ledger
from relay.redact import Redactor
from relay.spanqueue import SpanQueue

logger = logging.getLogger(__name__)

RETRY_DELAY_SECONDS = 2
PARSE_WAIT = 5.0  # seconds a body may wait for the parse budget before it is refused
_MAX_CLIENTS_LOGGED = 1024  # clients remembered per signal for the one-line-per-client log


class Verdict(enum.Enum):
    OK = "OK"
    INVALID = "INVALID_ARGUMENT"  # undecodable request
    TOO_LARGE = "RESOURCE_EXHAUSTED"  # a server limit: retrying cannot help
    REFUSED = "UNAVAILABLE"  # retry after ``retry_after`` seconds
    UNAUTHENTICATED = "UNAUTHENTICATED"


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    message: str = ""
    response: ExportTraceServiceResponse = field(default_factory=ExportTraceServiceResponse)
    retry_after: int = 0

    @property
    def code(self) -> str:
        """The gRPC status code name, also the ``code`` label of the request metric."""
        return self.verdict.value


_BUSY = "trace-relay is busy parsing other large requests; retry later"
_SHUTTING_DOWN = "trace-relay is shutting down; retry later"
_QUEUE_FULL = "trace-relay queue is full; retry later"
_DISK_ERROR = "trace-relay could not write its disk queue; retry later"
_REFUSALS = {
    "shutting_down": _SHUTTING_DOWN,
    "queue_full": _QUEUE_FULL,
    "disk_full": "trace-relay's disk queue is out of space; retry later",
    "disk_error": _DISK_ERROR,
    "worker_unavailable": "trace-relay cannot export now (its exporter worker is stalled or stopped); retry later",
}


class Ingest:
    """The decisions both receivers share; safe to call from many handler threads."""

    def __init__(self, queue: SpanQueue, ledger: Ledger, auth_token: bytes | None = None,
                 parse_budget: int | None = None, *, accepting: Callable[[], bool] = lambda: True,
                 redactor: Redactor | None = None, redacted: Callable[[int], None] | None = None,
                 parser: Any = None) -> None:
        self._queue = queue
        self._ledger = ledger
        self._token = auth_token or None
        self._budget = _ByteBudget(parse_budget)
        self._clients = _ClientsSeen()
        self._accepting = accepting  # False while the exporter worker is dead or stalled
        self._redactor = redactor or Redactor()
        self._count_redacted = redacted or (lambda _count: None)
        self._parser = parser  # the native OTLP parser (relay/native), or None: upb only
        self.shutting_down = False

    def authorized(self, header: str | bytes | None) -> bool:
        """RFC 6750 ``Bearer <token>`` (scheme case-insensitive, RFC 7235), compared in constant time.
        Always true without a configured token."""
        if self._token is None:
            return True
        if header is None:
            return False
        given = header.encode() if isinstance(header, str) else header
        scheme, _, token = given.strip().partition(b" ")
        valid = scheme.lower() == b"bearer"
        return hmac.compare_digest(token.strip(), self._token) and valid

    def unauthenticated(self, transport: str) -> Outcome:
        self._ledger.request(Verdict.UNAUTHENTICATED.value, transport=transport)
        return Outcome(Verdict.UNAUTHENTICATED, "missing or invalid bearer token")

    def invalid(self, transport: str, message: str) -> Outcome:
        """A request that could not be decoded (or, on HTTP, not read)."""
        self._ledger.request(Verdict.INVALID.value, transport=transport)
        return Outcome(Verdict.INVALID, message)

    def answered(self, code: str, transport: str) -> None:
        """Count a request a receiver answered before the core saw it (HTTP: a wrong path, method
        or type, a body over the size limit, a slow client), by its gRPC code name."""
        self._ledger.request(code, transport=transport)

    @contextlib.contextmanager
    def admission(self, nbytes: int, transport: str) -> Iterator[Outcome | None]:
        """Hold ``nbytes`` of the parse budget while a body is read, decoded and converted. Yields
        None when admitted, or the REFUSED Outcome (retryable) after ``PARSE_WAIT`` seconds."""
        with self._budget.hold(nbytes, PARSE_WAIT) as admitted:
            if admitted:
                yield None
                return
            self._ledger.request(Verdict.REFUSED.value, transport=transport)
            yield Outcome(Verdict.REFUSED, _BUSY, retry_after=RETRY_DELAY_SECONDS)

    def export_traces(self, body: bytes, decode: Callable[[bytes], ExportTraceServiceRequest],
                      transport: str, *, protobuf: bool = True) -> Outcome:
        """Decode ``body`` (``decode`` raises ValueError when it cannot) and export it. Called
        inside :meth:`admission`. ``protobuf``: the body is the request's protobuf encoding (the
        disk queue then stores it as it came, and the native parser may read it)."""
        if protobuf and self._parser is not None and not self._redactor.may_change(body):
            try:  # nothing to redact: the native parser reads the bytes (upb when it declines)
                parsed = ParsedRequest(body, self._parser)
            except DecodeError as exc:
                return self.invalid(transport, f"not a valid ExportTraceServiceRequest: {exc}")
            return self._export(parsed.span_count, len(body), lambda: (parsed.convert(), 0, body), transport)
        try:
            request = decode(body)
        except ValueError as exc:
            return self.invalid(transport, f"not a valid ExportTraceServiceRequest: {exc}")
        return self.traces(request, transport, wire=body if protobuf else None)

    def traces(self, request: ExportTraceServiceRequest, transport: str, *, wire: bytes | None = None) -> Outcome:
        def convert() -> tuple[Converted, int, bytes]:
            redacted = self._redactor.redact(request, wire=wire)  # before anything keeps a string
            converted = convert_request(request)
            # What the disk queue keeps is the redacted request, as protobuf.
            return converted, redacted, wire if wire is not None and not redacted else request.SerializeToString()

        size = len(wire) if wire is not None else request.ByteSize()
        return self._export(request_span_count(request), size, convert, transport)

    def _export(self, count: int, size: int, convert: Callable[[], tuple[Converted, int, bytes]],
                transport: str) -> Outcome:
        """Size check, room, then ``convert`` (redact and convert; the protobuf to keep), commit."""
        if not self._queue.fits(count, size):
            self._ledger.request(Verdict.TOO_LARGE.value, rejected=[("request_exceeds_queue", count)],
                                 transport=transport)
            return Outcome(Verdict.TOO_LARGE,
                           f"request has {count} spans in {size} bytes, more than the relay's queue holds "
                           f"({self._queue.capacity} spans, --queue-size; {self._queue.max_bytes} bytes, "
                           "--queue-max-mib): send smaller batches")
        reservation = None if self.shutting_down or not self._accepting() else self._queue.reserve(count, size)
        if reservation is None:
            return self._refused(transport, count)
        try:
            converted, redacted, wire = convert()
        except BaseException:
            self._queue.cancel(reservation)
            raise
        self._count_redacted(redacted)
        refusal = self._queue.commit(reservation, converted, wire, transport)
        if refusal == "not_durable":  # queued, but the client must not count on it
            self._ledger.request(Verdict.REFUSED.value, rejected=converted.rejected.items(), transport=transport)
            return Outcome(Verdict.REFUSED, _DISK_ERROR, retry_after=RETRY_DELAY_SECONDS)
        if refusal is not None:
            return self._refused(transport, converted.span_count, converted, refusal)
        self._ledger.request(Verdict.OK.value, rejected=converted.rejected.items(), transport=transport)
        return Outcome(Verdict.OK, response=_response(converted))

    def other_signal(self, signal: str, transport: str, client: str) -> Outcome:
        """A metric or log push: success, counted, not forwarded; one log line per client."""
        self._ledger.signal(signal, transport)
        if self._clients.first(signal, client):
            logger.info("accepted OTLP %s from %s over %s; trace-relay forwards traces only, "
                        "so they are counted and dropped (logged once per client)", signal, client, transport)
        return Outcome(Verdict.OK)

    def _refused(self, transport: str, count: int, converted: Converted | None = None,
                 reason: str = "queue_full") -> Outcome:
        if self.shutting_down or self._queue.closed or reason == "shutting_down":
            reason = "shutting_down"
        elif not self._accepting():
            reason = "worker_unavailable"
        rejected = converted.rejected.items() if converted else ()
        self._ledger.request(Verdict.REFUSED.value, refused=(reason, count), rejected=rejected,
                             transport=transport)
        return Outcome(Verdict.REFUSED, _REFUSALS.get(reason, _QUEUE_FULL), retry_after=RETRY_DELAY_SECONDS)


class _ByteBudget:
    """Bytes of request bodies being parsed at once; a body larger than the budget takes all of it."""

    def __init__(self, capacity: int | None) -> None:
        self._capacity = capacity
        self._used = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, nbytes: int, timeout: float) -> Iterator[bool]:
        capacity = self._capacity
        if capacity is None:
            yield True
            return
        need = min(nbytes, capacity)
        with self._cond:
            admitted = self._cond.wait_for(lambda: self._used + need <= capacity, timeout)
            if admitted:
                self._used += need
        try:
            yield admitted
        finally:
            if admitted:
                with self._cond:
                    self._used -= need
                    self._cond.notify_all()


class _ClientsSeen:
    """The clients that pushed each signal not forwarded, so each is logged once (bounded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, set[str]] = {signal: set() for signal in SIGNALS}

    def first(self, signal: str, client: str) -> bool:
        """True the first time ``client`` pushes ``signal`` (and while fewer than the bound were seen)."""
        with self._lock:
            seen = self._clients[signal]
            if client in seen or len(seen) >= _MAX_CLIENTS_LOGGED:
                return False
            seen.add(client)
            return True


def _response(converted: Converted) -> ExportTraceServiceResponse:
    if not converted.rejected:
        return ExportTraceServiceResponse()
    counts = ", ".join(f"{count} {reason}" for reason, count in sorted(converted.rejected.items()))
    message = f"rejected {converted.rejected_count} invalid spans ({counts}); first: {converted.first_error}"
    return ExportTraceServiceResponse(
        partial_success=ExportTracePartialSuccess(rejected_spans=converted.rejected_count, error_message=message))
