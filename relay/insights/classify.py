"""Pure rules that say what a BuildKit span is: a build, a step (executed or cached), or neither.

The rules and the regular expression are issue 11's, word for word; they read one span on its own.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

SOLVE = "moby.buildkit.v1.Control/Solve"
CACHE_REQUEST = "cache request: "
LOAD_CACHE = "load cache: "
EXPORTING = "exporting "  # BuildKit's exporter spans ("exporting to image"): no `vertex`, not steps
MAX_NAME = 300  # characters of a step name kept for the report (RUN command lines can be long)
_INSTRUCTION = re.compile(r"^\[(?:[^\]]+ )?\d+/\d+\] ([A-Za-z]+)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# The Dockerfile instructions: a word outside this set is `other`, so labels stay bounded.
INSTRUCTIONS = frozenset({
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
})


# NamedTuples, not frozen dataclasses: one is built per step span on the worker thread, and a
# tuple is several times cheaper to build (bench/insights.py).
class Build(NamedTuple):
    trace_id: str
    failed: bool
    start_ns: int
    end_ns: int

    @property
    def status(self) -> str:
        return "failure" if self.failed else "success"


class Export(NamedTuple):
    """An exporter span: not a step (no metric counts it), only the report's `export` time."""

    trace_id: str
    start_ns: int
    end_ns: int


class Step(NamedTuple):
    trace_id: str
    name: str  # for the report page only; never a metric label
    instruction: str
    cached: bool
    failed: bool
    start_ns: int
    end_ns: int


def classify(span: ReadableSpan) -> Build | Step | Export | None:
    """A Build for the daemon's server Solve span, a Step for a vertex span, an Export for an
    `exporting ...` span without `vertex`, else None."""
    context, start, end = span.context, span.start_time, span.end_time
    if context is None or start is None or end is None:
        return None
    name = span.name
    if name == SOLVE and span.kind == SpanKind.SERVER:
        return Build(f"{context.trace_id:032x}", build_failed(span), start, end)
    attributes = span.attributes
    if not attributes or "vertex" not in attributes:
        return Export(f"{context.trace_id:032x}", start, end) if name.startswith(EXPORTING) else None
    if name.startswith(CACHE_REQUEST):
        return None
    cached = name.startswith(LOAD_CACHE)
    if cached:
        name = name[len(LOAD_CACHE):]
    failed = span.status.status_code == StatusCode.ERROR
    return Step(f"{context.trace_id:032x}", name[:MAX_NAME], instruction(name), cached, failed, start, end)


# The report's kinds of step (docs/insights.md): sources and pulls, context transfer, RUN,
# COPY/ADD, the exporter, everything else.
KINDS = ("source", "context", "run", "copy", "export", "other")
_KIND_OF_INSTRUCTION = {"source": "source", "FROM": "source", "internal": "context", "RUN": "run",
                        "COPY": "copy", "ADD": "copy"}
METADATA = "[internal] load metadata for "  # a registry look-up: a source, not the context


def kind(item: Step | Export) -> str:
    """source (images, URLs, registry metadata), context (other [internal] steps: build
    definition, .dockerignore, build context transfer), run, copy (COPY, ADD), export or other."""
    if isinstance(item, Export):
        return "export"
    if item.instruction == "internal" and item.name.startswith(METADATA):
        return "source"
    return _KIND_OF_INSTRUCTION.get(item.instruction, "other")


def build_failed(span: ReadableSpan) -> bool:
    """ERROR status, a non-zero integer ``rpc.grpc.status_code`` (older BuildKit) or a string
    ``rpc.response.status_code`` other than ``OK`` (BuildKit v0.32+)."""
    if span.status.status_code == StatusCode.ERROR:
        return True
    attributes = span.attributes or {}
    old = attributes.get("rpc.grpc.status_code")
    if isinstance(old, int) and not isinstance(old, bool) and old != 0:
        return True
    new = attributes.get("rpc.response.status_code")
    return isinstance(new, str) and new != "OK"


def instruction(step_name: str) -> str:
    """`RUN`, `COPY`, ... after a `[name i/n] ` or `[i/n] ` prefix; `internal`, `source` or `other`."""
    match = _INSTRUCTION.match(step_name)
    if match:
        word = match[1].upper()
        return word if word in INSTRUCTIONS else "other"
    if step_name.startswith("[internal]"):
        return "internal"
    if _SCHEME.match(step_name):
        return "source"
    return "other"
