"""Files a new user gets wrong (a Secret mounted with the wrong mode, a directory, a garbage or
swapped certificate and key) and a busy port: one line naming the flag, exit 2, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.relay_process import RelayProcess
from relay.config import ConfigError, load_config
from tests.security.certs import Pki, make_pki

NOBODY = 65534
# Runs the CLI as an unprivileged user: root reads a mode-000 file, the relay's container user
# does not. Everything is imported before the privileges go (the interpreter may sit under /root).
AS_NOBODY = f"""
import os, sys
import concurrent.futures.thread, relay.app, relay.cli, relay.config

if os.geteuid() == 0:
    os.setgid({NOBODY})
    os.setuid({NOBODY})
sys.exit(relay.cli.main(sys.argv[1:]))
"""
LOOPBACK = ("--otlp-grpc-endpoint", "127.0.0.1:0", "--admin-endpoint", "127.0.0.1:0")


@pytest.fixture(scope="module")
def files() -> Iterator[Path]:
    """A directory every user may enter, with a PKI, a token, a password and an unreadable file."""
    directory = Path(tempfile.mkdtemp(prefix="relay-files-"))
    try:
        directory.chmod(0o755)
        make_pki(directory)
        (directory / "token").write_text("t0ken\n")
        (directory / "password").write_text("pa55\n")
        for path in directory.iterdir():
            path.chmod(0o644)
        unreadable = directory / "unreadable"
        unreadable.write_text("secret\n")
        unreadable.chmod(0)
        yield directory
    finally:
        shutil.rmtree(directory)


def _pki(directory: Path) -> Pki:
    names = ("ca", "server_cert", "server_key", "client_cert", "client_key", "other_ca")
    files = ("ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem", "other-ca.pem")
    return Pki(**{name: directory / file for name, file in zip(names, files, strict=True)})


def _argv(flag: str, directory: Path, bad: Path) -> list[str]:
    pki = _pki(directory)
    cert, key = str(pki.server_cert), str(pki.server_key)
    return {
        "tls-cert-file": ["--tls-cert-file", str(bad), "--tls-key-file", key],
        "tls-key-file": ["--tls-cert-file", cert, "--tls-key-file", str(bad)],
        "tls-client-ca-file": ["--tls-cert-file", cert, "--tls-key-file", key, "--tls-client-ca-file", str(bad)],
        "auth-token-file": ["--auth-token-file", str(bad)],
        "jaeger-password-file": ["--jaeger-collector", "http://127.0.0.1:1/api/traces", "--jaeger-user", "u",
                                 "--jaeger-password-file", str(bad)],
    }[flag] + list(LOOPBACK)


FILE_FLAGS = ("tls-cert-file", "tls-key-file", "tls-client-ca-file", "auth-token-file", "jaeger-password-file")


def _run_as_nobody(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", AS_NOBODY, *argv], capture_output=True, text=True,
                          timeout=60, check=False, cwd="/")


@pytest.mark.parametrize("flag", FILE_FLAGS)
def test_an_unreadable_file_is_one_line_and_exit_2(files: Path, flag: str) -> None:
    bad = files / "unreadable"
    result = _run_as_nobody(_argv(flag, files, bad))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"trace-relay: error: --{flag}: {bad}: cannot read: Permission denied"]


@pytest.mark.parametrize("flag", FILE_FLAGS)
def test_a_directory_instead_of_a_file_names_the_flag(files: Path, flag: str) -> None:
    with pytest.raises(ConfigError, match=rf"^--{flag}: {files} is a directory, not a file$"):
        load_config(_argv(flag, files, files), {})


def test_a_fifo_is_refused_without_blocking_on_it(files: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"^--auth-token-file: .* is not a regular file$"):
        load_config(_argv("auth-token-file", files, fifo), {})


@pytest.mark.parametrize("case", ["swapped", "garbage-cert", "garbage-key", "other-key"])
def test_a_bad_certificate_or_key_says_so(files: Path, tmp_path: Path, case: str) -> None:
    pki = _pki(files)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    cert, key = {"swapped": (pki.server_key, pki.server_cert), "garbage-cert": (garbage, pki.server_key),
                 "garbage-key": (pki.server_cert, garbage), "other-key": (pki.server_cert, pki.client_key)}[case]
    argv = [*LOOPBACK, "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    result = subprocess.run([sys.executable, "-m", "relay", *argv], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"trace-relay: error: --tls-cert-file: {cert} and --tls-key-file {key} are not a "
                           "valid PEM certificate and its private key ("), line


def test_a_bad_client_ca_says_so(files: Path, tmp_path: Path) -> None:
    pki = _pki(files)
    garbage = tmp_path / "ca.pem"
    garbage.write_text("hello\n")
    with pytest.raises(ConfigError, match=r"^--tls-client-ca-file: .* is not a valid PEM CA certificate bundle"):
        load_config(["--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key),
                     "--tls-client-ca-file", str(garbage)], {})


def test_valid_files_are_read_once_into_the_config(files: Path) -> None:
    pki = _pki(files)
    config = load_config(["--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key),
                          "--tls-client-ca-file", str(pki.ca), "--auth-token-file", str(files / "token")], {})
    assert config.tls is not None
    assert (config.tls.cert_chain, config.tls.private_key) == (pki.read("server_cert"), pki.read("server_key"))
    assert config.tls.client_ca == pki.read("ca")
    assert config.auth_token == b"t0ken"
    assert "t0ken" not in repr(config)
    assert "PRIVATE KEY" not in repr(config)


def test_a_busy_otlp_port_says_address_already_in_use() -> None:
    relay = RelayProcess()
    try:
        result = subprocess.run([sys.executable, "-m", "relay", "--otlp-grpc-endpoint",
                                 f"127.0.0.1:{relay.otlp_port}", "--admin-endpoint", "127.0.0.1:0"],
                                capture_output=True, text=True, timeout=60, check=False)
    finally:
        assert relay.terminate() == 0
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"trace-relay: error: --otlp-grpc-endpoint: cannot listen on 127.0.0.1:{relay.otlp_port}: "
        "Address already in use"]
