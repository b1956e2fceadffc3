"""relay/redact.py by example: each default shape, where in a request it looks, and its flags."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from relay.cli import main
from relay.config import ConfigError, load_config
from relay.redact import REDACTED, Redactor, compile_patterns, split_patterns

GHP = "ghp_" + "a1B2c3D4e5" * 3 + "F6g7h8"  # 36 characters after the prefix
PAT = "github_pat_11ABCDEFG0" + "x" * 12 + "_" + "Yz09" * 14 + "abc"
NPM = "npm_" + "Q" * 10 + "w1" * 13
AWS = "AKIAIOSFODNN7EXAMPLE"

SHAPES = [
    (f"token {GHP} here", f"token ghp_{REDACTED} here"),
    (f"gho_{GHP[4:]}", f"gho_{REDACTED}"),
    (f"x-access-token {'ghs_' + GHP[4:]}", f"x-access-token ghs_{REDACTED}"),
    (f"{'ghu_' + GHP[4:]},{'ghr_' + GHP[4:]}", f"ghu_{REDACTED},ghr_{REDACTED}"),
    (PAT, f"github_pat_{REDACTED}"),
    (f"//registry.npmjs.org/:_authToken {NPM}", f"//registry.npmjs.org/:_authToken npm_{REDACTED}"),
    (f"key id {AWS}.", f"key id AKIA{REDACTED}."),
    ("ASIAY34FZKBOKMUTVV7A", f"ASIA{REDACTED}"),
    ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     f"AWS_SECRET_ACCESS_KEY={REDACTED}"),
    ("--build-arg NPM_TOKEN=xyz123 --no-cache", f"--build-arg NPM_TOKEN={REDACTED} --no-cache"),
    ("build-arg:GITHUB_TOKEN=abc", f"build-arg:GITHUB_TOKEN={REDACTED}"),
    ("DB_PASSWORD='pa ss' MY_SECRET=\"s e\" psql", f"DB_PASSWORD='{REDACTED}' MY_SECRET=\"{REDACTED}\" psql"),
    ("CLIENT_SECRET=abc;make", f"CLIENT_SECRET={REDACTED};make"),
    ("https://h/p?access_token=abc&page=2", f"https://h/p?access_token={REDACTED}&page=2"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", f"Authorization: Bearer {REDACTED}"),
    ("authorization: basic dXNlcjpwYXNzd29yZA==", f"authorization: basic {REDACTED}"),
    ("git clone https://ci:hunter2@git.example.com/r.git", f"git clone https://ci:{REDACTED}@git.example.com/r.git"),
    ("redis://:s3cr3t@cache:6379/0", f"redis://:{REDACTED}@cache:6379/0"),
    (f"https://x-access-token:{'ghs_' + GHP[4:]}@github.com/o/r",
     f"https://x-access-token:{REDACTED}@github.com/o/r"),
    ("https://" + "é" * 200 + ":pässwörd@h", "https://" + "é" * 200 + f":{REDACTED}@h"),
    ("BEARER ABCDEFGH12 and BASIC dXNlcjpwYXNz", f"BEARER {REDACTED} and BASIC {REDACTED}"),
]

UNTOUCHED = [
    "unix:///run/buildkit-test/capture/buildkitd.sock",
    "type=local,dest=/run/buildkit-test/capture/out/a",
    "moby.buildkit.v1.Control/Solve",
    "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
    "[stage-2 1/1] COPY --from=work /msg.txt /msg.txt",
    "--secret id=npm,env=NPM_TOKEN",
    "Bearer token required",  # English after the scheme words stays
    "Basic authentication failed",
    "https://user@github.com/o/r",  # a user without a password
    "http://localhost:8080/api/traces",
    "TOKEN=",
    "npm_config_registry=https://registry.npmjs.org/",
    "",
]


@pytest.mark.parametrize(("text", "expected"), SHAPES)
def test_each_default_shape_loses_its_secret_and_keeps_the_rest(text: str, expected: str) -> None:
    assert Redactor().redact_text(text) == expected


@pytest.mark.parametrize("text", UNTOUCHED)
def test_what_real_buildkit_traces_hold_is_left_alone(text: str) -> None:
    assert Redactor().redact_text(text) == text


def _string(value: str) -> AnyValue:
    return AnyValue(string_value=value)


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def _request_with_secrets_everywhere() -> ExportTraceServiceRequest:
    secret = _string(f"t={GHP}")
    nested = AnyValue(kvlist_value=KeyValueList(values=[
        _kv("argv", AnyValue(array_value=ArrayValue(values=[_string("build"), _string("NPM_TOKEN=x1"),
                                                             AnyValue(int_value=7)]))),
    ]))
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name=f"RUN curl -H 'Bearer {GHP}'",
                attributes=[_kv("a", secret), _kv("nested", nested), _kv("n", AnyValue(int_value=1)),
                            _kv("b", AnyValue(bytes_value=GHP.encode()))],
                status=Status(code=2, message=f"failed: https://u:pw@h/{GHP}"))
    span.events.add(name=f"event {GHP}", attributes=[_kv("e", secret)])
    span.links.add(trace_id=b"\x03" * 16, span_id=b"\x04" * 8, attributes=[_kv("l", secret)])
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend([_kv("service.name", _string("ci")), _kv("r", secret)])
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.attributes.append(_kv("s", secret))
    scope_spans.spans.append(span)
    return request


def test_every_string_of_a_request_is_redacted_in_place_and_counted() -> None:
    request = _request_with_secrets_everywhere()
    changed = Redactor().redact(request)
    # resource, scope, span, kvlist>array element, event, link attributes; span name, event name,
    # status message: 9 strings. The bytes value is not a string and stays as it is.
    assert changed == 9
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.name == f"RUN curl -H 'Bearer ghp_{REDACTED}'"
    assert span.attributes[1].value.kvlist_value.values[0].value.array_value.values[1].string_value == \
        f"NPM_TOKEN={REDACTED}"
    assert span.attributes[3].value.bytes_value == GHP.encode()
    del span.attributes[3]
    wire = request.SerializeToString()
    assert GHP[4:].encode() not in wire and b"x1" not in wire and b"pw@" not in wire
    assert span.status.message == f"failed: https://u:{REDACTED}@h/ghp_{REDACTED}"
    assert request.resource_spans[0].resource.attributes[0].value.string_value == "ci"


@pytest.mark.parametrize(("text", "expected"), SHAPES[-2:])
def test_the_request_shortcut_finds_what_each_string_holds(text: str, expected: str) -> None:
    # Non-ASCII text is longer in UTF-8 bytes than in characters: the wire search must still match.
    request = ExportTraceServiceRequest()
    request.resource_spans.add().resource.attributes.append(_kv("k", _string(text)))
    assert Redactor().redact(request) == 1
    assert request.resource_spans[0].resource.attributes[0].value.string_value == expected


UNICODE_LOOKALIKES = [
    "Bearer\u2003ABCDEFGH12",  # an em space: white space to Unicode, not to ASCII
    "Bearer\x85ABCDEFGH12",
    "to\u212aen=abc",  # KELVIN SIGN folds to k under Unicode case-insensitivity
    "pa\u017fsword=abc",  # LATIN SMALL LONG S folds to s
]


@pytest.mark.parametrize("text", [text for text, _ in SHAPES] + UNTOUCHED + UNICODE_LOOKALIKES)
def test_a_request_is_redacted_exactly_as_its_strings_one_by_one(text: str) -> None:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().resource.attributes.append(_kv("k", _string(text)))
    Redactor().redact(request)
    assert request.resource_spans[0].resource.attributes[0].value.string_value == Redactor().redact_text(text)


def test_a_request_without_secrets_is_not_changed() -> None:
    request = _request_with_secrets_everywhere()
    Redactor().redact(request)
    before = request.SerializeToString()
    assert Redactor().redact(request) == 0
    assert request.SerializeToString() == before


def test_no_default_redaction_keeps_only_the_added_patterns() -> None:
    redactor = Redactor(compile_patterns([r"corp-[0-9]{6}", r"pin=(\d+)"]), defaults=False)
    assert redactor.redact_text(f"corp-123456 pin=42 {GHP}") == f"{REDACTED} pin={REDACTED} {GHP}"
    both = Redactor(compile_patterns([r"corp-[0-9]{6}"]))
    assert both.redact_text(f"corp-123456 {GHP}") == f"{REDACTED} ghp_{REDACTED}"
    assert Redactor(defaults=False).redact(_request_with_secrets_everywhere()) == 0


def test_a_pattern_with_two_groups_redacts_its_whole_match_and_empty_matches_redact_nothing() -> None:
    redactor = Redactor(compile_patterns([r"(a)(b)", r"x(y?)z"]), defaults=False)
    assert redactor.redact_text("ab xz xyz") == f"{REDACTED} xz x{REDACTED}z"


def test_patterns_split_on_newlines_and_top_level_commas() -> None:
    assert split_patterns("a{1,3}, [,x],(b|c,d)\n e\\,f,,") == ["a{1,3}", "[,x]", "(b|c,d)", "e\\,f"]
    assert split_patterns("[(],x,[\\]],y") == ["[(]", "x", "[\\]]", "y"]


def test_flags_and_env_twins_build_the_patterns() -> None:
    config = load_config(["--redact-pattern", "a{1,3}b", "--redact-pattern", "c(d)"], {})
    assert [p.pattern for p in config.redact_pattern] == ["a{1,3}b", "c(d)"]
    assert not config.no_default_redaction
    config = load_config([], {"RELAY_REDACT_PATTERN": "x,y\nz", "RELAY_NO_DEFAULT_REDACTION": "true"})
    assert [p.pattern for p in config.redact_pattern] == ["x", "y", "z"]
    assert config.no_default_redaction
    assert load_config(["--no-default-redaction"], {}).no_default_redaction
    assert not load_config([], {"RELAY_NO_DEFAULT_REDACTION": "false"}).no_default_redaction
    assert "hunter" not in repr(load_config(["--redact-pattern", "hunter2"], {}))


@pytest.mark.parametrize(("pattern", "reason"), [
    ("hunter2(", "missing ), unterminated subpattern at position 7"),
    ("hunter2\\q", "bad escape at position 7"),
    ("(?P<hunter2!>x)", "bad character in group name at position 4"),
    ("(hunter2)*", "matches the empty string"),
])
def test_a_bad_pattern_is_named_by_flag_and_position_never_by_its_text(pattern: str, reason: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(["--redact-pattern", "ok", "--redact-pattern", pattern], {})
    message = str(raised.value)
    assert message.startswith("--redact-pattern: pattern 2 of 2 ")
    assert reason in message
    assert "hunter2" not in message


def test_the_cli_refuses_a_bad_pattern_in_one_line_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--redact-pattern", "hunter2["]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--redact-pattern" in err and "hunter2" not in err
    assert "Traceback" not in err

