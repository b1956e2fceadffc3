"""The receive side's worst case at the default limit: many clients sending the largest request
at once, over both transports.

    python -m bench.memory_receive [--mib 64] [--clients 8] [--max-concurrent-rpcs 8]

A relay subprocess with its defaults (``--max-recv-msg-size-mib 64``, ``--max-concurrent-rpcs 8``)
or the given ones gets ``--clients`` gRPC and ``--clients`` HTTP clients at the same moment, each sending a body
just under the limit of the worst shape for parsing (one span, millions of tiny attributes:
bench.memory measures its parse factor, 5.4x). The relay's peak RSS (VmHWM) is printed next to
the bound documented in docs/receivers.md and appended to bench/results/memory-receive.md.
"""

from __future__ import annotations

import argparse
import http.client
import re
import threading
import time
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from bench.servers import ServerProcess
from relay.receiver import EXPORT_METHOD

MIB = 1024 * 1024
RESULTS = Path(__file__).parent / "results" / "memory-receive.md"
EXPORT = EXPORT_METHOD
PARSE_FACTOR = 5.4  # bench/results/memory.md


def worst_body(limit: int) -> bytes:
    span = Span(trace_id=b"\1" * 16, span_id=b"\2" * 8, start_time_unix_nano=1, end_time_unix_nano=2)
    span.attributes.extend(KeyValue(key="k", value=AnyValue(int_value=1)) for _ in range((limit - 4096) // 9))
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
                                     ).SerializeToString()


def peak_kib(pid: int, field: str = "VmHWM") -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"{field}:\s+(\d+) kB", status)
    return int(match[1]) if match else 0


def burst(server: ServerProcess, body: bytes, clients: int, transports: tuple[str, ...]) -> dict[str, int]:
    codes: dict[str, int] = {}
    lock = threading.Lock()
    go = threading.Event()

    def record(code: str) -> None:
        with lock:
            codes[code] = codes.get(code, 0) + 1

    def grpc_client() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}", options=[
                ("grpc.max_send_message_length", 2 * len(body))]) as channel:
            call = channel.unary_unary(EXPORT)
            go.wait(30)
            try:
                call(body, timeout=120)
                record("grpc OK")
            except grpc.RpcError as exc:
                record(f"grpc {exc.code().name}")

    def http_client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=120)
        go.wait(30)
        try:
            conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
            record(f"http {conn.getresponse().status}")
        except (OSError, http.client.HTTPException) as exc:
            record(f"http {type(exc).__name__}")
        finally:
            conn.close()

    targets = {"grpc": grpc_client, "http": http_client}
    threads = [threading.Thread(target=targets[name]) for name in transports for _ in range(clients)]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join(180)
    return codes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_receive",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=64, help="--max-recv-msg-size-mib (default 64)")
    parser.add_argument("--clients", type=int, default=8, help="clients per transport (default 8)")
    parser.add_argument("--transports", default="grpc,http", help="grpc, http or both (default grpc,http)")
    parser.add_argument("--max-concurrent-rpcs", type=int, default=8, dest="rpcs",
                        help="the relay's --max-concurrent-rpcs (default 8; the chart's: 2)")
    args = parser.parse_args(argv)
    body = worst_body(args.mib * MIB)
    relay_args = ("--max-recv-msg-size-mib", str(args.mib), "--max-concurrent-rpcs", str(args.rpcs))
    with ServerProcess("relay", "agent", extra_args=relay_args) as server:
        idle = peak_kib(server.pid, "VmRSS") / 1024
        started = time.monotonic()
        transports = tuple(args.transports.split(","))
        codes = burst(server, body, args.clients, transports)
        elapsed = time.monotonic() - started
        peak = peak_kib(server.pid) / 1024
    size = len(body) / MIB
    held = args.clients if "grpc" in transports else 0
    # gRPC holds each arriving request's body twice (its own buffer and the Python bytes), also
    # while the request waits for one of the --max-concurrent-rpcs handlers: so every gRPC
    # client counts, not the handlers. The HTTP bodies are read only inside the parse budget
    # (one largest body: read buffer, bytes, parsed copy).
    bound = idle + 2 * held * size + size * (2 + PARSE_FACTOR) + 32
    clients = " + ".join(f"{args.clients} {name}" for name in transports)
    if args.rpcs != 8:
        clients += f" (--max-concurrent-rpcs {args.rpcs})"
    line = (f"| {time.strftime('%Y-%m-%d')} | {args.mib} | {size:.1f} | {clients} | "
            f"{idle:.0f} | {peak:.0f} | {bound:.0f} | {elapsed:.1f} | {codes} |")
    if not RESULTS.exists():
        RESULTS.write_text("# Receive-side memory at the limit (python -m bench.memory_receive)\n\n"
                           "| date | limit MiB | body MiB | clients | idle RSS MiB | peak RSS MiB "
                           "| bound MiB | seconds | answers |\n"
                           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    with RESULTS.open("a") as out:
        out.write(line + "\n")
    print(RESULTS.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
