"""Jaeger agent output: compact-thrift ``Agent.emitBatch`` datagrams over UDP.

Each span is translated and encoded on its own (so one bad value drops one span, not the batch),
then spans are packed greedily into datagrams of at most ``max_packet_size`` bytes, each carrying
the same Process. The datagram bytes are exactly what the stock ``AgentClientUDP`` would write for
the same Batch (see ``jaeger_compat.emit_batch_message``), built without its shared buffer.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from relay.exporters.base import Encoded, ExportError, Payload
from relay.exporters.encode import chunk_spans, encode_spans
from relay.exporters.jaeger_compat import EMIT_BATCH_HEADER, encode_compact
from relay.exporters.translate import process_from_resource

UDP_PACKET_MAX_LENGTH = 65000
RESOLVE_INTERVAL = 30.0  # seconds between DNS look-ups of the agent host

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
    """UDP to a Jaeger agent. Called only from the worker thread."""

    name = "jaeger_agent"

    def __init__(self, host: str, port: int, max_packet_size: int = UDP_PACKET_MAX_LENGTH) -> None:
        self.host = host
        self.port = port
        self.max_packet_size = max_packet_size
        self._socket: socket.socket | None = None
        self._address: tuple[Any, ...] | None = None
        self._resolved_at = 0.0

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

    def _resolve(self) -> tuple[Any, ...]:
        now = time.monotonic()
        if self._address is not None and now - self._resolved_at < RESOLVE_INTERVAL:
            return self._address
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise ExportError("resolve", f"cannot resolve {self.host}: {exc}") from exc
        # IPv4 first, as the stock AgentClientUDP (AF_INET only) and Jaeger agents listening on
        # 0.0.0.0 expect, so that "localhost" never lands on an unbound ::1; IPv6 when only IPv6.
        family, _type, _proto, _name, address = min(infos, key=lambda info: info[0] != socket.AF_INET)
        if self._socket is None or self._socket.family != family:
            self._close_socket()
            self._socket = socket.socket(family, socket.SOCK_DGRAM)
        self._address, self._resolved_at = address, now
        return address

    def send(self, payload: Payload) -> None:
        address = self._resolve()
        assert self._socket is not None  # set by _resolve  # noqa: S101
        try:
            self._socket.sendto(payload.data, address)
        except OSError as exc:
            self._address = None  # look the host up again next time
            raise ExportError("connection", f"UDP send to {self.host}:{self.port}: {exc}") from exc

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def shutdown(self) -> None:
        self._close_socket()
        self._address = None
