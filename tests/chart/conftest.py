from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .render import CI_DIR, load_values, objects, render

CI_FILES = sorted(CI_DIR.glob("*-values.yaml"))
# "default" plus one case per ci/*-values.yaml file
CASES: dict[str, Path | None] = {"default": None} | {p.name: p for p in CI_FILES}


class Rendered:
    """One render of the chart: its values, its templates and its objects."""

    def __init__(self, name: str, values: dict[str, Any]) -> None:
        self.name = name
        self.values = values
        self.manifests = render(values)
        self.objects = objects(self.manifests)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        matches = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(matches) == 1, f"{self.name}: expected one {kind}/{name}, got {len(matches)}"
        return matches[0]


@pytest.fixture(scope="session")
def render_cache() -> dict[str, Rendered]:
    return {}


@pytest.fixture(params=sorted(CASES), ids=str)
def rendered(request: pytest.FixtureRequest, render_cache: dict[str, Rendered]) -> Rendered:
    """The chart rendered with its defaults, and with each ci/*-values.yaml (once per session)."""
    name = request.param
    if name not in render_cache:
        render_cache[name] = Rendered(name, load_values(CASES[name]))
    return render_cache[name]
