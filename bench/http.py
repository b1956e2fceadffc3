"""OTLP/HTTP against OTLP/gRPC into one relay process, in one short run.

    python -m bench.http [--seconds 8] [--threads 4] [--spans 100]

The real CLI in a subprocess, exporting to a counting UDP agent in another. For each protocol
(grpc, http/protobuf, http/json) ``--threads`` clients send the same BuildKit-shaped request of
``--spans`` spans back to back for ``--seconds`` (gRPC: one channel per thread; HTTP: one
keep-alive connection per thread), after a one-second warm-up. Reported: accepted spans/s, the
p50/p99 of the answer latency, and the spans the agent received. Written to
bench/results/http-latest.md.
"""

from __future__ import annotations

import argparse
import http.client
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.load import percentile
from bench.servers import ServerProcess
from relay import otlp_json
from relay.convert import request_span_count
from relay.receiver import EXPORT_METHOD
from relay.testtrace import buildkit_trace

RESULTS = Path(__file__).parent / "results" / "http-latest.md"
EXPORT = EXPORT_METHOD
Sender = Callable[[], bool]


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    sent_ok: int = 0  # warm-up included: what the agent should receive
    lock: threading.Lock = field(default_factory=threading.Lock)


def request_of(spans: int) -> ExportTraceServiceRequest:
    """A BuildKit-shaped request grown to at least ``spans`` spans."""
    rng = random.Random(7)
    request = ExportTraceServiceRequest()
    while request_span_count(request) < spans:
        request.MergeFrom(buildkit_trace(rng, time.time_ns(), steps=8))
    return request


def grpc_sender(port: int, body: bytes) -> Sender:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary(EXPORT)

    def send() -> bool:
        try:
            call(body, timeout=10)
        except grpc.RpcError:
            return False
        return True

    return send


def http_sender(port: int, body: bytes, content_type: str) -> Sender:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": content_type}

    def send() -> bool:
        try:
            conn.request("POST", "/v1/traces", body=body, headers=headers)
            reply = conn.getresponse()
            reply.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            return False
        return reply.status == 200

    return send


def drive(make_sender: Callable[[], Sender], threads: int, seconds: float) -> Tally:
    tally = Tally()
    start = time.monotonic()
    measure_from, end = start + 1.0, start + 1.0 + seconds

    def worker() -> None:
        send = make_sender()
        while (began := time.monotonic()) < end:
            ok = send()
            done = time.monotonic()
            with tally.lock:
                tally.sent_ok += ok
                if began >= measure_from:
                    if ok:
                        tally.latencies.append(done - began)
                    else:
                        tally.failures += 1

    pool = [threading.Thread(target=worker, name=f"bench-http-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(seconds + 30)
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per protocol")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--spans", type=int, default=100, help="spans per request")
    args = parser.parse_args(argv)
    request = request_of(args.spans)
    spans = request_span_count(request)
    bodies = {"grpc": request.SerializeToString(), "http/protobuf": request.SerializeToString(),
              "http/json": otlp_json.dumps(request)}
    rows = []
    with ServerProcess("relay", "agent", extra_args=("--queue-size", "200000")) as server:
        makers: dict[str, Callable[[], Sender]] = {
            "grpc": lambda: grpc_sender(server.port, bodies["grpc"]),
            "http/protobuf": lambda: http_sender(server.http_port, bodies["http/protobuf"], "application/x-protobuf"),
            "http/json": lambda: http_sender(server.http_port, bodies["http/json"], "application/json"),
        }
        for protocol, make in makers.items():
            before = server.delivered()
            tally = drive(make, args.threads, args.seconds)
            accepted = len(tally.latencies) * spans
            delivered = server.wait_drained(tally.sent_ok * spans, before, timeout=60)
            lat = tally.latencies
            rows.append((protocol, len(bodies[protocol]), accepted / args.seconds, percentile(lat, 0.5) * 1e3,
                         percentile(lat, 0.99) * 1e3, tally.failures, tally.sent_ok * spans, delivered))
    report(rows, args, spans)
    return 0


def report(rows: list[tuple[str, int, float, float, float, int, int, int]], args: argparse.Namespace,
           spans: int) -> None:
    lines = [
        "# OTLP/HTTP vs OTLP/gRPC, one relay",
        "",
        f"`python -m bench.http --seconds {args.seconds:g} --threads {args.threads} --spans {args.spans}`: "
        f"{args.threads} clients back to back, {spans} spans a request, agent output, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Shared 2-core machine: compare rows, "
        "not absolute numbers.",
        "",
        "| protocol | request bytes | accepted spans/s | p50 ms | p99 ms | failed requests "
        "| spans accepted (with warm-up) | spans at the agent |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {p} | {size} | {rate:,.0f} | {p50:.1f} | {p99:.1f} | {fail} | {sent} | {got} |"
              for p, size, rate, p50, p99, fail, sent, got in rows]
    text = "\n".join(lines) + "\n"
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
