"""--worker-stall-timeout: validated against --jaeger-timeout, and by default sized above the
longest legitimate wait of a healthy worker."""

from __future__ import annotations

import pytest

from relay.app import stall_timeout
from relay.config import ConfigError, load_config
from relay.worker import RetryPolicy


def test_a_stall_timeout_not_above_the_jaeger_timeout_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match=r"^--worker-stall-timeout: must exceed --jaeger-timeout \(10s\)"):
        load_config(["--worker-stall-timeout", "10s"], {})


def test_the_environment_twin_sets_it() -> None:
    config = load_config([], {"RELAY_WORKER_STALL_TIMEOUT": "2m"})
    assert stall_timeout(config, RetryPolicy()) == 120.0


def test_the_default_grows_with_the_jaeger_timeout_and_the_retry_wait() -> None:
    retry = RetryPolicy(max_interval=10.0, jitter=0.5)  # waits of at most 15 s
    assert stall_timeout(load_config([], {}), retry) == 10 + 15 + 30
    assert stall_timeout(load_config(["--jaeger-timeout", "2m"], {}), retry) == 120 + 15 + 30
