"""The one place an exporter is built from the Config. Every argument is passed explicitly;
nothing is read from the environment (the stock Jaeger exporter reads ``OTEL_EXPORTER_JAEGER_*``
whenever an argument is falsy; we never use it)."""

from __future__ import annotations

from relay.config import Config
from relay.exporters.agent import JaegerAgentExporter
from relay.exporters.base import Exporter
from relay.exporters.collector import JaegerCollectorExporter


def build_exporter(config: Config) -> Exporter:
    """The collector exporter if ``--jaeger-collector`` is set, else the agent exporter."""
    if config.jaeger_collector is not None:
        return JaegerCollectorExporter(
            config.jaeger_collector,
            username=config.jaeger_user,
            password=config.jaeger_password,
            timeout=config.jaeger_timeout,
        )
    return JaegerAgentExporter(config.jaeger_agent.host, config.jaeger_agent.port)
