"""Secrets out of spans, before anything else sees them. Pure: imports only protobuf types and ``re``.

:class:`Redactor` rewrites a parsed ``ExportTraceServiceRequest`` in place, right after the receiver
parses it: every string in the attribute values of resources, scopes, spans, events and links (the
strings inside arrays and key-value lists too, at any depth), and the span name, event names and
status message. Only the secret part of a string becomes ``[REDACTED]``; the rest is kept. Keys,
ids, numbers, booleans and bytes are never touched, so a redacted span has the same shape.

A pattern with one capturing group redacts what the group matched (so ``NPM_TOKEN=`` or ``ghp_``
stays and says what was there); any other pattern redacts its whole match. Every default pattern
is linear: no nested or overlapping quantifiers, and each unbounded run stops at a character the
pattern around it cannot match, so a long hostile string costs a few passes over it, never
quadratic or exponential backtracking. Each default pattern runs only on strings holding one of
its needles (a literal every match of it contains, found with ``in``), so values with nothing
token-shaped cost a few substring searches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

REDACTED = "[REDACTED]"

# NAME=value where NAME ends in one of these (any ASCII case): NPM_TOKEN=, GITHUB_TOKEN=,
# AWS_SECRET_ACCESS_KEY=, DB_PASSWORD=, CLIENT_SECRET=, ?access_token=, api_key=. Looked for
# behind each "=", so the scan runs at the speed of a literal search.
_SENSITIVE_NAMES = ("secret_access_key", "token", "password", "passwd", "secret", "api_key", "apikey")
_AFTER_NAME = "|".join(f"(?<=(?ai:{name})=)" for name in _SENSITIVE_NAMES)
_TOKEN68 = r"[A-Za-z0-9._~+/-]"  # RFC 7235 token68, the credentials after Bearer / Basic

# (pattern, needles) in the order they apply: the token shapes first, so a token inside an
# assignment or a URL is already gone when the broader patterns run. A pattern runs on a string
# only if one of its needles (a literal each of its matches contains) is in it.
_DEFAULTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # GitHub personal, OAuth, user-to-server, server-to-server and refresh tokens
    (r"gh[pousr]_([A-Za-z0-9]{30,})", ("_",)),
    (r"github_pat_([A-Za-z0-9_]{30,})", ("github_pat_",)),  # fine-grained personal access tokens
    (r"npm_([A-Za-z0-9]{36,})", ("npm_",)),
    (r"A[KS]IA([A-Z0-9]{16})", ("AKIA", "ASIA")),  # AWS access key ids (long-term, temporary)
    # NAME=value, NAME="value", NAME='value': env, argv (--build-arg NPM_TOKEN=x), URL queries.
    # Unquoted, the value ends at white space, a quote, a comma, ; or & (as buildx's history
    # export does); quoted, at the closing quote on the same line.
    (rf"""=(?:{_AFTER_NAME})(?:"([^"\n]+)"|'([^'\n]+)'|["']?([^\s"',;&]+))""", ("=",)),
    # Authorization credentials; the lookahead leaves English ("Bearer token", "basic auth") alone.
    (rf"(?:[Bb]earer|BEARER|[Bb]asic|BASIC)\s+(?={_TOKEN68}*[A-Z0-9])({_TOKEN68}{{8,}}=*)",
     ("earer", "EARER", "asic", "ASIC")),
    # scheme://user:password@host: the password (user info never holds / ? # @ or white space)
    (r"://[^\s/?#:@]{0,256}:([^\s/?#@]{1,256})@", ("://",)),
)


class Rule:
    """One pattern and how it replaces: its one group, or else its whole match. A default pattern
    whose alternatives each hold one group (``alternatives``) redacts the group that matched."""

    __slots__ = ("_alternatives", "_group", "_needles", "pattern")

    def __init__(self, pattern: re.Pattern[str], *, needles: tuple[str, ...] = (),
                 alternatives: bool = False) -> None:
        self.pattern = pattern
        self._needles = needles
        self._group = 1 if pattern.groups == 1 else 0
        self._alternatives = alternatives

    def apply(self, text: str) -> str:
        for needle in self._needles:
            if needle in text:
                break
        else:
            if self._needles:
                return text  # no match can exist without a needle
        return self.pattern.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        start, end = match.span((match.lastindex or 0) if self._alternatives else self._group)
        if start == end:  # an empty match or group, or a group that took no part: nothing to hide
            return match[0]
        whole_start, whole_end = match.span()
        text = match.string
        return text[whole_start:start] + REDACTED + text[end:whole_end]


DEFAULT_RULES = tuple(Rule(re.compile(pattern), needles=needles, alternatives=True)
                      for pattern, needles in _DEFAULTS)
_QUOTED_PART = re.compile(r"\s*['\"\\?]")  # where re.error's message starts quoting the pattern


def split_patterns(text: str) -> list[str]:
    """Patterns separated by newlines or by commas outside ``[...]``, ``{...}`` and ``(...)``
    (``\\,`` is a literal comma anywhere); empty items are skipped."""
    items: list[str] = []
    current: list[str] = []
    depth, escaped = 0, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(0, depth - 1)
        elif char == "\n" or (char == "," and depth == 0):
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def compile_patterns(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    """Compile user patterns. The ValueError names a bad pattern by its position, never by its
    text: a pattern may spell out the secret it is there to hide."""
    items = list(patterns)
    compiled = []
    for number, pattern in enumerate(items, start=1):
        where = f"pattern {number} of {len(items)}"
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            position = f" at position {exc.pos}" if exc.pos is not None else ""
            reason = _QUOTED_PART.split(exc.msg, maxsplit=1)[0]  # "bad escape \q" quotes the pattern
            raise ValueError(f"{where} is not a valid regular expression: {reason}{position}") from None
        if regex.fullmatch(""):
            raise ValueError(f"{where} matches the empty string, so it would redact nothing")
        compiled.append(regex)
    return tuple(compiled)


class Redactor:
    """Replaces the secret part of span strings with ``[REDACTED]``; see the module docstring."""

    def __init__(self, patterns: Sequence[re.Pattern[str]] = (), *, defaults: bool = True) -> None:
        self._rules = (DEFAULT_RULES if defaults else ()) + tuple(Rule(pattern) for pattern in patterns)

    @property
    def enabled(self) -> bool:
        return bool(self._rules)

    def redact_text(self, text: str) -> str:
        for rule in self._rules:
            text = rule.apply(text)
        return text

    def redact(self, request: ExportTraceServiceRequest) -> int:
        """Redact ``request`` in place; the number of string values changed."""
        if not self.enabled:
            return 0
        changed = 0
        for resource_spans in request.resource_spans:
            changed += self._attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                changed += self._attributes(scope_spans.scope.attributes)
                for span in scope_spans.spans:
                    changed += self._span(span)
        return changed

    def _span(self, span: Span) -> int:
        changed = self._attributes(span.attributes) + self._field(span, "name")
        if span.HasField("status"):
            changed += self._field(span.status, "message")
        for event in span.events:
            changed += self._attributes(event.attributes) + self._field(event, "name")
        for link in span.links:
            changed += self._attributes(link.attributes)
        return changed

    def _attributes(self, attributes: Iterable[KeyValue]) -> int:
        return sum(self._value(attribute.value) for attribute in attributes)

    def _value(self, value: AnyValue) -> int:
        kind = value.WhichOneof("value")
        if kind == "string_value":
            return self._field(value, "string_value")
        if kind == "array_value":
            return sum(self._value(item) for item in value.array_value.values)
        if kind == "kvlist_value":
            return self._attributes(value.kvlist_value.values)
        return 0

    def _field(self, message: object, name: str) -> int:
        text: str = getattr(message, name)
        redacted = self.redact_text(text)
        if redacted == text:
            return 0
        setattr(message, name, redacted)
        return 1
