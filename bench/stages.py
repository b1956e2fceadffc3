"""Where the relay's time goes: CPU µs per span for each stage, one thread, no gRPC.

``python -m bench.stages`` prints a table for both profiles. Stages: parse (upb), convert
(protobuf -> ReadableSpan), parse + convert natively (relay/native/_otlp.c + convert_parsed),
translate (-> Jaeger thrift objects), encode (thrift C encoder), and each exporter's whole
``encode`` (translate + encode + framing), pure and native (relay/native/_thrift.c). Each stage runs over
``REQUESTS`` distinct requests, best of ``repeat`` passes (so: warm caches, no queue behind it;
the live relay pays more, see bench/README.md).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.profiles import PROFILES, build_requests
from relay import native as native_modules
from relay.convert import convert_bytes, convert_request
from relay.exporters import encode
from relay.exporters.agent import JaegerAgentExporter
from relay.exporters.collector import JaegerCollectorExporter
from relay.exporters.jaeger_compat import encode_compact
from relay.exporters.translate import span_to_jaeger

REQUESTS = 64


def per_span(fn: Callable[[], object], spans: int, repeat: int = 9) -> float:
    """Least CPU µs per span over ``repeat`` calls of ``fn`` (other processes do not count)."""
    best = float("inf")
    for _ in range(repeat):
        begin = time.process_time()
        fn()
        best = min(best, time.process_time() - begin)
    return best / spans * 1e6


def stage_costs(profile: str) -> dict[str, float]:
    requests = [data for data, _ in build_requests(profile, REQUESTS)]
    parsed = [ExportTraceServiceRequest.FromString(data) for data in requests]
    batches = [batch for request in parsed for batch in convert_request(request).batches]
    spans = [span for batch in batches for span in batch]
    thrift = [span_to_jaeger(span) for span in spans]
    agent = JaegerAgentExporter("127.0.0.1", 9)
    collector = JaegerCollectorExporter("http://127.0.0.1:9/api/traces")
    n = len(spans)
    parse = per_span(lambda: [ExportTraceServiceRequest.FromString(d) for d in requests], n)
    parse_convert = per_span(lambda: [convert_request(ExportTraceServiceRequest.FromString(d))
                                      for d in requests], n)
    parser = native_modules.load_parser({})
    costs = {
        "parse": parse,
        "convert": parse_convert - parse,
        "parse + convert (pure: upb + convert_request)": parse_convert,
        "translate": per_span(lambda: [span_to_jaeger(s) for s in spans], n),
        "encode (compact, C)": per_span(lambda: [encode_compact(t) for t in thrift], n),
    }
    if parser is not None:
        costs["parse + convert (native: _otlp + convert_parsed)"] = per_span(
            lambda: [convert_bytes(d, parser) for d in requests], n)
    native = encode._NATIVE
    for backend in ("pure", "native"):
        if backend == "native" and native is None:
            continue
        encode._NATIVE = native if backend == "native" else None
        costs[f"agent.encode (all, {backend})"] = per_span(lambda: [agent.encode(b) for b in batches], n)
        costs[f"collector.encode (all, {backend})"] = per_span(lambda: [collector.encode(b) for b in batches], n)
    encode._NATIVE = native
    return costs


def main() -> None:
    costs = {profile: stage_costs(profile) for profile in PROFILES}
    print("| stage | " + " | ".join(f"{p} µs/span" for p in PROFILES) + " |")
    print("|---|" + "---:|" * len(PROFILES))
    for stage in costs[PROFILES[0]]:
        print(f"| {stage} | " + " | ".join(f"{costs[p][stage]:.2f}" for p in PROFILES) + " |")
    ingest = {"pure": "parse + convert (pure: upb + convert_request)",
              "native": "parse + convert (native: _otlp + convert_parsed)"}
    for backend in ("pure", "native"):
        stage = f"agent.encode (all, {backend})"
        if stage in costs[PROFILES[0]] and ingest[backend] in costs[PROFILES[0]]:
            total = {p: costs[p][ingest[backend]] + costs[p][stage] for p in PROFILES}
            print(f"| parse + convert + agent.encode, {backend} | "
                  + " | ".join(f"{total[p]:.2f}" for p in PROFILES) + " |")


if __name__ == "__main__":
    main()
    sys.exit(0)
