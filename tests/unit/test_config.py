from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from relay.config import FLAG_NAMES, Config, ConfigError, HostPort, env_name, load_config, parse_duration

ISSUE_FLAGS = (
    "otlp-grpc-endpoint", "jaeger-agent", "jaeger-collector", "jaeger-user", "jaeger-password",
    "admin-endpoint", "queue-size", "max-batch-size", "batch-timeout", "retry-max-elapsed",
    "shutdown-timeout", "max-recv-msg-size-mib", "log-level",
)


def test_defaults_are_the_documented_ones() -> None:
    config = load_config([], {})
    assert config.otlp_grpc_endpoint == HostPort("0.0.0.0", 4317)
    assert config.jaeger_agent == HostPort("localhost", 6831)
    assert config.admin_endpoint == HostPort("0.0.0.0", 8888)
    assert config.jaeger_collector is None
    assert (config.queue_size, config.max_recv_msg_size_mib) == (20000, 64)
    assert config.otlp_http_endpoint == HostPort("0.0.0.0", 4318)
    assert (config.retry_max_elapsed, config.shutdown_timeout) == (60.0, 20.0)
    assert config == Config()


def test_every_flag_named_in_the_issue_exists_with_an_env_twin() -> None:
    assert set(ISSUE_FLAGS) <= set(FLAG_NAMES)
    assert env_name("queue-size") == "RELAY_QUEUE_SIZE"
    assert load_config([], {"RELAY_QUEUE_SIZE": "777"}).queue_size == 777


@pytest.mark.parametrize(
    ("flag", "value", "field", "expected"),
    [
        ("otlp-grpc-endpoint", "127.0.0.1:5317", "otlp_grpc_endpoint", HostPort("127.0.0.1", 5317)),
        ("jaeger-agent", "[::1]:6832", "jaeger_agent", HostPort("::1", 6832)),
        ("jaeger-collector", "http://jaeger:14268/api/traces", "jaeger_collector", "http://jaeger:14268/api/traces"),
        ("admin-endpoint", "127.0.0.1:9999", "admin_endpoint", HostPort("127.0.0.1", 9999)),
        ("queue-size", "1000", "queue_size", 1000),
        ("max-batch-size", "50", "max_batch_size", 50),
        ("batch-timeout", "50ms", "batch_timeout", 0.05),
        ("retry-max-elapsed", "2m", "retry_max_elapsed", 120.0),
        ("shutdown-timeout", "7.5", "shutdown_timeout", 7.5),
        ("max-recv-msg-size-mib", "16", "max_recv_msg_size_mib", 16),
        ("log-level", "DEBUG", "log_level", "debug"),
        ("builds-kept", "7", "builds_kept", 7),
        ("jaeger-ui-url", "http://127.0.0.1:16686/", "jaeger_ui_url", "http://127.0.0.1:16686"),
    ],
)
def test_flag_and_env_twin_parse_the_same(flag: str, value: str, field: str, expected: object) -> None:
    assert getattr(load_config([f"--{flag}", value], {}), field) == expected
    assert getattr(load_config([], {env_name(flag): value}), field) == expected


def test_flag_beats_relay_env_beats_otel_env() -> None:
    environ = {"RELAY_JAEGER_AGENT": "relay-env:1", "OTEL_EXPORTER_JAEGER_AGENT_HOST": "otel-env"}
    assert load_config(["--jaeger-agent", "flag:2"], environ).jaeger_agent == HostPort("flag", 2)
    assert load_config([], environ).jaeger_agent == HostPort("relay-env", 1)
    assert load_config([], {"OTEL_EXPORTER_JAEGER_AGENT_HOST": "otel-env"}).jaeger_agent == HostPort("otel-env", 6831)
    assert load_config([], {"OTEL_EXPORTER_JAEGER_AGENT_PORT": "7000"}).jaeger_agent == HostPort("localhost", 7000)


def test_standard_jaeger_exporter_variables_are_honoured() -> None:
    config = load_config([], {
        "OTEL_EXPORTER_JAEGER_ENDPOINT": "https://collector:14268/api/traces",
        "OTEL_EXPORTER_JAEGER_USER": "ci",
        "OTEL_EXPORTER_JAEGER_PASSWORD": "hunter2",
        "OTEL_EXPORTER_JAEGER_TIMEOUT": "2500",  # milliseconds, per the OpenTelemetry specification
    })
    assert config.jaeger_collector == "https://collector:14268/api/traces"
    assert (config.jaeger_user, config.jaeger_password) == ("ci", "hunter2")
    assert config.jaeger_timeout == 2.5
    assert "hunter2" not in repr(config)


def test_password_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    config = load_config(["--jaeger-collector", "http://j:14268/api/traces", "--jaeger-user", "u",
                          "--jaeger-password-file", str(secret)], {})
    assert config.jaeger_password == "s3cret"


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--queue-size", "lots"], "--queue-size"),
        (["--queue-size", "0"], "--queue-size"),
        (["--queue-size", "-5"], "--queue-size"),
        (["--max-batch-size", "1e3"], "--max-batch-size"),
        (["--batch-timeout", "soon"], "--batch-timeout"),
        (["--shutdown-timeout", "0s"], "--shutdown-timeout"),
        (["--otlp-grpc-endpoint", "4317"], "--otlp-grpc-endpoint"),
        (["--jaeger-agent", "host:99999"], "--jaeger-agent"),
        (["--jaeger-collector", "jaeger:14268"], "--jaeger-collector"),
        (["--log-level", "loud"], "--log-level"),
        (["--jaeger-timeout", "0s"], "--jaeger-timeout"),
        (["--max-recv-msg-size-mib", "4.5"], "--max-recv-msg-size-mib"),
        (["--tls-cert-file", "/nonexistent/cert.pem"], "--tls-cert-file"),
        (["--jaeger-user", "u"], "--jaeger-user"),
        (["--jaeger-ui-url", "jaeger:16686"], "--jaeger-ui-url"),
    ],
)
def test_bad_values_name_the_flag(argv: list[str], flag: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(flag)}: "):
        load_config(argv, {})


def test_bad_env_value_names_the_variable_that_set_it() -> None:
    with pytest.raises(ConfigError, match=r"^RELAY_QUEUE_SIZE: must be a number, got 'many'$"):
        load_config([], {"RELAY_QUEUE_SIZE": "many"})
    with pytest.raises(ConfigError, match=r"^OTEL_EXPORTER_JAEGER_TIMEOUT: "):
        load_config([], {"OTEL_EXPORTER_JAEGER_TIMEOUT": "soon"})
    with pytest.raises(ConfigError, match=r"^OTEL_EXPORTER_JAEGER_AGENT_HOST/OTEL_EXPORTER_JAEGER_AGENT_PORT: "):
        load_config([], {"OTEL_EXPORTER_JAEGER_AGENT_PORT": "port"})


COLLECTOR = ["--jaeger-collector", "http://j:14268/api/traces", "--jaeger-user", "u"]


@pytest.mark.parametrize(
    ("argv", "environ", "source"),
    [
        # The password's own validation (a control character breaks the HTTP header).
        ([*COLLECTOR, "--jaeger-password", "hunter2\n"], {}, "--jaeger-password"),
        ([*COLLECTOR, "--jaeger-password=hunter2\x7f"], {}, "--jaeger-password"),
        (COLLECTOR, {"RELAY_JAEGER_PASSWORD": "hunter2\tx"}, "RELAY_JAEGER_PASSWORD"),
        (COLLECTOR, {"OTEL_EXPORTER_JAEGER_PASSWORD": "hunter2\r"}, "OTEL_EXPORTER_JAEGER_PASSWORD"),
        # Mistyped or abbreviated flags: argparse would echo the whole unrecognized argv.
        ([*COLLECTOR, "--jaeger-passwrd", "hunter2"], {}, "unknown flag --jaeger-passwrd"),
        ([*COLLECTOR, "--jaeger-passwrd=hunter2"], {}, "unknown flag --jaeger-passwrd"),
        ([*COLLECTOR, "--jaeger-pass=hunter2"], {}, "unknown flag --jaeger-pass"),
        ([*COLLECTOR, "--jaeger-passw", "hunter2"], {}, "unknown flag --jaeger-passw"),
        ([*COLLECTOR, "hunter2"], {}, "unexpected argument"),
        ([*COLLECTOR, "--jaeger-password", "-hunter2"], {}, "argument --jaeger-password: expected one argument"),
        # A password in a collector URL's userinfo.
        (["--jaeger-collector", "ftp://u:hunter2@j:14268/api/traces"], {}, "--jaeger-collector"),
    ],
)
def test_secret_values_never_appear_in_errors(argv: list[str], environ: dict[str, str], source: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(argv, environ)
    message = str(info.value)
    assert message.startswith(source), message  # the path that handles the secret was reached
    assert "hunter2" not in message


def test_a_mistyped_flag_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError, match=r"^unknown flag --jaeger-passwrd \(did you mean --jaeger-password\?\)$"):
        load_config(["--jaeger-passwrd", "hunter2"], {})


def test_jaeger_timeout_takes_a_unit_where_its_otel_twin_is_milliseconds() -> None:
    assert load_config(["--jaeger-timeout", "10000ms"], {}).jaeger_timeout == 10.0
    assert load_config(["--jaeger-timeout", "10s"], {}).jaeger_timeout == 10.0
    assert load_config([], {"OTEL_EXPORTER_JAEGER_TIMEOUT": "10000"}).jaeger_timeout == 10.0
    for argv, environ, source in ((["--jaeger-timeout", "10000"], {}, "--jaeger-timeout"),
                                  ([], {"RELAY_JAEGER_TIMEOUT": "10"}, "RELAY_JAEGER_TIMEOUT")):
        with pytest.raises(ConfigError, match=rf"^{source}: give a unit, e.g. 10s or 10000ms"):
            load_config(argv, environ)


def test_max_batch_size_above_queue_size_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^--max-batch-size: 101 must not exceed --queue-size \(100\)"):
        load_config(["--queue-size", "100", "--max-batch-size", "101"], {})
    assert load_config(["--queue-size", "100", "--max-batch-size", "100"], {}).max_batch_size == 100
    with pytest.raises(ConfigError, match=r"^--max-batch-size: 512 must not exceed --queue-size \(100\)"):
        load_config([], {"RELAY_QUEUE_SIZE": "100"})  # the default batch size names itself


def test_a_jaeger_ui_url_with_credentials_is_refused_unechoed() -> None:
    """The /builds page publishes its links: a Jaeger UI URL with credentials is refused."""
    with pytest.raises(ConfigError, match=r"^--jaeger-ui-url: ") as info:
        load_config(["--jaeger-ui-url", "https://admin:hunter2@jaeger:16686"], {})
    assert "hunter2" not in str(info.value)


def test_durations() -> None:
    assert parse_duration("200ms") == pytest.approx(0.2)
    assert parse_duration("1h") == 3600
    with pytest.raises(ValueError, match=r"duration"):
        parse_duration("-1s")


def test_cli_refuses_a_bad_value_with_one_line_and_exit_2() -> None:
    result = subprocess.run([sys.executable, "-m", "relay", "--queue-size", "nope"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "trace-relay: error: --queue-size: must be a number, got 'nope'"]


def test_help_lists_flags_and_no_secret_values() -> None:
    result = subprocess.run([sys.executable, "-m", "relay", "--help"], capture_output=True, text=True,
                            timeout=60, check=False, env={"RELAY_JAEGER_PASSWORD": "hunter2", "PATH": ""})
    assert result.returncode == 0
    for flag in ISSUE_FLAGS:
        assert f"--{flag}" in result.stdout
    assert "hunter2" not in result.stdout


def test_empty_environment_variables_count_as_unset() -> None:
    environ = {"OTEL_EXPORTER_JAEGER_ENDPOINT": "", "OTEL_EXPORTER_JAEGER_AGENT_HOST": "",
               "RELAY_QUEUE_SIZE": "", "OTEL_EXPORTER_JAEGER_TIMEOUT": " "}
    assert load_config([], environ) == Config()


def test_an_empty_token_file_refuses_to_start(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("\n")
    with pytest.raises(ConfigError, match=r"^--auth-token-file: .* is empty"):
        load_config(["--auth-token-file", str(token)], {})


def test_queue_dir_must_exist_and_queue_max_mib_must_be_positive(tmp_path: Path) -> None:
    assert load_config(["--queue-dir", str(tmp_path)], {}).queue_dir == tmp_path
    assert load_config([], {"RELAY_QUEUE_MAX_MIB": "512"}).queue_max_mib == 512
    with pytest.raises(ConfigError, match=r"^--queue-dir: no such directory: .*absent"):
        load_config(["--queue-dir", str(tmp_path / "absent")], {})
    with pytest.raises(ConfigError, match=r"^--queue-max-mib: must be a positive integer"):
        load_config(["--queue-max-mib", "0"], {})


def test_the_http_endpoint_must_differ_from_the_others() -> None:
    with pytest.raises(ConfigError, match="--otlp-http-endpoint"):
        load_config(["--otlp-http-endpoint", "0.0.0.0:4317"], {})
    with pytest.raises(ConfigError, match="--otlp-http-read-timeout"):
        load_config(["--otlp-http-read-timeout", "0s"], {})
    assert load_config([], {"RELAY_OTLP_HTTP_ENDPOINT": "127.0.0.1:9318"}).otlp_http_endpoint.port == 9318
