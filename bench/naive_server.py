"""The naive design, for comparison: BuildKit's own fix for the exporter's thread-safety bug.

The Export handler parses the request, converts it with a straightforward protobuf ->
ReadableSpan conversion, and calls the stock ``JaegerExporter.export`` (its ThriftTranslator and
pure-Python thrift protocols) under one ``threading.Lock``. No queue: the caller waits for Jaeger.

``python -m bench.naive_server --agent HOST:PORT`` or ``--collector URL``; prints ``PORT n``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import warnings
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status, StatusCode

from relay.exporters import jaeger_compat  # noqa: F401 - makes the stock exporter importable on sdk>=1.40

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
_KINDS = [SpanKind.INTERNAL, SpanKind.INTERNAL, SpanKind.SERVER, SpanKind.CLIENT,
          SpanKind.PRODUCER, SpanKind.CONSUMER]
_CODES = [StatusCode.UNSET, StatusCode.OK, StatusCode.ERROR]


def any_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(any_value(item) for item in value.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in key_values}


def span_context(trace_id: bytes, span_id: bytes, flags: int, trace_state: str) -> SpanContext:
    return SpanContext(int.from_bytes(trace_id, "big"), int.from_bytes(span_id, "big"), is_remote=False,
                       trace_flags=TraceFlags(flags & 0xFF),
                       trace_state=TraceState.from_header([trace_state]) if trace_state else None)


def to_readable_span(pb: Any, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    context = span_context(pb.trace_id, pb.span_id, pb.flags, pb.trace_state)
    parent = span_context(pb.trace_id, pb.parent_span_id, pb.flags, "") if pb.parent_span_id else None
    return ReadableSpan(
        name=pb.name, context=context, parent=parent, resource=resource,
        attributes=attributes(pb.attributes),
        # The stock translator reads ``event.attributes.dropped``: the SDK's BoundedAttributes.
        events=[Event(e.name, BoundedAttributes(attributes=attributes(e.attributes)), e.time_unix_nano)
                for e in pb.events],
        links=[Link(span_context(link.trace_id, link.span_id, link.flags, link.trace_state),
                    attributes(link.attributes)) for link in pb.links],
        kind=_KINDS[pb.kind] if pb.kind < len(_KINDS) else SpanKind.INTERNAL,
        status=Status(_CODES[pb.status.code] if pb.status.code < 3 else StatusCode.UNSET,
                      pb.status.message or None),
        start_time=pb.start_time_unix_nano, end_time=pb.end_time_unix_nano,
        instrumentation_scope=scope,
    )


def convert(request: ExportTraceServiceRequest) -> list[list[ReadableSpan]]:
    """One list of spans per resource."""
    batches = []
    for rs in request.resource_spans:
        resource = Resource(attributes(rs.resource.attributes), rs.schema_url)
        spans = [to_readable_span(span, resource, InstrumentationScope(ss.scope.name, ss.scope.version))
                 for ss in rs.scope_spans for span in ss.spans]
        batches.append(spans)
    return batches


def stock_exporter(agent: str | None, collector: str | None) -> Any:
    """The stock exporter, every constructor argument explicit (it reads the environment otherwise)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from opentelemetry.exporter.jaeger.thrift import JaegerExporter

        host, _, port = (agent or "127.0.0.1:6831").rpartition(":")
        return JaegerExporter(agent_host_name=host, agent_port=int(port), collector_endpoint=collector,
                              username=None, password=None, max_tag_value_length=None,
                              udp_split_oversized_batches=True, timeout=10)


class NaiveHandler:
    def __init__(self, exporter: Any) -> None:
        self._exporter = exporter
        self._lock = threading.Lock()
        self._empty = ExportTraceServiceResponse().SerializeToString()

    def export(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        batches = convert(ExportTraceServiceRequest.FromString(data))
        with self._lock:
            for spans in batches:
                self._exporter.export(spans)
        return self._empty


def serve(port: int, exporter: Any, workers: int) -> grpc.Server:
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(NaiveHandler(exporter).export)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), handlers=[handler],
                         options=[("grpc.max_receive_message_length", 64 << 20)])
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"PORT {bound}", flush=True)
    return server


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.naive_server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--agent", help="Jaeger agent HOST:PORT (UDP)")
    parser.add_argument("--collector", help="Jaeger collector URL (HTTP)")
    parser.add_argument("--workers", type=int, default=32)
    args = parser.parse_args(argv)
    server = serve(args.port, stock_exporter(args.agent, args.collector), args.workers)
    for _ in sys.stdin:  # until the parent closes stdin
        pass
    server.stop(1).wait(2)


if __name__ == "__main__":
    main(sys.argv[1:])
