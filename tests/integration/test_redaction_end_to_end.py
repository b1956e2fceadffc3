"""Secrets sent by a real OTLP/gRPC exporter never reach a real (decoding) Jaeger collector."""

from __future__ import annotations

from opentelemetry.trace import Link

from bench.jaeger_sinks import HttpCollectorSink
from tests.conftest import RelayFactory
from tests.integration.test_end_to_end import _tags
from tests.otlp import tracer_provider

GHP = "ghp_" + "Zq9" * 12
NPM_SECRET = "npmsecret0123"
BEARER = "eyJhbGciOiJIUzI1NiJ9.e30.Q5x9"
URL_PASSWORD = "pw1234567"
CORP = "corp-424242"
DEFAULT_SHAPES = (GHP[4:], NPM_SECRET, BEARER, URL_PASSWORD)


def _send_build_with_secrets(port: int) -> None:
    """buildctl's argv as a string array, an authorization header, a URL, a custom secret shape,
    in span, event, link and resource attributes."""
    provider = tracer_provider(port, "buildctl", **{"vcs.url": f"https://ci:{URL_PASSWORD}@git.example.com/r"})
    tracer = provider.get_tracer("buildctl")
    with tracer.start_as_current_span("setup") as setup:
        pass
    link = Link(setup.get_span_context(), {"why": f"Bearer {BEARER}"})
    with tracer.start_as_current_span("build", links=[link], attributes={
        "command": ("buildctl", "build", "--opt", f"build-arg:NPM_TOKEN={NPM_SECRET}", "--opt",
                    f"build-arg:GH={GHP}", "--no-cache"),
        "http.request.header.authorization": f"Bearer {BEARER}",
        "ticket": f"{CORP} approved",
        "retries": 2,
    }) as build:
        build.add_event("fetch", {"url.full": f"https://u:{URL_PASSWORD}@h.example.com/x"})
    provider.shutdown()


def _wire(sink: HttpCollectorSink) -> bytes:
    return b"".join(request.body for request in sink.requests)


def test_secrets_become_redacted_before_jaeger_and_are_counted(make_relay: RelayFactory) -> None:
    with HttpCollectorSink() as sink:
        relay = make_relay("--jaeger-collector", sink.url)
        _send_build_with_secrets(relay.otlp_port)
        assert sink.wait_for_spans(2, timeout=10)
        wire = _wire(sink)
        for secret in DEFAULT_SHAPES:
            assert secret.encode() not in wire
        assert CORP.encode() in wire  # not a default shape
        build = next(span for span in sink.spans() if span.operationName == "build")
        tags = _tags(build)
        assert "NPM_TOKEN=[REDACTED]" in tags["command"] and "ghp_[REDACTED]" in tags["command"]
        assert '"--no-cache"' in tags["command"]
        assert tags["http.request.header.authorization"] == "Bearer [REDACTED]"
        assert tags["ticket"] == f"{CORP} approved"
        assert tags["retries"] == 2
        assert [f.vStr for log in build.logs for f in log.fields if f.key == "url.full"] == \
            ["https://u:[REDACTED]@h.example.com/x"]
        process_tags = {tag.key: tag.vStr for batch in sink.batches for tag in batch.process.tags or ()}
        assert process_tags["vcs.url"] == "https://ci:[REDACTED]@git.example.com/r"
        # the resource's vcs.url in each of the 2 Export requests (one span each), 2 argv
        # elements, authorization, the event's url.full, the link's why: 7 string values
        assert relay.metrics.registry.get_sample_value("trace_relay_redacted_values_total") == 7


def test_added_patterns_apply_with_the_defaults(make_relay: RelayFactory) -> None:
    with HttpCollectorSink() as sink:
        relay = make_relay("--jaeger-collector", sink.url, "--redact-pattern", r"corp-\d{6}")
        _send_build_with_secrets(relay.otlp_port)
        assert sink.wait_for_spans(2, timeout=10)
        wire = _wire(sink)
        for secret in (*DEFAULT_SHAPES, CORP):
            assert secret.encode() not in wire
        assert relay.metrics.registry.get_sample_value("trace_relay_redacted_values_total") == 8


def test_no_default_redaction_lets_the_defaults_through_and_keeps_added_patterns(
        make_relay: RelayFactory) -> None:
    with HttpCollectorSink() as sink:
        relay = make_relay("--jaeger-collector", sink.url, "--no-default-redaction",
                           "--redact-pattern", r"corp-\d{6}")
        _send_build_with_secrets(relay.otlp_port)
        assert sink.wait_for_spans(2, timeout=10)
        wire = _wire(sink)
        assert GHP.encode() in wire and NPM_SECRET.encode() in wire
        assert CORP.encode() not in wire
        assert relay.metrics.registry.get_sample_value("trace_relay_redacted_values_total") == 1
