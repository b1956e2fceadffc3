"""Debian's `chromium`, headless, as a real browser for the /builds page (no JavaScript needed)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
         "--no-first-run", "--disable-component-update", "--disable-sync")
MISSING = ("chromium is not installed (Debian: apt-get install -y --no-install-recommends chromium; "
           "./scripts/test installs it when run as root with CI=true or RELAY_INSTALL_TEST_DEPS=1)")


def binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    chromium = binary()
    assert chromium is not None, MISSING
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=90, check=True)


def dump_dom(url: str) -> str:
    """The DOM after loading ``url``, serialized by the browser."""
    return _run("--dump-dom", url).stdout


def screenshot(url: str, path: Path, size: str = "1200,900") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _run(f"--screenshot={path}", f"--window-size={size}", url)
