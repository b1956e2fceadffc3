"""deploy/: the plain manifests around the chart agree with it and with Kubernetes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from relay.config import parse_host_port

from .netpol import Pod, admits
from .render import CHART_DIR, NAMESPACE, REPO, load_values, objects, render
from .test_chart import KUBERNETES_VERSION

DEPLOY = REPO / "deploy"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


@pytest.mark.parametrize("name", ["jaeger.yaml", "buildkitd.yaml"])
def test_manifests_are_valid_kubernetes(name: str) -> None:
    for obj in documents(DEPLOY / name):
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_jaeger_accepts_what_the_chart_sends_by_default() -> None:
    objs = documents(DEPLOY / "jaeger.yaml")
    (service,) = [o for o in objs if o["kind"] == "Service"]
    (config_map,) = [o for o in objs if o["kind"] == "ConfigMap"]
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    protocols = config["receivers"]["jaeger"]["protocols"]
    assert "jaeger" in config["service"]["pipelines"]["traces"]["receivers"]

    agent = parse_host_port(load_values(CHART_DIR / "values.yaml")["jaeger"]["agent"]["endpoint"])
    ns = service["metadata"]["namespace"]
    assert agent.host == f"{service['metadata']['name']}.{ns}.svc"
    udp = {p["port"] for p in service["spec"]["ports"] if p["protocol"] == "UDP"}
    assert agent.port in udp
    assert parse_host_port(protocols["thrift_compact"]["endpoint"]).port == agent.port
    # The collector output (--jaeger-collector http://jaeger.observability.svc:14268/api/traces)
    tcp = {p["port"] for p in service["spec"]["ports"] if p["protocol"] == "TCP"}
    assert parse_host_port(protocols["thrift_http"]["endpoint"]).port in tcp


def test_buildkitd_sends_to_the_chart_service() -> None:
    (deployment,) = [o for o in documents(DEPLOY / "buildkitd.yaml") if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    port = load_values(CHART_DIR / "values.yaml")["service"]["otlpPort"]
    # README: helm install trace-relay helm/trace-relay --namespace trace-relay
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == f"http://trace-relay.trace-relay.svc:{port}"


def buildkitd_pod() -> Pod:
    """The pod deploy/buildkitd.yaml runs: its template's labels, in its own Namespace."""
    objs = documents(DEPLOY / "buildkitd.yaml")
    (deployment,) = [o for o in objs if o["kind"] == "Deployment"]
    (namespace,) = [o for o in objs if o["kind"] == "Namespace"]
    assert deployment["metadata"]["namespace"] == namespace["metadata"]["name"]
    return Pod(
        labels=deployment["spec"]["template"]["metadata"]["labels"],
        namespace=namespace["metadata"]["name"],
        namespace_labels=namespace["metadata"].get("labels") or {},
    )


def test_default_network_policy_admits_deploy_buildkitd() -> None:
    """networkPolicy.enabled with every other default admits deploy/buildkitd.yaml's pod (in
    namespace builds, not the relay's) on both OTLP ports, and still no one else."""
    (policy,) = [o for o in objects(render({"networkPolicy": {"enabled": True}})) if o["kind"] == "NetworkPolicy"]
    pod = buildkitd_pod()
    assert pod.namespace != NAMESPACE
    for port in ("otlp-grpc", "otlp-http"):
        assert admits(policy, pod, port), f"{port}: deploy/buildkitd.yaml's pod is blocked"
    # Negative controls: the same pod in another namespace, another pod in builds, another port.
    assert not admits(policy, Pod(pod.labels, "elsewhere"), "otlp-grpc")
    assert not admits(policy, Pod({"app.kubernetes.io/name": "curl"}, pod.namespace), "otlp-grpc")
    assert not admits(policy, pod, "admin")


CHART_README = CHART_DIR / "README.md"


def paragraphs(text: str) -> set[str]:
    """Prose paragraphs of a Markdown text, whitespace-normalized; code blocks, tables and
    headings left out."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    flat = (" ".join(block.split()) for block in prose.split("\n\n"))
    return {b for b in flat if len(b) > 80 and not b.startswith(("|", "#"))}


def test_chart_readme_install_starts_with_building_the_image() -> None:
    text = CHART_README.read_text(encoding="utf-8")
    install = text.split("## Install", 1)[1].split("\n## ", 1)[0]
    first_block = install.split("```sh", 1)[1].split("```", 1)[0].strip().splitlines()
    assert first_block[0] == "docker build -t <registry>/trace-relay:<tag> ."
    helm_install = " ".join(line.rstrip("\\") for line in first_block if "helm install" in line or "--set" in line)
    assert "--set image.repository=<registry>/trace-relay" in helm_install
    assert "--set image.tag=<tag>" in helm_install


def test_chart_readme_repeats_no_paragraph_of_the_project_docs() -> None:
    """The chart README links the README and docs/ rather than copying them."""
    chart = paragraphs(CHART_README.read_text(encoding="utf-8"))
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        copied = chart & paragraphs(page.read_text(encoding="utf-8"))
        assert not copied, f"{page.relative_to(REPO)}: {sorted(copied)[0][:120]}..."
