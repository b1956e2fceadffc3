"""Configuration: one frozen dataclass built once by the pure ``load_config``.

Precedence for every setting: command-line flag > ``RELAY_<FLAG>`` environment variable >
the Jaeger exporter's standard ``OTEL_EXPORTER_JAEGER_*`` variable (where one exists) > default.
A bad value raises :class:`ConfigError` naming where the value came from (the flag, or the
environment variable that set it); the CLI turns it into one line and exit 2. No message ever
holds a secret's value, nor any value of an unknown flag (it may be a mistyped password flag).
The files the settings name are read here, once (relay.credentials).
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from relay.credentials import FileProblem, TlsMaterial, load_tls, read_token
from relay.redact import compile_patterns, split_patterns

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
# --jaeger-timeout takes a unit: its OTEL_EXPORTER_JAEGER_TIMEOUT twin is a bare number of
# milliseconds, so a bare number here would be ambiguous.
UNIT_REQUIRED = frozenset({"jaeger-timeout"})


class ConfigError(ValueError):
    """A setting is invalid; the message names the flag or variable it came from."""


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
    queue_max_mib: int = 64
    queue_dir: Path | None = None
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
    jaeger_ui_url: str | None = None
    worker_stall_timeout: float | None = None  # None: --jaeger-timeout + longest retry wait + margin
    redact_pattern: tuple[re.Pattern[str], ...] = field(default=(), repr=False)  # may spell a secret
    no_default_redaction: bool = False
    # The content of the files above, read once by load_config.
    tls: TlsMaterial | None = None
    auth_token: bytes | None = field(default=None, repr=False)

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
        raise ValueError("expected an http(s) URL such as http://jaeger:14268/api/traces, "
                         f"got {redact_url(text.strip())!r}")
    return text.strip()


def redact_url(url: str) -> str:
    """The URL with the password of its userinfo (``user:password@``) replaced by ``***``."""
    return re.sub(r"^([^/]*//[^/@:]*):[^/@]*@", r"\1:***@", url)


def _password(text: str) -> str:
    # It travels in an HTTP header: a control character (a stray newline) would break every send.
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ValueError("must not contain control characters (a newline, a tab)")
    return text


def _ui_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL such as http://jaeger:16686, got {text!r}")
    if parts.username is not None or parts.password is not None:
        # The page shows the link to every reader; a user:password@ would be published with it.
        raise ValueError("must not contain a user name or password (the /builds page shows it)")
    return text.strip().rstrip("/")


def _log_level(text: str) -> str:
    level = text.strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return level


def _path(text: str) -> Path:
    # Only a name here: the file is read once, after all settings are parsed (relay.credentials).
    if not text.strip():
        raise ValueError("expected a file path")
    return Path(text)


def _unit_duration(text: str) -> float:
    if _is_number(text):
        raise ValueError(f"give a unit, e.g. 10s or 10000ms, got {text!r} "
                         "(OTEL_EXPORTER_JAEGER_TIMEOUT alone is a bare number of milliseconds)")
    return _positive_duration(text)


def _directory(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise ValueError(f"no such directory: {text} (create it, or mount a volume there)")
    return path


def _text(text: str) -> str:
    return text


def _switch(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"must be true or false, got {text!r}")
    return value in ("true", "1", "yes")


def _patterns(text: str) -> tuple[re.Pattern[str], ...]:
    return compile_patterns(split_patterns(text))


@dataclass(frozen=True)
class _Flag:
    name: str
    parse: Callable[[str], object]
    help: str
    metavar: str = ""
    action: str = "store"  # "append": repeatable, values joined by newlines; "switch": no value


FLAGS: tuple[_Flag, ...] = (
    _Flag("otlp-grpc-endpoint", parse_host_port, "OTLP/gRPC listen address (default 0.0.0.0:4317)", "HOST:PORT"),
    _Flag("otlp-http-endpoint", parse_host_port, "OTLP/HTTP listen address (default 0.0.0.0:4318)", "HOST:PORT"),
    _Flag("otlp-http-read-timeout", _positive_duration,
          "longest wait for one OTLP/HTTP request, headers and body (default 30s)", "DURATION"),
    _Flag("jaeger-agent", parse_host_port, "Jaeger agent, UDP compact thrift (default localhost:6831)", "HOST:PORT"),
    _Flag("jaeger-collector", _collector_url, "Jaeger collector URL, HTTP binary thrift; replaces the agent", "URL"),
    _Flag("jaeger-user", _text, "basic-auth user for the Jaeger collector", "USER"),
    _Flag("jaeger-password", _password, "basic-auth password (prefer --jaeger-password-file)", "PASSWORD"),
    _Flag("jaeger-password-file", _path, "file holding the Jaeger collector password", "PATH"),
    _Flag("jaeger-timeout", _unit_duration, "timeout of one Jaeger collector request, with a unit: 10s, 10000ms "
          "(default 10s)", "DURATION"),
    _Flag("admin-endpoint", parse_host_port, "/metrics, /healthz, /readyz, /builds address (default 0.0.0.0:8888)",
          "HOST:PORT"),
    _Flag("queue-size", _positive_int, "queue capacity in spans (default 20000)", "SPANS"),
    _Flag("queue-max-mib", _positive_int,
          "queue capacity in MiB of encoded (protobuf) spans, in memory or on disk (default 64)", "MIB"),
    _Flag("queue-dir", _directory,
          "keep the queue on disk in DIR: what is answered OK survives crashes and restarts", "DIR"),
    _Flag("max-batch-size", _positive_int, "most spans handed to the exporter at once (default 512)", "SPANS"),
    _Flag("batch-timeout", _positive_duration, "longest wait to fill a batch (default 200ms)", "DURATION"),
    _Flag("retry-max-elapsed", parse_duration,
          "give up retrying an export after this long; 0 retries forever (default 60s)", "DURATION"),
    _Flag("shutdown-timeout", _positive_duration, "time to drain the queue on SIGTERM (default 20s)", "DURATION"),
    _Flag("max-recv-msg-size-mib", _positive_int,
          "largest Export request, MiB, after decompression, both transports (default 64)", "MIB"),
    _Flag("max-concurrent-rpcs", _positive_int, "Export requests handled at once (default 8)", "N"),
    _Flag("log-level", _log_level, "debug, info, warning or error (default info)", "LEVEL"),
    _Flag("tls-cert-file", _path, "PEM certificate: serve OTLP over TLS", "PATH"),
    _Flag("tls-key-file", _path, "PEM private key for --tls-cert-file", "PATH"),
    _Flag("tls-client-ca-file", _path, "PEM CA bundle: require client certificates (mutual TLS)", "PATH"),
    _Flag("auth-token-file", _path, "file holding the bearer token clients must send", "PATH"),
    _Flag("builds-kept", _positive_int, "BuildKit builds kept for /builds and /api/builds (default 100)", "N"),
    _Flag("jaeger-ui-url", _ui_url, "Jaeger UI base URL: /builds links each trace to <URL>/trace/<id> "
          "(default unset: no links)", "URL"),
    _Flag("worker-stall-timeout", _positive_duration,
          "exporter worker without progress this long while spans wait: unhealthy "
          "(default --jaeger-timeout + 45s)", "DURATION"),
    _Flag("redact-pattern", _patterns, "regex whose match (or its one group) becomes [REDACTED] in span strings; "
          "repeatable (env: newline or comma separated)", "REGEX", "append"),
    _Flag("no-default-redaction", _switch, "do not redact the well-known token shapes", action="switch"),
)
FLAG_NAMES = tuple(flag.name for flag in FLAGS)


def env_name(flag: str) -> str:
    """--queue-size -> RELAY_QUEUE_SIZE"""
    return "RELAY_" + flag.upper().replace("-", "_")


# Process exit codes (the CLI returns them; --help and the README list them).
EXIT_OK = 0  # clean shutdown: everything accepted reached Jaeger (or was rejected/dropped before)
EXIT_USAGE = 2  # bad configuration, or the relay cannot start
EXIT_SPANS_LOST = 3  # spans accepted were lost at shutdown, or a second signal cut shutdown short
EXIT_CODES = (f"Exit codes: {EXIT_OK} clean shutdown; {EXIT_USAGE} bad configuration or cannot start; "
              f"{EXIT_SPANS_LOST} accepted spans were lost at shutdown (or a second SIGTERM/SIGINT "
              "ended it at once).")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse's own messages name flags, not values ("expected one argument").
        raise ConfigError(message)


def build_parser(prog: str = "trace-relay") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="Receive OTLP/gRPC and OTLP/HTTP traces and forward them to Jaeger through one exporter thread.",
        epilog="Every flag has an environment twin RELAY_<FLAG>, e.g. RELAY_QUEUE_SIZE. "
        "Subcommand: send-test-trace (see `trace-relay send-test-trace --help`). " + EXIT_CODES,
        # An abbreviation (--jaeger-pass) is a guess at the flag; a flag is spelled out.
        allow_abbrev=False,
    )
    for flag in FLAGS:
        # Values stay strings here: parsing happens in load_config so the env twins share it.
        if flag.action == "switch":
            parser.add_argument(f"--{flag.name}", help=flag.help, action="store_const", const="true", default=None)
        else:
            parser.add_argument(f"--{flag.name}", metavar=flag.metavar, help=flag.help, default=None,
                                action=flag.action)
    return parser


def _parse_args(argv: Sequence[str]) -> dict[str, str | None]:
    """The flags given; an unknown one is named without any value (``--jaeger-passwrd hunter2``
    and ``--jaeger-passwrd=hunter2`` must not print the password)."""
    args, unknown = build_parser().parse_known_args(list(argv))
    if unknown:
        raise ConfigError(_unknown_message(unknown))
    return vars(args)


def _unknown_message(unknown: Sequence[str]) -> str:
    names = [token.split("=", 1)[0] for token in unknown if token.startswith("-")]
    if not names:
        return "unexpected argument (not a flag; a value follows its flag, as in --queue-size 100)"
    close = difflib.get_close_matches(names[0], [f"--{name}" for name in FLAG_NAMES], n=1)
    hint = f" (did you mean {close[0]}?)" if close else " (see --help)"
    return f"unknown flag {names[0]}{hint}"


@dataclass(frozen=True)
class _Raw:
    value: str
    source: str  # the flag or environment variable it came from, as messages name it


def _raw_settings(argv: Sequence[str], environ: Mapping[str, str]) -> dict[str, _Raw]:
    args = _parse_args(argv)
    # An empty environment variable counts as unset (OpenTelemetry's rule for its variables;
    # templated Kubernetes environments produce them).
    environ = {key: value for key, value in environ.items() if value.strip()}
    raw: dict[str, _Raw] = {}
    for name in FLAG_NAMES:
        value = args[name.replace("-", "_")]
        if isinstance(value, list):  # a repeated flag
            value = "\n".join(value)
        found = _one_setting(name, value, environ)
        if found is not None:
            raw[name] = found
    if "jaeger-agent" not in raw and (OTEL_AGENT_HOST in environ or OTEL_AGENT_PORT in environ):
        host = environ.get(OTEL_AGENT_HOST, "localhost")
        port = environ.get(OTEL_AGENT_PORT, "6831")
        value = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raw["jaeger-agent"] = _Raw(value, f"{OTEL_AGENT_HOST}/{OTEL_AGENT_PORT}")
    return raw


def _one_setting(name: str, flag_value: str | None, environ: Mapping[str, str]) -> _Raw | None:
    if flag_value is not None:
        return _Raw(flag_value, f"--{name}")
    if env_name(name) in environ:
        return _Raw(environ[env_name(name)], env_name(name))
    otel = OTEL_TWINS.get(name)
    if otel is None or otel not in environ:
        return None
    value = environ[otel]
    if name == "jaeger-timeout" and _is_number(value):
        value = f"{value.strip()}ms"  # the specification's unit for this variable
    return _Raw(value, otel)


def _is_number(text: str) -> bool:
    return text.strip().replace(".", "", 1).isdigit()


def _parse_one(flag: _Flag, raw: _Raw) -> object:
    try:
        return flag.parse(raw.value)
    except ValueError as exc:
        detail = str(exc)
        if detail.startswith(("invalid literal", "could not convert")):
            detail = f"must be a number, got {raw.value!r}"
        if flag.name in SECRET_FLAGS:
            detail = detail.split(", got ", 1)[0]  # never the value itself
        raise ConfigError(f"{raw.source}: {detail}") from None


def load_config(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    """Build the Config from command-line arguments and an environment mapping, and read the
    files it names. Pure apart from reading those files."""
    raw = _raw_settings(argv, environ)
    values: dict[str, object] = {}
    for flag in FLAGS:
        if flag.name in raw:
            values[flag.name.replace("-", "_")] = _parse_one(flag, raw[flag.name])
    try:
        _read_files(values, raw)
    except FileProblem as exc:
        raise ConfigError(str(exc)) from None
    config = Config(**values)  # type: ignore[arg-type]
    _check(config)
    return config


def _read_files(values: dict[str, object], raw: Mapping[str, _Raw]) -> None:
    """Every file a setting names, read here and only here."""
    def named(flag: str) -> tuple[str, Path] | None:
        path = values.get(flag.replace("-", "_"))
        return (raw[flag].source, path) if isinstance(path, Path) else None

    password_file = named("jaeger-password-file")
    values.pop("jaeger_password_file", None)
    if password_file is not None:
        if "jaeger_password" in values:
            raise ConfigError("--jaeger-password-file: give either --jaeger-password or --jaeger-password-file")
        values["jaeger_password"] = _password_from_file(password_file)
    token_file = named("auth-token-file")
    if token_file is not None:
        values["auth_token"] = read_token(*token_file)
    cert, key = named("tls-cert-file"), named("tls-key-file")
    if cert is not None and key is not None:
        values["tls"] = load_tls(cert, key, named("tls-client-ca-file"))


def _password_from_file(named: tuple[str, Path]) -> str:
    content = read_token(*named)
    try:
        return _password(content.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{named[0]}: {named[1]}: not UTF-8 text") from None
    except ValueError as exc:
        raise ConfigError(f"{named[0]}: {named[1]}: {exc}") from None


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
    if config.max_batch_size > config.queue_size:
        raise ConfigError(f"--max-batch-size: {config.max_batch_size} must not exceed --queue-size "
                          f"({config.queue_size}): a batch that size could never fill; lower --max-batch-size too")
    stall = config.worker_stall_timeout
    if stall is not None and stall <= config.jaeger_timeout:
        raise ConfigError(f"--worker-stall-timeout: must exceed --jaeger-timeout ({config.jaeger_timeout:g}s), "
                          "the time one send may legitimately take")
    if config.otlp_grpc_endpoint == config.admin_endpoint and config.admin_endpoint.port != 0:
        raise ConfigError("--admin-endpoint: must differ from --otlp-grpc-endpoint")
    http = config.otlp_http_endpoint
    if http.port != 0 and http in (config.otlp_grpc_endpoint, config.admin_endpoint):
        raise ConfigError("--otlp-http-endpoint: must differ from --otlp-grpc-endpoint and --admin-endpoint")
