"""The admin HTTP endpoint: /metrics (Prometheus), /healthz (alive), /readyz (ready), and any
extra ``routes`` (path -> callable returning status, content type and body), e.g. /builds."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from relay.config import HostPort
from relay.health import Health

logger = logging.getLogger(__name__)

Route = Callable[[], tuple[int, str, bytes]]


class AdminServer:
    def __init__(self, endpoint: HostPort, registry: CollectorRegistry, health: Health,
                 routes: Mapping[str, Route] | None = None) -> None:
        handler = _handler_class(registry, health, dict(routes or {}))
        self._server = ThreadingHTTPServer((endpoint.host, endpoint.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="trace-relay-admin",
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_class(registry: CollectorRegistry, health: Health,
                   routes: Mapping[str, Route]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "trace-relay"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._reply(200, encoder(registry), content_type)
            elif path == "/healthz":
                self._reply(200, b"ok\n")
            elif path == "/readyz":
                ready, why = health.ready()
                self._reply(200 if ready else 503, f"{why}\n".encode())
            elif path in routes:
                self._route(routes[path])
            else:
                self._reply(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _route(self, route: Route) -> None:
            try:
                status, content_type, body = route()
            except Exception:  # a report bug answers 500, never a traceback to the client
                logger.exception("admin: %s failed", self.path.split("?", 1)[0])
                status, content_type, body = 500, "text/plain; charset=utf-8", b"internal error\n"
            self._reply(status, body, content_type)

        def _reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            logger.debug("admin: %s", format % args)

    return Handler
