"""The numbers behind the memory bound in the README ("Operating it", "Memory").

    python -m bench.memory

1. Per queued span: tracemalloc of the ``ReadableSpan``s that ``convert_request`` builds from
   BuildKit-shaped requests (``relay.testtrace.buildkit_trace``), the protobuf request freed.
2. Per in-flight request byte: what parsing one Export request of M bytes costs on top of the
   M bytes themselves (protobuf's upb arena is C memory, invisible to tracemalloc, so this is
   measured as RSS growth in a fresh subprocess), for the worst shape (many tiny attributes).

Writes bench/results/memory.md.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024


def span_cost(requests: int = 200, steps: int = 48) -> tuple[float, int]:
    """Bytes per converted span (tracemalloc), and the number of spans measured."""
    import random

    from relay.convert import convert_request
    from relay.testtrace import buildkit_trace

    rng = random.Random(1)
    bodies = [buildkit_trace(rng, time.time_ns(), steps=steps).SerializeToString()
              for _ in range(requests)]
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    convert_request(ExportTraceServiceRequest.FromString(bodies[0]))  # warm caches
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = []
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        kept.extend(convert_request(request).batches)
        del request
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    spans = sum(len(batch) for batch in kept)
    return (after - before) / spans, spans


_PARSE_CHILD = r"""
import gc, re, sys
from pathlib import Path
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

def rss():
    return int(re.search(r"VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text())[1]) * 1024

size, shape = int(sys.argv[1]), sys.argv[2]
span = Span(trace_id=b"\1" * 16, span_id=b"\2" * 8, start_time_unix_nano=1, end_time_unix_nano=2)
if shape == "attrs":
    span.attributes.extend(KeyValue(key="k", value=AnyValue(int_value=1)) for _ in range(size // 9))
    spans = [span]
else:
    spans = [span] * (size // 40)
request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
data = request.SerializeToString()
del request, span
gc.collect()
base = rss()
parsed = [ExportTraceServiceRequest.FromString(data) for _ in range(4)]
print(len(data), (rss() - base) / 4)
"""


def parse_cost(size: int, shape: str) -> tuple[int, float]:
    """(request bytes, RSS bytes one parsed copy of it costs), in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", _PARSE_CHILD, str(size), shape],
                         capture_output=True, text=True, check=True, timeout=300).stdout.split()
    return int(out[0]), float(out[1])


def main() -> int:
    per_span, spans = span_cost()
    rows = []
    for shape in ("attrs", "spans"):
        size, cost = parse_cost(4 * MIB, shape)
        rows.append((shape, size, cost, cost / size))
    worst = max(row[3] for row in rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    table = "\n".join(f"| {shape} | {size / MIB:.2f} | {cost / MIB:.1f} | {ratio:.1f} |"
                      for shape, size, cost, ratio in rows)
    text = f"""# Memory costs (python -m bench.memory)

Python {sys.version.split()[0]}, measured {time.strftime('%Y-%m-%d')}.

## A queued span

{spans} BuildKit-shaped spans (`buildkit_trace(steps=48)`: rpc.* / vertex attributes, message and
ExecOp events, two resources per request), converted by `convert_request`, protobuf freed:
**{per_span:.0f} bytes per span** (tracemalloc; Python objects only, which is all a queued span is).

## A request being parsed

RSS growth of one parsed `ExportTraceServiceRequest` (protobuf upb arena), on top of its bytes:

| shape | request MiB | parsed MiB | x request size |
| --- | --- | --- | --- |
{table}

Worst: **{worst:.1f} x** the request size.

```json
{json.dumps({"span_bytes": round(per_span), "parse_factor": round(worst, 2)})}
```
"""
    (RESULTS / "memory.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
