"""RSS stays under the documented bound (docs/operations.md, "Memory"; docs/queue.md for the byte
bound) during a burst of many concurrent large requests against a stalled Jaeger: the queue
fills, further requests are refused, and the relay's peak RSS (VmHWM, read from /proc) stays under

    R0 + queue_size * SPAN_BYTES + max_concurrent_rpcs * max_recv * (1 + PARSE_FACTOR) + SLACK

A correctness bound, not a timing: nothing here depends on how fast anything runs."""

from __future__ import annotations

import random
import re
import threading
import time
from pathlib import Path

import grpc

from bench.relay_process import RelayProcess
from relay.testtrace import buildkit_trace
from tests.faults.backends import SilentListener
from tests.hostile import requests as hostile
from tests.probes import assert_serving, scrape
from tests.waiting import wait_until

MIB = 1024 * 1024
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# The documented constants (bench/results/memory.md measures them: 1576 B, 5.4x).
SPAN_BYTES = 1600
PARSE_FACTOR = 5.5
SLACK = 32 * MIB  # allocator fragmentation, gRPC transport buffers of waiting streams, threads

QUEUE, RPCS, RECV_MIB = 2000, 4, 2
CLIENTS, EACH = 24, 3


def _kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status)[1]) * 1024  # type: ignore[index]


def _bodies() -> list[bytes]:
    """Large requests of three shapes, each just under the limit: many BuildKit spans, many tiny
    spans (most ReadableSpans per byte), one span with many attributes (worst parse factor)."""
    limit = RECV_MIB * MIB - 4096
    big_trace = buildkit_trace(random.Random(1), time.time_ns(), steps=4000).SerializeToString()
    tiny = hostile.request(*[hostile.span("t", span_id=(i + 1).to_bytes(8, "big")) for i in range(30_000)])
    while len(tiny.SerializeToString()) > limit:
        del tiny.resource_spans[0].scope_spans[0].spans[-1000:]
    attrs = hostile.many_attributes(limit // 12)
    while len(attrs.SerializeToString()) > limit:
        del attrs.resource_spans[0].scope_spans[0].spans[0].attributes[-1000:]
    bodies = [big_trace, tiny.SerializeToString(), attrs.SerializeToString()]
    assert all(len(body) <= limit for body in bodies)
    return bodies


def _burst(port: int, bodies: list[bytes]) -> dict[str, int]:
    codes: dict[str, int] = {}
    lock = threading.Lock()
    go = threading.Event()

    def client(index: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(EXPORT)
            go.wait(30)
            for n in range(EACH):
                try:
                    call(bodies[(index + n) % len(bodies)], timeout=60)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                with lock:
                    codes[code] = codes.get(code, 0) + 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join(120)
    return codes


def test_burst_against_a_stalled_backend_stays_under_the_memory_bound() -> None:
    bodies = _bodies()
    with SilentListener() as jaeger:
        relay = RelayProcess("--jaeger-collector", jaeger.url, "--jaeger-timeout", "120s",
                        "--queue-size", str(QUEUE), "--max-concurrent-rpcs", str(RPCS),
                        "--max-recv-msg-size-mib", str(RECV_MIB), "--max-batch-size", "100")
        try:
            small = buildkit_trace(random.Random(2), time.time_ns(), steps=48).SerializeToString()
            with grpc.insecure_channel(f"127.0.0.1:{relay.otlp_port}") as channel:
                call = channel.unary_unary(EXPORT)
                call(small, timeout=30)  # warm up, then measure the idle baseline
                base = _kib(relay.proc.pid, "VmRSS")
                for _ in range(QUEUE // 100 - 1):  # fill the queue (the worker is stuck on Jaeger)
                    call(small, timeout=30)
            assert wait_until(lambda: scrape(relay.admin_port).queued == QUEUE)
            codes = _burst(relay.otlp_port, bodies)
            peak = _kib(relay.proc.pid, "VmHWM")
            bound = base + QUEUE * SPAN_BYTES + RPCS * RECV_MIB * MIB * (1 + PARSE_FACTOR) + SLACK
            assert codes.get("OK", 0) == 0
            assert sum(codes.values()) == CLIENTS * EACH
            # A body of more tiny spans than the queue holds can never be queued: INVALID_ARGUMENT.
            assert set(codes) <= {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"}
            metrics = scrape(relay.admin_port)
            assert set(metrics.rejected) <= {"request_exceeds_queue"}
            assert metrics.refused.get("queue_full", 0) > 0
            assert metrics.unbalanced() == 0
            assert_serving(relay.otlp_port, relay.admin_port)
            print(f"baseline {base / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB, bound {bound / MIB:.1f} MiB, "
                  f"codes {codes}")
            assert peak <= bound, f"peak RSS {peak / MIB:.1f} MiB over the bound {bound / MIB:.1f} MiB"
        finally:
            relay.close()


BYTE_FACTOR = 2.5  # RSS per encoded byte held, for spans dominated by large strings (bench/results/memory.md)


def test_large_spans_are_bounded_by_bytes_and_every_refusal_says_retry() -> None:
    """400 one-span requests of 512 KiB each (200 MiB offered) against a stalled Jaeger with
    --queue-max-mib 32: the queue takes about 32 MiB, the rest is refused UNAVAILABLE + RetryInfo,
    and RSS stays near the byte bound (a span count bound alone would let 20 GB in)."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    def body(i: int) -> bytes:
        one = hostile.span(f"big-{i}", span_id=(i + 1).to_bytes(8, "big"),
                           attributes=[KeyValue(key="blob", value=AnyValue(string_value="x" * (512 * 1024)))])
        return hostile.request(one).SerializeToString()

    with SilentListener() as jaeger:
        relay = RelayProcess("--jaeger-collector", jaeger.url, "--jaeger-timeout", "120s",
                             "--queue-max-mib", "32", "--max-concurrent-rpcs", str(RPCS),
                             "--max-batch-size", "10")
        try:
            base = _kib(relay.proc.pid, "VmRSS")
            codes: dict[str, int] = {}
            retry_info = 0
            lock = threading.Lock()

            def client(index: int) -> None:
                nonlocal retry_info
                # One connection per client, as separate CI jobs would have (grpc would otherwise
                # share one, and streams past --max-concurrent-rpcs get REFUSED_STREAM).
                with grpc.insecure_channel(f"127.0.0.1:{relay.otlp_port}",
                                           options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                    call = channel.unary_unary(EXPORT)
                    for n in range(50):
                        try:
                            call(body(index * 50 + n), timeout=60)
                            code, has_retry, detail = "OK", False, ""
                        except grpc.RpcError as exc:
                            code, detail = exc.code().name, exc.details()
                            status = rpc_status.from_call(exc)  # type: ignore[arg-type]
                            has_retry = status is not None and any(
                                d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
                        with lock:
                            codes[code] = codes.get(code, 0) + 1
                            retry_info += has_retry
                            if code != "OK" and not has_retry:
                                print("no RetryInfo:", detail)

            threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(300)
            peak = _kib(relay.proc.pid, "VmHWM")
            bound = base + 32 * MIB * BYTE_FACTOR + RPCS * 1 * MIB * (1 + PARSE_FACTOR) + SLACK
            print(f"baseline {base / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB, bound {bound / MIB:.1f} MiB, {codes}")
            assert sum(codes.values()) == 400
            assert set(codes) == {"OK", "UNAVAILABLE"}
            assert codes["OK"] <= 64  # 32 MiB of 512 KiB spans
            assert retry_info == codes["UNAVAILABLE"]
            metrics = scrape(relay.admin_port)
            assert metrics.value("queue_bytes") <= 32 * MIB
            assert metrics.unbalanced() == 0
            assert peak <= bound, f"peak RSS {peak / MIB:.1f} MiB over the bound {bound / MIB:.1f} MiB"
        finally:
            relay.close()
