"""The compiled accelerator, when it is there: native twins of the pure hot-path modules.

- ``_thrift``: ReadableSpans -> Jaeger thrift bytes (twin of relay/exporters/translate.py + the
  thrift encoder), used by relay/exporters/encode.py.
- ``_otlp``: ExportTraceServiceRequest bytes -> plain tuples (twin of upb's parse and the field
  reads of relay/convert.py), used by ``relay.convert.convert_bytes``.

Each is used unless it failed to build or ``TRACE_RELAY_PURE=1``; this module is the one place
that decides. Both hand anything unusual back to the pure path, which stays the reference; the
differential tests (tests/unit/test_native_*.py) prove the results equal.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType

PURE_ENV = "TRACE_RELAY_PURE"


def _extension(name: str, environ: Mapping[str, str]) -> ModuleType | None:
    if environ.get(PURE_ENV) == "1":
        return None
    try:
        return importlib.import_module(f"relay.native.{name}")
    except ImportError:
        return None


def load(environ: Mapping[str, str]) -> ModuleType | None:
    """The ``_thrift`` extension module (span encoder), or None for the pure path."""
    return _extension("_thrift", environ)


def load_parser(environ: Mapping[str, str]) -> ModuleType | None:
    """The ``_otlp`` extension module (request parser), or None for the pure path (upb)."""
    return _extension("_otlp", environ)
