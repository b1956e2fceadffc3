"""The admin HTTP endpoint: /metrics (Prometheus), /healthz (alive), /readyz (ready), and the
routes other stages mount (``routes={"/api/builds": handler}``; a path ending in "/" serves
everything under it).

Bounded: a fixed pool of ``max_connections`` threads serves connections; one more is answered
503 at once and closed, never queued behind slow clients. A connection carries one request
(no keep-alive), which must arrive whole within ``request_deadline`` seconds, so a slow-loris
client trickling its headers is cut off; writes are bounded by a socket timeout. IPv4 or IPv6
(``[::1]:8888``), GET and HEAD, gzip when the client accepts it.
"""

from __future__ import annotations

import gzip
import io
import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from relay.config import HostPort
from relay.deadline import Deadline, DeadlineReader
from relay.health import Health

logger = logging.getLogger(__name__)

MAX_CONNECTIONS = 16  # connections served at once
REQUEST_DEADLINE = 5.0  # seconds for a whole request to arrive
SOCKET_TIMEOUT = 5.0  # seconds for one write
TEXT = "text/plain; charset=utf-8"
_BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nbusy\n"


@dataclass(frozen=True)
class AdminRequest:
    path: str
    query: dict[str, list[str]]
    headers: Message


Reply = tuple[int, str, bytes]  # (status, content type, body)
Route = Callable[[AdminRequest], Reply]


class AdminServer:
    def __init__(self, endpoint: HostPort, registry: CollectorRegistry, health: Health,
                 routes: Mapping[str, Route] | None = None, *, max_connections: int = MAX_CONNECTIONS,
                 request_deadline: float = REQUEST_DEADLINE) -> None:
        self.routes: dict[str, Route] = {**_builtin_routes(registry, health), **(routes or {})}
        handler = _handler_class(self.routes, request_deadline)
        self._server = _BoundedServer(endpoint, handler, max_connections)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="trace-relay-admin", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def mount(self, path: str, route: Route) -> None:
        """Serve ``path`` (or, ending in "/", everything under it) with ``route``."""
        self.routes[path] = route

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which must be running
            self._server.shutdown()
        self._server.server_close()


def _builtin_routes(registry: CollectorRegistry, health: Health) -> dict[str, Route]:
    def metrics(request: AdminRequest) -> Reply:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return 200, content_type, encoder(registry)

    def probe(check: Callable[[], tuple[bool, str]]) -> Route:
        def answer(_request: AdminRequest) -> Reply:
            ok, why = check()
            return (200 if ok else 503), TEXT, f"{why}\n".encode()
        return answer

    return {"/metrics": metrics, "/healthz": probe(health.live), "/readyz": probe(health.ready)}


def find_route(routes: Mapping[str, Route], path: str) -> Route | None:
    """The exact path, else the longest mounted prefix ending in "/"."""
    if path in routes:
        return routes[path]
    prefixes = [key for key in routes if key.endswith("/") and path.startswith(key)]
    return routes[max(prefixes, key=len)] if prefixes else None


def accepts_gzip(accept_encoding: str) -> bool:
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class _BoundedServer(socketserver.TCPServer):
    allow_reuse_address = True

    def __init__(self, endpoint: HostPort, handler: type[BaseHTTPRequestHandler], max_connections: int) -> None:
        family = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        self.address_family = family
        self._slots = threading.BoundedSemaphore(max_connections)
        self._pool = ThreadPoolExecutor(max_connections, thread_name_prefix="trace-relay-admin-conn")
        super().__init__((endpoint.host, endpoint.port), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            _refuse(request)
            self.shutdown_request(request)
            return
        self._pool.submit(self._serve, request, client_address)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # one bad connection never stops the admin server
            logger.debug("admin: error serving %s", client_address, exc_info=True)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _refuse(request: socket.socket) -> None:
    try:
        request.settimeout(0)
        request.send(_BUSY)
    except OSError:
        pass  # it goes away either way


def _handler_class(routes: Mapping[str, Route], request_deadline: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "trace-relay"
        timeout = SOCKET_TIMEOUT

        def setup(self) -> None:
            super().setup()
            deadline = Deadline()
            deadline.start(request_deadline)
            self.rfile.close()  # the plain makefile(): every read goes through the deadline instead
            self.rfile = io.BufferedReader(DeadlineReader(self.connection, deadline))

        def do_GET(self) -> None:
            self._serve(with_body=True)

        def do_HEAD(self) -> None:
            self._serve(with_body=False)

        def _serve(self, *, with_body: bool) -> None:
            parts = urlsplit(self.path)
            route = find_route(routes, parts.path)
            if route is None:
                listed = ", ".join(sorted(routes))
                status, content_type, body = 404, TEXT, f"not found: try {listed}\n".encode()
            else:
                status, content_type, body = self._call(route, AdminRequest(
                    parts.path, parse_qs(parts.query), self.headers))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if accepts_gzip(self.headers.get("Accept-Encoding", "")):
                body = gzip.compress(body)
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept-Encoding")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        @staticmethod
        def _call(route: Route, request: AdminRequest) -> Reply:
            try:
                return route(request)
            except Exception:  # a route's bug is a 500, never a dead admin server
                logger.exception("admin: route %s failed", request.path)
                return 500, TEXT, b"internal error\n"

        def log_message(self, format: str, *args: object) -> None:
            logger.debug("admin: %s", format % args)

    return Handler
