"""The build observer: the worker hands it each batch; it updates the metrics and keeps bounded
per-build state for the report (relay/insights/report.py).

When a build is complete: when its server Solve span arrives. BuildKit ends Solve after its
steps, and buildkitd's batch processor sends a build's spans together, so by then the steps are
usually in; a build is listed from that moment. A *late* step (or exporter span) of a kept build
still joins it: the report is computed when it is read, so the build's figures simply grow.
Several Solve spans in one trace (a bake of several targets) make one build spanning them all.

Bounds: at most ``builds_kept`` complete builds (the oldest completed is forgotten first); steps
whose trace has no Solve yet wait in at most ``max_pending`` pending traces (the oldest pending
trace is forgotten first), so a Solve that never comes costs a bounded amount. Per trace: the
counts, the ``SLOWEST`` slowest executed steps and the first ``SLOWEST`` failed ones (names cut
to ``MAX_NAME`` characters), all exact whatever the trace's size; and the intervals of at most
``max_steps`` steps and exporter spans, packed in arrays, from which the time by kind and the
idle gaps are computed (over the first ``max_steps`` past that bound). The metrics count every
span.

Threads: the worker thread calls the observer; the admin server's threads call ``records()``.
Every access to the kept state holds ``_lock``; ``records()`` copies into frozen records, so
the report never reads a list the worker is appending to.
"""

from __future__ import annotations

import heapq
import threading
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan
from prometheus_client import CollectorRegistry

from relay.insights.classify import KINDS, Build, Export, Step, classify, kind
from relay.insights.metrics import BuildMetrics

MAX_STEPS = 1000  # intervals (steps and exporter spans) kept per trace
SLOWEST = 5  # slowest executed steps, and failed step names, kept per trace
_KIND_INDEX = {name: index for index, name in enumerate(KINDS)}


@dataclass(frozen=True)
class Record:
    """One complete build as the report reads it: a copy of the kept state, never shared."""

    build: Build
    executed: int
    cached: int
    slowest: tuple[tuple[str, int], ...]  # (name, duration ns), longest first (ties: earlier start)
    failed: tuple[str, ...]  # names of the first failed executed steps
    starts: array[int]  # the kept intervals (ns), steps and exporter spans,
    ends: array[int]
    kinds: bytes  # ... each with its index in KINDS


class TraceState:
    """What is kept of one trace: counts, the few names the report shows, and the intervals as
    packed arrays (17 bytes a step), not one object per step."""

    def __init__(self) -> None:
        self.build: Build | None = None
        self.executed = self.cached = 0
        self.slowest: list[tuple[int, int, str]] = []  # min-heap of (duration, -start, name)
        self.failed: list[str] = []
        self.starts: array[int] = array("q")
        self.ends: array[int] = array("q")
        self.kinds = bytearray()

    def add(self, item: Step | Export, max_steps: int) -> None:
        if isinstance(item, Step):
            self._count(item)
        if len(self.kinds) < max_steps:
            self.starts.append(item.start_ns)
            self.ends.append(item.end_ns)
            self.kinds.append(_KIND_INDEX[kind(item)])

    def _count(self, step: Step) -> None:
        if step.cached:
            self.cached += 1
            return
        self.executed += 1
        entry = (step.end_ns - step.start_ns, -step.start_ns, step.name)
        if len(self.slowest) < SLOWEST:
            heapq.heappush(self.slowest, entry)
        elif entry > self.slowest[0]:
            heapq.heapreplace(self.slowest, entry)
        if step.failed and len(self.failed) < SLOWEST:
            self.failed.append(step.name)

    def record(self, build: Build) -> Record:
        slowest = tuple((name, duration) for duration, _, name in sorted(self.slowest, reverse=True))
        return Record(build, self.executed, self.cached, slowest, tuple(self.failed), array("q", self.starts),
                      array("q", self.ends), bytes(self.kinds))


class BuildObserver:
    def __init__(self, registry: CollectorRegistry, *, builds_kept: int = 100,
                 max_pending: int | None = None, max_steps: int = MAX_STEPS) -> None:
        self.metrics = BuildMetrics(registry)
        self._builds_kept = builds_kept
        self._max_pending = max_pending if max_pending is not None else builds_kept
        self._max_steps = max_steps
        self._lock = threading.Lock()
        self._builds: OrderedDict[str, TraceState] = OrderedDict()
        self._pending: OrderedDict[str, TraceState] = OrderedDict()

    def __call__(self, spans: Sequence[ReadableSpan]) -> None:
        items = [item for item in map(classify, spans) if item is not None]
        for item in items:
            if isinstance(item, Build):
                self.metrics.build(item)
            elif isinstance(item, Step):
                self.metrics.step(item)
        with self._lock:  # once per batch: the admin threads wait at most one batch
            for item in items:
                if isinstance(item, Build):
                    self._add_build(item)
                else:
                    self._add_step(item)

    def records(self) -> list[Record]:
        """Complete builds, most recent (latest start) first; safe from any thread."""
        with self._lock:
            records = [state.record(state.build) for state in self._builds.values() if state.build]
        return sorted(records, key=lambda r: r.build.start_ns, reverse=True)

    def sizes(self) -> tuple[int, int]:
        with self._lock:
            return len(self._builds), len(self._pending)

    def _add_build(self, build: Build) -> None:  # holding _lock
        state = self._builds.get(build.trace_id) or self._pending.pop(build.trace_id, None)
        state = state or TraceState()
        state.build = _merge(state.build, build)
        self._builds[build.trace_id] = state
        while len(self._builds) > self._builds_kept:
            self._builds.popitem(last=False)

    def _add_step(self, item: Step | Export) -> None:  # holding _lock
        state = self._builds.get(item.trace_id)
        if state is None:
            state = self._pending.get(item.trace_id)
            if state is None:
                state = self._pending[item.trace_id] = TraceState()
                while len(self._pending) > self._max_pending:
                    self._pending.popitem(last=False)
        state.add(item, self._max_steps)


def _merge(old: Build | None, new: Build) -> Build:
    """Several Solve spans in one trace (bake with several targets) make one build."""
    if old is None:
        return new
    return Build(new.trace_id, old.failed or new.failed, min(old.start_ns, new.start_ns),
                 max(old.end_ns, new.end_ns))
