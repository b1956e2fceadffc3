"""Replay a recorded Go `tracetest.SpanStub` JSON trace (e.g. a real `docker buildx bake` trace)
through a relay into a decoding UDP agent, and report what Jaeger would show. A manual check:

    .venv/bin/python -m bench.replay [FILE]   # default: bench/data/buildx-bake-trace.spanstubs.json

It starts a relay in-process on loopback, sends the trace as OTLP (one ResourceSpans per
resource, one ScopeSpans per instrumentation scope, as the Go SDK does), decodes every datagram
the relay sends, and checks span count, services, parent links and attribute counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from bench.jaeger_sinks import UdpAgentSink
from relay.app import Relay
from relay.config import load_config

DEFAULT_TRACE = Path(__file__).parent / "data" / "buildx-bake-trace.spanstubs.json"
_STATUS = {"Unset": 0, "Ok": 1, "Error": 2}
_ZERO_SPAN = "0" * 16


def _value(value: dict[str, Any]) -> AnyValue:
    kind, raw = value["Type"], value["Value"]
    if kind == "STRING":
        return AnyValue(string_value=raw)
    if kind == "BOOL":
        return AnyValue(bool_value=raw)
    if kind == "INT64":
        return AnyValue(int_value=raw)
    if kind == "FLOAT64":
        return AnyValue(double_value=raw)
    if kind.endswith("SLICE"):
        return AnyValue(array_value={"values": [_value({"Type": kind[:-5], "Value": v}) for v in raw]})
    raise ValueError(f"unsupported attribute type {kind}")


def _attrs(items: list[dict[str, Any]] | None) -> list[KeyValue]:
    return [KeyValue(key=item["Key"], value=_value(item["Value"])) for item in items or ()]


def _ns(text: str) -> int:
    whole, _, rest = text.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(whole + "+00:00").timestamp()
    return int(seconds) * 1_000_000_000 + int((rest or "0").ljust(9, "0")[:9])


def _span(stub: dict[str, Any]) -> Span:
    context, parent = stub["SpanContext"], stub["Parent"]
    span = Span(
        trace_id=bytes.fromhex(context["TraceID"]), span_id=bytes.fromhex(context["SpanID"]),
        trace_state=context["TraceState"], name=stub["Name"], kind=stub["SpanKind"],
        flags=int(context["TraceFlags"], 16), start_time_unix_nano=_ns(stub["StartTime"]),
        end_time_unix_nano=_ns(stub["EndTime"]), attributes=_attrs(stub["Attributes"]),
        dropped_attributes_count=stub["DroppedAttributes"], dropped_events_count=stub["DroppedEvents"],
        dropped_links_count=stub["DroppedLinks"],
        status=Status(code=_STATUS[stub["Status"]["Code"]], message=stub["Status"]["Description"]),
    )
    if parent["SpanID"] != _ZERO_SPAN:
        span.parent_span_id = bytes.fromhex(parent["SpanID"])
    for event in stub["Events"] or ():
        span.events.add(name=event["Name"], time_unix_nano=_ns(event["Time"]),
                        attributes=_attrs(event["Attributes"]),
                        dropped_attributes_count=event["DroppedAttributeCount"])
    return span


def to_request(stubs: list[dict[str, Any]]) -> ExportTraceServiceRequest:
    grouped: dict[str, dict[tuple[str, str], list[Span]]] = defaultdict(lambda: defaultdict(list))
    resources: dict[str, list[KeyValue]] = {}
    for stub in stubs:
        key = json.dumps(stub["Resource"], sort_keys=True)
        resources[key] = _attrs(stub["Resource"])
        library = stub["InstrumentationLibrary"]
        grouped[key][(library["Name"], library["Version"])].append(_span(stub))
    return ExportTraceServiceRequest(resource_spans=[
        ResourceSpans(resource=Resource(attributes=resources[key]), scope_spans=[
            ScopeSpans(scope=InstrumentationScope(name=name, version=version), spans=spans)
            for (name, version), spans in scopes.items()])
        for key, scopes in grouped.items()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path, nargs="?", default=DEFAULT_TRACE,
                        help="a SpanStub JSON trace (default: bench/data/buildx-bake-trace.spanstubs.json)")
    args = parser.parse_args(argv)
    stubs = json.loads(args.file.read_text())
    request = to_request(stubs)
    with UdpAgentSink() as sink:
        config = load_config(["--otlp-grpc-endpoint", "127.0.0.1:0", "--otlp-http-endpoint", "127.0.0.1:0",
                              "--admin-endpoint", "127.0.0.1:0",
                              "--jaeger-agent", f"127.0.0.1:{sink.port}", "--batch-timeout", "10ms"], {})
        relay = Relay(config)
        relay.start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{relay.otlp_port}") as channel:
                response = TraceServiceStub(channel).Export(request, timeout=10)  # type: ignore[no-untyped-call]
            arrived = sink.wait_for_spans(len(stubs), timeout=20)
        finally:
            relay.shutdown()
    spans = sink.spans()
    services = Counter(batch.process.serviceName for batch in sink.batches for _ in batch.spans)
    ids = {span.spanId for span in spans}
    orphans = [s.operationName for s in spans if s.parentSpanId and s.parentSpanId not in ids]
    stub_tags = sum(len(stub["Attributes"] or ()) for stub in stubs)
    derived = ("otel.", "span.kind", "error")  # tags the mapping adds, not the span's attributes
    span_attr_tags = sum(1 for s in spans for t in s.tags or () if not t.key.startswith(derived))
    print(f"sent {len(stubs)} spans; rejected {response.partial_success.rejected_spans}; "
          f"arrived {len(spans)} in {len(sink.batches)} datagrams, undecodable {sink.undecodable}")
    print(f"services: {dict(services)}")
    print(f"spans whose parent is not in the trace: {len(orphans)} {orphans[:3]}")
    print(f"attribute tags: {span_attr_tags} arrived of {stub_tags} sent")
    ok = arrived and not orphans and span_attr_tags == stub_tags and sink.undecodable == 0
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
