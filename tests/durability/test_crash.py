"""A real relay process on --queue-dir, SIGKILLed under load and restarted on the same dir.

Every span answered OK must reach the decoding Jaeger collector sink; duplicates only for what
was in flight at each kill, at most one batch (--max-batch-size) per kill."""

from __future__ import annotations

import itertools
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.jaeger_sinks import HttpCollectorSink
from bench.relay_process import RelayProcess
from tests.hostile.requests import request, span
from tests.otlp import raw_export
from tests.probes import scrape
from tests.waiting import wait_until

BATCH = 64


def flags(queue_dir: Path, sink: HttpCollectorSink) -> tuple[str, ...]:
    return ("--queue-dir", str(queue_dir), "--jaeger-collector", sink.url, "--retry-max-elapsed", "0",
            "--max-batch-size", str(BATCH), "--batch-timeout", "50ms", "--shutdown-timeout", "5s")


class Load:
    """Threads sending 10-span requests with unique names; remembers what was answered OK."""

    def __init__(self, port: int, numbers: itertools.count[int], threads: int = 3) -> None:
        self.port = port
        self.ok: list[str] = []
        self._numbers = numbers
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _next_request(self) -> tuple[ExportTraceServiceRequest, list[str]]:
        with self._lock:
            first = next(self._numbers) * 10
        names = [f"span-{first + i}" for i in range(10)]
        spans = [span(name, trace_id=(first + i + 1).to_bytes(16, "big"),
                      span_id=(first + i + 1).to_bytes(8, "big")) for i, name in enumerate(names)]
        return request(*spans), names

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            req, names = self._next_request()
            try:
                raw_export(self.port, req, timeout=5)
            except grpc.RpcError:
                continue  # not answered OK: the client would retry; not counted
            with self._lock:
                self.ok.extend(names)

    def stop(self) -> list[str]:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        return self.ok


@pytest.mark.timeout(240)
def test_sigkill_under_load_loses_nothing_answered_ok(tmp_path: Path) -> None:
    rng = random.Random(9)
    numbers = itertools.count()
    answered: list[str] = []
    kills = 4
    with HttpCollectorSink() as sink:
        for kill in range(kills):
            outage = kill == 1  # once while Jaeger answers 503
            sink.status_for = (lambda _n, _r: 503) if outage else None
            relay = RelayProcess(*flags(tmp_path, sink))
            load = Load(relay.otlp_port, numbers)
            assert wait_until(lambda load=load: len(load.ok) >= 200, timeout=30)  # type: ignore[misc]
            time.sleep(rng.uniform(0.1, 0.8))  # the moment of the kill, seeded
            relay.proc.send_signal(signal.SIGKILL)
            relay.proc.wait(10)
            answered.extend(load.stop())
            relay.close()
        sink.status_for = None
        final = RelayProcess(*flags(tmp_path, sink))
        try:
            wanted = set(answered)
            assert wait_until(lambda: wanted <= {s.operationName for s in sink.spans()}, timeout=90), \
                f"{len(wanted - {s.operationName for s in sink.spans()})} OK-answered spans never arrived"
            counts = Counter(s.operationName for s in sink.spans())
            duplicates = sum(n - 1 for n in counts.values() if n > 1)
            assert duplicates <= kills * BATCH, f"{duplicates} duplicates for {kills} kills"
            metrics = scrape(final.admin_port)
            assert metrics.value("queue_recovered_spans_total") > 0
        finally:
            final.close()


@pytest.mark.timeout(180)
def test_a_graceful_restart_in_an_outage_keeps_the_backlog_none_lost_none_twice(tmp_path: Path) -> None:
    with HttpCollectorSink() as sink:
        sink.status_for = lambda _n, _r: 503  # Jaeger is down for the whole first run
        relay = RelayProcess(*flags(tmp_path, sink))
        names = [f"kept-{i}" for i in range(300)]
        for start in range(0, 300, 30):
            batch = [span(name, trace_id=(i + 1).to_bytes(16, "big"), span_id=(i + 1).to_bytes(8, "big"))
                     for i, name in enumerate(names[start:start + 30], start)]
            raw_export(relay.otlp_port, request(*batch))
        assert wait_until(lambda: len(sink.requests) >= 2, timeout=30)  # it tried, and failed
        assert relay.terminate() == 0  # SIGTERM while Jaeger is down: exits 0, backlog on disk
        assert not sink.spans()
        sink.status_for = None
        again = RelayProcess(*flags(tmp_path, sink))
        try:
            assert wait_until(lambda: sink.span_count() >= 300, timeout=60)
            assert sorted(s.operationName for s in sink.spans()) == sorted(names)  # none twice
            assert scrape(again.admin_port).value("queue_recovered_spans_total") == 300
        finally:
            again.close()


def test_a_dir_held_by_a_running_relay_refuses_a_second_one(tmp_path: Path) -> None:
    with HttpCollectorSink() as sink:
        first = RelayProcess(*flags(tmp_path, sink))
        try:
            import subprocess
            import sys
            second = subprocess.run([sys.executable, "-m", "relay", "--otlp-grpc-endpoint", "127.0.0.1:0",
                                     "--admin-endpoint", "127.0.0.1:0", *flags(tmp_path, sink)],
                                    capture_output=True, text=True, timeout=60, check=False)
            assert second.returncode == 2
            assert second.stderr.strip().splitlines() == [
                f"trace-relay: error: --queue-dir: {tmp_path} is in use by another running trace-relay"]
        finally:
            first.close()


def test_a_full_disk_refuses_with_retry_keeps_exporting_and_recovers(small_tmpfs: Callable[[str], Path]) -> None:
    """--queue-dir on a 2 MiB tmpfs, Jaeger down: requests are taken until the disk is full, then
    refused UNAVAILABLE + RetryInfo (reason disk_full); once Jaeger is back the backlog drains,
    the drained segment is freed, and requests are taken again, by themselves."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    mount = small_tmpfs("2m")

    def big(i: int) -> ExportTraceServiceRequest:
        blob = KeyValue(key="blob", value=AnyValue(string_value=f"{i:08d}" * 8192))  # 64 KiB
        return request(span(f"big-{i}", trace_id=(i + 1).to_bytes(16, "big"), span_id=(i + 1).to_bytes(8, "big"),
                            attributes=[blob]))

    with HttpCollectorSink() as sink:
        sink.status_for = lambda _n, _r: 503
        relay = RelayProcess(*flags(mount, sink))
        try:
            ok: list[str] = []
            refusal = None
            for i in range(100):
                try:
                    raw_export(relay.otlp_port, big(i))
                    ok.append(f"big-{i}")
                except grpc.RpcError as exc:
                    refusal = exc
                    break
            assert refusal is not None and ok, "the 2 MiB disk never filled"
            assert refusal.code() is grpc.StatusCode.UNAVAILABLE
            status = rpc_status.from_call(refusal)  # type: ignore[arg-type]
            assert status is not None and any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
            assert scrape(relay.admin_port).refused.get("disk_full", 0) >= 1
            sink.status_for = None  # Jaeger is back: the backlog drains and frees the disk
            assert wait_until(lambda: {s.operationName for s in sink.spans()} >= set(ok), timeout=60)
            retried = 1000
            assert wait_until(lambda: _accepted(relay.otlp_port, big(retried)), timeout=30)
            assert wait_until(lambda: "big-1000" in {s.operationName for s in sink.spans()}, timeout=30)
        finally:
            relay.close()


def _accepted(port: int, req: ExportTraceServiceRequest) -> bool:
    try:
        raw_export(port, req)
    except grpc.RpcError:
        return False
    return True


@pytest.mark.timeout(300)
def test_an_outage_of_minutes_with_retry_forever_and_a_restart_loses_none_sends_none_twice(tmp_path: Path) -> None:
    """Jaeger answers 503 for over two minutes, longer than the default 60 s retry bound; the relay
    retries forever (--retry-max-elapsed 0) and is restarted gracefully in the middle."""
    names = [f"long-{i}" for i in range(200)]
    with HttpCollectorSink() as sink:
        sink.status_for = lambda _n, _r: 503
        relay = RelayProcess(*flags(tmp_path, sink))
        for start in range(0, 200, 20):
            raw_export(relay.otlp_port, request(*(
                span(name, trace_id=(i + 1).to_bytes(16, "big"), span_id=(i + 1).to_bytes(8, "big"))
                for i, name in enumerate(names[start:start + 20], start))))
        outage_ends = time.monotonic() + 125
        time.sleep(65)  # real elapsed time is the point: past the default 60 s retry bound
        first_run_attempts = len(sink.requests)
        assert relay.terminate() == 0
        again = RelayProcess(*flags(tmp_path, sink))
        try:
            time.sleep(max(0.0, outage_ends - time.monotonic()))  # the rest of the outage
            assert len(sink.requests) > first_run_attempts  # the second run kept retrying too
            assert not sink.spans()
            sink.status_for = None
            assert wait_until(lambda: sink.span_count() >= 200, timeout=60)
            assert sorted(s.operationName for s in sink.spans()) == sorted(names)
            assert scrape(again.admin_port).dropped == {}
        finally:
            again.close()


def test_a_secret_never_reaches_the_disk_queue(tmp_path: Path) -> None:
    """Redaction runs before the record is written: the disk holds the redacted request."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    with HttpCollectorSink() as sink:
        sink.status_for = lambda _n, _r: 503  # nothing leaves: the spans stay on disk
        relay = RelayProcess(*flags(tmp_path, sink))
        try:
            attribute = KeyValue(key="command", value=AnyValue(string_value=f"git clone https://x:{token}@github.com/a/b"))
            raw_export(relay.otlp_port, request(span("clone", attributes=[attribute])))
            on_disk = b"".join(path.read_bytes() for path in tmp_path.glob("seg-*.log"))
            assert b"[REDACTED]" in on_disk
            assert token.encode() not in on_disk
        finally:
            relay.close()
