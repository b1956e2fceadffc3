"""One deadline for a whole exchange on a socket, not a timeout per socket operation.

A socket timeout bounds each ``recv``; a peer that sends one byte a second never trips it and can
hold the reader for as long as it likes. :class:`DeadlineReader` gives each ``recv`` only what is
left of one deadline, so that the whole read ends by then. Used by the Jaeger collector exporter
(reading the reply) and the admin server (reading a request).
"""

from __future__ import annotations

import io
import socket
import time
from dataclasses import dataclass


@dataclass
class Deadline:
    """A point on the monotonic clock; moved for each new exchange."""

    at: float = float("inf")

    def start(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left; raises TimeoutError once none are."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return left


class DeadlineReader(io.RawIOBase):
    """A raw, readable view of a socket whose every ``recv`` ends by ``deadline``.

    Wrap it in ``io.BufferedReader`` where ``socket.makefile("rb")`` would be used."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self._sock.settimeout(self._deadline.remaining())
        return self._sock.recv_into(buffer)
