"""Jaeger backends that misbehave on command, on real loopback sockets.

- :class:`ControllableCollector`: an :class:`HttpCollectorSink` on a fixed port that can be taken
  down (connections refused) and brought back up, or made to hang (accept, read, never answer).
- :class:`SilentListener`: a TCP port that completes handshakes and never reads or answers.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

from bench.jaeger_sinks import HttpCollectorSink, Request, _handler_class, _Recorder

HANG_LIMIT = 30.0  # seconds a hung reply waits at most (tests never leave one hanging that long)


class _Server:
    def __init__(self, port: int, sink: ControllableCollector) -> None:
        from http.server import ThreadingHTTPServer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_class(sink))  # type: ignore[arg-type]
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="controllable-collector", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class ControllableCollector(HttpCollectorSink):
    """A Jaeger collector whose port stays the same while it goes down and up."""

    def __init__(self, path: str = "/api/traces", *, up: bool = True) -> None:
        _Recorder.__init__(self)
        self.path = path
        self.requests: list[Request] = []
        self.status_for = None
        self._failures: list[int] = []
        self._hang_next = 0
        self.hung = 0
        self._closing = threading.Event()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self._live: _Server | None = None
        if up:
            self.up()

    def up(self) -> None:
        if self._live is None:
            self._live = _Server(self.port, self)

    def down(self) -> None:
        """Stop listening: connections to the port are refused."""
        if self._live is not None:
            self._live.close()
            self._live = None

    def hang_next(self, n: int) -> None:
        """The next ``n`` requests are read and never answered (until close)."""
        with self._cond:
            self._hang_next += n

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._cond:
            hang = self._hang_next > 0
            if hang:
                self._hang_next -= 1
                self.hung += 1
                self._cond.notify_all()
        if hang:
            self._closing.wait(HANG_LIMIT)
            return 503
        return super().handle(method, path, headers, body)

    def close(self) -> None:
        self._closing.set()
        self.down()

    def __enter__(self) -> ControllableCollector:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class SilentListener:
    """Accepts TCP connections (the kernel does) and never answers: a stalled Jaeger."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/api/traces"

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> SilentListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TricklingCollector:
    """Reads each request whole, then answers one byte every ``interval`` seconds: a valid, complete
    ``202`` reply that takes ``len(REPLY) * interval`` seconds to arrive. A per-operation socket
    timeout never fires on it; only a deadline for the whole request does."""

    REPLY = b"HTTP/1.0 202 OK\r\n\r\n"  # no Content-Length: the body ends when the connection closes

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._closing = threading.Event()
        self._cond = threading.Condition()
        self.requests = 0
        self.replies_finished = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/api/traces"
        self._thread = threading.Thread(target=self._accept, name="trickling-collector", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                _read_request(conn)
                with self._cond:
                    self.requests += 1
                    self._cond.notify_all()
                for byte in self.REPLY:
                    if self._closing.wait(self.interval):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return  # the client gave up and closed
            with self._cond:
                self.replies_finished += 1

    def wait_for_requests(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.requests >= n, timeout)

    def close(self) -> None:
        self._closing.set()
        self._sock.close()
        self._thread.join(5)

    def __enter__(self) -> TricklingCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_request(conn: socket.socket) -> None:
    """Headers, then Content-Length bytes of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionResetError
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionResetError
        body += chunk
