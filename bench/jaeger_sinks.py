"""Real Jaeger-side peers for tests: a UDP agent and an HTTP collector on loopback, port 0.

Both decode what they receive with the pure-Python Thrift readers over the Jaeger exporter package's
generated types (imported through ``relay.exporters.jaeger_compat``), record the decoded
``jaeger.Batch`` objects, and let a test wait for a number of spans with a bounded wait::

    with UdpAgentSink() as sink:
        exporter = JaegerAgentExporter("127.0.0.1", sink.port)
        ...
        assert sink.wait_for_spans(3, timeout=5)
        spans = sink.spans()

    with HttpCollectorSink() as sink:
        sink.fail_next(2, status=503)          # two 503 replies, then 202
        sink.status_for = lambda n, req: 429   # or decide every reply yourself
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from bench.thrift_decode import decode_binary_batch, decode_compact_message
from relay.exporters.jaeger_compat import jaeger

_MAX_DATAGRAM = 65535


class _Recorder:
    """Decoded batches plus a condition to wait on; shared by both sinks."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.batches: list[Any] = []
        self.undecodable = 0
        self.errors: list[BaseException] = []

    def add_batch(self, batch: Any) -> None:
        with self._cond:
            self.batches.append(batch)
            self._cond.notify_all()

    def add_undecodable(self, exc: BaseException) -> None:
        with self._cond:
            self.undecodable += 1
            self.errors.append(exc)
            self._cond.notify_all()

    def spans(self) -> list[Any]:
        with self._cond:
            return [span for batch in self.batches for span in batch.spans or ()]

    def span_count(self) -> int:
        return sum(len(batch.spans or ()) for batch in self.batches)

    def wait_for_spans(self, n: int, timeout: float) -> bool:
        """Wait until at least ``n`` spans arrived; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.span_count() >= n, timeout)

    def wait_for_batches(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.batches) >= n, timeout)

    def wait_for_undecodable(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.undecodable >= n, timeout)


class UdpAgentSink(_Recorder):
    """A Jaeger agent: compact-protocol ``Agent.emitBatch`` datagrams on 127.0.0.1:<port>."""

    def __init__(self, port: int = 0) -> None:
        super().__init__()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self._sock.bind(("127.0.0.1", port))
        self.port: int = self._sock.getsockname()[1]
        self.host = "127.0.0.1"
        self.datagrams: list[bytes] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="udp-agent-sink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(_MAX_DATAGRAM)
            except OSError:
                return  # closed
            if self._closed.is_set():
                return
            with self._cond:
                self.datagrams.append(data)
            try:
                batch = decode_compact_message(data)
            except Exception as exc:
                self.add_undecodable(exc)
            else:
                self.add_batch(batch)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        # Wake the blocking recv with an empty datagram, then close.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as waker:
            waker.sendto(b"", ("127.0.0.1", self.port))
        self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> UdpAgentSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@dataclass(frozen=True)
class Request:
    """One request the collector sink received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the sink replied


StatusRule = Callable[[int, Request], int]  # (request number from 0, request) -> HTTP status


class HttpCollectorSink(_Recorder):
    """A Jaeger collector: ``POST /api/traces`` with a binary-protocol ``Batch`` body.

    Replies 202 by default. ``fail_next(n, status)`` queues ``n`` failing replies; ``status_for``
    (settable) decides any reply. A batch is recorded only when the reply is 2xx, as Jaeger would.
    A body that does not decode gets 400 and is counted in ``undecodable``.
    """

    def __init__(self, path: str = "/api/traces") -> None:
        super().__init__()
        self.path = path
        self.requests: list[Request] = []
        self.status_for: StatusRule | None = None
        self._failures: list[int] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="http-collector-sink", daemon=True)
        self._thread.start()

    def fail_next(self, n: int, status: int = 503) -> None:
        with self._cond:
            self._failures.extend([status] * n)

    def _decide(self, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._cond:
            number = len(self.requests)
            if method != "POST" or path.split("?", 1)[0] != self.path:
                status = 404
            elif self._failures:
                status = self._failures.pop(0)
            elif self.status_for is not None:
                status = self.status_for(number, Request(method, path, headers, body, 0))
            else:
                status = 202
            self.requests.append(Request(method, path, headers, body, status))
            self._cond.notify_all()
            return status

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
        status = self._decide(method, path, headers, body)
        if status // 100 != 2:
            return status
        try:
            batch = decode_binary_batch(body)
        except Exception as exc:
            self.add_undecodable(exc)
            return 400
        self.add_batch(batch)
        return status

    def wait_for_requests(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.requests) >= n, timeout)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HttpCollectorSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _handler_class(sink: HttpCollectorSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real collector

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {key.lower(): value for key, value in self.headers.items()}
            status = sink.handle(self.command, self.path, headers, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = _serve
        do_GET = _serve
        do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet

    return Handler


__all__ = ["HttpCollectorSink", "Request", "UdpAgentSink", "jaeger"]
