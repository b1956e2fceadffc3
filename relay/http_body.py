"""Reading an HTTP/1.1 request body within a limit: Content-Length or chunked, gzip inflated with
a bound (a bomb stops at the limit), the body of an early answer drained. Errors are
:class:`HttpError`, which the handler writes as a ``google.rpc.Status``."""

from __future__ import annotations

import contextlib
import zlib
from http.server import BaseHTTPRequestHandler

from google.rpc import code_pb2

_MAX_CHUNK_LINE = 1024
_DRAIN_PIECE = 64 * 1024


class HttpError(Exception):
    """A request answered before it reached the core; the connection is closed after it."""

    def __init__(self, status: int, code: int, message: str, retry_after: int = 0, *, counted: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after
        self.counted = counted  # already in the request metric (by the core)


def discard_body(handler: BaseHTTPRequestHandler, limit: int) -> None:
    length_text = handler.headers.get("Content-Length", "").strip()
    if handler.headers.get("Transfer-Encoding") or not length_text.isdigit() or int(length_text) > limit:
        return
    remaining = int(length_text)
    with contextlib.suppress(OSError):
        while remaining > 0:
            piece = handler.rfile.read(min(remaining, _DRAIN_PIECE))
            if not piece:
                return
            remaining -= len(piece)


def announced_length(handler: BaseHTTPRequestHandler, limit: int) -> int:
    """The body's Content-Length, or ``limit`` when it is chunked (or malformed: read_body says so)."""
    text = handler.headers.get("Content-Length", "0").strip()
    if handler.headers.get("Transfer-Encoding") or not text.isdigit():
        return limit
    return int(text)


def read_body(handler: BaseHTTPRequestHandler, limit: int) -> bytes:
    """The request body, by Content-Length or chunked; 413 past ``limit`` bytes, 408 when cut off."""
    transfer = handler.headers.get("Transfer-Encoding", "").strip().lower()
    if transfer == "chunked":
        return _read_chunked(handler, limit)
    if transfer:
        raise HttpError(400, code_pb2.INVALID_ARGUMENT, f"unsupported Transfer-Encoding {transfer!r}")
    length_text = handler.headers.get("Content-Length", "0").strip()
    if not length_text.isdigit():
        raise HttpError(400, code_pb2.INVALID_ARGUMENT, f"invalid Content-Length {length_text[:32]!r}")
    length = int(length_text)
    if length > limit:
        raise HttpError(413, code_pb2.RESOURCE_EXHAUSTED, too_large(limit))
    return _read_exactly(handler, length)


def _read_exactly(handler: BaseHTTPRequestHandler, length: int) -> bytes:
    data = handler.rfile.read(length)
    if len(data) < length:
        raise HttpError(408, code_pb2.DEADLINE_EXCEEDED, "the request body was not received in time")
    return data


def _read_chunked(handler: BaseHTTPRequestHandler, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = handler.rfile.readline(_MAX_CHUNK_LINE)
        if not line.endswith(b"\n"):
            raise HttpError(408 if not line else 400, code_pb2.INVALID_ARGUMENT, "malformed or cut-off chunked body")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError(400, code_pb2.INVALID_ARGUMENT, "malformed chunk size") from None
        if size == 0:
            _skip_trailers(handler)
            return b"".join(parts)
        total += size
        if total > limit:
            raise HttpError(413, code_pb2.RESOURCE_EXHAUSTED, too_large(limit))
        parts.append(_read_exactly(handler, size))
        if handler.rfile.readline(_MAX_CHUNK_LINE).strip():
            raise HttpError(400, code_pb2.INVALID_ARGUMENT, "malformed chunked body")


def _skip_trailers(handler: BaseHTTPRequestHandler) -> None:
    for _ in range(100):
        line = handler.rfile.readline(_MAX_CHUNK_LINE)
        if line in (b"\r\n", b"\n", b""):
            return
    raise HttpError(400, code_pb2.INVALID_ARGUMENT, "too many trailers")


def decode_content(body: bytes, content_encoding: str, limit: int) -> bytes:
    """gzip bodies decompressed with a bound: a bomb stops at ``limit`` bytes of output (413)."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise HttpError(400, code_pb2.INVALID_ARGUMENT, f"unsupported Content-Encoding {encoding[:32]!r}: use gzip")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise HttpError(400, code_pb2.INVALID_ARGUMENT, f"not a valid gzip body: {exc}") from None
    if len(data) > limit:
        raise HttpError(413, code_pb2.RESOURCE_EXHAUSTED, too_large(limit, " after decompression"))
    if not inflater.eof:
        raise HttpError(400, code_pb2.INVALID_ARGUMENT, "not a valid gzip body: truncated")
    return data


def too_large(limit: int, where: str = "") -> str:
    return f"request body larger than {limit // (1024 * 1024)} MiB{where} (--max-recv-msg-size-mib)"
