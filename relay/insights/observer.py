"""The build observer: the worker hands it each batch; it updates the metrics and keeps bounded
per-build state for the report (relay/insights/report.py).

When a build is complete: when its server Solve span arrives. BuildKit ends Solve after its
steps, and buildkitd's batch processor sends a build's spans together, so by then the steps are
usually in; a build is listed from that moment. A *late* step (or exporter span) of a kept build
still joins it: the report is computed when it is read, so the build's figures simply grow.
Several Solve spans in one trace (a bake of several targets) make one build spanning them all.

Bounds: at most ``builds_kept`` complete builds (the oldest completed is forgotten first); steps
whose trace has no Solve yet wait in at most ``max_pending`` pending traces (the oldest pending
trace is forgotten first), so a Solve that never comes costs a bounded amount; at most
``max_steps`` step records (and as many exporter spans) per trace, names cut to ``MAX_NAME``
characters. The executed/cached counts stay exact past ``max_steps``; the slowest steps and the
time by kind are then computed over the first ``max_steps`` steps. The metrics count every span.

Threads: the worker thread calls the observer; the admin server's threads call ``records()``.
Every access to the kept state holds ``_lock``; ``records()`` copies into frozen records, so
the report never reads a list the worker is appending to.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import ReadableSpan
from prometheus_client import CollectorRegistry

from relay.insights.classify import Build, Export, Step, classify
from relay.insights.metrics import BuildMetrics

MAX_STEPS = 1000


@dataclass(frozen=True)
class Record:
    """One complete build as the report reads it: an immutable copy of the kept state."""

    build: Build
    steps: tuple[Step, ...]
    exports: tuple[Export, ...]
    executed: int
    cached: int


@dataclass
class TraceState:
    trace_id: str
    build: Build | None = None
    steps: list[Step] = field(default_factory=list)
    exports: list[Export] = field(default_factory=list)
    executed: int = 0
    cached: int = 0

    def add(self, item: Step | Export, max_steps: int) -> None:
        if isinstance(item, Export):
            if len(self.exports) < max_steps:
                self.exports.append(item)
            return
        if item.cached:
            self.cached += 1
        else:
            self.executed += 1
        if len(self.steps) < max_steps:
            self.steps.append(item)

    def record(self, build: Build) -> Record:
        return Record(build, tuple(self.steps), tuple(self.exports), self.executed, self.cached)


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
        state = state or TraceState(build.trace_id)
        state.build = _merge(state.build, build)
        self._builds[build.trace_id] = state
        while len(self._builds) > self._builds_kept:
            self._builds.popitem(last=False)

    def _add_step(self, item: Step | Export) -> None:  # holding _lock
        state = self._builds.get(item.trace_id)
        if state is None:
            state = self._pending.get(item.trace_id)
            if state is None:
                state = self._pending[item.trace_id] = TraceState(item.trace_id)
                while len(self._pending) > self._max_pending:
                    self._pending.popitem(last=False)
        state.add(item, self._max_steps)


def _merge(old: Build | None, new: Build) -> Build:
    """Several Solve spans in one trace (bake with several targets) make one build."""
    if old is None:
        return new
    return Build(new.trace_id, old.failed or new.failed, min(old.start_ns, new.start_ns),
                 max(old.end_ns, new.end_ns))
