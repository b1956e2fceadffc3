"""The relay's secret and certificate files, read once, in one place, at configuration time.

A file that cannot be read (wrong mode on a mounted Secret, a directory, a FIFO) or a certificate
and key that do not make a pair raise :class:`FileProblem`; the message names where the path came
from and never holds the file's content.
"""

from __future__ import annotations

import os
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path


class FileProblem(ValueError):
    """A file named by a setting cannot be used; the message is safe to print."""


@dataclass(frozen=True)
class TlsMaterial:
    """What the gRPC server needs for TLS, already read and checked."""

    cert_chain: bytes
    private_key: bytes = field(repr=False)
    client_ca: bytes | None = None


def read_file(label: str, path: Path) -> bytes:
    """The bytes of a regular file, or a one-line :class:`FileProblem` naming ``label``."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise FileProblem(f"{label}: {path} is a directory, not a file")
        if not stat.S_ISREG(mode):
            raise FileProblem(f"{label}: {path} is not a regular file")
        return path.read_bytes()
    except OSError as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else f"cannot read: {exc.strerror}"
        raise FileProblem(f"{label}: {path}: {reason}") from None


def read_token(label: str, path: Path) -> bytes:
    """A secret held in a file (surrounding whitespace dropped); an empty one is refused, since it
    must not quietly turn authentication off (a mis-mounted Secret)."""
    token = read_file(label, path).strip()
    if not token:
        raise FileProblem(f"{label}: {path} is empty")
    return token


def load_tls(cert: tuple[str, Path], key: tuple[str, Path], client_ca: tuple[str, Path] | None) -> TlsMaterial:
    """Read the server's certificate chain, key and optional client CA, and check with the ``ssl``
    module that the chain and key are PEM and belong together (as gRPC would only find out when
    it listens, and then say just "cannot listen")."""
    material = TlsMaterial(read_file(*cert), read_file(*key),
                           read_file(*client_ca) if client_ca else None)
    _check_pair(cert, key)
    if client_ca is not None and material.client_ca is not None:
        _check_ca(client_ca[0], client_ca[1], material.client_ca)
    return material


def _check_pair(cert: tuple[str, Path], key: tuple[str, Path]) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # An encrypted key gets an empty password (gRPC cannot use one) instead of a TTY prompt.
        context.load_cert_chain(os.fspath(cert[1]), os.fspath(key[1]), password=lambda: b"")
    except ssl.SSLError as exc:
        raise FileProblem(
            f"{cert[0]}: {cert[1]} and {key[0]} {key[1]} are not a valid PEM certificate and its "
            f"private key ({_reason(exc)}); are the two files swapped?") from None


def _check_ca(label: str, path: Path, pem: bytes) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise FileProblem(f"{label}: {path} is not a valid PEM CA certificate bundle ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    """OpenSSL's reason, without its source-file suffix."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    return str(exc).split(" (_ssl.c", 1)[0] or type(exc).__name__
