"""The measurements: one phase = one load run against one server, measured from outside."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.load import load_process_result, start_load_process
from bench.procstat import CpuWindow, memory_mib
from bench.servers import ServerProcess

SATURATION_CONCURRENCY = 64
FIXED_CONCURRENCY = 32
FIXED_RATE = 10_000.0
QUEUE_SIZE = 20_000


@dataclass(frozen=True)
class Timing:
    warmup: float
    duration: float


@dataclass
class PhaseResult:
    server: str
    output: str  # agent (UDP) or collector (HTTP)
    profile: str
    phase: str  # saturation, fixed, sweep, queue_full
    offered: float | None  # spans/s, None = closed loop
    accepted_per_s: float = 0.0
    delivered_per_s: float = 0.0
    refused_per_s: float = 0.0
    cpu_percent: float = 0.0  # of one core
    rss_mib: float = 0.0
    hwm_mib: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    accepted_total: int = 0
    lost: int = 0  # answered OK but never delivered
    queue_size: float | None = None
    errors: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_phase(server: ServerProcess, output: str, profile: str, phase: str, timing: Timing, *,
              concurrency: int, rate: float | None = None) -> PhaseResult:
    """Load ``server`` for warmup + duration; measure delivery, CPU and memory in the window."""
    result = PhaseResult(server.kind, output, profile, phase, rate)
    before = server.delivered()
    load = start_load_process(server.target, profile=profile, duration=timing.duration,
                              warmup=timing.warmup, concurrency=concurrency, rate=rate)
    time.sleep(timing.warmup)
    cpu = CpuWindow(server.pid)
    delivered_from, started = server.delivered(), time.monotonic()
    cpu.start()
    time.sleep(timing.duration)
    result.cpu_percent = cpu.stop()
    result.delivered_per_s = (server.delivered() - delivered_from) / (time.monotonic() - started)
    result.rss_mib, result.hwm_mib = memory_mib(server.pid)
    if phase == "queue_full":
        result.queue_size = server.metric("trace_relay_queue_size")
    loaded = load_process_result(load, timeout=timing.duration + 60)
    result.accepted_per_s = loaded.accepted_per_s
    result.refused_per_s = loaded.refused_spans / loaded.elapsed
    result.latency_p50_ms, result.latency_p99_ms = loaded.latency_p50_ms, loaded.latency_p99_ms
    result.accepted_total, result.errors = loaded.total_ok_spans, loaded.errors
    if phase != "queue_full":
        arrived = server.wait_drained(loaded.total_ok_spans, before, timeout=30)
        result.lost = max(0, loaded.total_ok_spans - arrived)
    return result


def server_phases(kind: str, output: str, timing: Timing, fixed: Timing) -> list[PhaseResult]:
    """Saturation (both profiles) and the fixed 10,000 spans/s phase, on one server instance."""
    results = []
    with ServerProcess(kind, output) as server:
        profiles = ("standard", "buildkit") if output == "agent" else ("standard",)
        for profile in profiles:
            results.append(run_phase(server, output, profile, "saturation", timing,
                                     concurrency=SATURATION_CONCURRENCY))
        if output == "agent":
            results.append(run_phase(server, output, "standard", "fixed", fixed,
                                     concurrency=FIXED_CONCURRENCY, rate=FIXED_RATE))
    return results


def queue_full(timing: Timing) -> PhaseResult:
    """The relay exporting to a collector that never answers: its queue fills; its memory then."""
    # The first POST hangs until --jaeger-timeout: longer than the phase, short enough to stop fast.
    extra = ("--jaeger-timeout", "20s", "--shutdown-timeout", "1s", "--retry-max-elapsed", "1s")
    with ServerProcess("relay", "collector", sink_kind="blackhole", extra_args=extra) as server:
        return run_phase(server, "collector", "standard", "queue_full", timing,
                         concurrency=FIXED_CONCURRENCY)


def sweep(kind: str, rates: tuple[float, ...], timing: Timing) -> list[PhaseResult]:
    """Delivered vs offered spans/s, one server instance, rising offered rates."""
    with ServerProcess(kind, "agent") as server:
        return [run_phase(server, "agent", "standard", "sweep", timing,
                          concurrency=SATURATION_CONCURRENCY, rate=rate) for rate in rates]
