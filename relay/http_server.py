"""A bounded HTTP/1.1 server on the standard library's: a fixed pool of connection threads (one
more connection is answered 503 at once), one deadline per request kept by a reaper thread (a
client trickling one byte a second is cut off at it, not held forever), TLS handshakes in the
connection's thread under the same deadline, and a shutdown that lets in-flight requests finish.
It knows nothing of OTLP: ``relay.receiver_http`` gives it its handler."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

logger = logging.getLogger(__name__)

_REAPER_TICK = 0.1


@dataclass(frozen=True)
class HttpSettings:
    max_body: int  # bytes, after decompression too
    read_timeout: float  # seconds for one request: waiting for it, its headers and its body
    max_connections: int  # open connections, one thread each
    tls: ssl.SSLContext | None = None


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


class PooledServer(HTTPServer):
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
                with self._open_lock:  # the TLS socket now owns the descriptor
                    self._open.discard(request)
                    self._open.add(conn)
            self.finish_request(conn, client_address)
        except (OSError, ssl.SSLError) as exc:
            logger.debug("http: connection from %s ended: %s", client_address[0], exc)
        except Exception:  # the boundary: one connection's failure never reaches the others
            logger.exception("http: unexpected error serving %s", client_address[0])
        finally:
            self.reaper.set(request, None)
            self.reaper.set(conn, None)
            with self._open_lock:
                self._open.discard(request)
                self._open.discard(conn)
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
