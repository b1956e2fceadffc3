"""Redaction never breaks a span, never lets a generated secret through, and stays linear.

The requests are bench/fuzz_bodies.py's structurally valid requests full of weird values, with
secrets planted at random places (any string field redaction looks at, at any depth).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from bench.fuzz_bodies import weird_requests
from relay.convert import convert_request
from relay.redact import _DEFAULTS, DEFAULT_RULES, REDACTED, Redactor, Rule

ALNUM = string.ascii_letters + string.digits
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Independent of relay/redact.py's trigger and replacement code: the default patterns' text alone.
_ANY_DEFAULT = [re.compile(pattern) for pattern, _ in _DEFAULTS]


def _alnum(size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=ALNUM, min_size=size, max_size=size)


def _credential() -> st.SearchStrategy[str]:
    """An RFC 7235 token68 with one digit in it (what real bearer and basic credentials are)."""
    return st.builds(lambda head, digit, tail: head + digit + tail,
                     st.text(alphabet=ALNUM + "-._~+/", min_size=8, max_size=40), st.sampled_from(string.digits),
                     st.text(alphabet=ALNUM, max_size=8))


# (the text that goes into a value, the part of it that must not survive)
secrets = st.one_of(
    st.builds(lambda prefix, body: (prefix + body, body), st.sampled_from(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]),
              _alnum(36)),
    st.builds(lambda a, b: (f"github_pat_{a}_{b}", f"{a}_{b}"), _alnum(22), _alnum(59)),
    st.builds(lambda body: ("npm_" + body, body), _alnum(36)),
    st.builds(lambda prefix, body: (prefix + body, body), st.sampled_from(["AKIA", "ASIA"]),
              st.text(alphabet=string.ascii_uppercase + string.digits, min_size=16, max_size=16)),
    st.builds(lambda name, quote, value: (f"{name}={quote}{value}{quote}", value),
              st.sampled_from(["NPM_TOKEN", "GITHUB_TOKEN", "token", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD",
                               "passwd", "CLIENT_SECRET", "api_key", "apikey"]),
              st.sampled_from(["", '"', "'"]), _alnum(12)),
    st.builds(lambda scheme, value: (f"{scheme} {value}", value),
              st.sampled_from(["Bearer", "bearer", "Basic", "BASIC"]), _credential()),
    st.builds(lambda user, value: (f"https://{user}:{value}@git.example.com/r", value),
              st.text(alphabet=string.ascii_lowercase + "-._", max_size=12),
              st.text(alphabet=string.ascii_uppercase + string.digits + "~!$", min_size=8, max_size=40)),
)

# Random text around a secret, with the characters the patterns care about over-represented.
noise = st.text(alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from(list("=:@/'\", ;&_\n\t"))),
                max_size=30)


def _strings(request: ExportTraceServiceRequest) -> Iterator[tuple[object, str]]:
    """Every (message, field) pair holding a string redaction looks at, in a fixed order."""
    for resource_spans in request.resource_spans:
        yield from _attribute_strings(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            yield from _attribute_strings(scope_spans.scope.attributes)
            for span in scope_spans.spans:
                yield span, "name"
                yield span.status, "message"
                yield from _attribute_strings(span.attributes)
                for event in span.events:
                    yield event, "name"
                    yield from _attribute_strings(event.attributes)
                for link in span.links:
                    yield from _attribute_strings(link.attributes)


def _attribute_strings(attributes: list[KeyValue]) -> Iterator[tuple[object, str]]:
    for attribute in attributes:
        yield from _value_strings(attribute.value)


def _value_strings(value: AnyValue) -> Iterator[tuple[object, str]]:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        yield value, "string_value"
    elif kind == "array_value":
        for item in value.array_value.values:
            yield from _value_strings(item)
    elif kind == "kvlist_value":
        yield from _attribute_strings(value.kvlist_value.values)


def _shape(message: object) -> object:
    """Everything but the strings' text: the message with every string replaced by its field path."""
    copy = ExportTraceServiceRequest.FromString(message.SerializeToString())  # type: ignore[attr-defined]
    for number, (holder, field) in enumerate(_strings(copy)):
        setattr(holder, field, f"<{number}>")
    return copy


Case = tuple[ExportTraceServiceRequest, ExportTraceServiceRequest, list[str]]


@st.composite
def requests_with_secrets(draw: st.DrawFn) -> Case:
    """(a request with secrets planted in random text, its twin with the same text but no
    secrets, the secrets). A secret may also occur by chance in the random text: the twin
    counts those occurrences, which are not the redactor's to find."""
    data = draw(weird_requests())
    request, twin = ExportTraceServiceRequest.FromString(data), ExportTraceServiceRequest.FromString(data)
    places, twin_places = list(_strings(request)), list(_strings(twin))
    planted: list[str] = []
    for _ in range(draw(st.integers(1, 3)) if places else 0):
        at = draw(st.integers(0, len(places) - 1))
        text, secret = draw(secrets)
        before, after = draw(noise), draw(noise)
        for (holder, field), planting in ((places[at], text), (twin_places[at], "")):
            setattr(holder, field, f"{before} {planting} {after}{getattr(holder, field)}")
        planted.append(secret)
    return request, twin, planted


@PROPERTY
@given(requests_with_secrets())
def test_redaction_never_breaks_a_span_and_no_planted_secret_survives(case: Case) -> None:
    request, twin, planted = case
    before = ExportTraceServiceRequest.FromString(request.SerializeToString())
    changed = Redactor().redact(request)

    wire = request.SerializeToString()  # still serializes
    assert _shape(request) == _shape(before)  # same spans, attributes, events, links, keys, types
    old = convert_request(before)
    new = convert_request(request)  # still converts, with the same verdicts
    assert (new.span_count, new.rejected) == (old.span_count, old.rejected)
    twin_wire = twin.SerializeToString()
    for secret in planted:
        assert wire.count(secret.encode()) <= twin_wire.count(secret.encode())
    pairs = list(zip(_strings(before), _strings(request), strict=True))
    assert changed == sum(getattr(*a) != getattr(*b) for a, b in pairs)
    one_string_at_a_time = Redactor()
    for old_place, new_place in pairs:
        original, redacted = getattr(*old_place), getattr(*new_place)
        if not any(pattern.search(original) for pattern in _ANY_DEFAULT):
            assert redacted == original  # byte-identical when nothing matched
        else:
            assert REDACTED in redacted
        # the whole-request shortcut (a search of the wire bytes) decides as each string would
        assert redacted == one_string_at_a_time.redact_text(original)


@PROPERTY
@given(st.lists(st.one_of(noise, secrets.map(lambda pair: pair[0])), max_size=6).map("".join))
def test_redaction_is_idempotent_and_the_needles_never_skip_a_secret(text: str) -> None:
    once = Redactor().redact_text(text)
    assert Redactor().redact_text(once) == once
    without_needles = text
    for rule in DEFAULT_RULES:
        without_needles = Rule(rule.pattern, alternatives=True).apply(without_needles)
    assert once == without_needles


# Strings built to make a backtracking pattern explode: long runs of what each pattern's repeats
# accept, without the character that would end the match. A quadratic pattern takes hours on these
# (200 000 characters: 4e10 steps); the linear defaults take milliseconds. No time is asserted: the
# test's timeout is the bound, and bench/redact.py measures the cost.
ADVERSARIAL = [
    "a" * 200_000,
    "a" * 200_000 + "=",
    "_" * 200_000 + "=",
    "=" + "a" * 200_000,
    "A" * 200_000 + "AKIA",
    "ghp_" + "a" * 200_000 + "_",
    "ghp_" * 50_000,
    "TOKEN=" * 33_000,
    'TOKEN="' * 28_000,
    "Bearer " * 28_000,
    "Bearer " + "a" * 200_000,
    "://" + ":" * 200_000,
    "://a:" * 40_000,
    "://" * 66_000,
    "AKIA" * 50_000,
    "_" * 200_000,
    "=" * 200_000,
    "x" * 100_000 + "://" + "y" * 100_000,
]


def test_long_adversarial_strings_complete() -> None:
    redactor = Redactor()
    for text in ADVERSARIAL:
        redacted = redactor.redact_text(text)
        assert redactor.redact_text(redacted) == redacted
