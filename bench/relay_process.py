"""The relay as users run it: `python -m relay` in a subprocess, its ports read from its log."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

PORTS = re.compile(r"OTLP/gRPC on \S+ \(port (\d+)\), admin on port (\d+)")
HTTP_PORT = re.compile(r"OTLP/HTTP on \S+ \(port (\d+)\)")


class RelayProcess:
    def __init__(self, *flags: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "--otlp-grpc-endpoint", "127.0.0.1:0",
             "--otlp-http-endpoint", "127.0.0.1:0", "--admin-endpoint", "127.0.0.1:0", *flags],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.otlp_port = self.admin_port = self.http_port = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(30):
            self.close()
            raise AssertionError("relay did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            match = PORTS.search(line)
            if match:
                self.otlp_port, self.admin_port = int(match[1]), int(match[2])
                http = HTTP_PORT.search(line)
                self.http_port = int(http[1]) if http else 0
                self._ready.set()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match[1]) / 1024 if match else 0.0
