from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

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


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount a tmpfs of the given size (``"1m"``) under tmp_path: a disk that fills up for real.
    Needs root and mount(8): the test skips, saying so, where they are missing."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a small tmpfs needs root and mount(8); not available here")
        target = tmp_path / f"tmpfs-{len(mounts)}"
        target.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],  # noqa: S607
                              capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounts.append(target)
        return target

    yield mount
    for target in mounts:
        subprocess.run(["umount", "-l", str(target)], check=False)  # noqa: S607
