"""DNS look-ups that cannot hold the worker: ``getaddrinfo`` on a background thread.

A look-up cannot be cancelled, so it runs on its own daemon thread (one at a time per host) and
the worker waits for it only as long as it chooses: a bound when it has no address yet, not at
all when it has one (the answer is picked up on a later call). The host is looked up again every
``interval`` seconds or after :meth:`Resolver.stale`; a failed look-up keeps the last good answer.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from relay.exporters.base import ExportError

logger = logging.getLogger(__name__)

Lookup = Callable[..., list[tuple[Any, ...]]]  # socket.getaddrinfo's shape
AddrInfo = tuple[Any, ...]  # (family, type, proto, canonname, sockaddr)
INTERVAL = 30.0  # seconds between look-ups of a host
TIMEOUT = 2.0  # longest wait for a look-up when there is no address yet


def _system_lookup(*args: Any, **kwargs: Any) -> list[AddrInfo]:
    return socket.getaddrinfo(*args, **kwargs)  # looked up at call time (tests may patch it)


class _Resolution:
    """One look-up on its own daemon thread."""

    def __init__(self, lookup: Lookup, host: str, port: int, kind: int) -> None:
        self.done = threading.Event()
        self.infos: list[AddrInfo] = []
        self.error = ""
        threading.Thread(target=self._run, args=(lookup, host, port, kind), name="trace-relay-resolve",
                         daemon=True).start()

    def _run(self, lookup: Lookup, host: str, port: int, kind: int) -> None:
        try:
            self.infos = lookup(host, port, type=kind)
        except (OSError, UnicodeError) as exc:
            self.error = str(exc)
        finally:
            self.done.set()


class Resolver:
    """The addresses of ``host:port``; called from one thread (the worker)."""

    def __init__(self, host: str, port: int, kind: int, *, lookup: Lookup | None = None,
                 interval: float = INTERVAL, timeout: float = TIMEOUT) -> None:
        self.host = host
        self.port = port
        self.interval = interval
        self.timeout = timeout
        self._kind = kind
        self._lookup = lookup or _system_lookup
        self._infos: list[AddrInfo] = []
        self._resolved_at = 0.0
        self._running: _Resolution | None = None
        self._error = "not looked up yet"

    def addresses(self, wait: float | None = None) -> list[AddrInfo]:
        """The current answer; raises ExportError("resolve") when there is none. Without an answer
        in hand, waits at most ``wait`` (default: the resolver's timeout) for the look-up."""
        due = not self._infos or time.monotonic() - self._resolved_at >= self.interval
        if self._running is None and due:
            self._running = _Resolution(self._lookup, self.host, self.port, self._kind)
        if self._running is not None:
            limit = 0.0 if self._infos else (self.timeout if wait is None else min(self.timeout, wait))
            if self._running.done.wait(limit):
                self._finished(self._running)
                self._running = None
            elif not self._infos:
                self._error = f"look-up took longer than {limit:g}s"
        if not self._infos:
            raise ExportError("resolve", f"cannot resolve {self.host}: {self._error}")
        return self._infos

    def stale(self) -> None:
        """Look the host up again on the next call (in the background if an answer is in hand)."""
        self._resolved_at = float("-inf")

    def _finished(self, resolution: _Resolution) -> None:
        self._resolved_at = time.monotonic()
        if resolution.infos:
            self._infos = resolution.infos
            return
        self._error = resolution.error or "no address"
        if self._infos:
            logger.warning("cannot resolve %s (%s); keeping its last address", self.host, self._error)
