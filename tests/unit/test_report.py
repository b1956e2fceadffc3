"""The build report (relay/insights/report.py) over the observer's kept state: exact values."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry

from relay.insights import BuildObserver
from relay.insights.report import builds_html, builds_json, routes

T0 = 1_800_000_000 * 10**9  # a whole second, so started_at is exact
S = 10**9
MS = 10**6
V = {"vertex": "sha256:0"}
SOLVE = "moby.buildkit.v1.Control/Solve"


def span(name: str, start: int, end: int, trace_id: int = 1, kind: SpanKind = SpanKind.INTERNAL,
         attrs: dict[str, Any] | None = None, status: StatusCode = StatusCode.UNSET) -> ReadableSpan:
    return ReadableSpan(name=name, context=SpanContext(trace_id, 7, is_remote=False), kind=kind,
                        attributes=attrs if attrs is not None else V, status=Status(status),
                        start_time=T0 + start, end_time=T0 + end)


def solve(start: int, end: int, trace_id: int = 1, **attrs: Any) -> ReadableSpan:
    return span(SOLVE, start, end, trace_id, SpanKind.SERVER, attrs or {"rpc.response.status_code": "OK"})


def report(observer: BuildObserver) -> list[dict[str, Any]]:
    builds: list[dict[str, Any]] = json.loads(builds_json(observer.records()))["builds"]
    return builds


def test_exact_report_of_a_generated_build() -> None:
    observer = BuildObserver(CollectorRegistry())
    observer([
        span("[internal] load build definition from Dockerfile", 0, 100 * MS),
        span("cache request: [internal] load build context", 100 * MS, 101 * MS),  # not a step
        span("[internal] load build context", 100 * MS, 300 * MS),
        span("[internal] load metadata for docker.io/library/alpine:3.20", 0, 400 * MS),
        span("[b 1/5] FROM docker.io/library/alpine:3.20", 400 * MS, 900 * MS),
        # two RUN steps overlap for 1 s (parallel stages): run time is their union, 3 s, not 4 s
        span("[b 2/5] RUN make a", 1 * S, 3 * S),
        span("[c 1/1] RUN make b", 2 * S, 4 * S),
        span("load cache: [b 3/5] COPY x /x", 4 * S, 4 * S + 10 * MS),
        # 4.01 s .. 6 s: nothing runs (1.99 s idle)
        span("[b 4/5] ADD https://example.com/f /f", 6 * S, 6 * S + 500 * MS),
        span("[b 5/5] WORKDIR /w", 6500 * MS, 6600 * MS, status=StatusCode.ERROR),
        span("exporting to image", 6600 * MS, 7 * S, attrs={}),
        span("some other span", 7 * S, 9 * S, attrs={}),  # neither a step nor an export
        solve(0, 9 * S),
    ])
    (build,) = report(observer)
    assert build == {
        "trace_id": "00000000000000000000000000000001",
        "status": "success",
        "started_at": "2027-01-15T08:00:00Z",
        "duration_seconds": 9.0,
        "steps_executed": 8,
        "steps_cached": 1,
        "slowest_steps": [
            {"name": "[b 2/5] RUN make a", "duration_seconds": 2.0},
            {"name": "[c 1/1] RUN make b", "duration_seconds": 2.0},
            {"name": "[b 1/5] FROM docker.io/library/alpine:3.20", "duration_seconds": 0.5},
            {"name": "[b 4/5] ADD https://example.com/f /f", "duration_seconds": 0.5},
            {"name": "[internal] load metadata for docker.io/library/alpine:3.20", "duration_seconds": 0.4},
        ],
        "failed_steps": ["[b 5/5] WORKDIR /w"],
        "time_by_kind": {"source": 0.9, "context": 0.3, "run": 3.0, "copy": 0.51, "export": 0.4, "other": 0.1},
        "idle_gaps": [{"start_offset_seconds": 4.01, "duration_seconds": 1.99},
                      {"start_offset_seconds": 7.0, "duration_seconds": 2.0}],
    }


def test_failed_build_and_most_recent_first() -> None:
    observer = BuildObserver(CollectorRegistry())
    observer([solve(0, S, trace_id=1), solve(5 * S, 6 * S, trace_id=2, **{"rpc.grpc.status_code": 2}),
              solve(2 * S, 3 * S, trace_id=3, **{"rpc.response.status_code": "UNKNOWN"})])
    assert [(b["trace_id"][-1], b["status"]) for b in report(observer)] == [
        ("2", "failure"), ("3", "failure"), ("1", "success")]


def test_a_late_step_joins_its_build() -> None:
    observer = BuildObserver(CollectorRegistry())
    observer([span("[a 1/2] RUN early", 0, S), solve(0, 10 * S)])
    assert report(observer)[0]["steps_executed"] == 1
    observer([span("[a 2/2] RUN late and slow", S, 9 * S), span("load cache: [a 0/2] COPY . .", 0, 1)])
    (build,) = report(observer)
    assert (build["steps_executed"], build["steps_cached"]) == (2, 1)
    assert build["slowest_steps"][0] == {"name": "[a 2/2] RUN late and slow", "duration_seconds": 8.0}
    assert build["idle_gaps"] == [{"start_offset_seconds": 9.0, "duration_seconds": 1.0}]


def test_a_solve_that_never_comes_is_not_listed_and_pending_traces_are_bounded() -> None:
    observer = BuildObserver(CollectorRegistry(), builds_kept=5, max_pending=3)
    for trace_id in range(1, 101):
        observer([span("[a 1/1] RUN x", 0, S, trace_id=trace_id)])
    assert report(observer) == []
    assert observer.sizes() == (0, 3)
    observer([solve(0, 2 * S, trace_id=100)])  # a pending trace (among the 3 newest) completes
    (build,) = report(observer)
    assert (build["trace_id"][-2:], build["steps_executed"]) == ("64", 1)
    observer([solve(0, 2 * S, trace_id=1)])  # forgotten long ago: listed with no steps
    assert [b["steps_executed"] for b in report(observer)] == [1, 0]
    assert observer.sizes() == (2, 2)


def test_more_builds_than_kept_keeps_the_newest() -> None:
    observer = BuildObserver(CollectorRegistry(), builds_kept=3)
    for trace_id in range(1, 11):
        observer([span("[a 1/1] RUN x", trace_id * S, trace_id * S + 1, trace_id=trace_id),
                  solve(trace_id * S, trace_id * S + 2, trace_id=trace_id)])
    assert [int(b["trace_id"], 16) for b in report(observer)] == [10, 9, 8]
    assert observer.sizes() == (3, 0)


def test_steps_per_trace_are_bounded_and_counts_and_slowest_stay_exact() -> None:
    observer = BuildObserver(CollectorRegistry(), max_steps=10)
    # step n lasts n ms: the slowest ones come last, far past the 10 intervals kept
    observer([span(f"[a 1/1] RUN step {n}", n * S, n * S + n * MS) for n in range(1000)] + [solve(0, 1000 * S)])
    (record,) = observer.records()
    assert (len(record.starts), len(record.ends), len(record.kinds)) == (10, 10, 10)
    (build,) = report(observer)
    assert build["steps_executed"] == 1000
    assert build["slowest_steps"] == [{"name": f"[a 1/1] RUN step {n}", "duration_seconds": n / 1000}
                                      for n in (999, 998, 997, 996, 995)]
    assert build["time_by_kind"]["run"] == sum(range(10)) / 1000  # over the kept intervals only


def test_the_page_escapes_step_names_and_links_to_jaeger() -> None:
    observer = BuildObserver(CollectorRegistry())
    evil = "[a 1/1] RUN echo <script>alert('x')</script> & \"quoted\""
    observer([span(evil, 0, S), solve(0, 2 * S)])
    page = builds_html(observer.records(), "http://127.0.0.1:16686")
    assert "<script>" not in page
    assert "[a 1/1] RUN echo &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quoted&quot;" in page
    assert '<a href="http://127.0.0.1:16686/trace/00000000000000000000000000000001">' in page
    assert "<a href=\"http://127.0.0.1:16686" not in builds_html(observer.records(), None)


def test_routes_answer_json_and_html() -> None:
    observer = BuildObserver(CollectorRegistry())
    observer([solve(0, S)])
    table = routes(observer.records, None)
    status, content_type, body = table["/api/builds"](None)
    assert (status, content_type, len(json.loads(body)["builds"])) == (200, "application/json", 1)
    status, content_type, body = table["/builds"](None)
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert b"<code>00000000000000000000000000000001</code>" in body
