from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

from relay.app import Relay
from relay.config import load_config
from relay.exporters.base import Exporter
from relay.worker import RetryPolicy

LOOPBACK_FLAGS = ("--otlp-grpc-endpoint", "127.0.0.1:0", "--otlp-http-endpoint", "127.0.0.1:0",
                  "--admin-endpoint", "127.0.0.1:0")
FAST_RETRY = RetryPolicy(max_elapsed=5.0, initial=0.05, multiplier=1.5, max_interval=0.5)

RelayFactory = Callable[..., Relay]


@pytest.fixture
def make_relay() -> Iterator[RelayFactory]:
    """Start relays on loopback port 0; every one is shut down after the test."""
    relays: list[Relay] = []

    def factory(*flags: str, exporter: Exporter | None = None, retry: RetryPolicy | None = FAST_RETRY,
                registry: CollectorRegistry | None = None) -> Relay:
        config = load_config([*LOOPBACK_FLAGS, *flags], {})
        relay = Relay(config, exporter=exporter, retry=retry, registry=registry)
        relay.start()
        relays.append(relay)
        return relay

    yield factory
    for relay in relays:
        relay.shutdown()
