"""`trace-relay send-test-trace`: send one BuildKit-shaped build trace to a relay and say whether
it was accepted. For a new user, or an operator checking a deployment.

``--protocol`` is OTLP's own choice (``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``): grpc, http/protobuf
or http/json."""

from __future__ import annotations

import argparse
import http.client
import random
import ssl
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import grpc
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from relay import otlp_json
from relay.convert import request_span_count
from relay.testtrace import buildkit_trace

COMMAND = "send-test-trace"
PROTOCOLS = ("grpc", "http/protobuf", "http/json")
_DEFAULT_ENDPOINTS = {"grpc": "localhost:4317", "http/protobuf": "localhost:4318", "http/json": "localhost:4318"}
_CONTENT_TYPES = {"http/protobuf": "application/x-protobuf", "http/json": "application/json"}


class Refused(Exception):
    """The relay answered, and not with success."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"trace-relay {COMMAND}",
                                     description="Send a small BuildKit-shaped build trace to a running relay.")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="grpc",
                        help="OTLP protocol, as OTEL_EXPORTER_OTLP_TRACES_PROTOCOL (default grpc)")
    parser.add_argument("--endpoint", help="relay address: HOST:PORT, or a URL for http/* (default "
                        "localhost:4317 for grpc, http://localhost:4318/v1/traces for http/*)")
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
    args.endpoint = args.endpoint or _DEFAULT_ENDPOINTS[args.protocol]
    request = buildkit_trace(random.Random(), time.time_ns()  # noqa: S311 - ids, not secrets
                            , steps=max(1, args.steps))
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
    count = request_span_count(request)
    try:
        token = args.auth_token_file.read_text().strip() if args.auth_token_file else None
        send = _send_grpc if args.protocol == "grpc" else _send_http
        response = send(args, request, token)
    except OSError as exc:
        print(f"trace-relay {COMMAND}: error: {exc}", file=sys.stderr)
        return 2
    except Refused as exc:
        print(f"FAILED: {args.endpoint} answered {exc}")
        return 1
    rejected = response.partial_success.rejected_spans
    if rejected:
        print(f"PARTIAL: {args.endpoint} accepted {count - rejected} of {count} spans: "
              f"{response.partial_success.error_message}")
        return 1
    print(f"OK: {args.endpoint} accepted {count} spans of trace {trace_id} over {args.protocol} "
          f"(services buildx and buildkitd); look it up in Jaeger by that trace id")
    return 0


def _send_grpc(args: argparse.Namespace, request: ExportTraceServiceRequest,
               token: str | None) -> ExportTraceServiceResponse:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with _channel(args) as channel:
        try:
            stub = TraceServiceStub(channel)  # type: ignore[no-untyped-call]
            response: ExportTraceServiceResponse = stub.Export(request, timeout=args.timeout, metadata=metadata)
        except grpc.RpcError as exc:
            raise Refused(f"{exc.code().name}: {exc.details()}") from None
    return response


def _channel(args: argparse.Namespace) -> grpc.Channel:
    if args.tls_ca_file is None:
        return grpc.insecure_channel(args.endpoint)
    key = args.tls_key_file.read_bytes() if args.tls_key_file else None
    cert = args.tls_cert_file.read_bytes() if args.tls_cert_file else None
    credentials = grpc.ssl_channel_credentials(args.tls_ca_file.read_bytes(), key, cert)
    return grpc.secure_channel(args.endpoint, credentials)


def _send_http(args: argparse.Namespace, request: ExportTraceServiceRequest,
               token: str | None) -> ExportTraceServiceResponse:
    content_type = _CONTENT_TYPES[args.protocol]
    body = otlp_json.dumps(request) if args.protocol == "http/json" else request.SerializeToString()
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {token}"} if token else {})}
    conn, path = _http_connection(args)
    try:
        conn.request("POST", path, body=body, headers=headers)
        reply = conn.getresponse()
        data = reply.read()
    except http.client.HTTPException as exc:
        raise OSError(f"no OTLP/HTTP answer from {args.endpoint}: {exc!r}") from None
    finally:
        conn.close()
    if reply.status != 200:
        raise Refused(f"HTTP {reply.status}: {_status_message(data, content_type)}")
    if args.protocol == "http/json":
        return otlp_json.parse(data, ExportTraceServiceResponse)
    response: ExportTraceServiceResponse = ExportTraceServiceResponse.FromString(data)
    return response


def _http_connection(args: argparse.Namespace) -> tuple[http.client.HTTPConnection, str]:
    endpoint: str = args.endpoint
    url = urlsplit(endpoint if "://" in endpoint else
                   f"{'https' if args.tls_ca_file else 'http'}://{endpoint}")
    path = url.path or "/v1/traces"
    host, port = url.hostname or "localhost", url.port or 4318
    if url.scheme != "https":
        return http.client.HTTPConnection(host, port, timeout=args.timeout), path
    context = ssl.create_default_context(cafile=args.tls_ca_file)
    if args.tls_cert_file:
        context.load_cert_chain(args.tls_cert_file, args.tls_key_file)
    return http.client.HTTPSConnection(host, port, timeout=args.timeout, context=context), path


def _status_message(data: bytes, content_type: str) -> str:
    """The message of a google.rpc.Status error body, or the body's first line."""
    try:
        if content_type == "application/json":
            return otlp_json.parse(data, status_pb2.Status).message or "(no message)"
        return status_pb2.Status.FromString(data).message or "(no message)"
    except (DecodeError, ValueError):
        return data.decode(errors="replace").strip().splitlines()[0][:200] if data.strip() else "(empty body)"
