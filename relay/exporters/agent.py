"""Jaeger agent output: compact-thrift ``Agent.emitBatch`` datagrams over UDP.

Each span is translated and encoded on its own (so one bad value drops one span, not the batch),
then spans are packed greedily into datagrams of at most ``max_packet_size`` bytes, each carrying
the same Process. The datagram bytes are exactly what the stock ``AgentClientUDP`` would write for
the same Batch (see ``jaeger_compat.emit_batch_message``), built without its shared buffer.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Sequence
from typing import Any, NoReturn

from opentelemetry.sdk.trace import ReadableSpan

from relay.exporters.base import Encoded, ExportError, Payload
from relay.exporters.encode import chunk_spans, encode_spans
from relay.exporters.jaeger_compat import EMIT_BATCH_HEADER, encode_compact
from relay.exporters.resolve import INTERVAL, TIMEOUT, Lookup, Resolver
from relay.exporters.translate import process_from_resource

UDP_PACKET_MAX_LENGTH = 65000

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


class JaegerAgentExporter:
    """UDP to a Jaeger agent. Called only from the worker thread.

    The socket is *connected*, so an ICMP port unreachable (no agent listening) surfaces as
    ECONNREFUSED on the send that caused it (checked at once with SO_ERROR) or on the next one:
    it is counted as ``connection_refused`` and retried instead of counting lost spans as sent.
    The host is looked up in the background (:class:`Resolver`), again every ``resolve_interval``
    seconds and after a failed send; a failed look-up keeps the last good address."""

    name = "jaeger_agent"

    def __init__(self, host: str, port: int, max_packet_size: int = UDP_PACKET_MAX_LENGTH, *,
                 resolve_interval: float = INTERVAL, resolve_timeout: float = TIMEOUT,
                 lookup: Lookup | None = None) -> None:
        self.host = host
        self.port = port
        self.max_packet_size = max_packet_size
        self._resolver = Resolver(host, port, socket.SOCK_DGRAM, lookup=lookup, interval=resolve_interval,
                                  timeout=resolve_timeout)
        self._socket: socket.socket | None = None
        self._address: tuple[Any, ...] | None = None

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
        """The socket, connected to the agent's current address."""
        infos = self._resolver.addresses()
        # IPv4 first, as the stock AgentClientUDP (AF_INET only) and Jaeger agents listening on
        # 0.0.0.0 expect, so that "localhost" never lands on an unbound ::1; IPv6 when only IPv6.
        family, _type, _proto, _name, address = min(infos, key=lambda info: info[0] != socket.AF_INET)
        if self._socket is None or self._socket.family != family:
            self._close_socket()
            self._socket = socket.socket(family, socket.SOCK_DGRAM)
            self._address = None
        if address != self._address:
            self._socket.connect(address)
            self._address = address
        return self._socket

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
        self._resolver.stale()  # look the host up again (in the background)
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
