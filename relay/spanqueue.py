"""The bounded queue between the Export handlers and the one worker, counted in spans.

Policy, explicit: a request's spans are queued whole or not at all, and the caller is told which
(:meth:`SpanQueue.reserve` room before converting, then :meth:`SpanQueue.commit`, or
:meth:`SpanQueue.offer` for both at once). Spans count against the capacity from the moment
their room is reserved until the worker settles them (exported or dropped), so the spans being
converted and those the worker holds in hand are bounded too.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan

SpanBatch = list[ReadableSpan]  # the spans of one resource from one request


class SpanQueue:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[SpanBatch] = deque()
        self._queued = 0  # spans in _items
        self._outstanding = 0  # offered and not yet settled
        self._closed = False
        self._cond = threading.Condition(threading.Lock())

    def reserve(self, count: int) -> bool:
        """Room for ``count`` spans, taken before they are converted so that converted spans
        alive at once never exceed the capacity. False when there is no room, or closed."""
        with self._cond:
            if self._closed or self._outstanding + count > self.capacity:
                return False
            self._outstanding += count
            return True

    def commit(self, batches: Sequence[SpanBatch], reserved: int) -> bool:
        """Queue ``batches`` in room reserved earlier; the part of the reservation they do not
        use is freed. False once the queue is closed: the caller then cancels the reservation."""
        count = sum(len(batch) for batch in batches)
        with self._cond:
            if self._closed:
                return False
            self._outstanding -= reserved - count
            self._queued += count
            self._items.extend(batches)
            self._cond.notify()
            return True

    def cancel(self, reserved: int) -> None:
        """Free a reservation that will not be committed."""
        with self._cond:
            self._outstanding -= reserved

    def offer(self, batches: Sequence[SpanBatch]) -> bool:
        """Queue all of ``batches`` or none. False when full or closed."""
        count = sum(len(batch) for batch in batches)
        if not self.reserve(count):
            return False
        if self.commit(batches, count):
            return True
        self.cancel(count)
        return False

    def take(self, max_spans: int, linger: float, wait: float) -> list[SpanBatch] | None:
        """Up to ``max_spans`` spans (a larger batch is split).

        Waits up to ``wait`` seconds for the first batch, then up to ``linger`` more seconds for
        the batch to fill. Returns [] on a timeout with nothing queued and None once the queue is
        closed and empty.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout=wait):
                return []
            if not self._items:
                return None
            deadline = time.monotonic() + linger
            while self._queued < max_spans and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._cond.wait(timeout=remaining):
                    break
            return self._pop(max_spans)

    def settle(self, count: int) -> None:
        """The worker is done with ``count`` spans (exported or dropped): their room is free."""
        with self._cond:
            self._outstanding -= count

    def close(self) -> None:
        """Refuse further offers; the worker drains what is queued, then take() returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def drain(self) -> list[SpanBatch]:
        """Remove and return everything still queued (after the shutdown deadline)."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._queued = 0
            return items

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    @property
    def outstanding(self) -> int:
        with self._cond:
            return self._outstanding

    def _pop(self, max_spans: int) -> list[SpanBatch]:
        taken: list[SpanBatch] = []
        room = max_spans
        while self._items and room > 0:
            batch = self._items.popleft()
            if len(batch) > room:
                self._items.appendleft(batch[room:])
                batch = batch[:room]
            taken.append(batch)
            room -= len(batch)
        self._queued -= max_spans - room
        return taken
