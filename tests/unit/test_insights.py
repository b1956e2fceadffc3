from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry

from relay.insights import BuildObserver, instruction


def _span(name, trace_id=1, kind=SpanKind.INTERNAL, attrs=None, status=StatusCode.UNSET, dur_s=1.0):
    ctx = SpanContext(trace_id, 7, is_remote=False)
    return ReadableSpan(name=name, context=ctx, kind=kind, attributes=attrs or {}, status=Status(status),
                        start_time=10**18, end_time=10**18 + int(dur_s * 1e9))


def test_instruction_rules():
    assert instruction("[stage 2/3] RUN go build") == "RUN"
    assert instruction("[1/3] copy a b") == "COPY"
    assert instruction("[internal] load build context") == "internal"
    assert instruction("docker-image://docker.io/library/alpine") == "source"
    assert instruction("exporting to image") == "other"
    assert instruction("[1/2] FROBNICATE x") == "other"


def test_metrics_exact_and_bounded():
    registry = CollectorRegistry()
    observer = BuildObserver(registry, builds_kept=2)
    v = {"vertex": "sha256:0"}
    spans = [_span(f"[s 1/2] RUN echo {n}", attrs=v) for n in range(10_000)]
    spans += [_span("load cache: [s 2/2] COPY a b", attrs=v), _span("cache request: [s 2/2] COPY a b", attrs=v),
              _span("[s 2/2] RUN false", attrs=v, status=StatusCode.ERROR),
              _span("moby.buildkit.v1.Control/Solve", kind=SpanKind.SERVER,
                    attrs={"rpc.response.status_code": "UNKNOWN"}, dur_s=30),
              _span("moby.buildkit.v1.Control/Solve", trace_id=2, kind=SpanKind.SERVER,
                    attrs={"rpc.grpc.status_code": 0})]
    observer(spans)
    get = registry.get_sample_value
    assert get("trace_relay_buildkit_steps_total", {"instruction": "RUN", "cached": "false"}) == 10_001
    assert get("trace_relay_buildkit_steps_total", {"instruction": "COPY", "cached": "true"}) == 1
    assert get("trace_relay_buildkit_step_failures_total", {"instruction": "RUN"}) == 1
    assert get("trace_relay_buildkit_builds_total", {"status": "failure"}) == 1
    assert get("trace_relay_buildkit_builds_total", {"status": "success"}) == 1
    labels = {tuple(sorted(s.labels.items())) for m in registry.collect() for s in m.samples
              if s.name == "trace_relay_buildkit_steps_total"}
    assert len(labels) == 2
    for n in range(3, 10):
        observer([_span("moby.buildkit.v1.Control/Solve", trace_id=n, kind=SpanKind.SERVER)])
    assert observer.sizes() == (2, 0)
