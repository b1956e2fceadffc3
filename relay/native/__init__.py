"""The compiled accelerator, when it is there: native twins of the pure hot-path modules.

``load(environ)`` is the one place that decides native or pure: the extension is used unless it
failed to build or ``TRACE_RELAY_PURE=1``. The pure modules stay the reference; the differential
tests (tests/unit/test_native_encode.py) prove the native bytes equal theirs.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

PURE_ENV = "TRACE_RELAY_PURE"


def load(environ: Mapping[str, str]) -> ModuleType | None:
    """The ``_thrift`` extension module, or None for the pure path."""
    if environ.get(PURE_ENV) == "1":
        return None
    try:
        from relay.native import _thrift  # noqa: PLC0415 - optional, compiled at install
    except ImportError:
        return None
    return _thrift
