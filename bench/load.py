"""The load generator: pre-serialized OTLP Export requests over many concurrent in-flight calls.

Closed loop (``rate=None``: each of ``concurrency`` callers sends its next request as soon as the
last one is answered: saturation) or open loop (``rate`` spans/s spread evenly over time, up to
``concurrency`` calls in flight). UNAVAILABLE is counted as refused and the same request is
retried after ``retry_delay``. Counts are of calls answered after ``warmup``; latencies of calls begun after it.

In its own process: ``python -m bench.load --target HOST:PORT --profile standard --duration 10``
prints one JSON object (see :class:`LoadResult`); :func:`run_load_process` does that for you.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import grpc

from bench.profiles import PROFILES, Request, build_requests
from relay.receiver import EXPORT_METHOD

METHOD = EXPORT_METHOD
POOL_SIZE = 64  # distinct requests cycled through
# A refused call is retried after this long. The relay's RetryInfo asks for 2 s and OTLP clients
# back off at least that long; 0.5 s keeps a saturated relay's queue full without spending the
# relay's CPU on a storm of refusals (each still costs gRPC and a parse).
RETRY_DELAY = 0.5


@dataclass
class LoadResult:
    elapsed: float = 0.0  # seconds measured (after warmup)
    ok_requests: int = 0
    ok_spans: int = 0  # accepted (answered OK) after warmup
    refused_requests: int = 0
    refused_spans: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    total_ok_spans: int = 0  # accepted over the whole run, warmup included
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    latency_max_ms: float = 0.0

    @property
    def accepted_per_s(self) -> float:
        return self.ok_spans / self.elapsed if self.elapsed else 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class _Pacer:
    """Hands out send times ``interval`` apart (open loop); None = as fast as answered."""

    def __init__(self, interval: float | None, start: float) -> None:
        self._interval = interval
        self._next = start

    async def wait(self) -> None:
        if self._interval is None:
            return
        slot, self._next = self._next, self._next + self._interval
        delay = slot - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class _Run:
    def __init__(self, requests: list[Request], warmup: float, end: float, retry_delay: float) -> None:
        self.requests = requests
        self.result = LoadResult()
        self.latencies: list[float] = []
        self._measure_from = time.monotonic() + warmup
        self.end = end
        self._retry_delay = retry_delay
        self._next = 0

    def take(self) -> Request:
        request = self.requests[self._next % len(self.requests)]
        self._next += 1
        return request

    async def call(self, export: grpc.aio.UnaryUnaryMultiCallable, request: Request) -> None:
        data, spans = request
        while time.monotonic() < self.end:
            begin = time.monotonic()
            try:
                await export(data, timeout=30)
            except grpc.aio.AioRpcError as exc:
                if self._record_error(exc.code(), spans, begin):
                    await asyncio.sleep(self._retry_delay)
                    continue
                return
            self._record_ok(spans, begin, time.monotonic())
            return

    def _record_ok(self, spans: int, begin: float, done: float) -> None:
        result = self.result
        result.total_ok_spans += spans
        if done >= self._measure_from:  # throughput: calls answered in the window
            result.ok_requests += 1
            result.ok_spans += spans
        if begin >= self._measure_from:  # latency: calls begun in the window
            self.latencies.append(done - begin)

    def _record_error(self, code: grpc.StatusCode, spans: int, begin: float) -> bool:
        """Count one failed call; True to retry it."""
        measured = time.monotonic() >= self._measure_from
        if code == grpc.StatusCode.UNAVAILABLE:
            if measured:
                self.result.refused_requests += 1
                self.result.refused_spans += spans
            return True
        if measured:
            self.result.errors[code.name] = self.result.errors.get(code.name, 0) + 1
        return False

    def finish(self, elapsed: float) -> LoadResult:
        result = self.result
        result.elapsed = elapsed
        result.latency_p50_ms = percentile(self.latencies, 0.50) * 1000
        result.latency_p99_ms = percentile(self.latencies, 0.99) * 1000
        result.latency_max_ms = max(self.latencies, default=0.0) * 1000
        return result


async def run_load(target: str, requests: list[Request], *, duration: float, concurrency: int,
                   rate: float | None = None, warmup: float = 0.0, retry_delay: float = 0.5) -> LoadResult:
    """Send ``requests`` (cycled) to ``target`` for ``warmup + duration`` seconds."""
    spans_per_request = sum(spans for _, spans in requests) / len(requests)
    async with grpc.aio.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        export = channel.unary_unary(METHOD)
        print("START", flush=True)  # the parent aligns its own measurements on this line
        start = time.monotonic()
        run = _Run(requests, warmup, start + warmup + duration, retry_delay)
        pacer = _Pacer(spans_per_request / rate if rate else None, start)

        async def caller() -> None:
            while True:
                await pacer.wait()
                if time.monotonic() >= run.end:
                    return
                await run.call(export, run.take())

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    return run.finish(max(1e-9, time.monotonic() - start - warmup))


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("--target", required=True, help="HOST:PORT of an OTLP/gRPC server")
    parser.add_argument("--profile", choices=PROFILES, default="standard")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight")
    parser.add_argument("--rate", type=float, default=None, help="offered spans/s (default: closed loop)")
    parser.add_argument("--retry-delay", type=float, default=RETRY_DELAY, help="seconds before retrying a refusal")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = _parse_args(argv)
    requests = build_requests(args.profile, POOL_SIZE)
    result = asyncio.run(run_load(args.target, requests, duration=args.duration,
                                  concurrency=args.concurrency, rate=args.rate, warmup=args.warmup,
                                  retry_delay=args.retry_delay))
    print(json.dumps(asdict(result)), flush=True)


def start_load_process(target: str, *, profile: str, duration: float, warmup: float,
                       concurrency: int, rate: float | None = None) -> subprocess.Popen[str]:
    """Start the load generator in its own process; read it back with :func:`load_process_result`."""
    argv = [sys.executable, "-m", "bench.load", "--target", target, "--profile", profile,
            "--duration", str(duration), "--warmup", str(warmup), "--concurrency", str(concurrency)]
    if rate is not None:
        argv += ["--rate", str(rate)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "START":
        proc.kill()
        raise RuntimeError(f"load generator could not connect to {target}")
    return proc


def load_process_result(proc: subprocess.Popen[str], timeout: float) -> LoadResult:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed with exit code {proc.returncode}")
    return LoadResult(**json.loads(out.strip().splitlines()[-1]))


if __name__ == "__main__":
    main(sys.argv[1:])
