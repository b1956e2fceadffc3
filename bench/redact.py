"""What redaction costs: ns per string value on a real BuildKit trace, and on worst-case strings.

    python -m bench.redact            # prints the tables (about 20 s)
    python -m bench.redact --write    # and writes bench/results/redact.md

The real trace is ../shared/data/buildkit-v0.32-builds.otlp.jsonl when it is there (six Export
requests a real buildkitd v0.32.2 sent); otherwise the BuildKit-shaped generator of
relay/testtrace.py stands in, and the table says so. Times are the least CPU time of several
passes (one thread, warm caches), so they are a floor, not what a busy relay pays.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from relay.convert import convert_request
from relay.redact import Redactor
from relay.testtrace import buildkit_trace

REAL_TRACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "buildkit-v0.32-builds.otlp.jsonl"
RESULT = Path(__file__).parent / "results" / "redact.md"
_IDS = ("traceId", "spanId", "parentSpanId")

# Each aims at one pattern's repeats: a long run of what they accept, without what ends a match.
WORST_CASE = {
    "200k 'a' (no needle)": "a" * 200_000,
    "200k 'a' then '='": "a" * 200_000 + "=",
    "'TOKEN=\"' x 28k": 'TOKEN="' * 28_000,
    "'Bearer ' x 28k": "Bearer " * 28_000,
    "'Bearer ' + 200k 'a'": "Bearer " + "a" * 200_000,
    "'://a:' x 40k": "://a:" * 40_000,
    "'AKIA' x 50k": "AKIA" * 50_000,
    "'ghp_' x 50k": "ghp_" * 50_000,
    "200k '='": "=" * 200_000,
}
TYPICAL = {
    "OK": "OK",
    "a socket path": "/run/buildkit-test/capture/buildkitd.sock",
    "an argv element with '='": "type=local,dest=/run/buildkit-test/capture/out/a",
    "a URL without password": "unix:///run/buildkit-test/capture/buildkitd.sock",
    "NPM_TOKEN=... (redacted)": "build-arg:NPM_TOKEN=0123456789abcdef",
    "a GitHub token (redacted)": "ghp_" + "a1B2c3" * 6,
}


def _hex_ids_to_base64(node: object) -> None:
    """The file's ids are hex (as the OTLP/JSON specification says); protobuf's JSON wants base64."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _IDS and isinstance(value, str):
                node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def load_requests() -> tuple[list[ExportTraceServiceRequest], str]:
    if REAL_TRACE.is_file():
        requests = []
        for line in REAL_TRACE.read_text().splitlines():
            body = json.loads(line)
            _hex_ids_to_base64(body)
            requests.append(json_format.ParseDict(body, ExportTraceServiceRequest()))
        return requests, f"real BuildKit v0.32.2 trace ({REAL_TRACE.name})"
    rng = random.Random(1)
    return [buildkit_trace(rng, time.time_ns()) for _ in range(6)], "generated BuildKit-shaped trace (no ../shared)"


def string_values(request: ExportTraceServiceRequest) -> int:
    """How many strings redaction looks at (attribute strings at any depth, names, messages)."""
    probe = ExportTraceServiceRequest()
    probe.CopyFrom(request)
    return Redactor([_EVERY_STRING], defaults=False).redact(probe)


_EVERY_STRING = re.compile(r"\A[\s\S]")  # changes every non-empty string (the Redactor counts changes)


def least_cpu(fn: Callable[[], object], repeat: int = 15) -> float:
    best = float("inf")
    for _ in range(repeat):
        begin = time.process_time()
        fn()
        best = min(best, time.process_time() - begin)
    return best


def trace_table(requests: list[ExportTraceServiceRequest], source: str) -> list[str]:
    datas = [request.SerializeToString() for request in requests]
    values = sum(string_values(request) for request in requests)
    spans = sum(len(ss.spans) for request in requests for rs in request.resource_spans for ss in rs.scope_spans)
    loops = 20
    redactor = Redactor()
    copies = [[ExportTraceServiceRequest.FromString(data) for data in datas] for _ in range(loops)]
    redact = least_cpu(lambda: [redactor.redact(r) for batch in copies for r in batch]) / loops
    planted = [[_with_one_secret(data) for data in datas] for _ in range(loops)]
    redact_walk = least_cpu(lambda: [redactor.redact(r) for batch in planted for r in batch], repeat=1) / loops
    parse_convert = least_cpu(lambda: [convert_request(ExportTraceServiceRequest.FromString(d))
                                       for _ in range(loops) for d in datas]) / loops
    return [
        f"Source: {source}: {len(requests)} requests, {spans} spans, {values} string values.",
        "",
        "| | per string value | per span | all requests | share of parse + convert |",
        "|---|---:|---:|---:|---:|",
        f"| redact (defaults) | {redact / values * 1e9:.0f} ns | {redact / spans * 1e6:.2f} µs | "
        f"{redact * 1e3:.2f} ms | {redact / parse_convert * 100:.0f} % |",
        f"| redact, one secret in each request | {redact_walk / values * 1e9:.0f} ns | "
        f"{redact_walk / spans * 1e6:.2f} µs | {redact_walk * 1e3:.2f} ms | "
        f"{redact_walk / parse_convert * 100:.0f} % |",
        f"| parse + convert | {parse_convert / values * 1e9:.0f} ns | {parse_convert / spans * 1e6:.2f} µs | "
        f"{parse_convert * 1e3:.2f} ms | 100 % |",
    ]


def _with_one_secret(data: bytes) -> ExportTraceServiceRequest:
    """The request with NPM_TOKEN=... in its first span's name: every string of it gets looked at."""
    request = ExportTraceServiceRequest.FromString(data)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.name += " NPM_TOKEN=0123456789"
    return request


def strings_table(title: str, texts: dict[str, str], unit: str) -> list[str]:
    redactor = Redactor()
    rows = [f"| {title} | characters | {unit} | changed |", "|---|---:|---:|---|"]
    for name, text in texts.items():
        loops = max(1, 20_000 // max(1, len(text) // 10))
        seconds = least_cpu(lambda text=text, loops=loops: [redactor.redact_text(text) for _ in range(loops)],
                            repeat=5) / loops
        cost = f"{seconds / len(text) * 1e9:.1f} ns/char" if unit == "per character" else f"{seconds * 1e9:.0f} ns"
        rows.append(f"| {name} | {len(text)} | {cost} | {'yes' if redactor.redact_text(text) != text else 'no'} |")
    return rows


def largest_request_table() -> list[str]:
    """A request as large as the default --max-recv-msg-size-mib (4 MiB) made of the worst-case
    strings, 64 KiB each: what one hostile Export can cost the handler thread."""
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="hostile")
    texts = list(WORST_CASE.values())
    for number in range(63):
        span.attributes.add(key=f"a{number}").value.string_value = texts[number % len(texts)][:65_536]
    data = request.SerializeToString()
    redactor = Redactor()
    copies = [ExportTraceServiceRequest.FromString(data) for _ in range(3)]
    redact = least_cpu(lambda: redactor.redact(copies.pop()), repeat=3)
    parse_convert = least_cpu(lambda: convert_request(ExportTraceServiceRequest.FromString(data)), repeat=3)
    return [
        "| the largest default request (worst-case strings) | bytes | CPU |",
        "|---|---:|---:|",
        f"| redact | {len(data)} | {redact * 1e3:.0f} ms |",
        f"| parse + convert | {len(data)} | {parse_convert * 1e3:.0f} ms |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redact", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="also write bench/results/redact.md")
    args = parser.parse_args()
    requests, source = load_requests()
    lines = ["# Redaction cost", "", "`python -m bench.redact --write`; least CPU time of several passes, "
             "one thread.", "", *trace_table(requests, source), "",
             *strings_table("typical value, in a request where a pattern was found", TYPICAL, "per value"), "",
             *strings_table("worst case", WORST_CASE, "per character"), "",
             *largest_request_table(), ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        RESULT.write_text(text)


if __name__ == "__main__":
    main()
    sys.exit(0)
