"""Spans of one resource -> encoded Jaeger spans -> chunks that fit one payload.

The one home of the per-span encode (:func:`encode_spans`) and of the chunking loop
(:func:`chunk_spans`), shared by the agent (UDP datagrams) and the collector (HTTP bodies).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from relay.exporters.jaeger_compat import ENCODE_ERRORS
from relay.exporters.translate import span_to_jaeger

# (number of spans, total bytes of the encoded spans) -> size of the payload carrying them
SizeOf = Callable[[int, int], int]


def encode_spans(spans: Sequence[ReadableSpan], encode: Any) -> tuple[list[bytes], int]:
    """Translate and encode each span on its own -> (encoded spans, number that failed)."""
    encoded: list[bytes] = []
    failed = 0
    for span in spans:
        try:
            encoded.append(encode(span_to_jaeger(span)))
        except ENCODE_ERRORS:
            failed += 1
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
