"""The build observer: the worker hands it each batch; it updates the metrics and keeps bounded
per-build state for the report.

A build is *complete* when its server Solve span arrives (BuildKit ends Solve after its steps).
A step that arrives later still joins its build while that build is kept; a step whose trace has
no kept build waits in a bounded pending set (the oldest pending trace is forgotten first), so a
Solve span that never comes costs at most ``max_pending`` traces. At most ``builds_kept`` builds
and ``max_steps`` step records per trace are kept; counts stay exact past that bound.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import ReadableSpan
from prometheus_client import CollectorRegistry

from relay.insights.classify import Build, Step, classify
from relay.insights.metrics import BuildMetrics

MAX_STEPS = 1000


@dataclass
class TraceState:
    trace_id: str
    build: Build | None = None
    steps: list[Step] = field(default_factory=list)
    executed: int = 0
    cached: int = 0

    def add(self, step: Step, max_steps: int) -> None:
        if step.cached:
            self.cached += 1
        else:
            self.executed += 1
        if len(self.steps) < max_steps:
            self.steps.append(step)


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
        for span in spans:
            item = classify(span)
            if isinstance(item, Build):
                self.metrics.build(item)
                self._add_build(item)
            elif isinstance(item, Step):
                self.metrics.step(item)
                self._add_step(item)

    def builds(self) -> list[TraceState]:
        """Complete builds, most recent (latest start) first."""
        with self._lock:
            states = list(self._builds.values())
        return sorted(states, key=lambda s: s.build.start_ns if s.build else 0, reverse=True)

    def sizes(self) -> tuple[int, int]:
        with self._lock:
            return len(self._builds), len(self._pending)

    def _add_build(self, build: Build) -> None:
        with self._lock:
            state = self._builds.get(build.trace_id) or self._pending.pop(build.trace_id, None)
            state = state or TraceState(build.trace_id)
            state.build = _merge(state.build, build)
            self._builds[build.trace_id] = state
            while len(self._builds) > self._builds_kept:
                self._builds.popitem(last=False)

    def _add_step(self, step: Step) -> None:
        with self._lock:
            state = self._builds.get(step.trace_id)
            if state is None:
                state = self._pending.setdefault(step.trace_id, TraceState(step.trace_id))
                while len(self._pending) > self._max_pending:
                    self._pending.popitem(last=False)
            state.add(step, self._max_steps)


def _merge(old: Build | None, new: Build) -> Build:
    """Several Solve spans in one trace (bake with several targets) make one build."""
    if old is None:
        return new
    return Build(new.trace_id, old.failed or new.failed, min(old.start_ns, new.start_ns),
                 max(old.end_ns, new.end_ns))
