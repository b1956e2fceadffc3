"""The Grafana dashboard ConfigMap: opt-in, labelled for the sidecar, valid JSON, and every PromQL
expression names only metrics the relay exposes."""

from __future__ import annotations

import json
import re
from typing import Any

from prometheus_client import CollectorRegistry

from relay.insights.metrics import BuildMetrics
from relay.metrics import Metrics

from .render import CHART_DIR, objects, render

METRIC = re.compile(r"\b(trace_relay_[a-z_]+)\b")
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def exposed_metric_names() -> set[str]:
    """Every series name /metrics can show: the relay's and the build insights' metrics."""
    registry = CollectorRegistry()
    Metrics(registry, 10)
    BuildMetrics(registry)
    return {family.name + suffix for family in registry.collect() for suffix in _SUFFIXES[family.type]}


def dashboard_configmaps(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in objects(render(values)) if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith(
        "-dashboard")]


def expressions(dashboard: dict[str, Any]) -> dict[str, list[str]]:
    return {p["title"]: [t["expr"] for t in p.get("targets", [])] for p in dashboard["panels"] if p["type"] != "row"}


def test_dashboard_is_opt_in() -> None:
    assert dashboard_configmaps({}) == []


def test_dashboard_configmap_for_grafanas_sidecar() -> None:
    (configmap,) = dashboard_configmaps({"dashboard": {"enabled": True, "namespace": "monitoring"}})
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "monitoring"
    (body,) = configmap["data"].values()
    dashboard = json.loads(body)
    assert dashboard == json.loads((CHART_DIR / "dashboards" / "trace-relay.json").read_text(encoding="utf-8"))
    exprs = expressions(dashboard)
    titles = " | ".join(exprs).lower()
    for topic in ("builds per minute", "failure ratio", "p50 / p95", "slowest kinds of step", "cache hit ratio",
                  "dropped", "queue"):
        assert topic in titles, topic
    known = exposed_metric_names()
    for title, panel_exprs in exprs.items():
        assert panel_exprs, f"{title}: no query"
        for expr in panel_exprs:
            names = METRIC.findall(expr)
            assert names, f"{title}: {expr} names no trace_relay metric"
            assert set(names) <= known, f"{title}: unknown {set(names) - known}"


def test_cache_ratio_is_documented_as_a_lower_bound() -> None:
    dashboard = json.loads((CHART_DIR / "dashboards" / "trace-relay.json").read_text(encoding="utf-8"))
    (panel,) = [p for p in dashboard["panels"] if p["title"].startswith("Cache hit ratio")]
    assert "lower bound" in panel["title"].lower()
    assert 'buildkit.builds.steps{kind="cached"}' in panel["description"]
