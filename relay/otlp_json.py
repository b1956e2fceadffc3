"""OTLP/JSON <-> protobuf messages: ``google.protobuf.json_format`` plus the OTLP/JSON rules.

The OTLP specification's JSON differs from protobuf's canonical JSON mapping in one way that
matters here: trace and span ids are hex strings, not base64. The rest json_format already does:
lowerCamelCase keys (the original field names are accepted too), enums as integers (names too),
64-bit integers as strings (numbers too), and unknown fields are ignored as the specification
requires of receivers.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

# The bytes fields of the OTLP messages that hold ids, in both spellings json_format accepts.
_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


class InvalidJson(ValueError):
    """The body is not an OTLP/JSON message of the expected type."""


def parse(body: bytes, message_type: type[M]) -> M:
    """An OTLP/JSON body -> a message of ``message_type``; :class:`InvalidJson` when it is not one."""
    try:
        tree = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(_one_line(exc)) from None
    if not isinstance(tree, dict):
        raise InvalidJson(f"expected a JSON object, got {type(tree).__name__}")
    message: M = message_type()
    try:
        json_format.ParseDict(_hex_ids_to_base64(tree), message, ignore_unknown_fields=True)
    except (ValueError, RecursionError, json_format.ParseError) as exc:
        raise InvalidJson(_one_line(exc)) from None
    return message


def dumps(message: Message) -> bytes:
    """A message as OTLP/JSON: lowerCamelCase keys, int64 as strings, ids in hex."""
    tree = json_format.MessageToDict(message)
    return json.dumps(_base64_ids_to_hex(tree), separators=(",", ":")).encode()


def _hex_ids_to_base64(node: Any) -> Any:
    """Every id field's hex string as the base64 json_format expects (in place)."""
    return _rewrite_ids(node, _hex_to_base64)


def _base64_ids_to_hex(node: Any) -> Any:
    return _rewrite_ids(node, lambda _key, value: base64.b64decode(value).hex())


def _rewrite_ids(node: Any, rewrite: Callable[[str, str], str]) -> Any:
    pending = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                if key in _ID_FIELDS and isinstance(value, str):
                    item[key] = rewrite(key, value)
                elif isinstance(value, dict | list):
                    pending.append(value)
    return node


def _hex_to_base64(key: str, value: str) -> str:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise InvalidJson(f"{key}: not a hex string: {value[:64]!r}") from None
    return base64.b64encode(raw).decode()


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    if isinstance(exc, binascii.Error | UnicodeDecodeError):
        return f"not UTF-8 JSON: {exc}"
    return " ".join(str(exc).split())[:300]
