"""The ingest ceiling: an OTLP/gRPC server that parses each request, counts its spans, answers.

``python -m bench.parse_only_server``; prints ``PORT n``; answers ``count`` lines on stdin.
"""

from __future__ import annotations

import argparse
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from bench.naive_server import SERVICE
from relay.convert import request_span_count


class ParseOnly:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans = 0
        self._empty = ExportTraceServiceResponse().SerializeToString()

    def export(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        request = ExportTraceServiceRequest.FromString(data)
        count = request_span_count(request)
        with self._lock:
            self.spans += count
        return self._empty


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.parse_only_server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=32)
    args = parser.parse_args(argv)
    counter = ParseOnly()
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(counter.export)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers), handlers=[handler],
                         options=[("grpc.max_receive_message_length", 64 << 20)])
    bound = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"PORT {bound}", flush=True)
    for line in sys.stdin:  # until the parent closes stdin
        if line.strip() == "count":
            print(f"{counter.spans} 0 0", flush=True)
    server.stop(1).wait(2)


if __name__ == "__main__":
    main(sys.argv[1:])
