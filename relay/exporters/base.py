"""The contract between the worker and an output.

An exporter works in two steps so that the worker can retry delivery without re-encoding and
without sending any part twice:

- ``encode(spans)`` turns the spans of ONE resource into payloads ready for the wire (a UDP
  datagram, an HTTP body), each carrying a known number of spans. Spans that can never be sent
  (bigger than any datagram, values the protocol cannot encode) are reported in ``dropped``.
- ``send(payload)`` delivers one payload or raises :class:`ExportError`.

Both are called only from the worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry.sdk.trace import ReadableSpan


@dataclass(frozen=True)
class Payload:
    data: bytes
    span_count: int


@dataclass
class Encoded:
    payloads: list[Payload] = field(default_factory=list)
    # reason -> number of spans that will never be sent ("too_large", "encode_error")
    dropped: dict[str, int] = field(default_factory=dict)


class ExportError(Exception):
    """One payload could not be delivered.

    ``reason`` is a short metric label ("connection", "timeout", "http_503", "resolve", ...);
    ``retryable`` says whether trying the same payload again may succeed.
    """

    def __init__(self, reason: str, detail: str, *, retryable: bool = True) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retryable = retryable


class Exporter(Protocol):
    name: str

    def encode(self, spans: Sequence[ReadableSpan]) -> Encoded:
        """Encode spans that all share one Resource."""
        ...

    def send(self, payload: Payload) -> None: ...

    def shutdown(self) -> None: ...
