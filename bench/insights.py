"""What the build insights cost the worker per span, in the same run with and without them.

``python -m bench.insights`` (a few seconds) prints a table and writes bench/results/insights.md.
The worker's work per batch is the exporter's ``encode`` (translate + thrift + framing); with the
insights it first calls the BuildObserver (classify, metrics, kept state) on the same spans.
Both variants run over the same ReadableSpans, interleaved pass by pass, least CPU time of
``REPEAT`` passes each (so the machine's other load cancels out as far as it can).

Workloads: ``buildkit`` (relay.testtrace.buildkit_trace, 48 steps: 100 spans per request, half of
them vertex steps), ``real`` (the recorded BuildKit v0.32 capture in tests/data, 177 spans, 5
builds), and ``all-steps`` (worst case: every span a RUN step with its own command line, one
Solve per 100 spans, builds beyond --builds-kept forgotten).
"""

from __future__ import annotations

import base64
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status
from prometheus_client import CollectorRegistry

from relay.convert import convert_request
from relay.exporters.agent import JaegerAgentExporter
from relay.insights import BuildObserver
from relay.testtrace import buildkit_trace

REPEAT = 15
RESULTS = Path(__file__).parent / "results" / "insights.md"
REAL = Path(__file__).parents[1] / "tests" / "data" / "buildkit-v0.32-builds.otlp.jsonl"
Batch = Sequence[ReadableSpan]


def _batches(requests: Sequence[ExportTraceServiceRequest]) -> list[Batch]:
    return [batch for request in requests for batch in convert_request(request).batches]


def buildkit(count: int = 64) -> list[Batch]:
    rng, now = random.Random(7), time.time_ns()
    return _batches([buildkit_trace(rng, now, steps=48) for _ in range(count)])


def real(copies: int = 20) -> list[Batch]:
    requests = []
    for line in REAL.read_text(encoding="utf-8").splitlines():
        message = json.loads(line)
        for resource in message["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in span:
                            span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
        requests.append(json_format.ParseDict(message, ExportTraceServiceRequest()))
    return _batches(requests) * copies


def all_steps(count: int = 64, per_batch: int = 100) -> list[Batch]:
    batches = []
    for trace_id in range(1, count + 1):
        ctx = SpanContext(trace_id, 7, is_remote=False)
        batch = [ReadableSpan(name=f"[build {n}/{per_batch}] RUN ./step.sh --seed {trace_id * per_batch + n}",
                              context=ctx, attributes={"vertex": f"sha256:{n:064x}"}, start_time=n * 10**6,
                              end_time=(n + 1) * 10**6) for n in range(per_batch - 1)]
        batch.append(ReadableSpan(name="moby.buildkit.v1.Control/Solve", context=ctx, kind=SpanKind.SERVER,
                                  attributes={"rpc.response.status_code": "OK"}, start_time=0, end_time=10**9))
        batches.append(batch)
    return batches


WORKLOADS: dict[str, Callable[[], list[Batch]]] = {"buildkit": buildkit, "real": real, "all-steps": all_steps}


def costs(batches: list[Batch]) -> dict[str, float]:
    """CPU µs per span: encode only, observer + encode, observer only (least of REPEAT passes)."""
    exporter = JaegerAgentExporter("127.0.0.1", 9)
    spans = sum(len(b) for b in batches)
    best = {"without": float("inf"), "with": float("inf"), "observer": float("inf")}
    def without() -> None:
        for batch in batches:
            exporter.encode(batch)

    def with_insights(observer: BuildObserver) -> None:
        for batch in batches:
            observer(batch)
            exporter.encode(batch)

    def observer_alone(observer: BuildObserver) -> None:
        for batch in batches:
            observer(batch)

    for _ in range(REPEAT):
        for name, run in (("without", without),
                          ("with", lambda: with_insights(BuildObserver(CollectorRegistry()))),
                          ("observer", lambda: observer_alone(BuildObserver(CollectorRegistry())))):
            begin = time.process_time()  # a fresh observer each pass (its construction is counted: ~µs)
            run()
            best[name] = min(best[name], time.process_time() - begin)
    return {name: seconds / spans * 1e6 for name, seconds in best.items()} | {"spans": float(spans)}


def deep_size(obj: object, seen: set[int] | None = None) -> int:
    """Bytes of ``obj`` and everything it holds (each object once)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        size += sum(deep_size(item, seen) for item in obj)
    elif hasattr(obj, "__dict__"):
        size += deep_size(vars(obj), seen)
    return size


class _Span:
    """Just the ReadableSpan fields classify() reads: 200,000 real ReadableSpans take a minute."""

    __slots__ = ("attributes", "context", "end_time", "kind", "name", "start_time", "status")

    def __init__(self, name: str, context: SpanContext, start: int, end: int, kind: SpanKind = SpanKind.INTERNAL,
                 attributes: dict[str, str] | None = None) -> None:
        self.name, self.context, self.start_time, self.end_time = name, context, start, end
        self.kind, self.attributes, self.status = kind, attributes, Status()


def kept_state_mib(builds_kept: int = 100, steps: int = 1000) -> float:
    """The observer's kept state at its bounds: ``builds_kept`` complete builds and as many
    pending traces, each with ``steps`` executed steps whose names are longer than MAX_NAME."""
    observer = BuildObserver(CollectorRegistry(), builds_kept=builds_kept)
    vertex = {"vertex": "sha256:0"}
    for trace_id in range(1, 2 * builds_kept + 1):
        ctx = SpanContext(trace_id, 7, is_remote=False)
        batch = [_Span(f"[build 1/1] RUN {n} " + "x" * 400, ctx, n, n + 1 + n % 7, attributes=vertex)
                 for n in range(steps)]
        if trace_id <= builds_kept:  # the first half complete, the second half left pending
            batch.append(_Span("moby.buildkit.v1.Control/Solve", ctx, 0, steps, SpanKind.SERVER))
        observer(batch)  # type: ignore[arg-type]
    assert observer.sizes() == (builds_kept, builds_kept)
    return deep_size((observer._builds, observer._pending)) / 2**20


def table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| workload | spans | worker without insights, µs/span | with insights, µs/span | overhead | "
             "observer alone, µs/span |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        overhead = (r["with"] - r["without"]) / r["without"] * 100
        lines.append(f"| {name} | {int(r['spans'])} | {r['without']:.2f} | {r['with']:.2f} | {overhead:+.0f} % | "
                     f"{r['observer']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    results = {name: costs(make()) for name, make in WORKLOADS.items()}
    text = table(results)
    memory = kept_state_mib()
    print(text)
    print(f"kept state at the default bounds: {memory:.1f} MiB")
    machine = f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        f"# Build insights: cost per span\n\n`python -m bench.insights` on {machine}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; CPU time (`time.process_time`), least of "
        f"{REPEAT} interleaved passes, one thread, no gRPC. \"Without\" is the worker's exporter `encode` "
        "(Jaeger agent, compact thrift) of each batch; \"with\" also runs the BuildObserver on it first, as "
        "the worker does. The observer runs on the worker thread, after the spans were accepted: it costs the "
        "request path nothing, and only the worker's throughput pays the overhead below.\n\n"
        f"{text}\n\nMemory of the kept state at its bounds (a deep `sys.getsizeof` walk): the default "
        "`--builds-kept` 100 complete builds plus 100 pending traces (a Solve that never came), each with "
        "1000 executed steps (the intervals kept per trace), every name longer than the 300 characters "
        f"kept: **{memory:.1f} MiB**. Real builds keep far less (tens of steps, short names).\n\n"
        "See the module docstring of bench/insights.py for the workloads.\n",
        encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
