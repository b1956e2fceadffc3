"""The one place that wires the pipeline together, and its ordered shutdown.

    receiver --reserve/commit--> SpanQueue (memory, or DiskLog with --queue-dir) --take--> Worker
             --encode/send--> exporter (Jaeger)
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2_grpc
from prometheus_client import CollectorRegistry

from relay import native
from relay.admin import AdminServer
from relay.config import Config, HostPort, redact_url
from relay.credentials import TlsMaterial
from relay.disklog import DiskLog, DiskLogError
from relay.exporters.base import Exporter
from relay.exporters.encode import BACKEND as ENCODE_BACKEND
from relay.exporters.factory import build_exporter
from relay.health import Health
from relay.http_server import HttpSettings
from relay.ingest import Ingest
from relay.insights import BuildObserver
from relay.insights.report import routes
from relay.metrics import Metrics, Snapshot
from relay.receiver import SERVICE as TRACE_SERVICE
from relay.receiver import TraceReceiver
from relay.receiver_http import OtlpHttpServer
from relay.redact import Redactor
from relay.spanqueue import SpanQueue
from relay.worker import RetryPolicy, Worker

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
STALL_MARGIN = 30.0  # seconds beyond the longest legitimate send + retry wait


def stall_timeout(config: Config, retry: RetryPolicy) -> float:
    """--worker-stall-timeout, or by default: one send (--jaeger-timeout) plus the longest retry
    wait plus a margin, so that a worker merely waiting on a slow Jaeger is never called stalled."""
    if config.worker_stall_timeout is not None:
        return config.worker_stall_timeout
    return config.jaeger_timeout + retry.longest_delay + STALL_MARGIN


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
        self.queue = SpanQueue(self.metrics.ledger, max_spans=config.queue_size,
                               max_bytes=config.queue_max_mib * MIB, log=self._disk_log(config))
        self.metrics.watch_queue(self.queue.stats, self.queue.max_bytes, durable=self.queue.durable)
        self.insights = BuildObserver(self.metrics.registry, builds_kept=config.builds_kept)
        retry = retry or RetryPolicy(max_elapsed=config.retry_max_elapsed)
        self.worker = Worker(
            self.queue, exporter or build_exporter(config), self.metrics,
            max_batch_size=config.max_batch_size, batch_timeout=config.batch_timeout,
            retry=retry, observers=[self.insights],
        )
        self.health = Health(self.worker.is_alive, worker_idle_for=self.worker.idle_for,
                             pending=lambda: self.queue.held,
                             stall_timeout=stall_timeout(config, retry), services=("", TRACE_SERVICE))
        redactor = Redactor(config.redact_pattern, defaults=not config.no_default_redaction)
        # TRACE_RELAY_PURE=1 turns the native parser off (and the native encoder, relay/exporters/encode.py).
        self._parser = native.load_parser(os.environ)
        # One largest request parsed at a time (smaller ones share the budget): see relay/ingest.py.
        self.ingest = Ingest(self.queue, self.metrics.ledger, config.auth_token,
                             parse_budget=config.max_recv_msg_size_mib * MIB, accepting=self.health.accepting,
                             redactor=redactor, redacted=self.metrics.redacted_values.inc,
                             parser=self._parser)
        self.receiver = TraceReceiver(self.ingest)
        self._server = self._grpc_server()
        self.otlp_port = self._bind(config)
        self._http = self._http_server(config)
        self.http_port = self._http.port
        self._admin = self._admin_server(config.admin_endpoint)
        self.admin_port = self._admin.port
        self._report: ShutdownReport | None = None

    def start(self) -> None:
        self.worker.start()
        self._server.start()
        self._http.start()
        self._admin.start()
        self.health.serving()
        logger.info("trace-relay listening: OTLP/gRPC on %s (port %d), admin on port %d, "
                    "OTLP/HTTP on %s (port %d), exporting to %s; %s",
                    self.config.otlp_grpc_endpoint, self.otlp_port, self.admin_port,
                    self.config.otlp_http_endpoint, self.http_port, self._target(), self._security())
        logger.info("native accelerator: OTLP parser %s, Jaeger span encoder %s (TRACE_RELAY_PURE=1 forces pure)",
                    "native" if self._parser is not None else "pure", ENCODE_BACKEND)

    def shutdown(self) -> ShutdownReport:
        """Health NOT_SERVING -> stop both OTLP servers (in-flight requests finish) -> close the
        queue -> the worker drains until the deadline -> exporter shut down (by the worker) ->
        admin server stopped. One deadline: ``--shutdown-timeout`` from now. Idempotent."""
        if self._report is not None:
            return self._report
        deadline = time.monotonic() + self.config.shutdown_timeout
        self.health.shutting_down()
        self.ingest.shutting_down = True
        grace = min(5.0, self.config.shutdown_timeout / 4)
        stopped = self._server.stop(grace)
        self._http.stop(grace)
        stopped.wait(grace + 1)
        clean = self.worker.stop(max(0.0, deadline - time.monotonic()))
        self.queue.drain()  # in memory, what the worker could not send by the deadline is lost
        snapshot = self.metrics.ledger.snapshot()
        # In memory, spans still held after the drain are in the hands of a worker that did not
        # finish (or died): lost too. On disk they stay for the next start.
        lost = snapshot.dropped.get("shutdown", 0) + (0 if self.queue.durable else snapshot.queued)
        if lost:
            logger.warning("shutdown: %d accepted spans could not be sent to Jaeger", lost)
        if self.queue.durable and snapshot.queued:
            logger.info("shutdown: %d spans stay in the disk queue %s for the next start",
                        snapshot.queued, self.config.queue_dir)
        if self._log is not None and clean:
            self._log.close()
        logger.info("shutdown complete: %d spans exported to Jaeger, %s, %s, %s",
                    snapshot.exported, _in_words(snapshot.dropped, "dropped"),
                    _in_words(snapshot.refused, "refused"), _in_words(snapshot.rejected, "rejected"))
        self._admin.stop()
        self._report = ShutdownReport(clean=clean, lost=lost, snapshot=snapshot)
        return self._report

    # -- wiring -------------------------------------------------------------------------------

    def _disk_log(self, config: Config) -> DiskLog | None:
        self._log: DiskLog | None = None
        if config.queue_dir is not None:
            try:
                self._log = DiskLog(config.queue_dir)
            except (DiskLogError, OSError) as exc:
                raise StartupError(f"--queue-dir: {exc}") from None
        return self._log

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
            if config.tls is None:
                return int(self._server.add_insecure_port(address))
            return int(self._server.add_secure_port(address, _credentials(config.tls)))
        except RuntimeError:
            # gRPC says only "Failed to bind"; the operating system says why.
            reason = _bind_failure(config.otlp_grpc_endpoint)
            raise StartupError(f"--otlp-grpc-endpoint: cannot listen on {address}: {reason}") from None

    def _http_server(self, config: Config) -> OtlpHttpServer:
        try:
            settings = HttpSettings(
                max_body=config.max_recv_msg_size_mib * MIB, read_timeout=config.otlp_http_read_timeout,
                max_connections=4 * config.max_concurrent_rpcs,
                tls=_http_tls(config))
            return OtlpHttpServer(config.otlp_http_endpoint, self.ingest, settings)
        except StartupError:
            self._server.stop(None)
            raise
        except OSError as exc:
            self._server.stop(None)
            raise StartupError(f"--otlp-http-endpoint: cannot listen on {config.otlp_http_endpoint}: "
                               f"{exc.strerror}") from None

    def _admin_server(self, endpoint: HostPort) -> AdminServer:
        try:
            return AdminServer(endpoint, self.metrics.registry, self.health,
                               routes(self.insights.records, self.config.jaeger_ui_url))
        except OSError as exc:
            self._server.stop(None)
            self._http.stop(0)
            raise StartupError(f"--admin-endpoint: cannot listen on {endpoint}: {exc.strerror}") from None

    def _security(self) -> str:
        tls = self.config.tls
        return (f"TLS {'on' if tls else 'off'}, "
                f"mTLS {'on' if tls and tls.client_ca else 'off'}, "
                f"bearer token {'required' if self.config.auth_token else 'off'}")

    def _target(self) -> str:
        if self.config.jaeger_collector:
            return f"Jaeger collector {redact_url(self.config.jaeger_collector)}"
        return f"Jaeger agent {self.config.jaeger_agent} (UDP)"


def _credentials(tls: TlsMaterial) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(tls.private_key, tls.cert_chain)], root_certificates=tls.client_ca,
                                       require_client_auth=tls.client_ca is not None)


def _bind_failure(endpoint: HostPort) -> str:
    """Why ``endpoint`` cannot be bound, as the operating system says it ("Address already in use")."""
    try:
        infos = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot resolve {endpoint.host}: {exc.strerror}"
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            try:
                probe.bind(address)
            except OSError as exc:
                return str(exc.strerror)
    return "gRPC could not bind it (GRPC_VERBOSITY=debug shows why)"


def _in_words(counts: dict[str, int], what: str) -> str:
    """{'shutdown': 2, 'retry_exhausted': 3}, 'dropped' -> '5 dropped (3 retry exhausted, 2 shutdown)';
    {} -> '0 dropped'."""
    parts = [f"{count} {reason.replace('_', ' ')}" for reason, count in sorted(counts.items()) if count]
    total = sum(counts.values())
    return f"{total} {what} ({', '.join(parts)})" if parts else f"{total} {what}"


def _http_tls(config: Config) -> ssl.SSLContext | None:
    """The OTLP/HTTP listener's TLS, from the same files as the gRPC listener's."""
    if config.tls is None or config.tls_cert_file is None or config.tls_key_file is None:
        return None  # config checked the pair: both files, or neither
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
        if config.tls_client_ca_file is not None:
            context.load_verify_locations(config.tls_client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"--tls-cert-file: cannot use the TLS certificate, key or client CA: {exc}") from None
    return context
