"""The servers under test, each in its own process: trace-relay (its real CLI), the naive design,
the parse-only ceiling. Each is built around a sink (:mod:`bench.sinks`) in another process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.sinks import SinkProcess

SERVERS = ("relay", "relay-pure", "naive", "parse-only")
# relay-pure: the same relay with the native accelerator turned off (relay/native/__init__.py).
_ENV = {"relay-pure": {"TRACE_RELAY_PURE": "1"}}
_LISTENING = re.compile(r"\(port (\d+)\), admin on port (\d+)")
_HTTP_LISTENING = re.compile(r"OTLP/HTTP on \S+ \(port (\d+)\)")


def _relay_command() -> list[str]:
    script = Path(sys.executable).with_name("trace-relay")
    return [str(script)] if script.exists() else [sys.executable, "-m", "relay"]


class ServerProcess:
    """A server under test: ``port`` (OTLP/gRPC), ``pid``, and :meth:`delivered` spans."""

    def __init__(self, kind: str, output: str, *, sink_kind: str | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.sink = SinkProcess(sink_kind or ("udp" if output == "agent" else "http")) \
            if kind != "parse-only" else None
        self._log = tempfile.NamedTemporaryFile(prefix=f"bench-{kind}-", suffix=".log", delete=False)  # noqa: SIM115
        self.admin_port = self.http_port = 0
        try:
            self._proc = subprocess.Popen(self._argv(output, extra_args), stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=self._log, text=True,
                                          env={**os.environ, **_ENV.get(kind, {})})
            self.port = self._wait_for_port()
        except BaseException:
            self.close()
            raise
        self.pid = self._proc.pid

    def _argv(self, output: str, extra_args: tuple[str, ...]) -> list[str]:
        sink_port = self.sink.port if self.sink is not None else 0
        if self.is_relay:
            target = (["--jaeger-agent", f"127.0.0.1:{sink_port}"] if output == "agent"
                      else ["--jaeger-collector", f"http://127.0.0.1:{sink_port}/api/traces"])
            return [*_relay_command(), "--otlp-grpc-endpoint", "127.0.0.1:0", "--otlp-http-endpoint", "127.0.0.1:0",
                    "--admin-endpoint", "127.0.0.1:0", *target, *extra_args]
        if self.kind == "naive":
            target = (["--agent", f"127.0.0.1:{sink_port}"] if output == "agent"
                      else ["--collector", f"http://127.0.0.1:{sink_port}/api/traces"])
            return [sys.executable, "-m", "bench.naive_server", *target]
        return [sys.executable, "-m", "bench.parse_only_server"]

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + 20
        if not self.is_relay:
            assert self._proc.stdout is not None
            first = self._proc.stdout.readline().split()
            if len(first) == 2 and first[0] == "PORT":
                return int(first[1])
            raise RuntimeError(f"{self.kind} did not start; see {self._log.name}")
        while time.monotonic() < deadline:
            log = Path(self._log.name).read_text(errors="replace")
            match = _LISTENING.search(log)
            if match:
                self.admin_port = int(match[2])
                http = _HTTP_LISTENING.search(log)
                self.http_port = int(http[1]) if http else 0
                return int(match[1])
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"trace-relay did not start; see {self._log.name}")

    @property
    def is_relay(self) -> bool:
        return self.kind.startswith("relay")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def delivered(self) -> int:
        """Spans that reached the sink (parse-only: spans parsed)."""
        if self.sink is not None:
            return self.sink.spans()
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write("count\n")
        self._proc.stdin.flush()
        return int(self._proc.stdout.readline().split()[0])

    def metric(self, name: str) -> float | None:
        """One unlabelled sample from the relay's /metrics."""
        if not self.admin_port:
            return None
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return None

    def wait_drained(self, expected: int, since: int, timeout: float) -> int:
        """Wait until ``expected`` spans arrived after ``since`` or arrivals stop; the arrivals."""
        deadline = time.monotonic() + timeout
        last, stable_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            got = self.delivered() - since
            if got >= expected:
                return got
            if got != last:
                last, stable_since = got, time.monotonic()
            elif time.monotonic() - stable_since > 3.0:
                return got
            time.sleep(0.1)
        return self.delivered() - since

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            if self.is_relay:
                proc.send_signal(signal.SIGTERM)
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.sink is not None:
            self.sink.close()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
