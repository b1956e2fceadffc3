"""Spans of one resource -> encoded Jaeger spans -> chunks that fit one payload.

The one home of the per-span encode (:func:`encode_spans`) and of the chunking loop
(:func:`chunk_spans`), shared by the agent (UDP datagrams) and the collector (HTTP bodies).

It is also the one place that picks native or pure: with the compiled accelerator
(relay/native/_thrift.c) each span is written straight to thrift bytes; any span it does not
handle (an unusual value type, a value the protocol cannot carry) goes through the pure path,
``translate.span_to_jaeger`` + the thrift encoder, which stays the reference.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace.status import StatusCode

from relay import native
from relay.convert import RelaySpan
from relay.exporters.jaeger_compat import ENCODE_ERRORS, encode_binary, encode_compact
from relay.exporters.translate import _KIND_NAMES, json_value, span_to_jaeger

# (number of spans, total bytes of the encoded spans) -> size of the payload carrying them
SizeOf = Callable[[int, int], int]

# Read once at import: the extension, unless missing or TRACE_RELAY_PURE=1.
_NATIVE = native.load(os.environ)
BACKEND = "native" if _NATIVE is not None else "pure"
_STATUS_CODES = {StatusCode.OK: 1, StatusCode.ERROR: 2}
_COMPACT = {encode_compact: True, encode_binary: False}  # which protocol each pure encoder writes


def encode_spans_pure(spans: Sequence[ReadableSpan], encode: Any) -> tuple[list[bytes], int]:
    """Translate and encode each span on its own -> (encoded spans, number that failed)."""
    encoded: list[bytes] = []
    failed = 0
    for span in spans:
        try:
            encoded.append(encode(span_to_jaeger(span)))
        except ENCODE_ERRORS:
            failed += 1
    return encoded, failed


def encode_spans_native(spans: Sequence[ReadableSpan], compact: bool, module: Any) -> list[bytes | None]:
    """The extension's bytes per span; None where the pure path must decide."""
    # RelaySpan: the extension reads its fields from the instance dict instead of the properties.
    return module.encode_spans(spans, compact, json_value, _KIND_NAMES, _STATUS_CODES,  # type: ignore[no-any-return]
                               RelaySpan)


def encode_spans(spans: Sequence[ReadableSpan], encode: Any) -> tuple[list[bytes], int]:
    """Each span encoded on its own by ``encode`` (or its native twin) -> (encoded, failed)."""
    compact = _COMPACT.get(encode)
    if _NATIVE is None or compact is None:
        return encode_spans_pure(spans, encode)
    encoded: list[bytes] = []
    failed = 0
    for span, data in zip(spans, encode_spans_native(spans, compact, _NATIVE), strict=True):
        if data is None:
            more, bad = encode_spans_pure([span], encode)
            encoded += more
            failed += bad
        else:
            encoded.append(data)
    return encoded, failed


def chunk_spans(encoded: Sequence[bytes], size_of: SizeOf, limit: int) -> Iterator[list[bytes]]:
    """Greedy chunks whose payload size stays within ``limit``; a span too big alone goes alone."""
    chunk: list[bytes] = []
    size = 0
    for span in encoded:
        if chunk and size_of(len(chunk) + 1, size + len(span)) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(span)
        size += len(span)
    if chunk:
        yield chunk
