"""The build insight metrics (issue 11's names, labels and bucket ranges) on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from relay.insights.classify import Build, Step

BUILD_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 5400, 7200)  # 1 s .. 2 h
STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800,
                3600)  # 10 ms .. 1 h


class BuildMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.builds = Counter("trace_relay_buildkit_builds_total", "BuildKit builds (server Solve spans).",
                              ["status"], registry=registry)
        self.build_duration = Histogram("trace_relay_buildkit_build_duration_seconds",
                                        "Duration of BuildKit builds (server Solve spans).", ["status"],
                                        buckets=BUILD_BUCKETS, registry=registry)
        self.steps = Counter("trace_relay_buildkit_steps_total",
                             "BuildKit steps (vertex spans; cached=true from `load cache:` spans, a lower "
                             "bound of BuildKit's own cached count).", ["instruction", "cached"],
                             registry=registry)
        self.step_duration = Histogram("trace_relay_buildkit_step_duration_seconds",
                                       "Duration of executed BuildKit steps.", ["instruction"],
                                       buckets=STEP_BUCKETS, registry=registry)
        self.step_failures = Counter("trace_relay_buildkit_step_failures_total",
                                     "Executed BuildKit steps with status ERROR.", ["instruction"],
                                     registry=registry)

        # Labelled children by label values: `.labels()` costs more than the increment itself, and
        # the label sets are bounded (instructions x cached), so these stay small.
        self._steps: dict[tuple[str, bool], Counter] = {}
        self._durations: dict[str, Histogram] = {}

    def build(self, build: Build) -> None:
        self.builds.labels(build.status).inc()
        self.build_duration.labels(build.status).observe(_seconds(build.start_ns, build.end_ns))

    def step(self, step: Step) -> None:
        key = (step.instruction, step.cached)
        counter = self._steps.get(key)
        if counter is None:
            counter = self._steps[key] = self.steps.labels(step.instruction, "true" if step.cached else "false")
        counter.inc()
        if step.cached:
            return
        duration = self._durations.get(step.instruction)
        if duration is None:
            duration = self._durations[step.instruction] = self.step_duration.labels(step.instruction)
        duration.observe(_seconds(step.start_ns, step.end_ns))
        if step.failed:
            self.step_failures.labels(step.instruction).inc()


def _seconds(start_ns: int, end_ns: int) -> float:
    return max(0, end_ns - start_ns) / 1e9
