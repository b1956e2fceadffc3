"""The chart, rendered by Helm's own engine and checked against Kubernetes and the relay itself."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

from relay.config import load_config, parse_duration, parse_host_port
from tests.security.certs import Pki, make_pki

from .conftest import CASES, Rendered
from .netpol import Pod, admits
from .render import CHART_DIR, NAMESPACE, RELEASE, load_values, render, stale_examples

# The Kubernetes release whose OpenAPI schemas the objects must satisfy (shipped, offline,
# inside kubernetes-validate; strict: unknown fields are errors).
KUBERNETES_VERSION = "1.37.0"
FULLNAME = RELEASE  # the release name contains the chart name
INVALID_DIR = Path(__file__).parent / "invalid"


def workload(r: Rendered) -> dict[str, Any]:
    """The relay's Deployment, or its StatefulSet when persistence is on."""
    kind = "StatefulSet" if r.values.get("persistence", {}).get("enabled") else "Deployment"
    return r.one(kind, FULLNAME)


def relay_container(r: Rendered) -> dict[str, Any]:
    pod = workload(r)["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "relay"]
    return container


def flag_values(args: list[str]) -> dict[str, str]:
    """['--queue-size=5'] -> {'queue-size': '5'}; every argument must be --flag=value."""
    parsed = {}
    for arg in args:
        assert arg.startswith("--"), f"not --flag=value: {arg!r}"
        assert "=" in arg, f"not --flag=value: {arg!r}"
        name, _, value = arg[2:].partition("=")
        parsed[name] = value
    return parsed


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A port reference (number or container port name) -> the container port number."""
    if isinstance(port, int):
        return port
    (match,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(match)


# --- Helm: lint, render, Kubernetes schemas -------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_helm_lint_is_clean(case: str) -> None:
    report = helm.lint(
        CHART_DIR, load_values(CASES[case]), strict=True, kube_version=f"v{KUBERNETES_VERSION}"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems
    assert report["errors"] == []


def test_kubernetes_validate_ships_the_pinned_release() -> None:
    from kubernetes_validate.utils import all_versions

    assert KUBERNETES_VERSION in all_versions(), (
        f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for "
        f"Kubernetes {KUBERNETES_VERSION}; upgrade it"
    )


def check_service_monitor(r: Rendered, monitor: dict[str, Any]) -> None:
    """No OpenAPI schema ships for this CRD: check the fields the Prometheus Operator needs."""
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints"}
    service = r.one("Service", FULLNAME)
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = spec["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["port"] in port_names
    assert endpoint["path"] == "/metrics"
    assert parse_duration(endpoint["scrapeTimeout"]) <= parse_duration(endpoint["interval"])


def test_every_object_is_valid_kubernetes(rendered: Rendered) -> None:
    assert rendered.objects, "nothing rendered"
    for obj in rendered.objects:
        assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]
        if obj["kind"] == "ServiceMonitor":
            check_service_monitor(rendered, obj)
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {exc.message}")
        except SchemaNotFoundError as exc:
            pytest.fail(exc.message)


def test_rendered_examples_match_the_chart() -> None:
    assert stale_examples() == [], "run: python -m tests.chart.render --write"


# --- values.schema.json ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"relay": {"queueSize": "20000"}}, "queueSize"),
        ({"relay": {"queueSize": 0}}, "queueSize"),
        ({"replicaCount": -1}, "replicaCount"),
        ({"replicas": 2}, "replicas"),
        ({"relay": {"queueSzie": 10}}, "queueSzie"),
        ({"relay": {"batchTimeout": "5 seconds"}}, "batchTimeout"),
        ({"relay": {"logLevel": "verbose"}}, "logLevel"),
        ({"jaeger": {"agent": {"endpoint": "jaeger"}}}, "endpoint"),
        ({"jaeger": {"collector": {"endpoint": "jaeger:14268"}}}, "endpoint"),
        ({"service": {"otlpPort": 70000}}, "otlpPort"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"terminationGracePeriodSeconds": "60"}, "terminationGracePeriodSeconds"),
        ({"autoscaling": {"maxReplicas": 0}}, "maxReplicas"),
        ({"buildkit": {"enabled": "yes"}}, "enabled"),
        # --jaeger-timeout refuses a bare number (its OTEL twin is milliseconds): so does the chart.
        ({"jaeger": {"collector": {"endpoint": "http://j:14268/api/traces", "timeout": "10000"}}}, "timeout"),
        ({"buildkit": {"otlpProtocol": "http/json"}}, "otlpProtocol"),
        ({"service": {"otlpHttpPort": 0}}, "otlpHttpPort"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], complaint: str) -> None:
    with helm.Chart.load(CHART_DIR) as chart, pytest.raises(helm.HelmValuesError) as caught:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert complaint in str(caught.value)


def test_schema_accepts_every_ci_file() -> None:
    with helm.Chart.load(CHART_DIR) as chart:
        for path in CASES.values():
            chart.validate_schema(load_values(path))  # raises HelmValuesError, naming the key


# --- Rules the schema cannot express: the chart refuses to render ---------------------------


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"relay": {"shutdownTimeout": "30s"}}, "terminationGracePeriodSeconds"),
        ({"relay": {"shutdownTimeout": "1m"}, "terminationGracePeriodSeconds": 60}, "must be at least"),
        (
            {"relay": {"shutdownTimeout": "45000ms"}, "terminationGracePeriodSeconds": 40},
            "must be at least",
        ),
        ({"relay": {"shutdownTimeout": "31"}}, "must be at least"),
        ({"relay": {"shutdownTimeout": "29s"}}, "must be at least"),  # 30 s grace: under the 2 s margin
        ({"relay": {"maxBatchSize": 30000}}, "maxBatchSize"),
        ({"relay": {"adminPort": 4317}}, "must differ"),
        (
            {"jaeger": {"collector": {"endpoint": "http://j:14268/api/traces", "user": "u"}}},
            "password",
        ),
        ({"jaeger": {"collector": {"password": "p", "user": "u"}}}, "jaeger.collector.endpoint"),
        ({"tls": {"enabled": True}}, "tls.cert"),
        ({"tls": {"enabled": True, "existingSecret": "s", "cert": "c"}}, "not both"),
        ({"auth": {"enabled": True}}, "auth.token"),
        (
            {"buildkit": {"enabled": True}, "tls": {"enabled": True, "existingSecret": "s"}},
            "otlpCA",
        ),
        (
            {
                "buildkit": {"enabled": True, "otlpCA": {"secretName": "ca"}},
                "tls": {"enabled": True, "existingSecret": "s", "requireClientCert": True},
            },
            "mutual TLS",
        ),
        ({"podDisruptionBudget": {"enabled": True, "maxUnavailable": 1}}, "not both"),
        # A TCP listener without mutual TLS would expose the BuildKit API.
        ({"buildkit": {"enabled": True, "tcp": {"enabled": True}}}, "buildkit.tcp.tlsSecret"),
    ],
)
def test_chart_refuses_inconsistent_values(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        render(values)
    assert complaint in str(caught.value)


def test_values_file_with_too_short_grace_period_fails_to_render() -> None:
    values = load_values(INVALID_DIR / "grace-too-short-values.yaml")
    with pytest.raises(helm.HelmRenderError, match=r"must be at least relay\.shutdownTimeout"):
        render(values)


# --- Invariants between the objects and the relay -------------------------------------------


def test_services_reach_the_ports_the_relay_listens_on(rendered: Rendered) -> None:
    container = relay_container(rendered)
    flags = flag_values(container["args"])
    otlp = parse_host_port(flags["otlp-grpc-endpoint"]).port
    otlp_http = parse_host_port(flags["otlp-http-endpoint"]).port
    admin = parse_host_port(flags["admin-endpoint"]).port
    assert container_port(container, "otlp-grpc") == otlp
    assert container_port(container, "otlp-http") == otlp_http
    assert container_port(container, "admin") == admin

    service = rendered.one("Service", FULLNAME)
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert container_port(container, ports["otlp-grpc"]["targetPort"]) == otlp
    assert ports["otlp-grpc"]["appProtocol"] == "grpc"
    assert container_port(container, ports["otlp-http"]["targetPort"]) == otlp_http
    assert ports["otlp-http"]["appProtocol"] == "http"
    assert container_port(container, ports["metrics"]["targetPort"]) == admin
    assert service["spec"]["selector"].items() <= pod_labels(rendered).items()

    headless = [s for s in rendered.of_kind("Service") if s["spec"].get("clusterIP") == "None"]
    assert len(headless) == int(bool(rendered.values.get("service", {}).get("headless")))
    for svc in headless:
        # No port mapping without a cluster IP: clients dial the pod's own ports.
        assert {(p["port"], p["appProtocol"]) for p in svc["spec"]["ports"]} == {(otlp, "grpc"), (otlp_http, "http")}

    # The NetworkPolicy, when on, admits OTLP on both ports.
    for policy in rendered.of_kind("NetworkPolicy"):
        otlp_rule = policy["spec"]["ingress"][0]
        allowed = {container_port(container, p["port"]) for p in otlp_rule["ports"]}
        assert allowed == {otlp, otlp_http}


def pod_labels(r: Rendered) -> dict[str, str]:
    labels: dict[str, str] = workload(r)["spec"]["template"]["metadata"]["labels"]
    return labels


def test_probes_hit_the_relay_health_endpoints(rendered: Rendered) -> None:
    container = relay_container(rendered)
    admin = parse_host_port(flag_values(container["args"])["admin-endpoint"]).port
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http = container[probe]["httpGet"]
        assert http["path"] == path
        assert container_port(container, http["port"]) == admin


def test_grace_period_exceeds_shutdown_timeout(rendered: Rendered) -> None:
    pod = workload(rendered)["spec"]["template"]["spec"]
    shutdown = parse_duration(flag_values(relay_container(rendered)["args"])["shutdown-timeout"])
    assert pod["terminationGracePeriodSeconds"] >= shutdown + 2  # the relay may overrun by ~1 s


def test_relay_runs_unprivileged(rendered: Rendered) -> None:
    pod = workload(rendered)["spec"]["template"]["spec"]
    pod_ctx, ctx = pod["securityContext"], relay_container(rendered)["securityContext"]
    assert pod_ctx["runAsNonRoot"] is True
    assert pod_ctx["runAsUser"] > 0
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert "add" not in ctx["capabilities"]
    assert (ctx.get("seccompProfile") or pod_ctx["seccompProfile"])["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False


def secret_strings(values: dict[str, Any]) -> list[str]:
    return [
        s
        for s in (
            values.get("jaeger", {}).get("collector", {}).get("password"),
            values.get("tls", {}).get("key"),
            values.get("auth", {}).get("token"),
        )
        if s
    ]


def test_secrets_are_files_never_arguments(rendered: Rendered) -> None:
    container = relay_container(rendered)
    flags = flag_values(container["args"])
    assert "jaeger-password" not in flags
    spec_text = str(workload(rendered))
    for secret in secret_strings(rendered.values):
        assert secret not in spec_text


def test_chart_secret_change_rolls_the_pods() -> None:
    def checksum(password: str) -> str:
        values = {
            "jaeger": {
                "collector": {
                    "endpoint": "http://j:14268/api/traces",
                    "user": "u",
                    "password": password,
                }
            }
        }
        r = Rendered("checksum", values)
        annotations = workload(r)["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/secret"])

    assert checksum("one") != checksum("two")
    assert checksum("one") == checksum("one")


def _placeholder(pki: Pki, secret: str, path: str) -> bytes:
    if path.endswith((".crt", ".key", ".pem")):
        name = "server_key" if "key" in path else "ca" if "ca" in path else "server_cert"
        return pki.read(name)
    return f"placeholder for {secret}/{path}\n".encode()


def materialize_mounts(r: Rendered, root: Path) -> dict[str, Path]:
    """Recreate the relay container's secret volumes under root: mountPath -> local directory.

    Files of the chart's own Secret get the rendered (decoded) data; keys of an existing Secret,
    which the chart only references, get a placeholder (a real certificate, key or CA for the TLS
    items, which the relay checks at start). Only mounted items exist, as in the pod.
    """
    (root / "placeholder-pki").mkdir()
    pki = make_pki(root / "placeholder-pki")
    pod = workload(r)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    volumes |= {c["metadata"]["name"]: {} for c in workload(r)["spec"].get("volumeClaimTemplates", [])}
    chart_secrets = {s["metadata"]["name"]: s for s in r.of_kind("Secret")}
    mounts = {}
    for mount in relay_container(r)["volumeMounts"]:
        local = root / mount["mountPath"].lstrip("/")
        local.mkdir(parents=True, exist_ok=True)
        mounts[mount["mountPath"]] = local
        source = volumes[mount["name"]].get("secret")
        if source is None:
            continue
        secret = chart_secrets.get(source["secretName"])
        for item in source["items"]:
            if secret is not None:
                data = base64.b64decode(secret["data"][item["key"]])
            else:
                data = _placeholder(pki, source["secretName"], item["path"])
            (local / item["path"]).write_bytes(data)
    return mounts


def test_relay_accepts_the_rendered_arguments(rendered: Rendered, tmp_path: Path) -> None:
    container = relay_container(rendered)
    assert not [e for e in container.get("env", []) if e["name"].startswith("RELAY_")]
    mounts = materialize_mounts(rendered, tmp_path)
    args = []
    for arg in container["args"]:
        name, _, value = arg.partition("=")
        if name == "--queue-dir":
            assert value in mounts, f"{arg} points at a path no volume provides"
            value = str(mounts[value])
        elif name.endswith("-file"):
            owners = [m for m in mounts if value.startswith(m.rstrip("/") + "/")]
            assert owners, f"{arg} points at a path no volume provides"
            value = str(mounts[owners[0]] / Path(value).relative_to(owners[0]))
        args.append(f"{name}={value}")

    config = load_config(args, {})

    values = rendered.values
    collector = values.get("jaeger", {}).get("collector", {})
    assert config.jaeger_collector == (collector.get("endpoint") or None)
    if collector.get("password"):
        assert config.jaeger_password == collector["password"]
    assert (config.tls_cert_file is not None) == bool(values.get("tls", {}).get("enabled"))
    assert (config.auth_token_file is not None) == bool(values.get("auth", {}).get("enabled"))
    if values.get("auth", {}).get("token"):
        assert config.auth_token_file is not None
        assert config.auth_token_file.read_text() == values["auth"]["token"]


def test_bundled_buildkit_sends_to_the_relay_service(rendered: Rendered) -> None:
    builders = [
        d for d in rendered.of_kind("Deployment") if d["metadata"]["name"].endswith("-buildkitd")
    ]
    if not rendered.values.get("buildkit", {}).get("enabled"):
        assert builders == []
        return
    (builder,) = builders
    (container,) = builder["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["OTEL_TRACES_EXPORTER"]["value"] == "otlp"
    service = rendered.one("Service", FULLNAME)
    protocol = rendered.values["buildkit"].get("otlpProtocol", "grpc")
    assert env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"]["value"] == protocol
    port_name, path = ("otlp-grpc", "") if protocol == "grpc" else ("otlp-http", "/v1/traces")
    (otlp,) = [p for p in service["spec"]["ports"] if p["name"] == port_name]
    scheme = "https" if rendered.values.get("tls", {}).get("enabled") else "http"
    expected = f"{scheme}://{FULLNAME}.{NAMESPACE}.svc:{otlp['port']}{path}"
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]["value"] == expected
    if rendered.values.get("auth", {}).get("enabled"):
        header = env["OTEL_EXPORTER_OTLP_TRACES_HEADERS"]["value"]
        assert f"OTEL_EXPORTER_OTLP_TRACES_HEADERS={header}" == TOKEN_HEADER
        # $(VAR) is expanded only from variables defined earlier in the list.
        assert list(env).index("TRACE_RELAY_TOKEN") < list(env).index("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        assert env["TRACE_RELAY_TOKEN"]["valueFrom"]["secretKeyRef"] == token_secret_ref(rendered)
    # The NetworkPolicy, when on, admits the bundled builder on the port it sends to.
    pod = Pod(builder["spec"]["template"]["metadata"]["labels"], builder["metadata"]["namespace"])
    for policy in rendered.of_kind("NetworkPolicy"):
        assert admits(policy, pod, port_name)


def test_network_policy_takes_one_peer_as_a_map() -> None:
    """The single-peer form of networkPolicy.otlpFrom (a map, null namespaceSelector: this
    namespace only) still renders, as one peer."""
    peer = {"podSelector": {"matchLabels": {"app": "builder"}}, "namespaceSelector": None}
    (policy,) = Rendered("map", {"networkPolicy": {"enabled": True, "otlpFrom": peer}}).of_kind("NetworkPolicy")
    assert policy["spec"]["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {"app": "builder"}}}]
    assert admits(policy, Pod({"app": "builder"}, NAMESPACE), "otlp-grpc")
    assert not admits(policy, Pod({"app": "builder"}, "builds"), "otlp-grpc")


# The one spelling of the token header, for an env list where TRACE_RELAY_TOKEN comes first
# (valueFrom.secretKeyRef): OTEL header values are percent-encoded, %20 is the space.
TOKEN_HEADER = "OTEL_EXPORTER_OTLP_TRACES_HEADERS=authorization=Bearer%20$(TRACE_RELAY_TOKEN)"
NOTES = f"{CHART_DIR.name}/templates/NOTES.txt"


def token_secret_ref(r: Rendered) -> dict[str, str]:
    auth = r.values["auth"]
    if auth.get("existingSecret"):
        return {"name": auth["existingSecret"], "key": auth.get("existingSecretKey", "token")}
    return {"name": FULLNAME, "key": "auth-token"}


def header_spellings(text: str) -> set[str]:
    """Every 'authorization=Bearer...' form in a text, up to the token or its placeholder."""
    return set(re.findall(r"authorization=Bearer\S{0,3}", text, flags=re.IGNORECASE))


def test_token_header_is_spelled_one_way_with_its_secret_recipe() -> None:
    """NOTES.txt (auth on), the chart README and the bundled BuildKit give the same env snippet:
    TRACE_RELAY_TOKEN from the Secret (secretKeyRef), then the header built with $(...)."""
    readme = (CHART_DIR / "README.md").read_text(encoding="utf-8")
    template = (CHART_DIR / "templates" / "buildkit.yaml").read_text(encoding="utf-8")
    assert header_spellings(readme + template) == {"authorization=Bearer%20"}
    assert TOKEN_HEADER in readme
    assert "secretKeyRef" in readme
    for case in ("buildkit-values.yaml", "existing-secret-values.yaml"):
        r = Rendered(case, load_values(CASES[case]))
        notes = r.manifests[NOTES]
        assert header_spellings(notes) == {"authorization=Bearer%20"}, case
        assert "value: authorization=Bearer%20$(TRACE_RELAY_TOKEN)" in notes, case
        ref = token_secret_ref(r)
        assert f"name: {ref['name']}" in notes and f"key: {ref['key']}" in notes, case


def test_notes_tell_how_to_point_buildkit_at_the_relay(rendered: Rendered) -> None:
    notes = rendered.manifests[NOTES]
    assert "OTEL_TRACES_EXPORTER=otlp" in notes
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http" in notes
    assert "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf" in notes
    assert f"{FULLNAME}.{NAMESPACE}.svc:4318/v1/traces" in notes
    assert f"{FULLNAME}.{NAMESPACE}.svc:" in notes


def test_persistence_renders_a_statefulset_with_a_claim_and_the_queue_flags() -> None:
    """persistence.enabled: one PVC per replica from volumeClaimTemplates, mounted where
    --queue-dir points; without it, a Deployment and no --queue-dir (the memory queue)."""
    on = Rendered("persistence", load_values(CASES["persistence-values.yaml"]))
    (sts,) = on.of_kind("StatefulSet")
    assert not on.of_kind("Deployment") or all(d["metadata"]["name"] != FULLNAME for d in on.of_kind("Deployment"))
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    container = relay_container(on)
    flags = flag_values(container["args"])
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert flags["queue-dir"] == mount["mountPath"]
    assert flags["queue-max-mib"] == "512" and flags["retry-max-elapsed"] == "0"
    assert sts["spec"]["serviceName"] in {s["metadata"]["name"] for s in on.of_kind("Service")}
    off = Rendered("default", load_values(None))
    assert "queue-dir" not in flag_values(relay_container(off)["args"])
    assert not off.of_kind("StatefulSet")


def test_bundled_buildkit_tcp_listener_has_a_service_and_requires_mutual_tls() -> None:
    """buildkit.tcp.enabled: buildkitd also listens on TCP with --tlscacert (it then requires a
    client certificate), a Service reaches that port, and the unix socket the probes use stays."""
    r = Rendered("tcp", load_values(CASES["buildkit-tcp-values.yaml"]))
    builder = r.one("Deployment", f"{FULLNAME}-buildkitd")
    pod = builder["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert "--addr=unix:///run/user/1000/buildkit/buildkitd.sock" in args
    assert "--addr=tcp://0.0.0.0:1234" in args
    flags = {a.partition("=")[0]: a.partition("=")[2] for a in args if a.startswith("--tls")}
    assert set(flags) == {"--tlscert", "--tlskey", "--tlscacert"}
    (mount,) = [m for m in container["volumeMounts"] if all(f.startswith(m["mountPath"] + "/") for f in flags.values())]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "buildkitd-tls"
    files = {f"{mount['mountPath']}/{i['path']}": i["key"] for i in volume["secret"]["items"]}
    assert {flag: files[path] for flag, path in flags.items()} == {
        "--tlscert": "tls.crt", "--tlskey": "tls.key", "--tlscacert": "ca.crt"}

    service = r.one("Service", f"{FULLNAME}-buildkitd")
    assert service["spec"]["selector"].items() <= builder["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= builder["spec"]["selector"]["matchLabels"].items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == 1234
    assert container_port(container, port["targetPort"]) == 1234
    notes = r.manifests[NOTES]
    assert f"--addr tcp://{FULLNAME}-buildkitd.{NAMESPACE}.svc:1234 --tlscacert" in notes
    assert "mutual TLS is required" in notes
    # No TCP listener, no Service.
    plain = Rendered("buildkit", load_values(CASES["buildkit-values.yaml"]))
    assert [s["metadata"]["name"] for s in plain.of_kind("Service")] == [FULLNAME]
    assert not [a for a in plain.one("Deployment", f"{FULLNAME}-buildkitd")["spec"]["template"]["spec"]
                ["containers"][0]["args"] if a.startswith(("--addr", "--tls"))]


def mebibytes(quantity: str) -> float:
    """A Kubernetes memory quantity ("512Mi", "2Gi", "1G", "1048576") in MiB."""
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024**2, "k": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for suffix, factor in sorted(units.items(), key=lambda u: -len(u[0])):
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20


def test_default_memory_limit_covers_the_documented_worst_case() -> None:
    """The chart's memory limit holds the worst case of values.yaml's formula for the flags it
    renders: a full queue plus 8 gRPC clients each sending a largest request at once (the case
    bench.memory_receive measures)."""
    r = Rendered("default", {})
    container = relay_container(r)
    flags = flag_values(container["args"])
    queue_spans, queue_mib = int(flags["queue-size"]), int(flags["queue-max-mib"])
    largest, clients = int(flags["max-recv-msg-size-mib"]), 8
    worst = 50 + queue_spans * 1.6 / 1024 + 2.5 * queue_mib + clients * 2 * largest + largest * 7.4 + 32
    limit = mebibytes(container["resources"]["limits"]["memory"])
    assert worst <= limit, f"worst case {worst:.0f} MiB above the {limit:.0f} MiB limit"
