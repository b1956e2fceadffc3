"""Medians over runs, the Markdown table, the JSON document and the delivered-vs-offered plot."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.scenarios import PhaseResult

SERVER_NAMES = {"relay": "trace-relay", "relay-pure": "trace-relay, pure (TRACE_RELAY_PURE=1)",
                "naive": "naive (stock exporter under a lock)",
                "parse-only": "parse-only (ingest ceiling)"}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _pick(run: list[PhaseResult], server: str, phase: str, profile: str = "standard",
          output: str = "agent") -> PhaseResult | None:
    return next((r for r in run if (r.server, r.phase, r.profile, r.output) == (server, phase, profile, output)), None)


def _over_runs(runs: list[list[PhaseResult]], value: Callable[[list[PhaseResult]], float | None]) -> float | None:
    return _median([v for v in (value(run) for run in runs) if v is not None])


def _metric(server: str, phase: str, attr: str, profile: str = "standard", output: str = "agent") \
        -> Callable[[list[PhaseResult]], float | None]:
    def value(run: list[PhaseResult]) -> float | None:
        found = _pick(run, server, phase, profile, output)
        return None if found is None else float(getattr(found, attr))
    return value


def _ratio(server: str, other: str, profile: str) -> Callable[[list[PhaseResult]], float | None]:
    def value(run: list[PhaseResult]) -> float | None:
        mine, theirs = _pick(run, server, "saturation", profile), _pick(run, other, "saturation", profile)
        if mine is None or theirs is None or not theirs.delivered_per_s:
            return None
        return mine.delivered_per_s / theirs.delivered_per_s
    return value


def summarize(runs: list[list[PhaseResult]]) -> dict[str, Any]:
    servers: dict[str, dict[str, float | None]] = {}
    for server in SERVER_NAMES:
        servers[server] = {
            "saturated_standard": _over_runs(runs, _metric(server, "saturation", "delivered_per_s")),
            "saturated_buildkit": _over_runs(runs, _metric(server, "saturation", "delivered_per_s", "buildkit")),
            "saturated_collector": _over_runs(runs, _metric(server, "saturation", "delivered_per_s",
                                                             output="collector")),
            "accepted_standard": _over_runs(runs, _metric(server, "saturation", "accepted_per_s")),
            "refused_standard": _over_runs(runs, _metric(server, "saturation", "refused_per_s")),
            "cpu_10k": _over_runs(runs, _metric(server, "fixed", "cpu_percent")),
            "rss_10k": _over_runs(runs, _metric(server, "fixed", "rss_mib")),
            "p50_10k": _over_runs(runs, _metric(server, "fixed", "latency_p50_ms")),
            "p99_10k": _over_runs(runs, _metric(server, "fixed", "latency_p99_ms")),
            "delivered_10k": _over_runs(runs, _metric(server, "fixed", "delivered_per_s")),
            "rss_queue_full": _over_runs(runs, _metric(server, "queue_full", "rss_mib", output="collector")),
            "queue_size_full": _over_runs(runs, _metric(server, "queue_full", "queue_size", output="collector")),
            "lost": float(max((r.lost for run in runs for r in run if r.server == server), default=0)),
        }
    ratios = {
        "relay/naive standard": _over_runs(runs, _ratio("relay", "naive", "standard")),
        "relay/naive buildkit": _over_runs(runs, _ratio("relay", "naive", "buildkit")),
        "relay/relay-pure standard": _over_runs(runs, _ratio("relay", "relay-pure", "standard")),
        "relay/parse-only standard": _over_runs(runs, _ratio("relay", "parse-only", "standard")),
        "relay/parse-only buildkit": _over_runs(runs, _ratio("relay", "parse-only", "buildkit")),
    }
    return {"servers": servers, "ratios": ratios, "targets": _targets(servers["relay"], ratios)}


def _targets(relay: dict[str, float | None], ratios: dict[str, float | None]) -> list[dict[str, Any]]:
    rows = [
        ("saturated end-to-end throughput (standard)", relay["saturated_standard"], ">=", 40_000, "spans/s"),
        ("relay / naive (standard)", ratios["relay/naive standard"], ">=", 10, "x"),
        ("CPU at 10,000 spans/s", relay["cpu_10k"], "<=", 25, "% of one core"),
        ("RSS at 10,000 spans/s", relay["rss_10k"], "<=", 100, "MiB"),
        ("Export p99 at 10,000 spans/s, 32 clients", relay["p99_10k"], "<=", 5, "ms"),
        ("RSS with the default queue full", relay["rss_queue_full"], "<=", 200, "MiB"),
        ("accepted but lost", relay["lost"], "<=", 0, "spans"),
    ]
    targets = []
    for name, value, op, bound, unit in rows:
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        targets.append({"target": name, "measured": value, "bound": f"{op} {bound:,} {unit}", "met": met})
    return targets


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


SMOKE_LABEL = ("smoke: not a measurement (one short run on a shared machine; it shows the benchmark "
               "works; run `.venv/bin/python -m bench` for figures and the targets)")


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    """The tables; the targets (Met: yes/no) only for a full run, never from a smoke run."""
    s = summary["servers"]
    smoke = meta["mode"] == "smoke"
    lines = [
        *([f"**{SMOKE_LABEL}**", ""] if smoke else []),
        f"Mode: {meta['mode']}, {meta['runs']} run(s), medians; {meta['machine']}.",
        "",
        "| | " + " | ".join(SERVER_NAMES[k] for k in SERVER_NAMES) + " |",
        "|---|" + "---:|" * len(SERVER_NAMES),
    ]
    rows: list[tuple[str, str, int]] = [
        ("Saturated, delivered spans/s (standard, UDP agent)", "saturated_standard", 0),
        ("Saturated, delivered spans/s (BuildKit, UDP agent)", "saturated_buildkit", 0),
        ("Saturated, delivered spans/s (standard, HTTP collector)", "saturated_collector", 0),
        ("Saturated, refused spans/s (standard)", "refused_standard", 0),
        ("At 10,000 spans/s: CPU % of one core", "cpu_10k", 1),
        ("At 10,000 spans/s: RSS MiB", "rss_10k", 1),
        ("At 10,000 spans/s: Export p50 ms (32 clients)", "p50_10k", 2),
        ("At 10,000 spans/s: Export p99 ms (32 clients)", "p99_10k", 2),
        ("Queue full (20,000 spans): RSS MiB", "rss_queue_full", 1),
        ("Accepted (OK) but not delivered, spans", "lost", 0),
    ]
    for label, key, digits in rows:
        lines.append(f"| {label} | " + " | ".join(_fmt(s[k][key], digits) for k in SERVER_NAMES) + " |")
    lines += ["", "| Ratio (saturated, delivered) | median of per-run ratios |", "|---|---:|"]
    lines += [f"| {name} | {_fmt(value, 2)} |" for name, value in summary["ratios"].items()]
    if smoke:
        return "\n".join(lines) + "\n"
    lines += ["", "| Target | Bound | Measured | Met |", "|---|---|---:|---|"]
    for t in summary["targets"]:
        met = "-" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {t['bound']} | {_fmt(t['measured'], 1)} | {met} |")
    return "\n".join(lines) + "\n"


def plot(sweeps: list[PhaseResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    top = 0.0
    for server, label in SERVER_NAMES.items():
        points = sorted((r.offered or 0, r.delivered_per_s) for r in sweeps if r.server == server)
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
            top = max(top, *(p[0] for p in points))
    ax.plot([0, top], [0, top], linestyle=":", color="grey", label="delivered = offered")
    ax.set_xlabel("offered spans/s (standard profile)")
    ax.set_ylabel("spans/s delivered to the sink (parse-only: parsed)")
    ax.set_title("Delivered vs offered, 2-core machine")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
