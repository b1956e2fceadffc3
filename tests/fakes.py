"""Hand-written test doubles for the exporter side (no mocks)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan

from relay.exporters.base import Encoded, ExportError, Payload


class RecordingExporter:
    """Keeps what it is asked to send; can be scripted to fail sends.

    ``failures`` is consumed one per send attempt: an ExportError is raised, None succeeds.
    """

    name = "recording"

    def __init__(self, failures: Sequence[ExportError | None] = ()) -> None:
        self._encoded: dict[int, list[ReadableSpan]] = {}
        self._keys = itertools.count()
        self._failures = list(failures)
        self.exported: list[list[ReadableSpan]] = []
        self.attempts = 0
        self.shut_down = False
        self.cond = threading.Condition()

    def encode(self, spans: Sequence[ReadableSpan]) -> Encoded:
        key = next(self._keys)
        self._encoded[key] = list(spans)
        return Encoded([Payload(key.to_bytes(8, "big"), len(spans))])

    def send(self, payload: Payload) -> None:
        self.attempts += 1
        if self._failures:
            failure = self._failures.pop(0)
            if failure is not None:
                raise failure
        with self.cond:
            self.exported.append(self._encoded.pop(int.from_bytes(payload.data, "big")))
            self.cond.notify_all()

    def shutdown(self) -> None:
        self.shut_down = True

    def spans(self) -> list[ReadableSpan]:
        with self.cond:
            return [span for batch in self.exported for span in batch]

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: sum(map(len, self.exported)) >= count, timeout)


class GatedExporter(RecordingExporter):
    """Holds the worker inside send() until ``release`` is set: a Jaeger that does not answer,
    or a way to fill the queue on purpose. ``entered`` is set once a send has begun."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def send(self, payload: Payload) -> None:
        self.entered.set()
        self.release.wait(60)
        super().send(payload)


class ConcurrencyDetector(RecordingExporter):
    """Fails the guarantee when two threads are ever inside it: records overlapping entries and
    the ids of every thread that called it. ``hold`` widens the window in which an overlap shows."""

    name = "concurrency-detector"

    def __init__(self, hold: float = 0.0005) -> None:
        super().__init__()
        self._hold = hold
        self._inside = 0
        self._guard = threading.Lock()
        self.overlaps = 0
        self.thread_ids: set[int] = set()

    def _enter(self) -> None:
        with self._guard:
            self._inside += 1
            if self._inside > 1:
                self.overlaps += 1
            self.thread_ids.add(threading.get_ident())

    def _leave(self) -> None:
        with self._guard:
            self._inside -= 1

    def encode(self, spans: Sequence[ReadableSpan]) -> Encoded:
        self._enter()
        try:
            time.sleep(self._hold)
            return super().encode(spans)
        finally:
            self._leave()

    def send(self, payload: Payload) -> None:
        self._enter()
        try:
            time.sleep(self._hold)
            super().send(payload)
        finally:
            self._leave()
