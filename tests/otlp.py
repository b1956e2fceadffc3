"""Real OTLP clients for tests: the OpenTelemetry SDK with its OTLP/gRPC exporter, and a raw stub."""

from __future__ import annotations

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor


def otlp_exporter(port: int, **kwargs: object) -> OTLPSpanExporter:
    return OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True, timeout=10, **kwargs)  # type: ignore[arg-type]


def tracer_provider(port: int, service: str, **attributes: str) -> TracerProvider:
    """An SDK TracerProvider exporting every ended span synchronously to the relay."""
    provider = TracerProvider(resource=Resource.create({"service.name": service, **attributes}))
    provider.add_span_processor(SimpleSpanProcessor(otlp_exporter(port)))
    return provider


def raw_export(port: int, request: ExportTraceServiceRequest | bytes,
               timeout: float = 10.0) -> ExportTraceServiceResponse:
    """One Export call with grpc's own stub; raises grpc.RpcError on a non-OK status."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        if isinstance(request, bytes):
            call = channel.unary_unary(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                response_deserializer=ExportTraceServiceResponse.FromString,
            )
            return call(request, timeout=timeout)  # type: ignore[no-any-return]
        return TraceServiceStub(channel).Export(request, timeout=timeout)  # type: ignore[no-any-return]
