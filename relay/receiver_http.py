"""The OTLP/HTTP receiver: POST /v1/traces, /v1/metrics and /v1/logs, protobuf or JSON.

Every decision is the shared core's (``relay.ingest``); this module reads requests and writes the
:class:`relay.ingest.Outcome` as the OTLP/HTTP specification and the Collector do:

    200  the response message in the request's encoding (``partial_success`` as on gRPC)
    400  an undecodable body (a ``google.rpc.Status`` body)    404  another path (says /v1/traces)
    401  no bearer token when one is configured                 405  another method
    408  the request was not read within --otlp-http-read-timeout
    413  over --max-recv-msg-size-mib, after decompression too, or more spans than the queue holds
    415  another content type                                   503  queue full: Retry-After + RetryInfo

The server is the standard library's, with the bounds it lacks: a fixed pool of connection
threads (more connections are answered 503 at once), bodies read only once the shared parse
budget admits them (``relay.ingest``), and one deadline per request that a reaper thread enforces by shutting
the socket, so a client trickling one byte a second holds a thread for the deadline, not forever.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from relay import otlp_json
from relay.config import HostPort
from relay.ingest import Ingest, Outcome, Verdict

logger = logging.getLogger(__name__)

TRANSPORT = "http"
TRACES_PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# path -> (signal, request type, response type); traces are the one signal forwarded
_OTHER_SIGNALS: dict[str, tuple[str, type[Message], type[Message]]] = {
    "/v1/metrics": ("metrics", ExportMetricsServiceRequest, ExportMetricsServiceResponse),
    "/v1/logs": ("logs", ExportLogsServiceRequest, ExportLogsServiceResponse),
}
_STATUS = {Verdict.INVALID: 400, Verdict.UNAUTHENTICATED: 401, Verdict.TOO_LARGE: 413, Verdict.REFUSED: 503}
_MAX_CHUNK_LINE = 1024
# Answers given before the body is read, whose body is then read and discarded (within the limit
# and the read deadline, in small pieces) so that a client that writes its whole body before it
# reads sees the answer, not a reset: the 404 hint must reach BuildKit's log. Not for 401 (the
# body of an unauthenticated request is never read) nor 413 (too large to read).
_DRAINED = frozenset({404, 405, 415, 503})
_DRAIN_PIECE = 64 * 1024
_REAPER_TICK = 0.1


class HttpError(Exception):
    """A request answered before it reached the core; the connection is closed after it."""

    def __init__(self, status: int, code: int, message: str, retry_after: int = 0) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


@dataclass(frozen=True)
class HttpSettings:
    max_body: int  # bytes, after decompression too
    read_timeout: float  # seconds for one request: waiting for it, its headers and its body
    max_connections: int  # open connections, one thread each
    tls: ssl.SSLContext | None = None


class OtlpHttpServer:
    def __init__(self, endpoint: HostPort, ingest: Ingest, settings: HttpSettings) -> None:
        family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
        self._server = _PooledServer((endpoint.host, endpoint.port), _handler_class(ingest, settings),
                                     settings, family)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="trace-relay-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._server.reaper.start()
        self._thread.start()

    def stop(self, grace: float) -> None:
        """Stop accepting, let in-flight requests finish for ``grace`` seconds, close the rest."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self._server.drain(grace)


class _Reaper:
    """Shuts the read side of sockets whose request deadline passed: a blocked read returns EOF."""

    def __init__(self) -> None:
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trace-relay-http-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def set(self, sock: socket.socket, deadline: float | None) -> None:
        with self._lock:
            if deadline is None:
                self._deadlines.pop(sock, None)
            else:
                self._deadlines[sock] = deadline

    def _run(self) -> None:
        while not self._stop.wait(_REAPER_TICK):
            now = time.monotonic()
            with self._lock:
                expired = [sock for sock, deadline in self._deadlines.items() if deadline <= now]
                for sock in expired:
                    del self._deadlines[sock]
            for sock in expired:
                _shut_read(sock)


def _shut_read(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for an SSLSocket (whose own would drop the TLS state);
    # OSError: already closed by its handler.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RD)


class _PooledServer(HTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 settings: HttpSettings, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.settings = settings
        self.reaper = _Reaper()
        self._pool = ThreadPoolExecutor(max_workers=settings.max_connections,
                                        thread_name_prefix="trace-relay-http-conn")
        self._slots = threading.BoundedSemaphore(settings.max_connections)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self.in_flight = _Gauge()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            _refuse_connection(request)
            return
        self._pool.submit(self._serve, request, client_address)

    def _serve(self, request: socket.socket, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        conn: socket.socket = request
        try:
            self.reaper.set(request, time.monotonic() + self.settings.read_timeout)
            if self.settings.tls is not None:
                conn = self._handshake(request, self.settings.tls)
            self.finish_request(conn, client_address)
        except (OSError, ssl.SSLError) as exc:
            logger.debug("otlp/http: connection from %s ended: %s", client_address[0], exc)
        except Exception:  # the boundary: one connection's failure never reaches the others
            logger.exception("otlp/http: unexpected error serving %s", client_address[0])
        finally:
            self.reaper.set(request, None)
            self.reaper.set(conn, None)
            with self._open_lock:
                self._open.discard(request)
            self.shutdown_request(conn)
            self._slots.release()

    def _handshake(self, sock: socket.socket, tls: ssl.SSLContext) -> socket.socket:
        wrapped = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)  # takes sock's fd
        self.reaper.set(wrapped, time.monotonic() + self.settings.read_timeout)
        try:
            wrapped.do_handshake()
        except BaseException:
            self.reaper.set(wrapped, None)
            wrapped.close()
            raise
        return wrapped

    def drain(self, grace: float) -> None:
        """In-flight POSTs get ``grace`` seconds to finish; then every connection is cut (idle
        keep-alive connections at once)."""
        self.in_flight.wait_zero(grace)
        self.reaper.stop()
        with self._open_lock:
            for sock in self._open:
                _shut_read(sock)
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Gauge:
    """A count of requests in progress that shutdown can wait on."""

    def __init__(self) -> None:
        self._value = 0
        self._cond = threading.Condition()

    def add(self, delta: int) -> None:
        with self._cond:
            self._value += delta
            self._cond.notify_all()

    def wait_zero(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._value == 0, timeout)


def _refuse_connection(sock: socket.socket) -> None:
    """Over the connection bound: one short 503 and close, from the accepting thread."""
    body = b"trace-relay: too many connections; retry later\n"
    try:
        sock.settimeout(0.5)
        sock.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nConnection: close\r\n"
                     b"Content-Type: text/plain\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    except OSError:
        pass
    finally:
        sock.close()


def _handler_class(ingest: Ingest, settings: HttpSettings) -> type[BaseHTTPRequestHandler]:
    class Handler(_OtlpHandler):
        pass

    Handler.ingest, Handler.settings = ingest, settings
    Handler.timeout = settings.read_timeout
    return Handler


class _OtlpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "trace-relay"
    ingest: Ingest
    settings: HttpSettings
    server: _PooledServer
    _body_read = False

    def handle_one_request(self) -> None:
        # One deadline from here until the answer: waiting for the request, its headers, its body.
        self.server.reaper.set(self.connection, time.monotonic() + self.settings.read_timeout)
        super().handle_one_request()

    def do_POST(self) -> None:
        encoding = _encoding(self.headers.get("Content-Type", ""))
        self.server.in_flight.add(1)
        self._body_read = False
        try:
            self._post(encoding)
        except HttpError as exc:
            self.close_connection = True
            if not self._body_read and exc.status in _DRAINED:
                _discard_body(self, self.settings.max_body)
            self._status(exc.status, exc.code, exc.message, encoding or JSON, exc.retry_after)
        finally:
            self.server.in_flight.add(-1)

    def _post(self, encoding: str | None) -> None:
        path = self.path.split("?", 1)[0]
        if path != TRACES_PATH and path not in _OTHER_SIGNALS:
            raise HttpError(404, code_pb2.NOT_FOUND, _not_found(path))
        if not self.ingest.authorized(self.headers.get("Authorization")):
            outcome = self.ingest.unauthenticated(TRANSPORT)
            raise HttpError(401, code_pb2.UNAUTHENTICATED, outcome.message)
        if encoding is None:
            raise HttpError(415, code_pb2.INVALID_ARGUMENT,
                            f"unsupported Content-Type {self.headers.get('Content-Type', '')!r}: "
                            f"use {PROTOBUF} or {JSON}")
        announced = _announced_length(self, self.settings.max_body)
        if announced > self.settings.max_body:
            raise HttpError(413, code_pb2.RESOURCE_EXHAUSTED, _too_large(self.settings.max_body))
        # The body is read only once admitted: a body that waits stays in the client's socket.
        with self.ingest.admission(announced, TRANSPORT) as refused:
            if refused is not None:
                raise HttpError(503, code_pb2.UNAVAILABLE, refused.message, retry_after=refused.retry_after)
            self._body_read = True
            raw = read_body(self, self.settings.max_body)
            body = decode_content(raw, self.headers.get("Content-Encoding", ""), self.settings.max_body)
            del raw
            if path == TRACES_PATH:
                self._traces(body, encoding)
            else:
                self._other_signal(path, body, encoding)

    def _traces(self, body: bytes, encoding: str) -> None:
        def decode(data: bytes) -> ExportTraceServiceRequest:
            request: ExportTraceServiceRequest = _decode(data, encoding, ExportTraceServiceRequest)
            return request

        outcome = self.ingest.export_traces(body, decode, TRANSPORT)
        if outcome.verdict is Verdict.OK:
            self._reply(200, _encode(outcome.response, encoding), encoding)
        else:
            self._outcome(outcome, encoding)

    def _other_signal(self, path: str, body: bytes, encoding: str) -> None:
        signal, request_type, response_type = _OTHER_SIGNALS[path]
        try:
            _decode(body, encoding, request_type)
        except ValueError as exc:
            self._outcome(self.ingest.invalid(TRANSPORT, f"not a valid {request_type.__name__}: {exc}"), encoding)
            return
        self.ingest.other_signal(signal, TRANSPORT, self.client_address[0])
        self._reply(200, _encode(response_type(), encoding), encoding)

    def _outcome(self, outcome: Outcome, encoding: str) -> None:
        code = getattr(code_pb2, outcome.code)
        self._status(_STATUS[outcome.verdict], code, outcome.message, encoding, outcome.retry_after)

    def _status(self, status: int, code: int, message: str, encoding: str, retry_after: int = 0) -> None:
        details = []
        if retry_after:
            info = any_pb2.Any()
            info.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=retry_after)))
            details.append(info)
        body = _encode(status_pb2.Status(code=code, message=message, details=details), encoding)
        headers = {"Retry-After": str(retry_after)} if retry_after else {}
        if status == 405:
            headers["Allow"] = "POST"
        self._reply(status, body, encoding, headers)

    def _reply(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _not_allowed(self) -> None:
        path = self.path.split("?", 1)[0]
        self.close_connection = True
        if path != TRACES_PATH and path not in _OTHER_SIGNALS:
            self._status(404, code_pb2.NOT_FOUND, _not_found(path), JSON)
        else:
            self._status(405, code_pb2.UNIMPLEMENTED, f"{self.command} {path}: OTLP/HTTP takes POST only", JSON)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def do_HEAD(self) -> None:
        self.close_connection = True
        self.send_response(405)
        self.send_header("Allow", "POST")
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("otlp/http: %s", format % args)


def _not_found(path: str) -> str:
    return (f"no OTLP endpoint at {path!r}: POST traces to {TRACES_PATH} (set OTEL_EXPORTER_OTLP_TRACES_ENDPOINT "
            f"to http://HOST:4318{TRACES_PATH}, or OTEL_EXPORTER_OTLP_ENDPOINT to http://HOST:4318)")


def _encoding(content_type: str) -> str | None:
    media = content_type.split(";", 1)[0].strip().lower()
    return media if media in (PROTOBUF, JSON) else None


def _decode(body: bytes, encoding: str, message_type: type[Message]) -> Message:
    if encoding == JSON:
        return otlp_json.parse(body, message_type)
    try:
        return message_type.FromString(body)
    except DecodeError as exc:
        raise ValueError(str(exc)) from None


def _encode(message: Message, encoding: str) -> bytes:
    if encoding == JSON:
        return otlp_json.dumps(message)
    data: bytes = message.SerializeToString()
    return data


def _discard_body(handler: BaseHTTPRequestHandler, limit: int) -> None:
    length_text = handler.headers.get("Content-Length", "").strip()
    if handler.headers.get("Transfer-Encoding") or not length_text.isdigit() or int(length_text) > limit:
        return
    remaining = int(length_text)
    with contextlib.suppress(OSError):
        while remaining > 0:
            piece = handler.rfile.read(min(remaining, _DRAIN_PIECE))
            if not piece:
                return
            remaining -= len(piece)


def _announced_length(handler: BaseHTTPRequestHandler, limit: int) -> int:
    """The body's Content-Length, or ``limit`` when it is chunked (or malformed: read_body says so)."""
    text = handler.headers.get("Content-Length", "0").strip()
    if handler.headers.get("Transfer-Encoding") or not text.isdigit():
        return limit
    return int(text)


def read_body(handler: BaseHTTPRequestHandler, limit: int) -> bytes:
    """The request body, by Content-Length or chunked; 413 past ``limit`` bytes, 408 when cut off."""
    transfer = handler.headers.get("Transfer-Encoding", "").strip().lower()
    if transfer == "chunked":
        return _read_chunked(handler, limit)
    if transfer:
        raise HttpError(400, code_pb2.INVALID_ARGUMENT, f"unsupported Transfer-Encoding {transfer!r}")
    length_text = handler.headers.get("Content-Length", "0").strip()
    if not length_text.isdigit():
        raise HttpError(400, code_pb2.INVALID_ARGUMENT, f"invalid Content-Length {length_text[:32]!r}")
    length = int(length_text)
    if length > limit:
        raise HttpError(413, code_pb2.RESOURCE_EXHAUSTED, _too_large(limit))
    return _read_exactly(handler, length)


def _read_exactly(handler: BaseHTTPRequestHandler, length: int) -> bytes:
    data = handler.rfile.read(length)
    if len(data) < length:
        raise HttpError(408, code_pb2.DEADLINE_EXCEEDED, "the request body was not received in time")
    return data


def _read_chunked(handler: BaseHTTPRequestHandler, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = handler.rfile.readline(_MAX_CHUNK_LINE)
        if not line.endswith(b"\n"):
            raise HttpError(408 if not line else 400, code_pb2.INVALID_ARGUMENT, "malformed or cut-off chunked body")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError(400, code_pb2.INVALID_ARGUMENT, "malformed chunk size") from None
        if size == 0:
            _skip_trailers(handler)
            return b"".join(parts)
        total += size
        if total > limit:
            raise HttpError(413, code_pb2.RESOURCE_EXHAUSTED, _too_large(limit))
        parts.append(_read_exactly(handler, size))
        if handler.rfile.readline(_MAX_CHUNK_LINE).strip():
            raise HttpError(400, code_pb2.INVALID_ARGUMENT, "malformed chunked body")


def _skip_trailers(handler: BaseHTTPRequestHandler) -> None:
    for _ in range(100):
        line = handler.rfile.readline(_MAX_CHUNK_LINE)
        if line in (b"\r\n", b"\n", b""):
            return
    raise HttpError(400, code_pb2.INVALID_ARGUMENT, "too many trailers")


def decode_content(body: bytes, content_encoding: str, limit: int) -> bytes:
    """gzip bodies decompressed with a bound: a bomb stops at ``limit`` bytes of output (413)."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise HttpError(400, code_pb2.INVALID_ARGUMENT, f"unsupported Content-Encoding {encoding[:32]!r}: use gzip")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise HttpError(400, code_pb2.INVALID_ARGUMENT, f"not a valid gzip body: {exc}") from None
    if len(data) > limit:
        raise HttpError(413, code_pb2.RESOURCE_EXHAUSTED, _too_large(limit, " after decompression"))
    if not inflater.eof:
        raise HttpError(400, code_pb2.INVALID_ARGUMENT, "not a valid gzip body: truncated")
    return data


def _too_large(limit: int, where: str = "") -> str:
    return f"request body larger than {limit // (1024 * 1024)} MiB{where} (--max-recv-msg-size-mib)"
