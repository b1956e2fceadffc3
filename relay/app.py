"""The one place that wires the pipeline together, and its ordered shutdown.

    receiver --offer--> SpanQueue --take--> Worker --encode/send--> exporter (Jaeger)
"""

from __future__ import annotations

import logging
import os
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2_grpc
from prometheus_client import CollectorRegistry

from relay import native
from relay.admin import AdminServer
from relay.config import Config, HostPort
from relay.exporters.base import Exporter
from relay.exporters.encode import BACKEND as ENCODE_BACKEND
from relay.exporters.factory import build_exporter
from relay.health import Health
from relay.insights import BuildObserver
from relay.metrics import Metrics, Snapshot
from relay.receiver import TraceReceiver
from relay.spanqueue import SpanQueue
from relay.worker import RetryPolicy, Worker

logger = logging.getLogger(__name__)

MIB = 1024 * 1024


class StartupError(RuntimeError):
    """The relay cannot start (e.g. a port is taken); the message names the flag."""


@dataclass(frozen=True)
class ShutdownReport:
    clean: bool  # the worker drained and stopped within the deadline
    lost: int  # spans accepted that did not reach Jaeger during shutdown
    snapshot: Snapshot


class Relay:
    def __init__(self, config: Config, *, registry: CollectorRegistry | None = None,
                 exporter: Exporter | None = None, retry: RetryPolicy | None = None) -> None:
        self.config = config
        self.metrics = Metrics(registry or CollectorRegistry(), config.queue_size)
        self.queue = SpanQueue(config.queue_size)
        self.insights = BuildObserver(self.metrics.registry, builds_kept=config.builds_kept)
        self.worker = Worker(
            self.queue, exporter or build_exporter(config), self.metrics,
            max_batch_size=config.max_batch_size, batch_timeout=config.batch_timeout,
            retry=retry or RetryPolicy(max_elapsed=config.retry_max_elapsed),
            observers=[self.insights],
        )
        self.health = Health(self.worker.is_alive)
        token = config.auth_token_file.read_bytes().strip() if config.auth_token_file else None
        # TRACE_RELAY_PURE=1 turns the native parser off (and the native encoder, relay/exporters/encode.py).
        self._parser = native.load_parser(os.environ)
        self.receiver = TraceReceiver(self.queue, self.metrics.ledger, token, parser=self._parser)
        self._server = self._grpc_server()
        self.otlp_port = self._bind(config)
        self._admin = self._admin_server(config.admin_endpoint)
        self.admin_port = self._admin.port
        self._report: ShutdownReport | None = None

    def start(self) -> None:
        self.worker.start()
        self._server.start()
        self._admin.start()
        self.health.serving()
        logger.info("trace-relay listening: OTLP/gRPC on %s (port %d), admin on port %d, exporting to %s",
                    self.config.otlp_grpc_endpoint, self.otlp_port, self.admin_port, self._target())
        logger.info("native accelerator: OTLP parser %s, Jaeger span encoder %s (TRACE_RELAY_PURE=1 forces pure)",
                    "native" if self._parser is not None else "pure", ENCODE_BACKEND)

    def shutdown(self) -> ShutdownReport:
        """Health NOT_SERVING -> stop the gRPC server (in-flight requests finish) -> close the
        queue -> the worker drains until the deadline -> exporter shut down (by the worker) ->
        admin server stopped. One deadline: ``--shutdown-timeout`` from now. Idempotent."""
        if self._report is not None:
            return self._report
        deadline = time.monotonic() + self.config.shutdown_timeout
        self.health.shutting_down()
        self.receiver.shutting_down = True
        grace = min(5.0, self.config.shutdown_timeout / 4)
        self._server.stop(grace).wait(grace + 1)
        clean = self.worker.stop(max(0.0, deadline - time.monotonic()))
        for batch in self.queue.drain():  # only non-empty if the worker did not finish
            self.metrics.ledger.dropped("shutdown", len(batch))
        snapshot = self.metrics.ledger.snapshot()
        lost = snapshot.dropped.get("shutdown", 0) + (snapshot.queued if not clean else 0)
        if lost:
            logger.warning("shutdown: %d accepted spans could not be sent to Jaeger", lost)
        logger.info("shutdown complete: exported %d spans, dropped %s, refused %s, rejected %s",
                    snapshot.exported, snapshot.dropped or 0, snapshot.refused or 0, snapshot.rejected or 0)
        self._admin.stop()
        self._report = ShutdownReport(clean=clean, lost=lost, snapshot=snapshot)
        return self._report

    # -- wiring -------------------------------------------------------------------------------

    def _grpc_server(self) -> grpc.Server:
        options = [
            ("grpc.max_receive_message_length", self.config.max_recv_msg_size_mib * MIB),
            ("grpc.so_reuseport", 0),
            # RPCs beyond the handler threads wait in grpc's executor queue; their bodies are not
            # read until a thread takes them, but HTTP/2 flow control lets each open stream buffer
            # up to a window. One connection gets no more streams than there are handler threads.
            ("grpc.max_concurrent_streams", self.config.max_concurrent_rpcs),
        ]
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.config.max_concurrent_rpcs,
                                       thread_name_prefix="trace-relay-grpc"),
            handlers=[self.receiver.handler()],
            options=options,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, server)
        return server

    def _bind(self, config: Config) -> int:
        address = str(config.otlp_grpc_endpoint)
        try:
            if config.tls_cert_file is None:
                return int(self._server.add_insecure_port(address))
            return int(self._server.add_secure_port(address, self._credentials(config)))
        except RuntimeError as exc:
            raise StartupError(f"--otlp-grpc-endpoint: cannot listen on {address}: {exc}") from None

    @staticmethod
    def _credentials(config: Config) -> grpc.ServerCredentials:
        if config.tls_cert_file is None or config.tls_key_file is None:
            raise StartupError("--tls-cert-file: TLS needs both --tls-cert-file and --tls-key-file")
        pair = (config.tls_key_file.read_bytes(), config.tls_cert_file.read_bytes())
        client_ca = config.tls_client_ca_file.read_bytes() if config.tls_client_ca_file else None
        return grpc.ssl_server_credentials([pair], root_certificates=client_ca,
                                           require_client_auth=client_ca is not None)

    def _admin_server(self, endpoint: HostPort) -> AdminServer:
        try:
            return AdminServer(endpoint, self.metrics.registry, self.health)
        except OSError as exc:
            self._server.stop(None)
            raise StartupError(f"--admin-endpoint: cannot listen on {endpoint}: {exc.strerror}") from None

    def _target(self) -> str:
        if self.config.jaeger_collector:
            return f"Jaeger collector {self.config.jaeger_collector}"
        return f"Jaeger agent {self.config.jaeger_agent} (UDP)"
