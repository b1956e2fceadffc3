"""Soak: a subprocess relay under steady OTLP load for N minutes, with a Jaeger collector that
fails 5xx periodically. Samples RSS (/proc) and the queue depth (/metrics) over time.

    python -m bench.soak --minutes 10 --rate 10000

Writes bench/results/soak-<stamp>.csv, .md and .png (and soak-latest.* copies). Loopback only;
every loop is bounded by the run's deadline.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
from prometheus_client.parser import text_string_to_metric_families

from bench.relay_process import RelayProcess
from relay.receiver import EXPORT_METHOD
from relay.testtrace import buildkit_trace

RESULTS = Path(__file__).resolve().parent / "results"
EXPORT = EXPORT_METHOD
SPANS_PER_REQUEST = 100  # buildkit_trace(steps=48): 4 + 2 * 48


class FlakyCollector:
    """A Jaeger collector that answers 503 for ``outage`` seconds every ``period`` seconds.
    It does not decode bodies (the relay's own counters are the measure here)."""

    def __init__(self, period: float, outage: float) -> None:
        self.period, self.outage = period, outage
        self.started = time.monotonic()
        self.ok = self.failed = 0
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = collector.status()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api/traces"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def failing(self) -> bool:
        return (time.monotonic() - self.started) % self.period >= self.period - self.outage

    def status(self) -> int:
        failing = self.failing()
        with self._lock:
            if failing:
                self.failed += 1
            else:
                self.ok += 1
        return 503 if failing else 202

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def metrics(relay: RelayProcess) -> dict[str, float]:
    url = f"http://127.0.0.1:{relay.admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "".join(f"{{{k}={v}}}" for k, v in sorted(sample.labels.items()))
            values[key] = sample.value
    return values


@dataclass
class LoadStats:
    ok: int = 0
    refused: int = 0
    errors: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, code: grpc.StatusCode) -> None:
        with self.lock:
            self.codes[code.name] = self.codes.get(code.name, 0) + 1
            if code is grpc.StatusCode.OK:
                self.ok += 1
            elif code is grpc.StatusCode.UNAVAILABLE:
                self.refused += 1
            else:
                self.errors += 1


def requests(count: int) -> list[bytes]:
    rng = random.Random(7)
    now = time.time_ns()
    return [buildkit_trace(rng, now, steps=48).SerializeToString() for _ in range(count)]


def load(port: int, rate: float, until: float, stats: LoadStats, bodies: list[bytes],
         threads: int) -> list[threading.Thread]:
    """``threads`` senders, each paced to rate/threads spans per second, until ``until``."""
    interval = threads * SPANS_PER_REQUEST / rate

    def sender(index: int) -> None:
        pause = threading.Event()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(EXPORT)
            due = time.monotonic() + index * interval / threads
            n = index
            while due < until:
                pause.wait(max(0.0, due - time.monotonic()))
                try:
                    call(bodies[n % len(bodies)], timeout=10)
                    stats.add(grpc.StatusCode.OK)
                except grpc.RpcError as exc:
                    stats.add(exc.code())
                n += 1
                due = max(due + interval, time.monotonic() - 1.0)  # no catch-up storm

    workers = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    return workers


def sample(relay: RelayProcess, collector: FlakyCollector, started: float) -> dict[str, float]:
    m = metrics(relay)
    return {
        "t_s": round(time.monotonic() - started, 1),
        "rss_mib": round(relay.rss_mib(), 1),
        "queue_spans": m.get("trace_relay_queue_size", 0),
        "received": sum(v for k, v in m.items() if k.startswith("trace_relay_receiver_received_spans_total")),
        "exported": m.get("trace_relay_exporter_sent_spans_total", 0),
        "refused": sum(v for k, v in m.items() if k.startswith("trace_relay_receiver_refused_spans_total")),
        "dropped": sum(v for k, v in m.items() if k.startswith("trace_relay_dropped_spans_total")),
        "collector_failing": int(collector.failing()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=10000.0, help="offered spans per second")
    parser.add_argument("--threads", type=int, default=8, help="concurrent client channels")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--outage-every", type=float, default=60.0, help="collector 503 period, s")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds of 503 per period")
    parser.add_argument("--queue-size", type=int, default=20000)
    args = parser.parse_args(argv)
    collector = FlakyCollector(args.outage_every, args.outage)
    relay = RelayProcess("--jaeger-collector", collector.url, "--queue-size", str(args.queue_size),
                         "--retry-max-elapsed", "30s")
    started = time.monotonic()
    until = started + args.minutes * 60
    stats = LoadStats()
    senders = load(relay.otlp_port, args.rate, until, stats, requests(50), args.threads)
    rows = [sample(relay, collector, started)]
    tick = threading.Event()
    while time.monotonic() < until:
        tick.wait(args.interval)
        rows.append(sample(relay, collector, started))
        print(rows[-1], flush=True)
    for sender in senders:
        sender.join(15)
    drained = threading.Event()
    drain_until = time.monotonic() + 60
    while time.monotonic() < drain_until and metrics(relay).get("trace_relay_queue_size", 0) > 0:
        drained.wait(0.5)
    rows.append(sample(relay, collector, started))
    code = relay.terminate()
    collector.close()
    write_results(rows, stats, args, code, (collector.ok, collector.failed))
    return 0


def _slope_mib_per_min(rows: list[dict[str, float]]) -> float:
    """Least-squares slope of RSS over the second half of the run (warm)."""
    half = rows[len(rows) // 2:]
    if len(half) < 2:
        return 0.0
    xs = [r["t_s"] / 60 for r in half]
    ys = [r["rss_mib"] for r in half]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs) or 1.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def write_results(rows: list[dict[str, float]], stats: LoadStats, args: argparse.Namespace,
                  exit_code: int, replies: tuple[int, int]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"soak-{time.strftime('%Y%m%d-%H%M%S')}"
    with open(f"{stem}.csv", "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _plot(rows, Path(f"{stem}.png"))
    last = rows[-1]
    warm = rows[len(rows) // 2:]
    balance = last["received"] - last["exported"] - last["dropped"] - last["refused"] - last["queue_spans"]
    text = f"""# Soak: {args.minutes:g} min at {args.rate:g} spans/s offered

Relay: subprocess, `--jaeger-collector` (a local HTTP server answering 503 for {args.outage:g}s
every {args.outage_every:g}s), `--queue-size {args.queue_size}`, `--retry-max-elapsed 30s`.
Load: {args.threads} gRPC channels sending pre-built BuildKit-shaped requests of
{SPANS_PER_REQUEST} spans (`relay.testtrace.buildkit_trace`). Machine: {os.cpu_count()} cores,
the load generator and the collector share them with the relay.

| measure | value |
| --- | --- |
| requests OK / refused (UNAVAILABLE) / other | {stats.ok} / {stats.refused} / {stats.errors} {stats.codes} |
| spans received / exported / refused / dropped | {last['received']:.0f} / {last['exported']:.0f} \
/ {last['refused']:.0f} / {last['dropped']:.0f} |
| spans still queued at the end | {last['queue_spans']:.0f} |
| ledger: received - exported - dropped - refused - queued (rejected = 0 here) | {balance:.0f} |
| achieved export rate | {last['exported'] / max(1.0, last['t_s']):.0f} spans/s |
| RSS min / max (MiB) | {min(r['rss_mib'] for r in rows):.1f} / {max(r['rss_mib'] for r in rows):.1f} |
| RSS max, second half (MiB) | {max(r['rss_mib'] for r in warm):.1f} |
| RSS slope, second half (MiB/min) | {_slope_mib_per_min(rows):+.2f} |
| max queue depth (spans) | {max(r['queue_spans'] for r in rows):.0f} |
| collector replies 202 / 503 | {replies[0]} / {replies[1]} |
| relay exit code after SIGTERM | {exit_code} |

Files: `{Path(stem).name}.csv` (one row every {args.interval:g}s), `{Path(stem).name}.png`.
"""
    Path(f"{stem}.md").write_text(text)
    for suffix in (".csv", ".md", ".png"):
        shutil.copyfile(f"{stem}{suffix}", RESULTS / f"soak-latest{suffix}")
    print(text)


def _plot(rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] / 60 for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    top.plot(t, [r["rss_mib"] for r in rows], label="RSS (MiB)")
    top.set_ylabel("RSS MiB")
    top.set_ylim(bottom=0)
    bottom.plot(t, [r["queue_spans"] for r in rows], color="tab:orange", label="queue (spans)")
    top_queue = max(1, *(x["queue_spans"] for x in rows))
    bottom.fill_between(t, 0, [r["collector_failing"] * top_queue for r in rows],
                        color="tab:red", alpha=0.15, step="post", label="collector answering 503")
    bottom.set_ylabel("queued spans")
    bottom.set_xlabel("minutes")
    bottom.legend(loc="upper right")
    fig.suptitle("trace-relay soak")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
