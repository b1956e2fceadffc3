"""The Dockerfile, without a container engine: its shape, and its build steps replayed locally."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .render import REPO, load_values

DOCKERFILE = REPO / "Dockerfile"
CHART_VALUES = REPO / "helm" / "trace-relay" / "values.yaml"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; comments dropped, backslash continuations joined."""
    joined, parts = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        joined.append(" ".join(parts))
        parts = []
    assert not parts, "dangling line continuation"
    pairs = []
    for line in joined:
        keyword, _, rest = line.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (ARGs before the first FROM are dropped)."""
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for keyword, rest in instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if keyword == "FROM":
            words = rest.split()
            assert len(words) == 3, f"every stage is named: FROM {rest}"
            assert words[1].upper() == "AS"
            current = found.setdefault(words[2], [])
        elif current is not None:
            current.append((keyword, rest))
    return found


def last(stage: list[tuple[str, str]], keyword: str) -> str:
    values = [rest for kw, rest in stage if kw == keyword]
    assert values, f"no {keyword}"
    return values[-1]


def image_user() -> tuple[int, int]:
    runtime = list(stages().values())[-1]
    user, _, group = last(runtime, "USER").partition(":")
    assert user.isdigit(), "USER must be numeric so runAsNonRoot can verify it"
    assert group.isdigit(), "USER must name a numeric group"
    return int(user), int(group)


def test_dockerfile_is_multi_stage_and_runs_unprivileged() -> None:
    found = stages()
    assert list(found) == ["build", "runtime"]
    runtime = found["runtime"]
    uid, gid = image_user()
    assert uid > 0
    assert gid > 0
    # The chart's default pod user is the image's user.
    pod = load_values(CHART_VALUES)["podSecurityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"]) == (uid, gid)
    assert json.loads(last(runtime, "ENTRYPOINT")) == ["trace-relay"]
    exposed = {p for rest in (r for kw, r in runtime if kw == "EXPOSE") for p in rest.split()}
    assert exposed == {"4317", "4318", "8888"}
    # Nothing is written at run time, so a read-only root filesystem works.
    assert "PYTHONDONTWRITEBYTECODE=1" in last(runtime, "ENV")
    labels = " ".join(rest for kw, rest in runtime if kw == "LABEL")
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


COMPILERS = ("gcc", "g++", "clang", "build-essential", "cc ")


def test_only_the_build_stage_gets_a_compiler() -> None:
    """The native accelerator is compiled in the build stage; the runtime image carries no compiler
    (it installs the built wheel offline, from the same slim base)."""
    found = stages()
    build_runs = " ".join(run_lines(found["build"]))
    assert "apt-get install" in build_runs
    assert "gcc" in build_runs
    assert "_thrift" in build_runs and "_otlp" in build_runs, "the build fails when the wheel lacks an extension"
    runtime = found["runtime"]
    runtime_text = " ".join(rest for _kw, rest in runtime)
    assert "apt-get" not in runtime_text
    assert not any(name in runtime_text for name in COMPILERS)
    assert "--no-index" in " ".join(run_lines(runtime)), "the runtime installs only the built wheels"
    base = {line.split()[0] for kw, line in instructions(DOCKERFILE.read_text(encoding="utf-8")) if kw == "FROM"}
    assert base == {"python:${PYTHON_VERSION}-slim"}


def copy_sources() -> list[str]:
    sources = []
    for keyword, rest in stages()["build"]:
        if keyword == "COPY":
            sources.extend(w.rstrip("/") for w in rest.split()[:-1])
    return sources


def test_dockerignore_keeps_what_the_build_copies() -> None:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "allow-list: ignore everything, then re-include"
    kept = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert set(copy_sources()) <= kept


def run_lines(stage: list[tuple[str, str]]) -> list[str]:
    """Shell text of each RUN, without BuildKit's --mount flags."""
    commands = []
    for keyword, rest in stage:
        if keyword == "RUN":
            words = rest.split(" ")
            commands.append(" ".join(w for w in words if not w.startswith("--mount=")))
    return commands


def python_for(uid: int, gid: int) -> str | None:
    """An interpreter with venv that the image user may run (pyenv under /root is private)."""
    for candidate in (sys.executable, "/usr/local/bin/python3", "/usr/bin/python3"):
        if not Path(candidate).exists():
            continue
        check = [candidate, "-c", "import ensurepip, venv"]
        if os.geteuid() == 0:
            check = [*setpriv(uid, gid), *check]
        if subprocess.run(check, capture_output=True, check=False, timeout=60).returncode == 0:
            return candidate
    return None


def setpriv(uid: int, gid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]


@pytest.fixture
def world_readable_tmp() -> Iterator[Path]:
    """pytest's tmp_path is private to root; the unprivileged user must reach the venv."""
    path = Path(tempfile.mkdtemp(prefix="trace-relay-image-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def shell(command: str, cwd: Path, python: str, mapping: dict[str, Path], bindir: Path) -> None:
    for image_path, local in mapping.items():
        command = command.replace(image_path, str(local))
    bindir.mkdir(exist_ok=True)
    (bindir / "python").unlink(missing_ok=True)
    (bindir / "python").symlink_to(python)
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        ["/bin/sh", "-ec", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=480,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_image_build_steps_install_a_working_relay(world_readable_tmp: Path) -> None:
    """Replay both stages' RUN steps into a temporary venv, then run the relay as the image user.

    Differences from a real build: the local interpreter instead of python:3.12-slim, the
    machine's pip configuration (index/find-links), and no read-only root filesystem.
    """
    missing = [s for s in copy_sources() if not (REPO / s).exists()]
    if missing:
        pytest.skip(f"not written yet, the image build would fail on COPY: {missing}")
    uid, gid = image_user()
    runtime_python = python_for(uid, gid)
    if runtime_python is None:
        pytest.skip(f"no Python interpreter here that uid {uid} may execute")

    root = world_readable_tmp
    src, wheels, prefix = root / "src", root / "wheels", root / "opt" / "trace-relay"
    src.mkdir()
    for source in copy_sources():
        origin = REPO / source
        if origin.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")  # as .dockerignore
            shutil.copytree(origin, src / source, ignore=ignore)
        else:
            shutil.copy2(origin, src / source)
    mapping = {"/opt/trace-relay": prefix, "/wheels": wheels, "/src": src}
    found = stages()
    for command in run_lines(found["build"]):
        shell(command, src, sys.executable, mapping, root / "bin-build")
    for command in run_lines(found["runtime"]):
        shell(command, root, runtime_python, mapping, root / "bin-runtime")

    entrypoint = prefix / "bin" / "trace-relay"
    assert entrypoint.is_file()
    assert not (prefix / "bin" / "pip").exists(), "pip is removed from the image"
    for module in ("_thrift", "_otlp"):
        assert list(prefix.glob(f"lib/python*/site-packages/relay/native/{module}*.so")), f"no {module} in the image"
    drop = setpriv(uid, gid) if os.geteuid() == 0 else []
    env = {"PATH": f"{prefix / 'bin'}:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/"}
    if (REPO / "relay" / "cli.py").exists():
        command = [*drop, str(entrypoint), "--help"]
    else:  # relay.cli is being written: check what exists, as the image user
        command = [*drop, str(prefix / "bin" / "python"), "-c", "import relay.config"]
    result = subprocess.run(
        command, cwd="/", env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, shlex.join(command) + "\n" + result.stderr
    if command[-1] == "--help":
        assert "--otlp-grpc-endpoint" in result.stdout
