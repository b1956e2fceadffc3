"""Long fuzz run of the Export path: hypothesis-generated bodies (arbitrary bytes, mutated BuildKit
requests, valid-but-weird requests; strategies in bench/fuzz_bodies.py) through a real gRPC
channel into an in-process relay exporting to a loopback UDP socket.

    python -m bench.fuzz --minutes 10

Checks after every example: the status is OK, INVALID_ARGUMENT or RESOURCE_EXHAUSTED. At the end:
the worker is alive, the queue drains, the ledger balances, nothing was dropped but too_large.
Writes bench/results/fuzz-latest.md; exit 1 if any check failed.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
from hypothesis import HealthCheck, given, settings

from bench.fuzz_bodies import bodies
from relay.app import Relay
from relay.config import load_config
from relay.receiver import EXPORT_METHOD

RESULTS = Path(__file__).resolve().parent / "results"
EXPORT = EXPORT_METHOD
ALLOWED = {"OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"}


class _ErrorCount(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run(minutes: float, batch: int) -> tuple[Counter[str], list[str], int]:
    """Examples in rounds of ``batch`` until ``minutes`` pass -> (status counts, bad bodies, rounds)."""
    codes: Counter[str] = Counter()
    bad: list[str] = []
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    config = load_config(["--otlp-grpc-endpoint", "127.0.0.1:0", "--otlp-http-endpoint", "127.0.0.1:0",
                          "--admin-endpoint", "127.0.0.1:0",
                          "--jaeger-agent", f"127.0.0.1:{sink.getsockname()[1]}",
                          "--queue-size", "1000000"], {})
    relay = Relay(config)
    relay.start()
    until = time.monotonic() + minutes * 60
    rounds = 0
    with grpc.insecure_channel(f"127.0.0.1:{relay.otlp_port}") as channel:
        call = channel.unary_unary(EXPORT)

        @settings(max_examples=batch, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(body=bodies)
        def export(body: bytes) -> None:
            try:
                call(body, timeout=30)
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
            codes[code] += 1
            if code not in ALLOWED and len(bad) < 20:
                bad.append(f"{code}: {body[:200].hex()}")

        while time.monotonic() < until:
            export()
            rounds += 1
    drained = threading.Event()
    drain_until = time.monotonic() + 60
    while relay.metrics.ledger.snapshot().queued and time.monotonic() < drain_until:
        drained.wait(0.1)
    alive = relay.worker.is_alive()
    snapshot = relay.metrics.ledger.snapshot()
    report = relay.shutdown()
    sink.close()
    if not alive:
        bad.append("the exporter worker died")
    balance = snapshot.received - (snapshot.exported + sum(snapshot.dropped.values())
                                   + sum(snapshot.refused.values()) + sum(snapshot.rejected.values())
                                   + snapshot.queued)
    if balance:
        bad.append(f"ledger off by {balance}")
    if set(snapshot.dropped) - {"too_large"}:
        bad.append(f"unexpected drops {snapshot.dropped}")
    codes["_spans_received"] = snapshot.received
    codes["_spans_exported"] = snapshot.exported
    codes["_spans_rejected"] = sum(snapshot.rejected.values())
    codes["_clean_shutdown"] = int(report.clean)
    return codes, bad, rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=500, help="examples per hypothesis round")
    args = parser.parse_args(argv)
    errors = _ErrorCount()
    logging.getLogger().addHandler(errors)
    started = time.monotonic()
    codes, bad, rounds = run(args.minutes, args.batch)
    elapsed = time.monotonic() - started
    bad.extend(f"logged error: {message}" for message in errors.messages[:10])
    examples = sum(v for k, v in codes.items() if not k.startswith("_"))
    statuses = "\n".join(f"| {k} | {v} |" for k, v in sorted(codes.items()) if not k.startswith("_"))
    failures = "\n".join(f"- `{line}`" for line in bad) or "none"
    text = f"""# Fuzz: {args.minutes:g} min, {examples} Export calls

`python -m bench.fuzz --minutes {args.minutes:g}` on {time.strftime('%Y-%m-%d %H:%M')}, Python
{sys.version.split()[0]}: {rounds} hypothesis rounds of {args.batch} examples (arbitrary bytes, mutated
BuildKit requests, valid-but-weird requests), {elapsed:.0f} s, through a real gRPC channel.

| status | calls |
| --- | --- |
{statuses}

Spans received {codes['_spans_received']}, exported to the UDP agent {codes['_spans_exported']},
rejected via partial_success {codes['_spans_rejected']}; clean shutdown: {bool(codes['_clean_shutdown'])}.

Failures: {failures}

Result: **{"PASS" if not bad else "FAIL"}**
"""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fuzz-latest.md").write_text(text)
    print(text)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
