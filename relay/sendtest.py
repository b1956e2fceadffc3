"""`trace-relay send-test-trace`: send one BuildKit-shaped build trace to a relay, say whether it
was accepted, then read the relay's admin endpoint and say whether it reached Jaeger. For a new
user, or an operator checking a deployment.

    endpoint text --_target--> Target --_send--> Outcome --_delivery--> the line printed

``_send`` is the one place that knows the transport: ``--protocol`` is OTLP's own choice
(``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``): grpc, http/protobuf or http/json.
"""

from __future__ import annotations

import argparse
import http.client
import random
import socket
import ssl
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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

from relay import delivery, otlp_json
from relay.config import HostPort, parse_duration, parse_host_port
from relay.convert import request_span_count
from relay.testtrace import buildkit_build

COMMAND = "send-test-trace"
PROG = f"trace-relay {COMMAND}"
DEFAULT_PORTS = {"grpc": 4317, "http/protobuf": 4318, "http/json": 4318}
PROTOCOLS = tuple(DEFAULT_PORTS)
_CONTENT_TYPES = {"http/protobuf": "application/x-protobuf", "http/json": "application/json"}
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(ValueError):
    """A bad argument; printed as one line, exit 2."""


@dataclass(frozen=True)
class Target:
    address: HostPort
    tls: bool  # https:// or --tls-ca-file
    path: str = "/v1/traces"  # OTLP/HTTP only

    def __str__(self) -> str:
        return str(self.address)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str  # why not, when not ok
    rejected: int = 0
    detail: str = ""  # the partial-success message


def _duration(text: str) -> float:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive duration, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Send a small BuildKit-shaped build trace to a "
                                     "running relay and say whether it reached Jaeger.")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="grpc",
                        help="OTLP protocol, as OTEL_EXPORTER_OTLP_TRACES_PROTOCOL (default grpc)")
    parser.add_argument("--endpoint", default=None,
                        help="relay address: HOST:PORT, http://HOST:PORT or https://HOST:PORT (the "
                        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT form; for http/* a path such as /v1/traces "
                        "may follow); default localhost:4317 for grpc, localhost:4318 for http/*")
    parser.add_argument("--admin-endpoint", default="localhost:8888",
                        help="relay admin HOST:PORT, read after sending to tell whether the spans reached "
                        "Jaeger (default localhost:8888)")
    parser.add_argument("--steps", type=int, default=8, help="build steps in the trace (default 8)")
    parser.add_argument("--timeout", type=_duration, default=10.0,
                        help="how long to wait for the answer, and then for delivery: 2s, 500ms (default 10s)")
    parser.add_argument("--tls-ca-file", type=Path, help="connect with TLS, trusting this CA bundle")
    parser.add_argument("--tls-cert-file", type=Path, help="client certificate for mutual TLS")
    parser.add_argument("--tls-key-file", type=Path, help="client key for mutual TLS")
    parser.add_argument("--auth-token-file", type=Path, help="send this bearer token")
    return parser


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    del environ  # everything comes from flags
    args = _parser().parse_args(list(argv))
    try:
        endpoint = args.endpoint or f"localhost:{DEFAULT_PORTS[args.protocol]}"
        target = _target(endpoint, args.tls_ca_file is not None, args.protocol)
        admin = parse_host_port(args.admin_endpoint)
    except (UsageError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    request = buildkit_build(random.Random(), time.time_ns(), steps=max(1, args.steps))  # noqa: S311 - ids
    count = request_span_count(request)
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
    before = _counts_or_none(admin, args.timeout)
    try:
        token = args.auth_token_file.read_text().strip() if args.auth_token_file else None
        outcome = _send(target, args, request, token)
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not outcome.ok:
        print(f"FAILED: {outcome.message}")
        return EXIT_FAILED
    accepted = count - outcome.rejected
    if outcome.rejected:
        print(f"PARTIAL: {target} accepted {accepted} of {count} spans: {outcome.detail}")
        return EXIT_FAILED
    return _report_delivery(admin, before, accepted, args.timeout, f"trace {trace_id} over {args.protocol}")


def _target(endpoint: str, tls_ca_given: bool, protocol: str = "grpc") -> Target:
    """'host:port', '[v6]:port', 'http://host:port' or 'https://host[:port]' (with a path for
    http/*) -> Target."""
    text = endpoint.strip()
    if "://" not in text:
        return Target(parse_host_port(text), tls=tls_ca_given)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--endpoint: expected HOST:PORT, http://HOST:PORT or https://HOST:PORT, got {text!r}")
    if parts.path not in ("", "/") and protocol == "grpc":
        raise UsageError(f"--endpoint: OTLP/gRPC takes no path, got {parts.path!r} (that is the OTLP/HTTP form)")
    if parts.scheme == "http" and tls_ca_given:
        raise UsageError("--endpoint: http:// is plaintext; use https:// with --tls-ca-file")
    try:
        port = parts.port or DEFAULT_PORTS[protocol]
    except ValueError:
        raise UsageError(f"--endpoint: bad port in {text!r}") from None
    path = parts.path or "/v1/traces"  # "/" stays "/": the relay then says to use /v1/traces
    return Target(HostPort(parts.hostname, port), tls=parts.scheme == "https", path=path)


def _send(target: Target, args: argparse.Namespace, request: ExportTraceServiceRequest,
          token: str | None) -> Outcome:
    """Export ``request`` to ``target`` (sending ``token`` as ``authorization: Bearer``); the one
    transport-specific step."""
    if args.protocol == "grpc":
        return _send_grpc(target, args, request, token)
    return _send_http(target, args, request, token)


def _send_grpc(target: Target, args: argparse.Namespace, request: ExportTraceServiceRequest,
               token: str | None) -> Outcome:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with _channel(target, args) as channel:
        try:
            stub = TraceServiceStub(channel)  # type: ignore[no-untyped-call]
            response: ExportTraceServiceResponse = stub.Export(request, timeout=args.timeout, metadata=metadata)
        except grpc.RpcError as exc:
            return Outcome(False, _rpc_failure(target, exc))
    return Outcome(True, "", response.partial_success.rejected_spans, response.partial_success.error_message)


def _send_http(target: Target, args: argparse.Namespace, request: ExportTraceServiceRequest,
               token: str | None) -> Outcome:
    content_type = _CONTENT_TYPES[args.protocol]
    body = otlp_json.dumps(request) if args.protocol == "http/json" else request.SerializeToString()
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {token}"} if token else {})}
    conn = _http_connection(target, args)
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        reply = conn.getresponse()
        data = reply.read()
    except ConnectionRefusedError:
        return Outcome(False, _unreachable(target.address) or f"{target} refused the connection")
    except (http.client.HTTPException, OSError) as exc:
        return Outcome(False, _unreachable(target.address) or f"no OTLP/HTTP answer from {target}: {exc!r}")
    finally:
        conn.close()
    if reply.status != 200:
        return Outcome(False, f"{target} answered HTTP {reply.status}: {_status_message(data, content_type)}")
    if args.protocol == "http/json":
        response = otlp_json.parse(data, ExportTraceServiceResponse)
    else:
        response = ExportTraceServiceResponse.FromString(data)
    return Outcome(True, "", response.partial_success.rejected_spans, response.partial_success.error_message)


def _http_connection(target: Target, args: argparse.Namespace) -> http.client.HTTPConnection:
    host, port = target.address.host, target.address.port
    if not target.tls:
        return http.client.HTTPConnection(host, port, timeout=args.timeout)
    context = ssl.create_default_context(cafile=args.tls_ca_file)
    if args.tls_cert_file:
        context.load_cert_chain(args.tls_cert_file, args.tls_key_file)
    return http.client.HTTPSConnection(host, port, timeout=args.timeout, context=context)


def _status_message(data: bytes, content_type: str) -> str:
    """The message of a google.rpc.Status error body, or the body's first line."""
    try:
        if content_type == "application/json":
            return otlp_json.parse(data, status_pb2.Status).message or "(no message)"
        return status_pb2.Status.FromString(data).message or "(no message)"
    except (DecodeError, ValueError):
        return data.decode(errors="replace").strip().splitlines()[0][:200] if data.strip() else "(empty body)"


def _channel(target: Target, args: argparse.Namespace) -> grpc.Channel:
    if not target.tls:
        return grpc.insecure_channel(str(target))
    ca = args.tls_ca_file.read_bytes() if args.tls_ca_file else None  # None: the system's roots
    key = args.tls_key_file.read_bytes() if args.tls_key_file else None
    cert = args.tls_cert_file.read_bytes() if args.tls_cert_file else None
    return grpc.secure_channel(str(target), grpc.ssl_channel_credentials(ca, key, cert))


def _rpc_failure(target: Target, exc: grpc.RpcError) -> str:
    code = exc.code()
    unreachable = _unreachable(target.address) if code == grpc.StatusCode.UNAVAILABLE else None
    return unreachable or f"{target} answered {code.name}: {exc.details()}"


def _unreachable(address: HostPort) -> str | None:
    """Why nothing answers at ``address`` (no listener, no such host), or None when a TCP
    connection opens (then the relay's own answer is the news)."""
    try:
        with socket.create_connection((address.host, address.port), timeout=2):
            return None
    except socket.gaierror as exc:
        return f"cannot resolve {address.host}: {exc.strerror}"
    except OSError as exc:
        reason = "" if isinstance(exc, ConnectionRefusedError) else f" ({exc.strerror or exc})"
        return f"nothing is listening on {address}{reason} (is the relay running, and is that its OTLP port?)"


def _counts_or_none(admin: HostPort, timeout: float) -> delivery.Counts | None:
    try:
        return delivery.read(admin.host, admin.port, timeout=min(timeout, 5.0))
    except delivery.AdminUnreachable:
        return None  # said after sending, with the reason


def _report_delivery(admin: HostPort, before: delivery.Counts | None, count: int, timeout: float,
                     what: str) -> int:
    accepted = f"the relay accepted {count} spans of {what}"
    try:
        if before is None:
            delivery.read(admin.host, admin.port, timeout=min(timeout, 5.0))  # raises with the reason
            before = delivery.Counts()
        verdict = delivery.wait_for_delivery(admin.host, admin.port, before, count, timeout)
    except delivery.AdminUnreachable as exc:
        print(f"ACCEPTED: {accepted}; not checked whether they reached Jaeger: admin endpoint {exc} "
              "(give the relay's --admin-endpoint)")
        return EXIT_OK
    if verdict.delivered >= count:
        print(f"OK: {accepted} and delivered them to Jaeger (services buildx and buildkitd); "
              "look it up in Jaeger by that trace id")
        return EXIT_OK
    print(f"FAILED: {accepted}; it delivered {verdict.delivered} of them to Jaeger: {delivery.describe(verdict)}")
    return EXIT_FAILED
