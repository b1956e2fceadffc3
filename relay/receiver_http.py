"""The OTLP/HTTP receiver: POST /v1/traces, /v1/metrics and /v1/logs, protobuf or JSON.

Every decision is the shared core's (``relay.ingest``); this module reads requests and writes the
:class:`relay.ingest.Outcome` as the OTLP/HTTP specification and the Collector do:

    200  the response message in the request's encoding (``partial_success`` as on gRPC)
    400  an undecodable body (a ``google.rpc.Status`` body)    404  another path (says /v1/traces)
    401  no bearer token when one is configured                 405  another method
    408  the request was not read within --otlp-http-read-timeout
    413  over --max-recv-msg-size-mib, after decompression too, or more spans than the queue holds
    415  another content type                                   503  queue full: Retry-After + RetryInfo

The server is ``relay.http_server`` (the standard library's, bounded); bodies are read by
``relay.http_body`` only once the shared parse budget admits them (``relay.ingest``).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler

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
from relay.http_body import HttpError, announced_length, decode_content, discard_body, read_body, too_large
from relay.http_server import HttpSettings, PooledServer
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
# Answers given before the body is read, whose body is then read and discarded (within the limit
# and the read deadline, in small pieces) so that a client that writes its whole body before it
# reads sees the answer, not a reset: the 404 hint must reach BuildKit's log. Not for 401 (the
# body of an unauthenticated request is never read) nor 413 (too large to read).
_DRAINED = frozenset({404, 405, 415, 503})


class OtlpHttpServer:
    def __init__(self, endpoint: HostPort, ingest: Ingest, settings: HttpSettings) -> None:
        family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
        self._server = PooledServer((endpoint.host, endpoint.port), _handler_class(ingest, settings),
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
    server: PooledServer
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
            if not exc.counted:
                self.ingest.answered(code_pb2.Code.Name(exc.code), TRANSPORT)
            if not self._body_read and exc.status in _DRAINED:
                discard_body(self, self.settings.max_body)
            self._status(exc.status, exc.code, exc.message, encoding or JSON, exc.retry_after)
        finally:
            self.server.in_flight.add(-1)

    def _post(self, encoding: str | None) -> None:
        path = self.path.split("?", 1)[0]
        if path != TRACES_PATH and path not in _OTHER_SIGNALS:
            raise HttpError(404, code_pb2.NOT_FOUND, _not_found(path))
        if not self.ingest.authorized(self.headers.get("Authorization")):
            outcome = self.ingest.unauthenticated(TRANSPORT)
            raise HttpError(401, code_pb2.UNAUTHENTICATED, outcome.message, counted=True)
        if encoding is None:
            raise HttpError(415, code_pb2.INVALID_ARGUMENT,
                            f"unsupported Content-Type {self.headers.get('Content-Type', '')!r}: "
                            f"use {PROTOBUF} or {JSON}")
        announced = announced_length(self, self.settings.max_body)
        if announced > self.settings.max_body:
            raise HttpError(413, code_pb2.RESOURCE_EXHAUSTED, too_large(self.settings.max_body))
        # The body is read only once admitted: a body that waits stays in the client's socket.
        with self.ingest.admission(announced, TRANSPORT) as refused:
            if refused is not None:
                raise HttpError(503, code_pb2.UNAVAILABLE, refused.message, retry_after=refused.retry_after,
                                counted=True)
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

        outcome = self.ingest.export_traces(body, decode, TRANSPORT, protobuf=encoding == PROTOBUF)
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
            self.ingest.answered("NOT_FOUND", TRANSPORT)
            self._status(404, code_pb2.NOT_FOUND, _not_found(path), JSON)
        else:
            self.ingest.answered("UNIMPLEMENTED", TRANSPORT)
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


