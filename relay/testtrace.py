"""BuildKit-shaped build traces, as OTLP protobuf: `buildkit_trace` for tests and benchmarks (a
fixed span count per step), `buildkit_build` for `send-test-trace` (a whole build for /builds).

Its shape follows a real `docker buildx bake` trace: a `buildx` client resource (a `bake` root,
gRPC CLIENT spans to the daemon with `message` events) and a daemon resource (`buildkitd`: gRPC
SERVER spans, INTERNAL vertex spans such as `[build 2/3] RUN ...` with `ExecOp started` /
`Container created` events, `load cache:` / `cache request:` spans), nested several levels deep.
"""

from __future__ import annotations

import random

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

OTELGRPC = "go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
SDK_TRACER = "go.opentelemetry.io/otel/sdk/tracer"
SAMPLED = 0x01
_MS = 1_000_000

_STEPS = (
    "[internal] load build definition from Dockerfile",
    "[internal] load .dockerignore",
    "[build 1/3] FROM docker.io/library/alpine:3.19",
    "[internal] load build context",
    "[build 2/3] COPY go.mod go.sum ./",
    "[build 3/3] RUN --mount=type=cache,target=/root/.cache go build -o /out/app ./cmd/app",
    "[test 1/2] COPY --from=build /out/ /usr/bin/",
    "[test 2/2] RUN go test ./...",
)


def _kv(key: str, value: str | int | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _resource(service: str) -> Resource:
    return Resource(attributes=[
        _kv("service.name", service), _kv("telemetry.sdk.language", "go"),
        _kv("telemetry.sdk.name", "opentelemetry"), _kv("telemetry.sdk.version", "1.28.0"),
    ])


class _Ids:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def trace(self) -> bytes:
        return self._rng.getrandbits(128).to_bytes(16, "big") or b"\x01" * 16

    def span(self) -> bytes:
        return (self._rng.getrandbits(63) + 1).to_bytes(8, "big")


def _rpc(name: str, kind: Span.SpanKind.ValueType, trace_id: bytes, span_id: bytes, parent: bytes, start: int,
         end: int, with_messages: bool) -> Span:
    service, method = name.rsplit("/", 1)
    span = Span(
        trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name, kind=kind,
        flags=SAMPLED, start_time_unix_nano=start, end_time_unix_nano=end,
        attributes=[_kv("rpc.system", "grpc"), _kv("rpc.service", service),
                    _kv("rpc.method", method), _kv("rpc.grpc.status_code", 0)],
        status=Status(code=Status.STATUS_CODE_OK if kind == Span.SPAN_KIND_CLIENT else Status.STATUS_CODE_UNSET),
    )
    if with_messages:
        for n, (kind_name, at) in enumerate((("SENT", start + 10_000), ("RECEIVED", end - 10_000)), 1):
            span.events.add(time_unix_nano=at, name="message",
                            attributes=[_kv("message.type", kind_name), _kv("message.id", n)])
    return span


def _vertex(step: str, trace_id: bytes, span_id: bytes, parent: bytes, start: int, end: int,
            digest: str) -> Span:
    span = Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=step,
                kind=Span.SPAN_KIND_INTERNAL, flags=SAMPLED, start_time_unix_nano=start,
                end_time_unix_nano=end, attributes=[_kv("vertex", digest)])
    if "RUN" in step:
        for offset, event in enumerate(("ExecOp started", "Container created", "Container started",
                                        "Container exited")):
            span.events.add(time_unix_nano=start + (offset + 1) * _MS, name=event)
    return span


def buildkit_trace(rng: random.Random, now_ns: int, steps: int = len(_STEPS)) -> ExportTraceServiceRequest:
    """One build: ~2 spans per step plus 6 RPC spans, over two resources (buildx, buildkitd)."""
    ids = _Ids(rng)
    trace_id = ids.trace()
    start = now_ns - (steps + 2) * 100 * _MS
    bake_id, solve_client, solve_server = ids.span(), ids.span(), ids.span()
    end = now_ns
    client_spans = [
        Span(trace_id=trace_id, span_id=bake_id, name="bake", kind=Span.SPAN_KIND_INTERNAL,
             flags=SAMPLED, start_time_unix_nano=start, end_time_unix_nano=end,
             attributes=[_kv("command", "buildx bake test")],
             status=Status(code=Status.STATUS_CODE_OK)),
        _rpc("moby.buildkit.v1.Control/ListWorkers", Span.SPAN_KIND_CLIENT, trace_id, ids.span(),
             bake_id, start + _MS, start + 20 * _MS, True),
        _rpc("moby.buildkit.v1.Control/Solve", Span.SPAN_KIND_CLIENT, trace_id, solve_client,
             bake_id, start + 30 * _MS, end - _MS, True),
    ]
    server_spans = [
        _rpc("moby.buildkit.v1.Control/Solve", Span.SPAN_KIND_SERVER, trace_id, solve_server,
             solve_client, start + 31 * _MS, end - 2 * _MS, False),
    ]
    at = start + 40 * _MS
    for index in range(steps):
        step = _STEPS[index % len(_STEPS)]
        digest = f"sha256:{rng.getrandbits(256):064x}"
        vertex_id = ids.span()
        server_spans.append(_vertex(step, trace_id, vertex_id, solve_server, at, at + 90 * _MS, digest))
        server_spans.append(_vertex(f"cache request: {step}", trace_id, ids.span(), vertex_id,
                                    at + _MS, at + 5 * _MS, digest))
        at += 100 * _MS
    return ExportTraceServiceRequest(resource_spans=[
        _resource_spans("buildx", {OTELGRPC: client_spans[1:], SDK_TRACER: client_spans[:1]}),
        _resource_spans("buildkitd", {OTELGRPC: server_spans[:1], SDK_TRACER: server_spans[1:]}),
    ])


def _resource_spans(service: str, by_scope: dict[str, list[Span]]) -> ResourceSpans:
    return ResourceSpans(resource=_resource(service), scope_spans=[
        ScopeSpans(scope=InstrumentationScope(name=scope, version="0.46.1" if scope == OTELGRPC else ""),
                   spans=scope_spans)
        for scope, scope_spans in by_scope.items()
    ])


# -- a whole build, for send-test-trace and the build report --------------------------------------

# (name, start ms, end ms, kind of span) after the server Solve starts. 8 executed steps, one cache
# hit, cache checks, an exporter span, and 1.5 s (1000..2500 ms) in which no step runs.
_BUILD: tuple[tuple[str, int, int, str], ...] = (
    ("[internal] load build definition from Dockerfile", 0, 20, "step"),
    ("[internal] load metadata for docker.io/library/golang:1.22-alpine", 20, 300, "step"),
    ("[internal] load .dockerignore", 300, 310, "step"),
    ("[internal] load build context", 310, 400, "step"),
    ("[build 1/4] FROM docker.io/library/golang:1.22-alpine@sha256:" + "3" * 64, 400, 900, "step"),
    ("[build 2/4] WORKDIR /src", 900, 905, "cached"),
    ("[build 3/4] COPY go.mod go.sum ./", 905, 1000, "step"),
    ("[build 4/4] RUN --mount=type=cache,target=/root/.cache go build -o /out/app ./cmd/app", 2500, 5700, "step"),
    ("[stage-1 1/1] COPY --from=build /out/app /usr/bin/app", 5700, 5800, "step"),
    ("exporting to image", 5800, 6100, "export"),
)
BUILD_MS = 6150  # the server Solve span's length


def _solve(kind: Span.SpanKind.ValueType, trace_id: bytes, span_id: bytes, parent: bytes, start: int,
           end: int) -> Span:
    """A Control/Solve span with BuildKit v0.32's RPC attributes."""
    return Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name="moby.buildkit.v1.Control/Solve",
                kind=kind, flags=SAMPLED, start_time_unix_nano=start, end_time_unix_nano=end,
                attributes=[_kv("rpc.system.name", "grpc"), _kv("rpc.method", "moby.buildkit.v1.Control/Solve"),
                            _kv("rpc.response.status_code", "OK")],
                status=Status(code=Status.STATUS_CODE_OK if kind == Span.SPAN_KIND_CLIENT
                              else Status.STATUS_CODE_UNSET))


def _build_steps(steps: int) -> list[tuple[str, int, int, str]]:
    export_ms = _BUILD[-1][1]
    extra = [(f"[test {n}/{steps - 8}] RUN go test ./pkg/{n}/...", export_ms + 200 * (n - 1),
              export_ms + 200 * n, "step") for n in range(1, steps - 8 + 1)]
    shift = 200 * len(extra)  # extra steps run before the export, which moves with the end
    return [*_BUILD[:-1], *extra, (_BUILD[-1][0], _BUILD[-1][1] + shift, _BUILD[-1][2] + shift, "export")]


def buildkit_build(rng: random.Random, now_ns: int, steps: int = 8) -> ExportTraceServiceRequest:
    """One whole build that ends at ``now_ns``: a buildx client resource (`build` root, CLIENT
    Solve) and buildkitd (SERVER Solve, vertex steps incl. RUN and COPY with `cache request:`
    checks, a `load cache:` hit, `exporting to image`, and an idle gap of 1.5 s), so /builds has
    something to show at once. At least 8 executed steps; more add `RUN go test` steps."""
    ids = _Ids(rng)
    trace_id, root, client, server = ids.trace(), ids.span(), ids.span(), ids.span()
    plan = _build_steps(max(8, steps))
    length = (BUILD_MS + 200 * (len(plan) - len(_BUILD))) * _MS
    start = now_ns - length - 3 * _MS
    root_span = Span(trace_id=trace_id, span_id=root, name="build", kind=Span.SPAN_KIND_INTERNAL, flags=SAMPLED,
                     start_time_unix_nano=start, end_time_unix_nano=now_ns,
                     status=Status(code=Status.STATUS_CODE_OK))
    client_spans = [root_span, _solve(Span.SPAN_KIND_CLIENT, trace_id, client, root, start + _MS, now_ns - _MS)]
    server_spans = [_solve(Span.SPAN_KIND_SERVER, trace_id, server, client, start + 2 * _MS, start + 2 * _MS + length)]
    at = start + 2 * _MS
    for name, first_ms, last_ms, kind in plan:
        first, last = at + first_ms * _MS, at + last_ms * _MS
        if kind == "export":
            server_spans.append(Span(trace_id=trace_id, span_id=ids.span(), parent_span_id=server, name=name,
                                     kind=Span.SPAN_KIND_INTERNAL, flags=SAMPLED, start_time_unix_nano=first,
                                     end_time_unix_nano=last))
            continue
        digest = f"sha256:{rng.getrandbits(256):064x}"
        server_spans.append(_vertex(f"cache request: {name}", trace_id, ids.span(), server, first,
                                    first + 10_000, digest))
        shown = f"load cache: {name}" if kind == "cached" else name
        server_spans.append(_vertex(shown, trace_id, ids.span(), server, first, last, digest))
    return ExportTraceServiceRequest(resource_spans=[
        _resource_spans("buildx", {SDK_TRACER: client_spans[:1], OTELGRPC: client_spans[1:]}),
        _resource_spans("buildkitd", {OTELGRPC: server_spans[:1], SDK_TRACER: server_spans[1:]}),
    ])
