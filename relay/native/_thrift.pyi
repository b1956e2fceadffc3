from collections.abc import Callable, Sequence
from typing import Any

def encode_spans(spans: Sequence[Any], compact: bool, json_value: Callable[[Any], str],
                 kind_names: dict[Any, str], status_codes: dict[Any, int],
                 relay_span_type: type | None) -> list[bytes | None]: ...
