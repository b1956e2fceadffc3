"""Health as the outside sees it: the gRPC health service, /healthz, /readyz, and whether Export
accepts spans.

The exporter worker is *unavailable* when its thread is dead, or when it has made no progress (no
loop turn, no send attempt) for ``stall_timeout`` seconds while spans wait for it. Then /readyz and
gRPC health say NOT_SERVING, /healthz fails (the kubelet restarts the pod) and Export refuses with
UNAVAILABLE. A monitor thread publishes changes to the gRPC health service (so Watch sees them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from grpc_health.v1 import health, health_pb2

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Health:
    """Serving once started and while the worker is available; NOT_SERVING from the start of
    shutdown, for good."""

    def __init__(self, worker_alive: Callable[[], bool], *,
                 worker_idle_for: Callable[[], float] = lambda: 0.0,
                 pending: Callable[[], int] = lambda: 0,
                 stall_timeout: float = float("inf"), services: Sequence[str] = ("",)) -> None:
        self.servicer = health.HealthServicer(experimental_non_blocking=True)
        self._worker_alive = worker_alive
        self._worker_idle_for = worker_idle_for
        self._pending = pending
        self.stall_timeout = stall_timeout
        self._serving = False
        self._shutting_down = False
        self._published = _NOT_SERVING
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._services = tuple(services)  # "" (the server) and the services it serves
        for service in self._services:
            self.servicer.set(service, _NOT_SERVING)

    def serving(self, monitor_interval: float = 1.0) -> None:
        self._serving = True
        self.refresh()
        self._monitor = threading.Thread(target=self._watch, args=(monitor_interval,),
                                         name="trace-relay-health", daemon=True)
        self._monitor.start()

    def shutting_down(self) -> None:
        self._serving = False
        self._shutting_down = True
        self._stop.set()
        self.servicer.enter_graceful_shutdown()

    def worker_problem(self) -> str | None:
        """Why the exporter worker cannot take spans, or None when it can."""
        if not self._worker_alive():
            return "exporter worker is not running"
        idle = self._worker_idle_for()
        if idle > self.stall_timeout:
            waiting = self._pending()
            if waiting:
                return (f"exporter worker made no progress for {idle:.0f}s with {waiting} spans waiting "
                        f"(--worker-stall-timeout {self.stall_timeout:g}s)")
        return None

    def accepting(self) -> bool:
        """Whether Export may queue spans: False while the worker is unavailable."""
        return self.refresh() is None

    def ready(self) -> tuple[bool, str]:
        """Ready: listening, not shutting down, and the exporter worker available."""
        problem = self.refresh()
        if not self._serving:
            return False, "not serving (starting or shutting down)"
        if problem is not None:
            return False, problem
        return True, "ok"

    def live(self) -> tuple[bool, str]:
        """Alive unless the worker is unavailable (a restart is the cure); during shutdown the
        worker ends on purpose, so the process still counts as alive."""
        if self._shutting_down:
            return True, "shutting down"
        problem = self.refresh()
        return (False, problem) if problem is not None else (True, "ok")

    def refresh(self) -> str | None:
        """Re-check the worker and publish the result to the gRPC health service."""
        problem = self.worker_problem()
        self._publish(_SERVING if self._serving and problem is None else _NOT_SERVING)
        return problem

    def _publish(self, status: int) -> None:
        with self._lock:
            if status == self._published or self._shutting_down:
                return
            self._published = status
            for service in self._services:
                self.servicer.set(service, status)

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.refresh()
