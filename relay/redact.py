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
quadratic or exponential backtracking.

Cheap when there is nothing to find: the default patterns first search the request's serialized
bytes (one fast literal-led scan each, no walk over the message); only a request where one of them
matches is walked string by string, and there each pattern runs only on strings holding one of its
needles (a literal every match of it contains). Added patterns run on every string.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

REDACTED = "[REDACTED]"

# NAME=value where NAME ends in one of these (any ASCII case): NPM_TOKEN=, GITHUB_TOKEN=,
# AWS_SECRET_ACCESS_KEY=, DB_PASSWORD=, CLIENT_SECRET=, ?access_token=, api_key=. Looked for
# behind each "=", so the scan runs at the speed of a literal search.
_SENSITIVE_NAMES = ("secret_access_key", "token", "password", "passwd", "secret", "api_key", "apikey")
_AFTER_NAME = "|".join(f"(?<=(?i:{name})=)" for name in _SENSITIVE_NAMES)
_LAST_LETTERS = "[" + "".join(sorted({c for name in _SENSITIVE_NAMES for c in (name[-1], name[-1].upper())})) + "]"
_TOKEN68 = r"[A-Za-z0-9._~+/-]"  # RFC 7235 token68, the credentials after Bearer / Basic
_CREDENTIALS = rf"(?={_TOKEN68}*[A-Z0-9])({_TOKEN68}{{8,}}=*)"  # 8 or more, a digit or capital in them

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
    (rf"""=(?<={_LAST_LETTERS}=)(?:{_AFTER_NAME})(?:"([^"\n]+)"|'([^'\n]+)'|["']?([^\s"',;&]+))""", ("=",)),
    # Authorization credentials after Bearer, bearer, BEARER, Basic, basic, BASIC; the lookahead
    # leaves English ("Bearer token", "basic auth") alone. Each starts with a literal: the fast
    # way to search (an alternation, or (?i), makes the engine try every position).
    (rf"earer(?<=[Bb]earer)\s+{_CREDENTIALS}", ("earer",)),
    (rf"EARER(?<=BEARER)\s+{_CREDENTIALS}", ("EARER",)),
    (rf"asic(?<=[Bb]asic)\s+{_CREDENTIALS}", ("asic",)),
    (rf"ASIC(?<=BASIC)\s+{_CREDENTIALS}", ("ASIC",)),
    # scheme://user:password@host: the password (user info never holds / ? # @ or white space;
    # each run stops at the next "/", so runs from two "://" never overlap)
    (r"://[^\s/?#:@]*:([^\s/?#@]+)@", ("://",)),
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

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in ``text``."""
        if self._needles and not any(needle in text for needle in self._needles):
            return False
        return self.pattern.search(text) is not None

    def _replace(self, match: re.Match[str]) -> str:
        start, end = match.span((match.lastindex or 0) if self._alternatives else self._group)
        if start == end:  # an empty match or group, or a group that took no part: nothing to hide
            return match[0]
        whole_start, whole_end = match.span()
        text = match.string
        return text[whole_start:start] + REDACTED + text[end:whole_end]


# ASCII: \s and the case-insensitive names mean the same in a str and in UTF-8 bytes, so that a
# default pattern matching a string also matches the request's wire bytes that hold it.
DEFAULT_RULES = tuple(Rule(re.compile(pattern, re.ASCII), needles=needles, alternatives=True)
                      for pattern, needles in _DEFAULTS)
_WIRE_PATTERNS = tuple(re.compile(pattern.encode()) for pattern, _ in _DEFAULTS)


_QUOTED_PART = re.compile(r"\s*['\"\\?]")  # where re.error's message starts quoting the pattern


def split_patterns(text: str) -> list[str]:
    """Patterns separated by newlines or by commas outside ``[...]``, ``{...}`` and ``(...)``
    (``\\,`` is a literal comma anywhere); empty items are skipped."""
    items: list[str] = []
    current: list[str] = []
    depth, in_class, escaped = 0, False, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"  # ( { , inside [...] are plain characters
        elif char == "[":
            in_class = True
        elif char in "({":
            depth += 1
        elif char in ")}":
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
        self._defaults = DEFAULT_RULES if defaults else ()
        self._added = tuple(Rule(pattern) for pattern in patterns)
        self._all = self._defaults + self._added

    @property
    def enabled(self) -> bool:
        return bool(self._all)

    def redact_text(self, text: str) -> str:
        return _apply(self._all, text)

    def may_change(self, data: bytes) -> bool:
        """Whether redaction could change the request serialized as ``data``: False when no
        pattern can match (then the bytes may be used as they are, natively parsed)."""
        if self._added:
            return True  # added patterns see every string: no wire shortcut for them
        return bool(self._defaults) and bool(self._found_in(data))

    def redact(self, request: ExportTraceServiceRequest, *, wire: bytes | None = None) -> int:
        """Redact ``request`` in place; the number of string values changed. ``wire``: the
        request's protobuf bytes when the caller has them (saves serializing it again)."""
        if not self.enabled:
            return 0
        # Most requests hold no secret: one search of the wire bytes per default pattern says so.
        found = self._found_in(wire if wire is not None else request.SerializeToString()) if self._defaults else ()
        if not found and not self._added:
            return 0
        rules = (self._defaults if found else ()) + self._added
        found_rules = tuple(rule for rule, _ in found)
        changed = 0
        for message, name, text in _strings(request, None if self._added else _Holds(found)):
            # A string no pattern found in the wire matches is left alone; the others go through
            # every pattern in order (one replacement can reveal a match to the next). Added
            # patterns may use anchors or lookarounds the wire would fool: they see every string.
            if not self._added and not any(rule.search(text) for rule in found_rules):
                continue
            redacted = _apply(rules, text)
            if redacted != text:
                setattr(message, name, redacted)
                changed += 1
        return changed

    def _found_in(self, data: bytes) -> tuple[tuple[Rule, re.Pattern[bytes]], ...]:
        """The default patterns (and their bytes twins) that match somewhere in serialized data.
        Every string of a message sits in its wire bytes as UTF-8, whole, and no default pattern
        looks past the ends of what it matches (no anchors, no word boundaries, no negative
        lookarounds), so a pattern matching a string is found here; the converse does not hold,
        which only costs a walk."""
        return tuple((rule, wire) for rule, wire in zip(DEFAULT_RULES, _WIRE_PATTERNS, strict=True)
                     if wire.search(data) is not None)


class _Holds:
    """Whether a span's own wire bytes match one of the patterns found in its request: the spans
    that do not are not walked."""

    def __init__(self, found: tuple[tuple[Rule, re.Pattern[bytes]], ...]) -> None:
        self._wires = tuple(wire for _, wire in found)

    def __call__(self, span: Span) -> bool:
        data = span.SerializeToString()
        return any(wire.search(data) is not None for wire in self._wires)


def _apply(rules: tuple[Rule, ...], text: str) -> str:
    for rule in rules:
        text = rule.apply(text)
    return text


_Place = tuple[Any, str, str]  # (message, field name, the string it holds)


def _strings(request: ExportTraceServiceRequest, keep: Callable[[Span], bool] | None = None) -> list[_Place]:
    """Every string redaction looks at: attribute strings at any depth of resources, scopes,
    spans, events and links; span names, status messages and event names. With ``keep``, only
    the spans it keeps."""
    places: list[_Place] = []
    for resource_spans in request.resource_spans:
        _attribute_strings(resource_spans.resource.attributes, places)
        for scope_spans in resource_spans.scope_spans:
            _attribute_strings(scope_spans.scope.attributes, places)
            for span in scope_spans.spans:
                if keep is None or keep(span):
                    _span_strings(span, places)
    return places


def _span_strings(span: Span, places: list[_Place]) -> None:
    places.append((span, "name", span.name))
    status = span.status
    places.append((status, "message", status.message))
    _attribute_strings(span.attributes, places)
    for event in span.events:
        places.append((event, "name", event.name))
        _attribute_strings(event.attributes, places)
    for link in span.links:
        _attribute_strings(link.attributes, places)


def _attribute_strings(attributes: Iterable[KeyValue], places: list[_Place]) -> None:
    for attribute in attributes:
        _value_strings(attribute.value, places)


def _value_strings(value: AnyValue, places: list[_Place]) -> None:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        places.append((value, "string_value", value.string_value))
    elif kind == "array_value":
        for item in value.array_value.values:
            _value_strings(item, places)
    elif kind == "kvlist_value":
        _attribute_strings(value.kvlist_value.values, places)
