"""Configuration: one frozen dataclass built once by the pure ``load_config``.

Precedence for every setting: command-line flag > ``RELAY_<FLAG>`` environment variable >
the Jaeger exporter's standard ``OTEL_EXPORTER_JAEGER_*`` variable (where one exists) > default.
A bad value raises :class:`ConfigError` naming the flag; the CLI turns it into one line and exit 2.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

LOG_LEVELS = ("debug", "info", "warning", "error")

# flag name -> (the OTEL_EXPORTER_JAEGER_* variable that also sets it)
OTEL_TWINS = {
    "jaeger-collector": "OTEL_EXPORTER_JAEGER_ENDPOINT",
    "jaeger-user": "OTEL_EXPORTER_JAEGER_USER",
    "jaeger-password": "OTEL_EXPORTER_JAEGER_PASSWORD",
    "jaeger-timeout": "OTEL_EXPORTER_JAEGER_TIMEOUT",
}
OTEL_AGENT_HOST = "OTEL_EXPORTER_JAEGER_AGENT_HOST"
OTEL_AGENT_PORT = "OTEL_EXPORTER_JAEGER_AGENT_PORT"

# Flags whose values are secrets: never echoed in errors, logs or repr.
SECRET_FLAGS = frozenset({"jaeger-password"})


class ConfigError(ValueError):
    """A setting is invalid; the message names the flag."""


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Config:
    otlp_grpc_endpoint: HostPort = HostPort("0.0.0.0", 4317)
    otlp_http_endpoint: HostPort = HostPort("0.0.0.0", 4318)
    otlp_http_read_timeout: float = 30.0
    jaeger_agent: HostPort = HostPort("localhost", 6831)
    jaeger_collector: str | None = None
    jaeger_user: str | None = None
    jaeger_password: str | None = field(default=None, repr=False)
    jaeger_timeout: float = 10.0
    admin_endpoint: HostPort = HostPort("0.0.0.0", 8888)
    queue_size: int = 20000
    max_batch_size: int = 512
    batch_timeout: float = 0.2
    retry_max_elapsed: float = 60.0
    shutdown_timeout: float = 20.0
    max_recv_msg_size_mib: int = 64
    max_concurrent_rpcs: int = 8
    log_level: str = "info"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    auth_token_file: Path | None = None
    builds_kept: int = 100

    @property
    def uses_collector(self) -> bool:
        return self.jaeger_collector is not None


_DURATION = re.compile(r"^(?P<num>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """'200ms', '5s', '1m', or a bare number of seconds ('0.5') -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"not a duration (use e.g. 200ms, 5s, 1m): {text!r}")
    return float(match["num"]) * _UNIT_SECONDS[match["unit"]]


def parse_host_port(text: str) -> HostPort:
    """'host:port' or '[v6]:port' -> HostPort; the port must be 0..65535."""
    text = text.strip()
    bracketed = re.match(r"^\[(?P<host>[^\]]+)\]:(?P<port>\d+)$", text)
    if bracketed:
        host, port_text = bracketed["host"], bracketed["port"]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or ":" in host or not port_text.isdigit():
            raise ValueError(f"expected HOST:PORT, got {text!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port out of range in {text!r}")
    return HostPort(host, port)


def _positive_int(text: str) -> int:
    value = int(text.strip())
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {text!r}")
    return value


def _positive_duration(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError(f"must be a positive duration, got {text!r}")
    return value


def _collector_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL such as http://jaeger:14268/api/traces, got {text!r}")
    return text.strip()


def _log_level(text: str) -> str:
    level = text.strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return level


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"no such file: {text}")
    return path


def _text(text: str) -> str:
    return text


@dataclass(frozen=True)
class _Flag:
    name: str
    parse: Callable[[str], object]
    help: str
    metavar: str = ""


FLAGS: tuple[_Flag, ...] = (
    _Flag("otlp-grpc-endpoint", parse_host_port, "OTLP/gRPC listen address (default 0.0.0.0:4317)", "HOST:PORT"),
    _Flag("otlp-http-endpoint", parse_host_port, "OTLP/HTTP listen address (default 0.0.0.0:4318)", "HOST:PORT"),
    _Flag("otlp-http-read-timeout", _positive_duration,
          "longest wait for one OTLP/HTTP request, headers and body (default 30s)", "DURATION"),
    _Flag("jaeger-agent", parse_host_port, "Jaeger agent, UDP compact thrift (default localhost:6831)", "HOST:PORT"),
    _Flag("jaeger-collector", _collector_url, "Jaeger collector URL, HTTP binary thrift; replaces the agent", "URL"),
    _Flag("jaeger-user", _text, "basic-auth user for the Jaeger collector", "USER"),
    _Flag("jaeger-password", _text, "basic-auth password (prefer --jaeger-password-file)", "PASSWORD"),
    _Flag("jaeger-password-file", _existing_file, "file holding the Jaeger collector password", "PATH"),
    _Flag("jaeger-timeout", _positive_duration, "timeout of one Jaeger collector request (default 10s)", "DURATION"),
    _Flag("admin-endpoint", parse_host_port, "/metrics, /healthz, /readyz address (default 0.0.0.0:8888)", "HOST:PORT"),
    _Flag("queue-size", _positive_int, "queue capacity in spans (default 20000)", "SPANS"),
    _Flag("max-batch-size", _positive_int, "most spans handed to the exporter at once (default 512)", "SPANS"),
    _Flag("batch-timeout", _positive_duration, "longest wait to fill a batch (default 200ms)", "DURATION"),
    _Flag("retry-max-elapsed", parse_duration, "give up retrying an export after this long (default 60s)", "DURATION"),
    _Flag("shutdown-timeout", _positive_duration, "time to drain the queue on SIGTERM (default 20s)", "DURATION"),
    _Flag("max-recv-msg-size-mib", _positive_int,
          "largest Export request, MiB, after decompression, both transports (default 64)", "MIB"),
    _Flag("max-concurrent-rpcs", _positive_int, "Export requests handled at once (default 8)", "N"),
    _Flag("log-level", _log_level, "debug, info, warning or error (default info)", "LEVEL"),
    _Flag("tls-cert-file", _existing_file, "PEM certificate: serve OTLP over TLS", "PATH"),
    _Flag("tls-key-file", _existing_file, "PEM private key for --tls-cert-file", "PATH"),
    _Flag("tls-client-ca-file", _existing_file, "PEM CA bundle: require client certificates (mutual TLS)", "PATH"),
    _Flag("auth-token-file", _existing_file, "file holding the bearer token clients must send", "PATH"),
    _Flag("builds-kept", _positive_int, "BuildKit builds whose steps are kept in memory (default 100)", "N"),
)
FLAG_NAMES = tuple(flag.name for flag in FLAGS)


def env_name(flag: str) -> str:
    """--queue-size -> RELAY_QUEUE_SIZE"""
    return "RELAY_" + flag.upper().replace("-", "_")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def build_parser(prog: str = "trace-relay") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="Receive OTLP/gRPC and OTLP/HTTP traces and forward them to Jaeger through one exporter thread.",
        epilog="Every flag has an environment twin RELAY_<FLAG>, e.g. RELAY_QUEUE_SIZE. "
        "Subcommand: send-test-trace (see `trace-relay send-test-trace --help`).",
    )
    for flag in FLAGS:
        # Values stay strings here: parsing happens in load_config so the env twins share it.
        parser.add_argument(f"--{flag.name}", metavar=flag.metavar, help=flag.help, default=None)
    return parser


def _raw_settings(argv: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    args = vars(build_parser().parse_args(list(argv)))
    # An empty environment variable counts as unset (OpenTelemetry's rule for its variables;
    # templated Kubernetes environments produce them).
    environ = {key: value for key, value in environ.items() if value.strip()}
    raw: dict[str, str] = {}
    for name in FLAG_NAMES:
        value = args[name.replace("-", "_")]
        if value is None:
            value = environ.get(env_name(name))
        if value is None and name in OTEL_TWINS:
            value = environ.get(OTEL_TWINS[name])
            if value is not None and name == "jaeger-timeout" and _is_number(value):
                value = f"{value.strip()}ms"  # the specification's unit for this variable
        if value is not None:
            raw[name] = value
    if "jaeger-agent" not in raw and (OTEL_AGENT_HOST in environ or OTEL_AGENT_PORT in environ):
        host = environ.get(OTEL_AGENT_HOST, "localhost")
        port = environ.get(OTEL_AGENT_PORT, "6831")
        raw["jaeger-agent"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return raw


def _is_number(text: str) -> bool:
    return text.strip().replace(".", "", 1).isdigit()


def _parse_one(flag: _Flag, value: str) -> object:
    try:
        return flag.parse(value)
    except ValueError as exc:
        detail = "invalid value" if flag.name in SECRET_FLAGS else str(exc)
        if detail.startswith("invalid literal") or detail.startswith("could not convert"):
            detail = f"must be a number, got {value!r}"
        raise ConfigError(f"--{flag.name}: {detail}") from None


def load_config(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    """Build the Config from command-line arguments and an environment mapping. Pure."""
    raw = _raw_settings(argv, environ)
    values: dict[str, object] = {}
    for flag in FLAGS:
        if flag.name in raw:
            values[flag.name.replace("-", "_")] = _parse_one(flag, raw[flag.name])
    password_file = values.pop("jaeger_password_file", None)
    if isinstance(password_file, Path):
        if "jaeger_password" in values:
            raise ConfigError("--jaeger-password-file: give either --jaeger-password or --jaeger-password-file")
        values["jaeger_password"] = password_file.read_text(encoding="utf-8").strip()
    token_file = values.get("auth_token_file")
    if isinstance(token_file, Path) and not token_file.read_bytes().strip():
        # An empty token must not quietly turn authentication off (a mis-mounted Secret).
        raise ConfigError(f"--auth-token-file: {token_file} is empty")
    config = Config(**values)  # type: ignore[arg-type]
    _check(config)
    return config


def _check(config: Config) -> None:
    if (config.jaeger_user is None) != (config.jaeger_password is None):
        raise ConfigError("--jaeger-user: basic auth needs both --jaeger-user and --jaeger-password")
    if config.jaeger_user is not None and not config.uses_collector:
        raise ConfigError("--jaeger-user: basic auth applies only to --jaeger-collector")
    if (config.tls_cert_file is None) != (config.tls_key_file is None):
        raise ConfigError("--tls-cert-file: TLS needs both --tls-cert-file and --tls-key-file")
    if config.tls_client_ca_file is not None and config.tls_cert_file is None:
        raise ConfigError("--tls-client-ca-file: mutual TLS needs --tls-cert-file and --tls-key-file")
    if config.retry_max_elapsed < 0:
        raise ConfigError("--retry-max-elapsed: must not be negative")
    if config.otlp_grpc_endpoint == config.admin_endpoint and config.admin_endpoint.port != 0:
        raise ConfigError("--admin-endpoint: must differ from --otlp-grpc-endpoint")
    http = config.otlp_http_endpoint
    if http.port != 0 and http in (config.otlp_grpc_endpoint, config.admin_endpoint):
        raise ConfigError("--otlp-http-endpoint: must differ from --otlp-grpc-endpoint and --admin-endpoint")
