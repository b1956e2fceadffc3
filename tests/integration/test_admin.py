"""The admin endpoint over real sockets: HEAD, gzip, IPv6, mounted routes, and bounds that a
slow-loris client or a crowd of idle connections cannot get past."""

from __future__ import annotations

import gzip
import http.client
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from relay.admin import MAX_CONNECTIONS, AdminRequest, AdminServer, Reply
from relay.config import HostPort
from relay.health import Health
from tests.conftest import RelayFactory
from tests.fakes import RecordingExporter


def _get(port: int, path: str, method: str = "GET", host: str = "127.0.0.1",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def test_head_answers_like_get_without_a_body(make_relay: RelayFactory) -> None:
    relay = make_relay(exporter=RecordingExporter())
    status, headers, body = _get(relay.admin_port, "/healthz", "HEAD")
    assert (status, body) == (200, b"")
    assert headers["content-length"] == str(len(b"ok\n"))


def test_metrics_are_gzipped_when_the_client_accepts_it(make_relay: RelayFactory) -> None:
    relay = make_relay(exporter=RecordingExporter())
    status, headers, body = _get(relay.admin_port, "/metrics", headers={"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers.get("content-encoding") == "gzip"
    assert b"trace_relay_queue_capacity 20000.0" in gzip.decompress(body)
    _, plain_headers, plain = _get(relay.admin_port, "/metrics")
    assert "content-encoding" not in plain_headers
    assert b"trace_relay_queue_capacity 20000.0" in plain


def test_the_admin_endpoint_listens_on_ipv6(make_relay: RelayFactory) -> None:
    relay = make_relay("--admin-endpoint", "[::1]:0", exporter=RecordingExporter())
    status, _, body = _get(relay.admin_port, "/readyz", host="::1")
    assert (status, body) == (200, b"ok\n")


@pytest.fixture
def admin() -> Iterator[AdminServer]:
    health = Health(lambda: True)
    health.serving()

    def builds(request: AdminRequest) -> Reply:
        return 200, "application/json", f'{{"path": "{request.path}", "q": {request.query}}}'.encode()

    server = AdminServer(HostPort("127.0.0.1", 0), CollectorRegistry(), health,
                         routes={"/api/builds": builds, "/builds/": builds})
    server.start()
    yield server
    server.stop()
    health.shutting_down()


def test_extra_routes_are_mounted_exactly_and_by_prefix(admin: AdminServer) -> None:
    assert _get(admin.port, "/api/builds?limit=2")[0] == 200
    status, headers, body = _get(admin.port, "/builds/abc")
    assert (status, headers["content-type"]) == (200, "application/json")
    assert b'"path": "/builds/abc"' in body
    assert _get(admin.port, "/api/builds/x")[0] == 404
    admin.mount("/late", lambda _request: (200, "text/plain", b"late\n"))
    assert _get(admin.port, "/late")[2] == b"late\n"


def test_a_slow_loris_client_is_cut_off_and_others_are_served(make_relay: RelayFactory) -> None:
    """Headers trickled one byte every 0.2 s: no socket timeout ever fires on them, the request
    deadline does. Meanwhile another client is served."""
    relay = make_relay(exporter=RecordingExporter())
    loris = socket.create_connection(("127.0.0.1", relay.admin_port), timeout=10)
    header = b"GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: " + b"a" * 1000
    cut_off = threading.Event()
    stop = threading.Event()

    def trickle() -> None:
        for byte in header:  # bounded: 1000+ bytes at 0.2 s = ~200 s at most, far past the deadline
            try:
                loris.send(bytes([byte]))
            except OSError:
                cut_off.set()
                return
            if stop.wait(0.2) or _closed_by_peer(loris):
                cut_off.set()
                return

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        assert _get(relay.admin_port, "/healthz")[0] == 200  # served while the loris is connected
        assert cut_off.wait(30)
    finally:
        stop.set()
        sender.join(10)
        loris.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


def test_idle_connections_beyond_the_bound_are_refused_at_once(make_relay: RelayFactory) -> None:
    relay = make_relay(exporter=RecordingExporter())
    extra = 10
    threads_before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", relay.admin_port), timeout=10)
            for _ in range(MAX_CONNECTIONS + extra)]
    try:
        refused = _busy_replies(idle, extra, timeout=10.0)
        assert len(refused) >= extra
        assert threading.active_count() - threads_before <= MAX_CONNECTIONS
    finally:
        for sock in idle:
            sock.close()


def _busy_replies(socks: list[socket.socket], wanted: int, timeout: float) -> list[bytes]:
    """The 503 answers that arrive on ``socks`` (until ``wanted`` of them, or ``timeout``)."""
    deadline = time.monotonic() + timeout
    waiting, busy = list(socks), []
    while waiting and len(busy) < wanted and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(waiting, [], [], left)
        for sock in ready:
            waiting.remove(sock)
            reply = sock.recv(1024)
            if reply.startswith(b"HTTP/1.0 503"):
                busy.append(reply)
    return busy
