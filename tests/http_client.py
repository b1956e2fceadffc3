"""Raw OTLP/HTTP requests for tests: http.client and plain sockets on loopback, every wait bounded."""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass

from google.rpc import error_details_pb2, status_pb2

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def rpc_status(self) -> status_pb2.Status:
        """The google.rpc.Status body of an error answer (protobuf encoding)."""
        return status_pb2.Status.FromString(self.body)

    def retry_info(self) -> error_details_pb2.RetryInfo | None:
        for detail in self.rpc_status().details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return info
        return None


def post(port: int, body: bytes, *, path: str = "/v1/traces", content_type: str = PROTOBUF,
         method: str = "POST", headers: dict[str, str] | None = None, timeout: float = 10.0,
         tls: ssl.SSLContext | None = None) -> Reply:
    if tls is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": content_type, **(headers or {})})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` as is and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)
