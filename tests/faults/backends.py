"""Jaeger backends that misbehave on command, on real loopback sockets.

- :class:`ControllableCollector`: an :class:`HttpCollectorSink` on a fixed port that can be taken
  down (connections refused) and brought back up, or made to hang (accept, read, never answer).
- :class:`SilentListener`: a TCP port that completes handshakes and never reads or answers.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

from tests.jaeger_sinks import HttpCollectorSink, Request, _handler_class, _Recorder

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
