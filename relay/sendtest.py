"""`trace-relay send-test-trace`: send one BuildKit-shaped build trace to a relay and say whether
it was accepted. For a new user, or an operator checking a deployment."""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from relay.convert import request_span_count
from relay.testtrace import buildkit_build

COMMAND = "send-test-trace"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"trace-relay {COMMAND}",
                                     description="Send a small BuildKit-shaped build trace to a running relay.")
    parser.add_argument("--endpoint", default="localhost:4317", help="relay OTLP/gRPC address (default localhost:4317)")
    parser.add_argument("--steps", type=int, default=8, help="build steps in the trace (default 8)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer (default 10)")
    parser.add_argument("--tls-ca-file", type=Path, help="connect with TLS, trusting this CA bundle")
    parser.add_argument("--tls-cert-file", type=Path, help="client certificate for mutual TLS")
    parser.add_argument("--tls-key-file", type=Path, help="client key for mutual TLS")
    parser.add_argument("--auth-token-file", type=Path, help="send this bearer token")
    return parser


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    del environ  # everything comes from flags
    args = _parser().parse_args(list(argv))
    request = buildkit_build(random.Random(), time.time_ns()  # noqa: S311 - ids, not secrets
                            , steps=max(1, args.steps))
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
    count = request_span_count(request)
    metadata = []
    try:
        if args.auth_token_file:
            metadata.append(("authorization", "Bearer " + args.auth_token_file.read_text().strip()))
        channel = _channel(args)
    except OSError as exc:
        print(f"trace-relay {COMMAND}: error: {exc}", file=sys.stderr)
        return 2
    with channel:
        try:
            stub = TraceServiceStub(channel)  # type: ignore[no-untyped-call]
            response: ExportTraceServiceResponse = stub.Export(
                request, timeout=args.timeout, metadata=metadata)
        except grpc.RpcError as exc:
            print(f"FAILED: {args.endpoint} answered {exc.code().name}: {exc.details()}")
            return 1
    rejected = response.partial_success.rejected_spans
    if rejected:
        print(f"PARTIAL: {args.endpoint} accepted {count - rejected} of {count} spans: "
              f"{response.partial_success.error_message}")
        return 1
    print(f"OK: {args.endpoint} accepted {count} spans of trace {trace_id} "
          f"(services buildx and buildkitd); look it up in Jaeger by that trace id")
    return 0


def _channel(args: argparse.Namespace) -> grpc.Channel:
    if args.tls_ca_file is None:
        return grpc.insecure_channel(args.endpoint)
    key = args.tls_key_file.read_bytes() if args.tls_key_file else None
    cert = args.tls_cert_file.read_bytes() if args.tls_cert_file else None
    credentials = grpc.ssl_channel_credentials(args.tls_ca_file.read_bytes(), key, cert)
    return grpc.secure_channel(args.endpoint, credentials)
