"""The disk queue against the memory queue, in one run: what --queue-dir costs and how a backlog drains.

1. Saturated closed loop (32 calls in flight, the standard BuildKit-like profile) into a relay with
   the memory queue and into one with --queue-dir: delivered spans/s and Export p50/p99.
2. A backlog: a relay on --queue-dir whose Jaeger never answers (a blackhole) is filled until
   --backlog-mib of spans are on disk, then stopped (SIGTERM: the backlog stays); a new relay on the
   same dir with a working Jaeger drains it: the drain rate, and RSS sampled while draining.

    .venv/bin/python -m bench.queue --backlog-mib 1024 --out bench/results/queue.md
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.load import load_process_result, start_load_process
from bench.procstat import CpuWindow, memory_mib
from bench.servers import ServerProcess


def saturated(extra: tuple[str, ...], seconds: float) -> dict[str, float]:
    server = ServerProcess("relay", "collector", extra_args=extra)
    try:
        before = server.delivered()
        cpu = CpuWindow(server.pid)
        load = start_load_process(server.target, profile="standard", duration=seconds, warmup=2, concurrency=32)
        time.sleep(2)
        cpu.start()
        result = load_process_result(load, timeout=seconds + 60)
        used = cpu.stop()
        delivered = server.wait_drained(result.total_ok_spans, since=before, timeout=60)
        return {"accepted_spans_per_s": result.ok_spans / result.elapsed, "ok_spans": result.total_ok_spans,
                "delivered_spans": delivered, "export_p50_ms": result.latency_p50_ms,
                "export_p99_ms": result.latency_p99_ms, "relay_cpu_percent": used}
    finally:
        server.close()


def backlog(directory: Path, backlog_mib: int) -> dict[str, float]:
    flags = ("--queue-dir", str(directory), "--queue-max-mib", str(backlog_mib + 64),
             "--queue-size", "100000000", "--retry-max-elapsed", "0", "--jaeger-timeout", "1s")
    filler = ServerProcess("relay", "collector", sink_kind="blackhole", extra_args=flags)
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            load = start_load_process(filler.target, profile="standard", duration=10, warmup=0, concurrency=32)
            load_process_result(load, timeout=120)
            if (filler.metric("trace_relay_queue_disk_bytes") or 0) >= backlog_mib * 2**20:
                break
        disk_bytes = filler.metric("trace_relay_queue_disk_bytes") or 0
        spans = filler.metric("trace_relay_queue_disk_spans") or 0
    finally:
        filler.close()
    drainer = ServerProcess("relay", "collector", extra_args=flags)
    try:
        begin = time.monotonic()
        peak = 0.0
        while time.monotonic() - begin < 1800:
            peak = max(peak, memory_mib(drainer.pid)[0])
            if drainer.delivered() >= spans:
                break
            time.sleep(0.5)
        seconds = time.monotonic() - begin
        left = sum(p.stat().st_size for p in directory.glob("seg-*.log"))
        return {"backlog_mib_on_disk": disk_bytes / 2**20, "backlog_spans": spans, "drain_seconds": seconds,
                "drain_spans_per_s": spans / seconds, "drain_mib_per_s": disk_bytes / 2**20 / seconds,
                "rss_while_draining_peak_mib": peak, "disk_mib_after_drain": left / 2**20}
    finally:
        drainer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds of each saturated run")
    parser.add_argument("--backlog-mib", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None, help="where the disk queues go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-queue-", dir=args.dir))
    try:
        (base / "sat").mkdir()
        (base / "backlog").mkdir()
        memory = saturated((), args.seconds)
        print("memory", memory, flush=True)
        disk = saturated(("--queue-dir", str(base / "sat")), args.seconds)
        print("disk", disk, flush=True)
        drain = backlog(base / "backlog", args.backlog_mib)
        print("drain", drain, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    lines = ["# Memory queue vs disk queue (--queue-dir), one run", "",
             "Saturated: 32 calls in flight, standard profile (100 BuildKit-like spans a request), "
             f"{args.seconds:.0f} s measured, Jaeger collector sink on loopback.", "",
             "| queue | accepted spans/s | delivered | Export p50 ms | Export p99 ms | relay CPU % |",
             "|---|---|---|---|---|---|"]
    for name, row in (("memory", memory), ("disk", disk)):
        lines.append(f"| {name} | {row['accepted_spans_per_s']:,.0f} | {row['delivered_spans']:,.0f} | "
                     f"{row['export_p50_ms']:.1f} | {row['export_p99_ms']:.1f} | {row['relay_cpu_percent']:.0f} |")
    lines += ["", "Backlog: filled against a Jaeger that never answers, then drained by a new relay on the "
              "same dir.", "", "| figure | value |", "|---|---|"]
    lines += [f"| {key} | {value:,.1f} |" for key, value in drain.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
