"""TLS, mutual TLS and bearer-token authentication on the OTLP receiver, with the real OTLP client
and certificates made at test time; secrets kept out of logs, metrics and --help."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.trace.export import SpanExportResult

from bench.jaeger_sinks import HttpCollectorSink
from bench.relay_process import RelayProcess
from relay.app import Relay
from relay.ingest import Ingest
from relay.metrics import Ledger
from relay.receiver import TraceReceiver
from relay.spanqueue import SpanQueue
from tests.conftest import RelayFactory
from tests.fakes import RecordingExporter
from tests.http_client import post
from tests.probes import grpc_health, scrape
from tests.security.certs import Pki, make_pki
from tests.unit.test_convert import sdk_spans
from tests.waiting import wait_until

TOKEN = "s3cr3t-build-token-4f1e"
PASSWORD = "jaeger-pa55word-9c2d"
GARBAGE = b"\x0a\xff\xff\xff\xff\x0f"  # not a valid ExportTraceServiceRequest


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")  # as a Kubernetes Secret file often ends
    return path


def _tls(pki: Pki, *, client_cert: bool = False, ca: str = "ca") -> grpc.ChannelCredentials:
    if client_cert:
        return grpc.ssl_channel_credentials(pki.read(ca), pki.read("client_key"), pki.read("client_cert"))
    return grpc.ssl_channel_credentials(pki.read(ca))


def _otlp(port: int, credentials: grpc.ChannelCredentials | None = None,
          headers: dict[str, str] | None = None) -> SpanExportResult:
    """One export with the real OTLP exporter; a refused TLS handshake retries until its timeout."""
    exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=credentials is None,
                                credentials=credentials, headers=headers, timeout=3)
    try:
        return exporter.export(sdk_spans()[:3])
    finally:
        exporter.shutdown()


def _raw(port: int, body: bytes, metadata: tuple[tuple[str, str], ...] = (),
         credentials: grpc.ChannelCredentials | None = None) -> grpc.StatusCode:
    target = f"127.0.0.1:{port}"
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    with channel:
        call = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        try:
            call(body, timeout=5, metadata=metadata)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _tls_flags(pki: Pki, *, mutual: bool = False) -> tuple[str, ...]:
    flags = ("--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key))
    return (*flags, "--tls-client-ca-file", str(pki.ca)) if mutual else flags


# -- TLS -----------------------------------------------------------------------------------------

def test_tls_with_the_real_otlp_client(make_relay: RelayFactory, pki: Pki) -> None:
    exporter = RecordingExporter()
    relay = make_relay(*_tls_flags(pki), exporter=exporter)
    assert _otlp(relay.otlp_port, _tls(pki)) is SpanExportResult.SUCCESS
    assert exporter.wait_for_spans(3)
    assert grpc_health(relay.otlp_port, credentials=_tls(pki)) == "SERVING"


def test_tls_refuses_plaintext_and_an_untrusted_server(make_relay: RelayFactory, pki: Pki) -> None:
    exporter = RecordingExporter()
    relay = make_relay(*_tls_flags(pki), exporter=exporter)
    assert _raw(relay.otlp_port, b"") is grpc.StatusCode.UNAVAILABLE  # plaintext client
    assert _raw(relay.otlp_port, b"", credentials=_tls(pki, ca="other_ca")) is grpc.StatusCode.UNAVAILABLE
    assert scrape(relay.admin_port).requests == {}  # neither reached the handler
    assert exporter.spans() == []


def test_mutual_tls_needs_a_client_certificate(make_relay: RelayFactory, pki: Pki) -> None:
    exporter = RecordingExporter()
    relay = make_relay(*_tls_flags(pki, mutual=True), exporter=exporter)
    assert _raw(relay.otlp_port, b"", credentials=_tls(pki)) is grpc.StatusCode.UNAVAILABLE
    assert _otlp(relay.otlp_port, _tls(pki)) is SpanExportResult.FAILURE
    assert exporter.spans() == []
    assert _otlp(relay.otlp_port, _tls(pki, client_cert=True)) is SpanExportResult.SUCCESS
    assert exporter.wait_for_spans(3)


# -- bearer token --------------------------------------------------------------------------------

def test_token_with_the_real_otlp_client_over_tls(make_relay: RelayFactory, pki: Pki,
                                                   token_file: Path) -> None:
    exporter = RecordingExporter()
    relay = make_relay(*_tls_flags(pki), "--auth-token-file", str(token_file), exporter=exporter)
    good = {"authorization": f"Bearer {TOKEN}"}
    assert _otlp(relay.otlp_port, _tls(pki), headers=good) is SpanExportResult.SUCCESS
    assert exporter.wait_for_spans(3)
    assert _otlp(relay.otlp_port, _tls(pki), headers={"authorization": "Bearer nope"}) \
        is SpanExportResult.FAILURE
    assert _otlp(relay.otlp_port, _tls(pki)) is SpanExportResult.FAILURE
    assert len(exporter.spans()) == 3
    assert scrape(relay.admin_port).requests == {"OK": 1, "UNAUTHENTICATED": 2}


@pytest.mark.parametrize("value", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}",
                                   f"Bearer  {TOKEN} "])
def test_bearer_scheme_is_case_insensitive(make_relay: RelayFactory, token_file: Path, value: str) -> None:
    relay = make_relay("--auth-token-file", str(token_file), exporter=RecordingExporter())
    empty = ExportTraceServiceRequest().SerializeToString()
    assert _raw(relay.otlp_port, empty, (("authorization", value),)) is grpc.StatusCode.OK


@pytest.mark.parametrize("metadata", [
    (),
    (("authorization", "Bearer wrong"),),
    (("authorization", TOKEN),),  # no scheme
    (("authorization", f"Basic {TOKEN}"),),  # another scheme
    (("authorization", f"Bearer {TOKEN}x"),),
    (("authorization", f"Bearer {TOKEN[:-1]}"),),
    (("x-token", f"Bearer {TOKEN}"),),
])
def test_missing_or_wrong_token_is_unauthenticated_and_the_body_never_parsed(
        make_relay: RelayFactory, token_file: Path, metadata: tuple[tuple[str, str], ...]) -> None:
    exporter = RecordingExporter()
    relay = make_relay("--auth-token-file", str(token_file), exporter=exporter)
    # Garbage that would be INVALID_ARGUMENT if it were parsed, and a valid request: both refused.
    assert _raw(relay.otlp_port, GARBAGE, metadata) is grpc.StatusCode.UNAUTHENTICATED
    valid = ExportTraceServiceRequest()
    valid.resource_spans.add().scope_spans.add().spans.add(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, start_time_unix_nano=1, end_time_unix_nano=2)
    assert _raw(relay.otlp_port, valid.SerializeToString(), metadata) is grpc.StatusCode.UNAUTHENTICATED
    metrics = scrape(relay.admin_port)
    assert metrics.requests == {"UNAUTHENTICATED": 2}
    assert metrics.received == 0
    assert exporter.spans() == []


def test_unauthenticated_handler_never_reads_the_request() -> None:
    """Direct: the refusal gets a request iterator that explodes if touched."""
    ledger = Ledger(capacity=10)
    receiver = TraceReceiver(Ingest(SpanQueue(ledger, max_spans=10, max_bytes=10**6), ledger, TOKEN.encode()))

    class Untouchable:
        def __iter__(self) -> Iterator[bytes]:
            raise AssertionError("the body of an unauthenticated request was read")

        __next__ = __iter__

    class Context:
        code: grpc.StatusCode | None = None

        def abort_with_status(self, status: grpc.Status) -> None:
            self.code = status.code
            raise grpc.RpcError

    context = Context()
    with pytest.raises(grpc.RpcError):
        receiver.unauthenticated(Untouchable(), context)  # type: ignore[arg-type]
    assert context.code is grpc.StatusCode.UNAUTHENTICATED
    assert not receiver.authorized([("authorization", "Bearer")])
    assert not receiver.authorized([])
    assert receiver.authorized([("authorization", f"bEaReR {TOKEN}")])


def test_health_stays_reachable_without_a_token(make_relay: RelayFactory, token_file: Path) -> None:
    relay = make_relay("--auth-token-file", str(token_file), exporter=RecordingExporter())
    assert grpc_health(relay.otlp_port) == "SERVING"  # kubelet's gRPC probe carries no token


# -- send-test-trace -----------------------------------------------------------------------------

def test_send_test_trace_with_tls_and_token(make_relay: RelayFactory, pki: Pki, token_file: Path) -> None:
    exporter = RecordingExporter()
    relay: Relay = make_relay(*_tls_flags(pki, mutual=True), "--auth-token-file", str(token_file),
                              exporter=exporter)
    base = [sys.executable, "-m", "relay", "send-test-trace", "--endpoint", f"127.0.0.1:{relay.otlp_port}",
            "--tls-ca-file", str(pki.ca), "--tls-cert-file", str(pki.client_cert),
            "--tls-key-file", str(pki.client_key), "--timeout", "5",
            "--admin-endpoint", f"127.0.0.1:{relay.admin_port}"]
    ok = subprocess.run([*base, "--auth-token-file", str(token_file)], capture_output=True, text=True,
                        timeout=60, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK: ")
    assert TOKEN not in ok.stdout + ok.stderr
    refused = subprocess.run(base, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1
    assert "UNAUTHENTICATED" in refused.stdout


# -- secrets stay secret -------------------------------------------------------------------------

def test_secrets_never_in_logs_metrics_or_help(tmp_path: Path, pki: Pki, token_file: Path) -> None:
    password_file = tmp_path / "jaeger-password"
    password_file.write_text(PASSWORD)
    with HttpCollectorSink() as jaeger:
        jaeger.fail_next(1, status=401)  # an error path that logs the collector's answer
        relay = RelayProcess("--log-level", "debug", "--auth-token-file", str(token_file),
                        "--jaeger-collector", jaeger.url, "--jaeger-user", "relay",
                        "--jaeger-password-file", str(password_file), *_tls_flags(pki))
        creds = _tls(pki)
        good = (("authorization", f"Bearer {TOKEN}"),)
        assert _raw(relay.otlp_port, GARBAGE, good, credentials=creds) is grpc.StatusCode.INVALID_ARGUMENT
        assert _raw(relay.otlp_port, b"", (("authorization", f"Bearer {TOKEN}-wrong"),),
                    credentials=creds) is grpc.StatusCode.UNAUTHENTICATED
        request = ExportTraceServiceRequest()
        request.resource_spans.add().scope_spans.add().spans.add(
            trace_id=b"\x01" * 16, span_id=b"\x02" * 8, start_time_unix_nano=1, end_time_unix_nano=2)
        with grpc.secure_channel(f"127.0.0.1:{relay.otlp_port}", creds) as channel:
            TraceServiceStub(channel).Export(request, timeout=5, metadata=good)
        assert wait_until(lambda: scrape(relay.admin_port).dropped == {"not_retryable": 1})  # the 401
        metrics_text = str(scrape(relay.admin_port).samples)
        code = relay.terminate()
    output = "".join(relay.lines)
    # --help with every secret where the relay would read it: the check can fail if help echoes one.
    secrets_env = {**os.environ, "RELAY_JAEGER_PASSWORD": PASSWORD, "OTEL_EXPORTER_JAEGER_PASSWORD": PASSWORD,
                   "RELAY_JAEGER_PASSWORD_FILE": str(password_file), "RELAY_AUTH_TOKEN_FILE": str(token_file)}
    help_text = subprocess.run([sys.executable, "-m", "relay", "--help"], capture_output=True, text=True,
                               timeout=60, check=True, env=secrets_env).stdout
    assert code == 0
    assert "DEBUG" in output  # debug logging was on
    for secret in (TOKEN, PASSWORD):
        assert secret not in output
        assert secret not in metrics_text
        assert secret not in help_text
    assert jaeger.requests[0].headers["authorization"].startswith("Basic ")  # the password was used


# -- OTLP/HTTP: the same TLS, mutual TLS and token as gRPC ---------------------------------------

@pytest.fixture
def no_ca_bundle_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override the exporter's own CA file."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def _http_otlp(port: int, pki: Pki, *, client_cert: bool = False,
               headers: dict[str, str] | None = None) -> SpanExportResult:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

    exporter = HttpSpanExporter(
        endpoint=f"https://127.0.0.1:{port}/v1/traces", certificate_file=str(pki.ca), timeout=3, headers=headers,
        client_certificate_file=str(pki.client_cert) if client_cert else None,
        client_key_file=str(pki.client_key) if client_cert else None)
    try:
        return exporter.export(sdk_spans()[:3])
    finally:
        exporter.shutdown()


@pytest.mark.usefixtures("no_ca_bundle_env")
def test_http_tls_and_token_with_the_real_http_exporter(make_relay: RelayFactory, pki: Pki,
                                                        token_file: Path) -> None:
    exporter = RecordingExporter()
    relay = make_relay(*_tls_flags(pki), "--auth-token-file", str(token_file), exporter=exporter)
    assert _http_otlp(relay.http_port, pki, headers={"authorization": f"Bearer {TOKEN}"}) is SpanExportResult.SUCCESS
    assert exporter.wait_for_spans(3)
    assert _http_otlp(relay.http_port, pki) is SpanExportResult.FAILURE  # no token: 401
    with pytest.raises((http.client.HTTPException, ConnectionError)):  # plaintext to the TLS port: cut off
        post(relay.http_port, b"")
    assert len(exporter.spans()) == 3
    assert scrape(relay.admin_port).value("receiver_requests_total@http", "UNAUTHENTICATED") == 1


@pytest.mark.usefixtures("no_ca_bundle_env")
def test_http_mutual_tls_needs_a_client_certificate(make_relay: RelayFactory, pki: Pki) -> None:
    exporter = RecordingExporter()
    relay = make_relay(*_tls_flags(pki, mutual=True), exporter=exporter)
    assert _http_otlp(relay.http_port, pki) is SpanExportResult.FAILURE
    assert exporter.spans() == []
    assert _http_otlp(relay.http_port, pki, client_cert=True) is SpanExportResult.SUCCESS
    assert exporter.wait_for_spans(3)


def test_http_shutdown_cuts_idle_tls_keep_alive_connections(make_relay: RelayFactory, pki: Pki) -> None:
    """An idle keep-alive connection must not keep a connection thread (and the process exit)
    waiting for the 30 s read deadline once the relay shuts down."""
    import ssl

    relay = make_relay(*_tls_flags(pki), exporter=RecordingExporter())
    context = ssl.create_default_context(cafile=str(pki.ca))
    conn = http.client.HTTPSConnection("127.0.0.1", relay.http_port, timeout=10, context=context)
    conn.request("POST", "/v1/traces", body=b"", headers={"Content-Type": "application/x-protobuf"})
    assert conn.getresponse().read() == b""
    relay.shutdown()
    assert conn.sock is not None
    conn.sock.settimeout(10)
    try:
        data = conn.sock.recv(1)
    except (ssl.SSLError, ConnectionError):
        data = b""  # closed without a TLS close_notify: also cut
    assert data == b""
    conn.close()
