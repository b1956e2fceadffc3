"""The chart README's TLS recipe, run as written: its certificates work with the real relay
(mutual TLS) and with a TLS server standing in for buildkitd's TCP listener."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.relay_process import RelayProcess

from .render import CHART_DIR

RELAY_NAME = "trace-relay.trace-relay.svc"
BUILDKITD_NAME = "trace-relay-buildkitd.trace-relay.svc"


def recipe_script() -> str:
    """The README's openssl part: the CA and sign() block, then every `sign ...` line after it."""
    text = (CHART_DIR / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## TLS recipes\n", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("\n", 1)[1] for b in section.split("```sh")[1:]]
    setup, rest = blocks[0].split("```", 1)[0], [b.split("```", 1)[0] for b in blocks[1:]]
    signs = [line for block in rest for line in block.splitlines() if line.startswith("sign ")]
    return "set -e\n" + setup + "\n".join(signs) + "\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shell = shutil.which("sh")
    if shell is None or shutil.which("openssl") is None:
        pytest.skip("no sh or openssl binary")
    where = tmp_path_factory.mktemp("recipe")
    subprocess.run([shell, "-c", recipe_script()], cwd=where, check=True, capture_output=True, timeout=60)
    return where


def health(port: int, pki: Path, *, client_cert: bool) -> str:
    pair = ((pki / "client.key").read_bytes(), (pki / "client.crt").read_bytes()) if client_cert else (None, None)
    creds = grpc.ssl_channel_credentials((pki / "ca.crt").read_bytes(), *pair)
    options = [("grpc.ssl_target_name_override", RELAY_NAME)]
    with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=options) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        except grpc.RpcError as exc:
            return str(exc.code().name)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def test_recipe_certificates_give_the_relay_mutual_tls(pki: Path) -> None:
    relay = RelayProcess("--tls-cert-file", str(pki / "relay.crt"), "--tls-key-file", str(pki / "relay.key"),
                         "--tls-client-ca-file", str(pki / "ca.crt"), "--jaeger-agent", "127.0.0.1:9")
    try:
        assert health(relay.otlp_port, pki, client_cert=True) == "SERVING"
        assert health(relay.otlp_port, pki, client_cert=False) == "UNAVAILABLE"
    finally:
        relay.close()


def test_recipe_certificates_serve_buildkitd_and_its_client(pki: Path) -> None:
    """buildkitd with --tlscert/--tlskey/--tlscacert is a Go TLS server requiring a client
    certificate; a Python one configured the same way stands in for it."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki / "buildkitd.crt", pki / "buildkitd.key")
    server_ctx.load_verify_locations(pki / "ca.crt")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    client_ctx.load_cert_chain(pki / "client.crt", pki / "client.key")
    peers: list[str] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                peers.append(dict(x[0] for x in tls.getpeercert()["subject"])["commonName"])
                tls.sendall(b"ok")

        thread = threading.Thread(target=serve, name="fake-buildkitd")
        thread.start()
        with socket.create_connection(listener.getsockname(), timeout=10) as raw, \
                client_ctx.wrap_socket(raw, server_hostname=BUILDKITD_NAME) as tls:
            assert tls.recv(2) == b"ok"
        thread.join(10)
    assert peers == ["buildctl"]
