"""Hand-written test doubles for the exporter side (no mocks)."""

from __future__ import annotations

import itertools
import threading
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
    """Catches two threads inside it at the same time (the exporter is not thread-safe).

    Every entry into ``encode``/``send`` registers the calling thread as inside; a thread entering
    while another is inside records an overlap: the set of thread ids inside together. To widen the
    window in which an overlap can happen, each call stays inside for up to ``hold`` seconds, cut
    short as soon as a second thread has been seen inside (so the broken case ends quickly).
    """

    name = "concurrency-detector"

    def __init__(self, hold: float = 0.002) -> None:
        super().__init__()
        self._hold = hold
        self._inside: dict[int, int] = {}  # thread id -> nesting depth
        self._guard = threading.Lock()
        self._company = threading.Event()
        self.overlaps: list[frozenset[int]] = []
        self.thread_ids: set[int] = set()

    def _enter(self) -> None:
        me = threading.get_ident()
        with self._guard:
            self.thread_ids.add(me)
            others = self._inside.keys() - {me}
            self._inside[me] = self._inside.get(me, 0) + 1
            if others:
                self.overlaps.append(frozenset({me, *others}))
                self._company.set()

    def _leave(self) -> None:
        me = threading.get_ident()
        with self._guard:
            self._inside[me] -= 1
            if not self._inside[me]:
                del self._inside[me]

    def _stay_inside(self) -> None:
        # Real elapsed time is the point here (the window for an overlap), ended early by company.
        self._company.wait(self._hold)

    def encode(self, spans: Sequence[ReadableSpan]) -> Encoded:
        self._enter()
        try:
            self._stay_inside()
            return super().encode(spans)
        finally:
            self._leave()

    def send(self, payload: Payload) -> None:
        self._enter()
        try:
            self._stay_inside()
            super().send(payload)
        finally:
            self._leave()
