"""What an operator sees: /metrics parsed with prometheus_client's text parser, /healthz, /readyz
and the gRPC health service, all over the relay's real sockets."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


@dataclass(frozen=True)
class Scrape:
    """One /metrics scrape: sample name (with ``_total``) -> {label value or "": value}."""

    samples: dict[str, dict[str, float]]

    def value(self, name: str, label: str = "") -> float:
        return self.samples.get(f"trace_relay_{name}", {}).get(label, 0.0)

    def by_label(self, name: str) -> dict[str, float]:
        """Non-zero values of a labelled counter."""
        return {k: v for k, v in self.samples.get(f"trace_relay_{name}", {}).items() if v}

    def total(self, name: str) -> float:
        return sum(self.samples.get(f"trace_relay_{name}", {}).values())

    @property
    def received(self) -> float:
        return self.value("receiver_received_spans_total")

    @property
    def exported(self) -> float:
        return self.value("exporter_sent_spans_total")

    @property
    def queued(self) -> float:
        return self.value("queue_size")

    @property
    def dropped(self) -> dict[str, float]:
        return self.by_label("dropped_spans_total")

    @property
    def refused(self) -> dict[str, float]:
        return self.by_label("receiver_refused_spans_total")

    @property
    def rejected(self) -> dict[str, float]:
        return self.by_label("receiver_rejected_spans_total")

    @property
    def requests(self) -> dict[str, float]:
        return self.by_label("receiver_requests_total")

    def unbalanced(self) -> float:
        """received + recovered - (exported + dropped + refused + rejected + queued): 0 when every
        span is accounted for (``queued`` is the queue's own count, not a remainder)."""
        return self.received + self.value("queue_recovered_spans_total") - (
            self.exported + self.total("dropped_spans_total")
                                + self.total("receiver_refused_spans_total")
                                + self.total("receiver_rejected_spans_total") + self.queued)


def scrape(admin_port: int) -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # Summed over the receiver's ``transport`` label: tests ask for totals unless they
            # read ``by_transport``.
            label = next((v for k, v in sample.labels.items() if k != "transport"), "")
            series = samples.setdefault(sample.name, {})
            series[label] = series.get(label, 0.0) + sample.value
            if "transport" in sample.labels:
                key = f"{sample.name}@{sample.labels['transport']}"
                samples.setdefault(key, {})[label] = samples.get(key, {}).get(label, 0.0) + sample.value
    return Scrape(samples)


def http_status(admin_port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}{path}", timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def grpc_health(otlp_port: int, service: str = TRACE_SERVICE,
                credentials: grpc.ChannelCredentials | None = None) -> str:
    """The gRPC health status name of ``service`` ("SERVING", "NOT_SERVING", ...)."""
    target = f"127.0.0.1:{otlp_port}"
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    with channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def assert_serving(otlp_port: int, admin_port: int) -> None:
    """Alive, ready and SERVING, as a kubelet and a gRPC health client would check."""
    assert http_status(admin_port, "/healthz") == 200
    assert http_status(admin_port, "/readyz") == 200
    assert grpc_health(otlp_port) == "SERVING"
    assert grpc_health(otlp_port, "") == "SERVING"
