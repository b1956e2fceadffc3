"""The build report: kept builds (observer Records) -> the /api/builds JSON and the /builds page.

Pure: no state, no I/O, no threads; the admin server calls ``routes()``'s callables. The fields
and how each is computed are documented in docs/insights.md.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from relay.insights.classify import KINDS
from relay.insights.observer import Record

MIN_GAP_NS = 1_000_000_000  # idle gaps of a second or more
Route = Callable[[Any], tuple[int, str, bytes]]  # the admin server passes its request; unused here
Interval = tuple[int, int]


def union_ns(intervals: Sequence[Interval]) -> int:
    """Nanoseconds covered by at least one interval (overlaps counted once)."""
    total, reach = 0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def idle_gaps(intervals: Sequence[Interval], start: int, end: int) -> list[Interval]:
    """Stretches of [start, end] of at least MIN_GAP_NS in which no interval ran."""
    gaps, reach = [], start
    for first, last in sorted(intervals):
        if first - reach >= MIN_GAP_NS:
            gaps.append((reach, first))
        reach = max(reach, last)
    if end - reach >= MIN_GAP_NS:
        gaps.append((reach, end))
    return gaps


def _seconds(ns: int) -> float:
    return round(max(0, ns) / 1e9, 6)


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _time_by_kind(record: Record) -> dict[str, float]:
    by_kind: list[list[Interval]] = [[] for _ in KINDS]
    for start, end, index in zip(record.starts, record.ends, record.kinds, strict=True):
        by_kind[index].append((start, end))
    return {name: _seconds(union_ns(intervals)) for name, intervals in zip(KINDS, by_kind, strict=True)}


def build_dict(record: Record) -> dict[str, Any]:
    build = record.build
    busy = list(zip(record.starts, record.ends, strict=True))
    return {
        "trace_id": build.trace_id,
        "status": build.status,
        "started_at": _utc(build.start_ns),
        "duration_seconds": _seconds(build.end_ns - build.start_ns),
        "steps_executed": record.executed,
        "steps_cached": record.cached,
        "slowest_steps": [{"name": name, "duration_seconds": _seconds(ns)} for name, ns in record.slowest],
        "failed_steps": list(record.failed),
        "time_by_kind": _time_by_kind(record),
        "idle_gaps": [{"start_offset_seconds": _seconds(first - build.start_ns),
                       "duration_seconds": _seconds(last - first)}
                      for first, last in idle_gaps(busy, build.start_ns, build.end_ns)],
    }


def builds_json(records: Sequence[Record]) -> bytes:
    """``{"builds": [...]}`` in the order given (the observer's: most recent first)."""
    return json.dumps({"builds": [build_dict(r) for r in records]}, indent=1).encode()


def routes(records: Callable[[], Sequence[Record]], jaeger_ui_url: str | None) -> dict[str, Route]:
    """The admin routes: path -> callable returning (status, content type, body)."""
    return {
        "/api/builds": lambda _request: (200, "application/json", builds_json(records())),
        "/builds": lambda _request: (200, "text/html; charset=utf-8",
                                     builds_html(records(), jaeger_ui_url).encode()),
    }


# -- the page: plain HTML and CSS, no JavaScript; every string from a span goes through _e() ---------

_STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#222}
h1{font-size:1.5em} h2{font-size:1.1em;margin:0 0 .4em} code{font-size:.95em}
section{border:1px solid #ccc;border-radius:6px;padding:.8em 1em;margin:1em 0}
.failure{border-left:6px solid #c62828} .success{border-left:6px solid #2e7d32}
.status{font-weight:bold;text-transform:uppercase} .failure .status{color:#c62828}
.success .status{color:#2e7d32} table{border-collapse:collapse;margin:.4em 0}
td,th{padding:.15em .6em;text-align:left;vertical-align:top;overflow-wrap:anywhere}
td.n{text-align:right;white-space:nowrap}
.bar{display:inline-block;height:.8em;background:#5c6bc0;vertical-align:middle}
.muted{color:#666}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _trace_link(trace_id: str, jaeger_ui_url: str | None) -> str:
    if not jaeger_ui_url:
        return f"<code>{_e(trace_id)}</code>"
    return f'<a href="{_e(f"{jaeger_ui_url}/trace/{trace_id}")}"><code>{_e(trace_id)}</code></a>'


def _rows(rows: Sequence[tuple[str, float]], scale: float) -> str:
    return "".join(
        f'<tr><td>{_e(name)}</td><td class="n">{seconds:.3f} s</td>'
        f'<td><span class="bar" style="width:{round(200 * seconds / scale)}px"></span></td></tr>'
        for name, seconds in rows)


def _section(build: dict[str, Any], jaeger_ui_url: str | None) -> str:
    slowest = [(s["name"], s["duration_seconds"]) for s in build["slowest_steps"]]
    kinds = sorted(build["time_by_kind"].items(), key=lambda kv: -kv[1])
    scale = max([build["duration_seconds"], *[s for _, s in slowest], *[s for _, s in kinds], 1e-9])
    gaps = ", ".join(f'{g["duration_seconds"]:.1f} s at +{g["start_offset_seconds"]:.1f} s'
                     for g in build["idle_gaps"]) or "none"
    failed = "".join(f"<li>failed: {_e(name)}</li>" for name in build["failed_steps"])
    return "".join((
        f'<section class="{_e(build["status"])}">',
        f'<h2><span class="status">{_e(build["status"])}</span> · {build["duration_seconds"]:.1f} s · ',
        f'trace {_trace_link(build["trace_id"], jaeger_ui_url)}</h2>',
        f'<p class="muted">started {_e(build["started_at"])} · {build["steps_executed"]} steps executed, ',
        f'{build["steps_cached"]} cached (a lower bound) · idle gaps: {_e(gaps)}</p>',
        f"<ul>{failed}</ul>" if failed else "",
        f"<h3>Slowest steps</h3><table>{_rows(slowest, scale)}</table>" if slowest
        else "<p>No executed step seen in this trace.</p>",
        f"<h3>Time by kind of step</h3><table>{_rows(kinds, scale)}</table></section>",
    ))


def builds_html(records: Sequence[Record], jaeger_ui_url: str | None) -> str:
    builds = [build_dict(r) for r in records]
    body = "".join(_section(b, jaeger_ui_url) for b in builds) or (
        "<p>No build yet. Builds appear when BuildKit's <code>Control/Solve</code> span arrives; "
        "try <code>trace-relay send-test-trace</code>.</p>")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>trace-relay: builds</title><style>{_STYLE}</style></head><body>"
        f"<h1>BuildKit builds</h1><p class=\"muted\">The {len(builds)} most recent build(s) this relay has "
        "seen, newest first (JSON: <a href=\"/api/builds\">/api/builds</a>).</p>"
        f"{body}</body></html>\n"
    )
