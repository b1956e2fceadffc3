"""Jaeger agent output: compact-thrift ``Agent.emitBatch`` datagrams over UDP.

Each span is translated and encoded on its own (so one bad value drops one span, not the batch),
then spans are packed greedily into datagrams of at most ``max_packet_size`` bytes, each carrying
the same Process. The datagram bytes are exactly what the stock ``AgentClientUDP`` would write for
the same Batch (see ``jaeger_compat.emit_batch_message``), built without its shared buffer.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from opentelemetry.sdk.trace import ReadableSpan

from relay.exporters.base import Encoded, ExportError, Payload
from relay.exporters.encode import chunk_spans, encode_spans
from relay.exporters.jaeger_compat import EMIT_BATCH_HEADER, encode_compact
from relay.exporters.translate import process_from_resource

logger = logging.getLogger(__name__)

UDP_PACKET_MAX_LENGTH = 65000
RESOLVE_INTERVAL = 30.0  # seconds between DNS look-ups of the agent host
RESOLVE_TIMEOUT = 2.0  # longest the worker waits for a look-up when it has no address yet

Lookup = Callable[..., list[tuple[Any, ...]]]  # socket.getaddrinfo's shape

# emitBatch_args { 1: Batch { 1: Process ...; 2: list<Span> ... } }: compact field headers.
_ARGS_BATCH_FIELD = b"\x1c"  # field delta 1, type STRUCT
_BATCH_PROCESS_FIELD = b"\x1c"  # field delta 1, type STRUCT
_BATCH_SPANS_FIELD = b"\x19"  # field delta 1, type LIST
_STOP = b"\x00"
_STRUCT_ELEMENT = 0x0C


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def compact_list_header(count: int) -> bytes:
    """Compact-protocol header of a list of ``count`` structs."""
    if count < 15:
        return bytes([(count << 4) | _STRUCT_ELEMENT])
    return bytes([0xF0 | _STRUCT_ELEMENT]) + _varint(count)


def emit_batch_datagram(process: bytes, spans: Sequence[bytes]) -> bytes:
    """An emitBatch message from an encoded Process and encoded Spans (compact protocol)."""
    return b"".join((EMIT_BATCH_HEADER, _ARGS_BATCH_FIELD, _BATCH_PROCESS_FIELD, process,
                     _BATCH_SPANS_FIELD, compact_list_header(len(spans)), *spans, _STOP, _STOP))


def _add(dropped: dict[str, int], reason: str, count: int) -> None:
    if count:
        dropped[reason] = dropped.get(reason, 0) + count


class _Resolution:
    """One ``getaddrinfo`` on its own daemon thread, so that a slow DNS server holds the worker no
    longer than it chooses to wait. At most one runs at a time (a look-up cannot be cancelled)."""

    def __init__(self, lookup: Lookup, host: str, port: int) -> None:
        self.done = threading.Event()
        self.infos: list[tuple[Any, ...]] = []
        self.error = ""
        threading.Thread(target=self._run, args=(lookup, host, port), name="trace-relay-resolve",
                         daemon=True).start()

    def _run(self, lookup: Lookup, host: str, port: int) -> None:
        try:
            self.infos = lookup(host, port, type=socket.SOCK_DGRAM)
        except (OSError, UnicodeError) as exc:
            self.error = str(exc)
        finally:
            self.done.set()


class JaegerAgentExporter:
    """UDP to a Jaeger agent. Called only from the worker thread.

    The socket is *connected*, so an ICMP port unreachable (no agent listening) surfaces as
    ECONNREFUSED on the send that caused it (checked at once with SO_ERROR) or on the next one:
    it is counted as ``connection_refused`` and retried instead of counting lost spans as sent.
    The host is looked up again every ``resolve_interval`` seconds in the background; a failed
    look-up keeps the last good address."""

    name = "jaeger_agent"

    def __init__(self, host: str, port: int, max_packet_size: int = UDP_PACKET_MAX_LENGTH, *,
                 resolve_interval: float = RESOLVE_INTERVAL, resolve_timeout: float = RESOLVE_TIMEOUT,
                 lookup: Lookup = socket.getaddrinfo) -> None:
        self.host = host
        self.port = port
        self.max_packet_size = max_packet_size
        self.resolve_interval = resolve_interval
        self.resolve_timeout = resolve_timeout
        self._lookup = lookup
        self._socket: socket.socket | None = None
        self._address: tuple[Any, ...] | None = None
        self._resolved_at = 0.0
        self._resolution: _Resolution | None = None
        self._resolve_error = "not looked up yet"

    def encode(self, spans: Sequence[ReadableSpan]) -> Encoded:
        result = Encoded()
        if not spans:
            return result
        process = encode_compact(process_from_resource(spans[0].resource))
        encoded, failed = encode_spans(spans, encode_compact)
        _add(result.dropped, "encode_error", failed)
        fixed = len(EMIT_BATCH_HEADER) + 3 + len(process) + 2  # all but the list header and spans

        def size_of(count: int, total: int) -> int:
            return fixed + len(compact_list_header(count)) + total

        fits = [span for span in encoded if size_of(1, len(span)) <= self.max_packet_size]
        _add(result.dropped, "too_large", len(encoded) - len(fits))
        for chunk in chunk_spans(fits, size_of, self.max_packet_size):
            result.payloads.append(Payload(emit_batch_datagram(process, chunk), len(chunk)))
        return result

    def _connected(self) -> socket.socket:
        """The socket connected to the agent's current address; looks the host up when due."""
        due = self._address is None or time.monotonic() - self._resolved_at >= self.resolve_interval
        if self._resolution is None and due:
            self._resolution = _Resolution(self._lookup, self.host, self.port)
        if self._resolution is not None:
            # With an address in hand the look-up runs in the background; without one, wait a bound.
            if self._resolution.done.wait(0 if self._address is not None else self.resolve_timeout):
                self._resolved(self._resolution)
                self._resolution = None
            elif self._address is None:
                self._resolve_error = f"look-up took longer than {self.resolve_timeout:g}s"
        if self._address is None or self._socket is None:
            raise ExportError("resolve", f"cannot resolve {self.host}: {self._resolve_error}")
        return self._socket

    def _resolved(self, resolution: _Resolution) -> None:
        self._resolved_at = time.monotonic()
        if not resolution.infos:
            self._resolve_error = resolution.error or "no address"
            if self._address is not None:
                logger.warning("cannot resolve Jaeger agent %s (%s); keeping %s", self.host,
                               self._resolve_error, self._address[0])
            return
        # IPv4 first, as the stock AgentClientUDP (AF_INET only) and Jaeger agents listening on
        # 0.0.0.0 expect, so that "localhost" never lands on an unbound ::1; IPv6 when only IPv6.
        family, _type, _proto, _name, address = min(resolution.infos, key=lambda info: info[0] != socket.AF_INET)
        if self._socket is None or self._socket.family != family:
            self._close_socket()
            self._socket = socket.socket(family, socket.SOCK_DGRAM)
            self._address = None
        if address != self._address:
            self._socket.connect(address)
            self._address = address

    def send(self, payload: Payload) -> None:
        try:
            sock = self._connected()
            sock.send(payload.data)
            # On loopback (and often beyond) the ICMP answer is already back: check this datagram.
            pending = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError as exc:
            self._failed(exc.errno or 0, str(exc))
        if pending:
            self._failed(pending, os.strerror(pending))

    def _failed(self, code: int, detail: str) -> NoReturn:
        self._resolved_at = float("-inf")  # look the host up again (in the background)
        where = f"UDP send to {self.host}:{self.port}"
        if code == errno.ECONNREFUSED:
            raise ExportError("connection_refused", f"{where}: no Jaeger agent listening ({detail})")
        raise ExportError("connection", f"{where}: {detail}")

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def shutdown(self) -> None:
        self._close_socket()
        self._address = None
