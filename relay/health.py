"""Health as the outside sees it: the gRPC health service and the admin /readyz answer."""

from __future__ import annotations

from collections.abc import Callable

from grpc_health.v1 import health, health_pb2

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


class Health:
    """Serving once started; NOT_SERVING from the start of shutdown, for good."""

    def __init__(self, worker_alive: Callable[[], bool]) -> None:
        self.servicer = health.HealthServicer(experimental_non_blocking=True)
        self._worker_alive = worker_alive
        self._serving = False
        for service in ("", TRACE_SERVICE):
            self.servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)

    def serving(self) -> None:
        self._serving = True
        for service in ("", TRACE_SERVICE):
            self.servicer.set(service, health_pb2.HealthCheckResponse.SERVING)

    def shutting_down(self) -> None:
        self._serving = False
        self.servicer.enter_graceful_shutdown()

    def ready(self) -> tuple[bool, str]:
        """Ready: listening, not shutting down, and the exporter worker alive."""
        if not self._serving:
            return False, "not serving (starting or shutting down)"
        if not self._worker_alive():
            return False, "exporter worker is not running"
        return True, "ok"
