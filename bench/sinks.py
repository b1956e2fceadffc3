"""Counting Jaeger sinks for benchmarks (and the soak test): cheap enough not to be the bottleneck.

- ``udp``: a Jaeger agent. Each compact ``emitBatch`` datagram is decoded by thrift's C decoder
  with a spec whose Span has no fields, so every span is parsed (skipped) in C and only counted.
- ``http``: a Jaeger collector (``POST /api/traces``, binary ``Batch``), counted the same way; 202.
- ``blackhole``: accepts TCP connections and never reads nor answers (a hung collector).

Run one in its own process with :class:`SinkProcess` (``python -m bench.sinks KIND``); the child
prints ``PORT n`` and then answers ``count`` lines on stdin with ``spans payloads undecodable``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from thrift.protocol import fastbinary
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.Thrift import TType
from thrift.transport.TTransport import TMemoryBuffer

KINDS = ("udp", "http", "blackhole")
_RCVBUF = 32 * 1024 * 1024
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


class _Struct:
    """A thrift struct for fastbinary to fill: fields it has no spec for are skipped in C."""

    thrift_spec: tuple[Any, ...] = ()

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


class _Skipped(_Struct):
    thrift_spec = (None,)


class _Batch(_Struct):
    # Batch { 1: Process process; 2: list<Span> spans }: the Process is skipped, spans counted.
    thrift_spec = (None, None, (2, TType.LIST, "spans", (TType.STRUCT, [_Skipped, (None,)], False), None))


class _EmitBatchArgs(_Struct):
    thrift_spec = (None, (1, TType.STRUCT, "batch", [_Batch, _Batch.thrift_spec], None))


def count_compact_datagram(data: bytes) -> int:
    """Spans in one ``Agent.emitBatch`` compact datagram; raises on a malformed one."""
    buffer = TMemoryBuffer(data)
    protocol = TCompactProtocol(buffer)
    protocol.readMessageBegin()
    args = fastbinary.decode_compact(None, protocol, [_EmitBatchArgs, _EmitBatchArgs.thrift_spec])
    return len(args.batch.spans)


def count_binary_batch(data: bytes) -> int:
    """Spans in one binary-protocol ``Batch`` (a collector body); raises on a malformed one."""

    protocol = TBinaryProtocol(TMemoryBuffer(data))
    batch = fastbinary.decode_binary(None, protocol, [_Batch, _Batch.thrift_spec])
    return len(batch.spans)


class Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans = 0
        self.payloads = 0
        self.undecodable = 0

    def add(self, data: bytes, count: Any) -> None:
        try:
            spans = count(data)
        except Exception:
            with self._lock:
                self.undecodable += 1
            return
        with self._lock:
            self.spans += spans
            self.payloads += 1

    def line(self) -> str:
        with self._lock:
            return f"{self.spans} {self.payloads} {self.undecodable}"


def serve_udp(counter: Counter) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:  # SO_RCVBUFFORCE (Linux, root) passes net.core.rmem_max; else the capped SO_RCVBUF
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
    sock.bind(("127.0.0.1", 0))

    def loop() -> None:
        while True:
            counter.add(sock.recv(65535), count_compact_datagram)

    threading.Thread(target=loop, name="udp-sink", daemon=True).start()
    return int(sock.getsockname()[1])


def serve_http(counter: Counter) -> int:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            counter.add(body, count_binary_batch)
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http-sink", daemon=True).start()
    return int(server.server_address[1])


def serve_blackhole() -> int:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []

    def loop() -> None:
        while True:
            held.append(listener.accept()[0])  # held open, never read, never answered

    threading.Thread(target=loop, name="blackhole", daemon=True).start()
    return int(listener.getsockname()[1])


def main(kind: str) -> None:
    counter = Counter()
    if kind == "udp":
        port = serve_udp(counter)
    elif kind == "http":
        port = serve_http(counter)
    else:
        port = serve_blackhole()
    print(f"PORT {port}", flush=True)
    for line in sys.stdin:  # EOF (the parent closed stdin or died): exit
        if line.strip() == "count":
            print(counter.line(), flush=True)


class SinkProcess:
    """A sink in its own process: ``with SinkProcess("udp") as sink: ... sink.spans()``."""

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown sink {kind!r}; choose from {KINDS}")
        self.kind = kind
        self._proc = subprocess.Popen([sys.executable, "-m", "bench.sinks", kind], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self._proc.stdout is not None
        first = self._proc.stdout.readline().split()
        if len(first) != 2 or first[0] != "PORT":
            self.close()
            raise RuntimeError(f"sink {kind} did not start: {first!r}")
        self.port = int(first[1])
        self.pid = self._proc.pid

    def counts(self) -> tuple[int, int, int]:
        """(spans, payloads, undecodable payloads) received so far."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write("count\n")
        self._proc.stdin.flush()
        spans, payloads, bad = self._proc.stdout.readline().split()
        return int(spans), int(payloads), int(bad)

    def spans(self) -> int:
        return self.counts()[0]

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)

    def __enter__(self) -> SinkProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "udp")
