"""Jaeger collector output: binary-thrift ``Batch`` bodies POSTed over HTTP(S).

Unlike the stock ``opentelemetry.exporter.jaeger.thrift.send.Collector.submit``, which only *logs*
a non-2xx reply (so a 503 from an overloaded collector silently loses the batch), every failure
here raises :class:`ExportError` with a metric-friendly reason and whether a retry may help.
The password is only ever placed in the ``Authorization`` header, never in any message.
"""

from __future__ import annotations

import base64
import functools
import http.client
import io
import socket
import struct
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from opentelemetry.sdk.trace import ReadableSpan

from relay.deadline import Deadline, DeadlineReader
from relay.exporters.base import Encoded, ExportError, Payload
from relay.exporters.encode import chunk_spans, encode_spans
from relay.exporters.jaeger_compat import encode_binary
from relay.exporters.resolve import Lookup, Resolver
from relay.exporters.translate import process_from_resource

MAX_BODY_SIZE = 4 * 1024 * 1024  # bytes per request; one bigger span still goes alone
CONTENT_TYPE = "application/x-thrift"
_RETRYABLE_STATUS = frozenset({408, 429})

# Batch { 1: Process; 2: list<Span> } in the binary protocol: field headers, list header.
_PROCESS_FIELD = b"\x0c\x00\x01"  # STRUCT, id 1
_SPANS_FIELD = b"\x0f\x00\x02\x0c"  # LIST, id 2, of STRUCT
_COUNT = struct.Struct(">i")
_STOP = b"\x00"


def binary_batch(process: bytes, spans: Sequence[bytes]) -> bytes:
    """A binary-protocol ``Batch`` from an encoded Process and encoded Spans."""
    return b"".join((_PROCESS_FIELD, process, _SPANS_FIELD, _COUNT.pack(len(spans)), *spans, _STOP))


def _basic_auth(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class _DeadlineResponse(http.client.HTTPResponse):
    """A reply read with every ``recv`` bounded by the request's deadline, so a collector that
    trickles its answer cannot hold the worker (and shutdown) past ``--jaeger-timeout``."""

    def __init__(self, sock: socket.socket, *args: Any, deadline: Deadline, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp.close()  # the plain makefile() of the base class
        self.fp = io.BufferedReader(DeadlineReader(sock, deadline))


class JaegerCollectorExporter:
    """HTTP(S) to a Jaeger collector's ``/api/traces``. Called only from the worker thread."""

    name = "jaeger_collector"

    def __init__(self, url: str, username: str | None = None, password: str | None = None,
                 timeout: float = 10.0, max_body_size: int = MAX_BODY_SIZE, *,
                 lookup: Lookup | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("collector URL must be http(s)://host[:port]/path")
        if username is None and parts.username is not None:
            username, password = unquote(parts.username), unquote(parts.password or "")
        self._https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self._https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout
        self.max_body_size = max_body_size
        self._headers = {"Content-Type": CONTENT_TYPE}
        if username is not None:
            self._headers["Authorization"] = _basic_auth(username, password or "")
        self._conn: http.client.HTTPConnection | None = None
        self._deadline = Deadline()  # of the request in progress: look-up, connect, send and reply
        self._resolver = Resolver(self.host, self.port, socket.SOCK_STREAM, lookup=lookup)

    def __repr__(self) -> str:
        return f"JaegerCollectorExporter(host={self.host!r}, port={self.port}, path={self.path!r})"

    def encode(self, spans: Sequence[ReadableSpan]) -> Encoded:
        result = Encoded()
        if not spans:
            return result
        process = encode_binary(process_from_resource(spans[0].resource))
        encoded, failed = encode_spans(spans, encode_binary)
        if failed:
            result.dropped["encode_error"] = failed
        overhead = len(process) + 16
        for chunk in chunk_spans(encoded, lambda _count, total: overhead + total,
                                 self.max_body_size):
            result.payloads.append(Payload(binary_batch(process, chunk), len(chunk)))
        return result

    def _connection(self) -> http.client.HTTPConnection:
        """The connection, its socket timeout set to what is left of the request's deadline (a
        connect attempt and ``sendall`` are each bounded by it; the reply by the deadline itself)."""
        remaining = self._deadline.remaining()
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=remaining)
            self._conn.response_class = functools.partial(  # type: ignore[assignment]
                _DeadlineResponse, deadline=self._deadline)
            self._conn._create_connection = self._open  # type: ignore[attr-defined]
        self._conn.timeout = remaining
        if self._conn.sock is not None:
            self._conn.sock.settimeout(remaining)
        return self._conn

    def _open(self, _address: object, _timeout: object, _source: object = None) -> socket.socket:
        """http.client's connect, to the addresses of the bounded resolver (so no blocking
        getaddrinfo on the worker), each attempt within the request's deadline. The Host header
        and TLS server name stay the URL's host."""
        error = OSError(f"no address for {self.host}")
        for family, kind, proto, _name, sockaddr in self._resolver.addresses(wait=self._deadline.remaining()):
            remaining = self._deadline.remaining()
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(remaining)
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            return sock
        raise error

    def _post(self, body: bytes) -> http.client.HTTPResponse:
        conn = self._connection()
        reused = conn.sock is not None
        try:
            conn.request("POST", self.path, body=body, headers=self._headers)
            return conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            if not reused:
                raise
        # The server closed an idle keep-alive connection: the request never arrived; once more.
        self.close()
        conn = self._connection()
        conn.request("POST", self.path, body=body, headers=self._headers)
        return conn.getresponse()

    def send(self, payload: Payload) -> None:
        where = f"{self.host}:{self.port}"
        self._deadline.start(self.timeout)
        try:
            response = self._post(payload.data)
            response.read()
        except ExportError:  # no address (yet): the connection was never opened; start afresh
            self.close()
            raise
        except TimeoutError as exc:
            self.close()
            raise ExportError("timeout", f"no complete reply from {where} within {self.timeout:g}s") from exc
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            self._resolver.stale()  # the collector may have moved: look it up again (in the background)
            raise ExportError("connection", f"{where}: {type(exc).__name__}: {exc}") from exc
        status = response.status
        if response.will_close:
            self.close()
        if not 200 <= status < 300:
            retryable = status in _RETRYABLE_STATUS or status >= 500
            raise ExportError(f"http_{status}", f"{where} replied {status} {response.reason}",
                              retryable=retryable)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def shutdown(self) -> None:
        self.close()
