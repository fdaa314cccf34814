"""The Helm chart, checked with the real tools: helm lint/template and kubernetes-validate.

No cluster is needed: every values file is linted and rendered, every rendered manifest is
validated against the Kubernetes 1.30 and 1.35 schemas, and the rules a schema cannot see
(autoscalers, beat, queues, secrets, CSV sources, disruption budgets, probes, the KEDA custom
resources) are checked on the rendered objects. A worker container's environment is handed to
docker/entrypoint.sh (with recording stand-ins for the programs it starts) to check the
command it would run. The chart's README must match what `make chart-readme` generates from
the values. A missing tool fails these tests: `make deploy-tools` installs them.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.http.request import validate_host

from telemetry_project.routing import stream_queue_for_site
from tests.support.entrypoint import run_entrypoint
from tests.support.reference import REFERENCE_CSV, REPO

pytestmark = pytest.mark.deploy

CHART = REPO / "charts" / "telemetry-pipeline"
VENV_BIN = Path(sys.executable).parent
HELM = VENV_BIN / "helm"
KUBERNETES_VALIDATE = VENV_BIN / "kubernetes-validate"
VALUES_FILES = ["values.yaml", "values-all-in-one.yaml", "values-central.yaml", "values-edge.yaml"]
KUBERNETES_VERSIONS = ["1.30.0", "1.35.0"]
WORKERS = {"streamer", "collector"}
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
PROBE_TIMINGS = ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold")
# Celery worker options the chart must never pass: the entrypoint reads them from environment.
WORKER_OPTIONS = re.compile(r"^(-[QPnc]|--(queues|pool|hostname|concurrency))")
ONE_MIB = 1024 * 1024

Manifest = dict[str, Any]


def tool(path: Path) -> Path:
    if not path.is_file():
        pytest.fail(f"{path.name} is not installed at {path}: run `make deploy-tools`")
    return path


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool(HELM)), *args], capture_output=True, text=True, timeout=60, check=False
    )


@functools.cache
def rendered_text(values_file: str, *options: str) -> str:
    result = helm(
        "template", "rel", str(CHART), "--namespace", "telemetry",
        "-f", str(CHART / values_file), *options,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(values_file: str = "values.yaml", *options: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(rendered_text(values_file, *options)) if doc]


def render_error(*options: str) -> str:
    """helm template's error for values that must be refused."""
    result = helm("template", "rel", str(CHART), *options)
    assert result.returncode != 0, "rendering should have failed"
    return result.stderr


def of_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def component(manifest: Manifest) -> str:
    return str(manifest["metadata"]["labels"]["app.kubernetes.io/component"])


def deployments(manifests: list[Manifest]) -> dict[str, Manifest]:
    """Deployments by role (web, beat, streamer, collector)."""
    return {component(m): m for m in manifests if m["kind"] == "Deployment"}


def containers(manifest: Manifest) -> list[dict[str, Any]]:
    pod = manifest["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def main_container(manifest: Manifest) -> dict[str, Any]:
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    return dict(container)


def container_environment(manifests: list[Manifest], container: dict[str, Any]) -> dict[str, str]:
    """The variables a container is given as values: its ConfigMaps' data, then its own env."""
    config_maps = of_kind(manifests, "ConfigMap")
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environment.update(config_maps[source["configMapRef"]["name"]]["data"])
    literal = {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}
    environment.update(literal)
    return environment


def walk_strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from walk_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_strings(item)


# --- The tools pass ---------------------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_helm_lint_strict_passes(values_file: str) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(CHART / values_file))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_manifest_passes_kubernetes_validate_strict(
    version: str, tmp_path: Path
) -> None:
    files = []
    for values_file in VALUES_FILES:
        target = tmp_path / values_file
        target.write_text(rendered_text(values_file))
        files.append(str(target))
    result = subprocess.run(
        [str(tool(KUBERNETES_VALIDATE)), "--strict", "-k", version, *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    passed = re.findall(r"passed for resource (\S+)", output)
    assert len(passed) >= 30, output
    # Only KEDA's custom resources lack a schema; their fields are tested below.
    for line in output.splitlines():
        if line.startswith("WARN"):
            assert "keda.sh/v1alpha1" in line, line


# --- Values: documented, and nonsense refused ---------------------------------------------


def value_paths(node: object, prefix: str = "") -> Iterator[str]:
    """Leaf paths of the values (a list, or an empty map, is one leaf)."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from value_paths(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def test_every_value_is_documented_with_a_param_comment() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = set(re.findall(r"^\s*## @param (\S+)", text, flags=re.MULTILINE))
    paths = set(value_paths(yaml.safe_load(text)))
    assert paths - documented == set(), "values without a ## @param line"
    assert documented - paths == set(), "## @param lines naming no value"


@pytest.mark.parametrize(
    "option",
    [
        "collector.autoscaling.mode=both",
        "collector.autoscaling.hpa.enabled=true",
        "collector.replicas=3",
        "streamer.pool=gevent",
        "web.replicaCount=-1",
        "site=Edge Site",
        "broker.database=16",
        "database.sslMode=maybe",
        "django.logLevel=LOUD",
        "extraEnv.DB_PASSWORD=hunter2",
        "image.pullPolicy=Sometimes",
        "django.secretKey=too-short-for-production",
        "web.pdb.maxUnavailable=0",
        "collector.pdb.maxUnavailable=0%",
        "collector.pdb.minAvailable=half",
        "streamer.pdb.minAvailable=101%",
        "web.readinessProbe.periodSeconds=0",
        "web.livenessProbe.initialDelaySeconds=-1",
        "collector.livenessProbe.failureThreshold=0",
        "streamer.startupProbe.timeoutSeconds=0",
        "collector.startupProbe.successThreshold=1",
        "django.apiRequireToken=sometimes",
        "web.metrics.serviceMonitor.interval=often",
        "web.metrics.serviceMonitor.tokenSecret.name=Not A Name",
        "web.ingress.paths={api/v1/write}",
        "pipeline.pushMaxBodyBytes=100",
    ],
)
def test_schema_rejects_nonsense(option: str) -> None:
    error = render_error("--set", option)
    assert "schema" in error, error


@pytest.mark.parametrize(
    "change",
    [
        {"from": "ftp"},
        {"name": "Not_A_Slug"},
        {"from": "url", "file": "/etc/passwd"},
        {"from": "image", "file": "relative/path.csv"},
        {"batchSize": 0},
        {"pace": "sometimes"},
    ],
)
def test_schema_rejects_nonsense_sources(change: dict[str, object], tmp_path: Path) -> None:
    error = render_error("-f", str(sources_file(tmp_path, **change)))
    assert "schema" in error, error


def sources_file(tmp_path: Path, **change: object) -> Path:
    """A values file whose one CSV source is the default sample with ``change`` applied."""
    (sample,) = yaml.safe_load((CHART / "values.yaml").read_text())["csv"]["sources"]
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump({"csv": {"sources": [{**sample, **change}]}}))
    return path


def test_an_external_database_needs_its_host() -> None:
    error = render_error("--set", "postgresql.enabled=false")
    assert "database.host is required" in error


def test_an_external_database_and_the_bundled_one_are_not_both_configured() -> None:
    error = render_error("--set", "database.host=db.example.com")
    assert "set postgresql.enabled=false" in error


# --- Roles ----------------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_beat_is_one_replica_with_the_recreate_strategy(values_file: str) -> None:
    manifests = render(values_file)
    beat = deployments(manifests).get("beat")
    if values_file == "values-edge.yaml":
        assert beat is None
        return
    assert beat is not None
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert not [m for m in manifests if m["kind"] in {"HorizontalPodAutoscaler", "ScaledObject"}
                and m["spec"]["scaleTargetRef"]["name"] == beat["metadata"]["name"]]  # fmt: skip


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_roles_get_their_role_and_no_options_as_arguments(values_file: str) -> None:
    """A role's shape comes from environment: no Celery option in any rendered container."""
    manifests = render(values_file)
    for role, deployment in deployments(manifests).items():
        assert main_container(deployment)["args"] == [role]
    for manifest in manifests:
        if manifest["kind"] in {"Deployment", "Job"}:  # the image's roles, init containers too
            for container in containers(manifest):
                options = [a for a in container.get("args", []) if WORKER_OPTIONS.match(a)]
                assert options == [], (manifest["metadata"]["name"], container["name"])


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_workers_consume_their_own_queue(values_file: str, tmp_path: Path) -> None:
    manifests = render(values_file)
    site = yaml.safe_load((CHART / values_file).read_text()).get("site", "default")
    expected = {"streamer": stream_queue_for_site(site), "collector": "collect"}
    workers = {role: d for role, d in deployments(manifests).items() if role in WORKERS}
    assert workers
    for role, deployment in workers.items():
        container = main_container(deployment)
        environment = container_environment(manifests, container)
        assert environment["WORKER_QUEUES"] == expected[role]
        # The entrypoint turns that environment into the command a container runs.
        started = run_entrypoint(tmp_path / role, *container["args"], env=environment)
        assert started.returncode == 0, started.stderr
        assert started.command[:4] == ["celery", "-A", "telemetry_project", "worker"]
        assert started.option("--queues") == expected[role]
        assert started.option("--pool") == "solo"
        assert started.option("--hostname") == f"{role}@%h"


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_worker_pool_and_its_concurrency_reach_the_worker(pool: str, tmp_path: Path) -> None:
    manifests = render(
        "values.yaml", "--set", f"collector.pool={pool}", "--set", "collector.concurrency=6"
    )
    container = main_container(deployments(manifests)["collector"])
    started = run_entrypoint(
        tmp_path, *container["args"], env=container_environment(manifests, container)
    )
    assert started.returncode == 0, started.stderr
    assert started.option("--pool") == pool
    assert started.option("--concurrency") == "6"
    assert started.recorded()["POOL"] == pool  # what the ping probe's health check reads


def test_probes_fit_each_role_and_worker_pool() -> None:
    for pool, script in [("solo", "worker-alive.sh"), ("prefork", "worker-ping.sh")]:
        options = ("--set", f"collector.pool={pool}", "--set", f"streamer.pool={pool}")
        roles = deployments(render("values.yaml", *options))
        for role in WORKERS:
            container = main_container(roles[role])
            for probe in PROBES:
                command = container[probe]["exec"]["command"]
                assert command[0] == f"/app/docker/{script}", (role, pool, probe)
    web = main_container(roles["web"])
    assert web["readinessProbe"]["httpGet"]["path"] == "/health"
    assert {"name": "Host", "value": "localhost"} in web["readinessProbe"]["httpGet"]["httpHeaders"]
    assert web["livenessProbe"]["httpGet"]["path"].startswith("/static/")


@pytest.mark.parametrize("role", ["web", "streamer", "collector"])
def test_probe_timings_follow_the_values(role: str) -> None:
    expected = {
        probe: {timing: 20 + 10 * p + t for t, timing in enumerate(PROBE_TIMINGS)}
        for p, probe in enumerate(PROBES)
    }
    options = [
        arg
        for probe, timings in expected.items()
        for timing, value in timings.items()
        for arg in ("--set", f"{role}.{probe}.{timing}={value}")
    ]
    container = main_container(deployments(render("values.yaml", *options))[role])
    for probe, timings in expected.items():
        assert {timing: container[probe][timing] for timing in timings} == timings, probe


@pytest.mark.parametrize(("role", "start_seconds"), [("web", 60), ("streamer", 120),
                                                     ("collector", 120)])  # fmt: skip
def test_a_start_up_threshold_of_zero_covers_the_wait_for_migrations(
    role: str, start_seconds: int
) -> None:
    manifests = render(
        "values.yaml", "--set", "migrations.waitTimeout=300",
        "--set", f"{role}.startupProbe.periodSeconds=7",
    )  # fmt: skip
    # The wait the entrypoint makes before the role starts (WAIT_FOR_MIGRATIONS_TIMEOUT).
    container = main_container(deployments(manifests)[role])
    wait = int(container_environment(manifests, container)["WAIT_FOR_MIGRATIONS_TIMEOUT"])
    probe = container["startupProbe"]
    assert probe["periodSeconds"] == 7
    allowed = probe["periodSeconds"] * probe["failureThreshold"]
    assert wait + start_seconds <= allowed < wait + start_seconds + probe["periodSeconds"]


def test_a_pinging_pool_needs_probe_timeouts_longer_than_the_ping() -> None:
    error = render_error(
        "--set", "collector.pool=prefork", "--set", "collector.readinessProbe.timeoutSeconds=10"
    )
    assert "collector.readinessProbe.timeoutSeconds must be at least 15 with the prefork" in error
    solo = render("values.yaml", "--set", "collector.readinessProbe.timeoutSeconds=2")
    assert main_container(deployments(solo)["collector"])["readinessProbe"]["timeoutSeconds"] == 2


def test_probe_and_entrypoint_scripts_are_the_repository_ones() -> None:
    """Commands under /app/docker/ in the manifests exist, executable, in docker/."""
    referenced = set()
    for values_file in VALUES_FILES:
        text = rendered_text(values_file)
        referenced |= set(re.findall(r"/app/(docker/[\w.-]+)", text))
    assert referenced >= {"docker/worker-alive.sh"}
    for script in referenced:
        assert os.access(REPO / script, os.X_OK), script


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_every_container_has_resource_requests_and_limits(values_file: str) -> None:
    for manifest in render(values_file):
        if manifest["kind"] in {"Deployment", "StatefulSet", "Job"}:
            for container in containers(manifest):
                resources = container["resources"]
                assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
                assert {"cpu", "memory"} <= set(resources["limits"]), container["name"]


def test_the_migration_job_is_a_hook_before_upgrades() -> None:
    (job,) = of_kind(render(), "Job").values()
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate"]
    # Inline configuration: a pre-upgrade hook would read the previous ConfigMap.
    names = {item["name"] for item in container["env"]}
    assert {"DB_HOST", "REDIS_URL", "DJANGO_SECRET_KEY"} <= names


def test_a_configuration_change_rolls_the_pods() -> None:
    def config_checksums(*options: str) -> dict[str, str]:
        return {
            role: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for role, d in deployments(render("values.yaml", *options)).items()
        }

    before = config_checksums()
    assert config_checksums() == before
    after = config_checksums("--set", "pipeline.collectQueueMaxDepth=128")
    assert set(after) == set(before) == {"web", "beat", "streamer", "collector"}
    assert all(after[role] != before[role] for role in before)


# --- Disruption budgets -------------------------------------------------------------------


def budgets(manifests: list[Manifest]) -> dict[str, Manifest]:
    """PodDisruptionBudgets by role."""
    return {component(m): m for m in manifests if m["kind"] == "PodDisruptionBudget"}


@pytest.mark.parametrize(
    ("values_file", "roles"),
    [
        ("values.yaml", {"web", "collector"}),  # one streamer: nothing to keep
        ("values-all-in-one.yaml", {"web", "streamer", "collector"}),
        ("values-central.yaml", {"web", "collector"}),
        ("values-edge.yaml", {"streamer"}),
    ],
)
def test_roles_of_several_pods_have_a_budget_that_never_blocks_a_drain(
    values_file: str, roles: set[str]
) -> None:
    manifests = render(values_file)
    assert set(budgets(manifests)) == roles
    pods = {role: d["spec"]["template"]["metadata"]["labels"]
            for role, d in deployments(manifests).items()}  # fmt: skip
    for role, budget in budgets(manifests).items():
        spec = budget["spec"]
        assert spec["maxUnavailable"] == 1
        assert "minAvailable" not in spec
        assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        selector = spec["selector"]["matchLabels"].items()
        assert [r for r, labels in pods.items() if selector <= labels.items()] == [role]


def test_budgets_are_absent_when_disabled() -> None:
    options = [
        arg
        for role in ("web", "streamer", "collector")
        for arg in ("--set", f"{role}.pdb.enabled=false", "--set", f"{role}.replicaCount=3")
    ]
    assert budgets(render("values.yaml", *options)) == {}


def test_a_fixed_single_replica_has_no_budget_but_an_autoscaled_role_has() -> None:
    manifests = render(
        "values.yaml", "--set", "web.replicaCount=1", "--set", "collector.autoscaling.mode=keda",
        "--set", "collector.autoscaling.minReplicas=0",
    )  # fmt: skip
    assert set(budgets(manifests)) == {"collector"}  # KEDA may run it with many pods


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["web.pdb.minAvailable=1"], {"minAvailable": 1}),
        (["web.pdb.minAvailable=50%"], {"minAvailable": "50%"}),
        (["web.pdb.maxUnavailable=2"], {"maxUnavailable": 2}),
        (["web.pdb.maxUnavailable=25%"], {"maxUnavailable": "25%"}),
        (["web.replicaCount=4", "web.pdb.minAvailable=3"], {"minAvailable": 3}),
    ],
)
def test_a_budget_takes_its_bound_from_the_values(
    options: list[str], expected: dict[str, object]
) -> None:
    manifests = render("values.yaml", *[arg for o in options for arg in ("--set", o)])
    spec = budgets(manifests)["web"]["spec"]
    assert {k: v for k, v in spec.items() if k in {"minAvailable", "maxUnavailable"}} == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["web.pdb.minAvailable=2"], "web.pdb.minAvailable=2 leaves no pod to evict when the "
                                     "role runs its fewest pods (2)"),
        (["web.pdb.minAvailable=51%"], "web.pdb.minAvailable=51% leaves no pod"),
        (["collector.autoscaling.mode=hpa", "collector.pdb.minAvailable=1"],
         "collector.pdb.minAvailable=1 leaves no pod to evict when the role runs its fewest "
         "pods (1)"),
        (["web.pdb.minAvailable=1", "web.pdb.maxUnavailable=1"],
         "web.pdb: set minAvailable or maxUnavailable, not both"),
    ],
)  # fmt: skip
def test_a_budget_that_would_hang_drains_is_refused(options: list[str], message: str) -> None:
    error = render_error(*[arg for o in options for arg in ("--set", o)])
    assert message in error


# --- The pipeline's /metrics -------------------------------------------------------------

WEB_SERVICE = "rel-telemetry-pipeline-web"
MONITOR_ON = ("--set", "web.metrics.serviceMonitor.enabled=true")


def service_monitors(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == "ServiceMonitor"]


def test_the_web_service_announces_metrics_on_the_pods_port() -> None:
    manifests = render()
    service = of_kind(manifests, "Service")[WEB_SERVICE]
    annotations = service["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8000",
        "prometheus.io/path": "/metrics",
    }
    # Annotation-based discovery scrapes the endpoints (the pods): the container's port.
    (port,) = main_container(deployments(manifests)["web"])["ports"]
    assert str(port["containerPort"]) == annotations["prometheus.io/port"]
    quiet = render("values.yaml", "--set", "web.metrics.scrapeAnnotations=false")
    assert "annotations" not in of_kind(quiet, "Service")[WEB_SERVICE]["metadata"]


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_no_service_monitor_is_rendered_unless_asked_for(values_file: str) -> None:
    assert service_monitors(render(values_file)) == []


def test_the_service_monitor_scrapes_metrics_on_the_web_services_port() -> None:
    manifests = render(
        "values.yaml", *MONITOR_ON, "--set", "web.metrics.serviceMonitor.labels.release=kps",
        "--set", "web.metrics.serviceMonitor.interval=15s",
    )  # fmt: skip
    (monitor,) = service_monitors(manifests)
    assert (monitor["apiVersion"], monitor["kind"]) == (
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
    )
    assert monitor["metadata"]["labels"]["release"] == "kps"
    services = of_kind(manifests, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    selected = [name for name, s in services.items() if selector <= s["metadata"]["labels"].items()]
    assert selected == [WEB_SERVICE]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": "http",
        "path": "/metrics",
        "interval": "15s",
        "scrapeTimeout": "10s",
    }
    assert endpoint["port"] in [port["name"] for port in services[WEB_SERVICE]["spec"]["ports"]]


def test_with_tokens_required_the_service_monitor_sends_the_token_as_a_bearer() -> None:
    manifests = render(
        "values.yaml", *MONITOR_ON, "--set", "django.apiRequireToken=true",
        "--set", "web.metrics.serviceMonitor.tokenSecret.name=scrape-token",
        "--set", "web.metrics.serviceMonitor.tokenSecret.key=key",
    )  # fmt: skip
    (monitor,) = service_monitors(manifests)
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "scrape-token", "key": "key"},
    }
    web = main_container(deployments(manifests)["web"])
    required = container_environment(manifests, web)["API_REQUIRE_TOKEN"]
    by_default = container_environment(render(), web)["API_REQUIRE_TOKEN"]
    assert (required, by_default) == ("1", "0")


def test_tokens_required_and_a_service_monitor_without_a_token_are_refused() -> None:
    error = render_error(*MONITOR_ON, "--set", "django.apiRequireToken=true")
    assert "set web.metrics.serviceMonitor.tokenSecret.name" in error


@pytest.mark.parametrize("pod_ip", ["10.1.2.3", "fd00::7"])
def test_web_pods_answer_a_scrape_addressed_to_their_own_ip(pod_ip: str) -> None:
    """Prometheus scrapes a pod as http://<pod IP>:8000/metrics, so that is its Host."""
    manifests = render()
    web = main_container(deployments(manifests)["web"])
    names = [item["name"] for item in web["env"]]
    pod_ip_source = web["env"][names.index("POD_IP")]["valueFrom"]
    assert pod_ip_source == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert names.index("POD_IP") < names.index("DJANGO_ALLOWED_HOSTS")  # $(POD_IP) needs it
    hosts = container_environment(manifests, web)["DJANGO_ALLOWED_HOSTS"]
    config = of_kind(manifests, "ConfigMap")["rel-telemetry-pipeline"]["data"]
    assert hosts.startswith(config["DJANGO_ALLOWED_HOSTS"] + ",")
    # What the kubelet makes of $(POD_IP), then Django's own check of a Host header.
    allowed = hosts.replace("$(POD_IP)", pod_ip).split(",")
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
    assert validate_host(host, allowed)
    assert not validate_host("10.9.9.9", allowed)


# --- The chart's README -------------------------------------------------------------------


def test_the_chart_readme_is_generated_from_the_values(tmp_path: Path) -> None:
    """`make chart-readme` installs the pinned generator and leaves the README unchanged."""
    committed = CHART / "README.md"
    regenerated = tmp_path / "README.md"
    shutil.copy(committed, regenerated)
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "chart-readme",
         f"CHART_README={regenerated}"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr  # e.g. npm missing
    assert "Metadata is correct" in result.stdout
    assert regenerated.read_text() == committed.read_text(), "stale: run `make chart-readme`"
    pinned = json.loads((REPO / "package.json").read_text())["devDependencies"]
    installed = REPO / "node_modules" / "@bitnami" / "readme-generator-for-helm" / "package.json"
    version = json.loads(installed.read_text())["version"]
    assert version == pinned["@bitnami/readme-generator-for-helm"]


# --- Autoscaling --------------------------------------------------------------------------


@pytest.mark.parametrize("role", sorted(WORKERS))
@pytest.mark.parametrize("mode", ["none", "hpa", "keda"])
def test_a_worker_role_has_at_most_one_autoscaler(role: str, mode: str) -> None:
    manifests = render("values.yaml", "--set", f"{role}.autoscaling.mode={mode}")
    target = deployments(manifests)[role]
    name = target["metadata"]["name"]
    scalers = [
        m["kind"]
        for m in manifests
        if m["kind"] in {"HorizontalPodAutoscaler", "ScaledObject"}
        and m["spec"]["scaleTargetRef"]["name"] == name
    ]
    expected = {"none": [], "hpa": ["HorizontalPodAutoscaler"], "keda": ["ScaledObject"]}
    assert scalers == expected[mode]
    # The autoscaler owns the replica count; a fixed one would fight it on every upgrade.
    assert ("replicas" in target["spec"]) == (mode == "none")


def test_the_keda_scaled_object_follows_the_collect_list() -> None:
    manifests = render("values-central.yaml")
    (scaled,) = of_kind(manifests, "ScaledObject").values()
    spec = scaled["spec"]
    target = deployments(manifests)["collector"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": target["metadata"]["name"],
    }
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    metadata = trigger["metadata"]
    assert metadata["listName"] == "collect"
    assert int(metadata["listLength"]) >= 1
    assert all(isinstance(value, str) for value in metadata.values())
    config = next(iter(of_kind(manifests, "ConfigMap").values()))["data"]
    host_port = re.match(r"rediss?://([^/]+)/(\d+)$", config["REDIS_URL"])
    assert host_port is not None
    assert metadata["address"] == host_port.group(1)
    assert metadata["databaseIndex"] == host_port.group(2)
    assert metadata["enableTLS"] == str(config["REDIS_URL"].startswith("rediss")).lower()
    # Backpressure caps the list at COLLECT_QUEUE_MAX_DEPTH: beyond it KEDA could not scale.
    bound = int(config["COLLECT_QUEUE_MAX_DEPTH"])
    assert spec["maxReplicaCount"] * int(metadata["listLength"]) <= bound
    # KEDA logs in with the workers' password, by reference to the same Secret.
    auth = of_kind(manifests, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    (collector,) = target["spec"]["template"]["spec"]["containers"]
    password = next(item for item in collector["env"] if item["name"] == "REDIS_PASSWORD")
    assert {k: refs["password"][k] for k in ("name", "key")} == password["valueFrom"][
        "secretKeyRef"
    ]


def test_keda_on_edge_streamers_follows_the_site_queue() -> None:
    manifests = render("values-edge.yaml", "--set", "streamer.autoscaling.mode=keda")
    (scaled,) = of_kind(manifests, "ScaledObject").values()
    assert scaled["spec"]["triggers"][0]["metadata"]["listName"] == "stream.edge1"
    assert scaled["spec"]["scaleTargetRef"]["name"].endswith("-streamer")


# --- Secrets ------------------------------------------------------------------------------

SECRETS = {
    "django.secretKey": "django-key-7f3a9c1e5b2d4f6a8e0c-5d1b9e3a7c2f8a4d6b0e1c9f3a7d5b2e",
    "database.password": "db-password-3b8e1f0a9c7d",
    "broker.password": "redis-password-c4d2e9a1f7b3",
}


@pytest.mark.parametrize("values_file", ["values.yaml", "values-all-in-one.yaml"])
def test_secrets_never_appear_in_configmaps_or_env_literals(values_file: str) -> None:
    options = [arg for name, value in SECRETS.items() for arg in ("--set", f"{name}={value}")]
    manifests = render(values_file, *options)
    secret_data = "".join(
        base64.b64decode(v).decode() for m in of_kind(manifests, "Secret").values()
        for v in m["data"].values()
    )  # fmt: skip
    for value in SECRETS.values():
        assert value in secret_data  # stored where it belongs
        encoded = base64.b64encode(value.encode()).decode()
        for manifest in manifests:
            if manifest["kind"] != "Secret":
                text = " ".join(walk_strings(manifest))
                assert value not in text, manifest["metadata"]["name"]
                assert encoded not in text, manifest["metadata"]["name"]
    assert_secret_env_by_reference(manifests)


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_secret_variables_come_from_secret_references(values_file: str) -> None:
    assert_secret_env_by_reference(render(values_file))


SECRET_LIKE = re.compile(r"PASSWORD|SECRET|TOKEN")
NOT_SECRETS = {"API_REQUIRE_TOKEN"}  # a switch that names tokens, holding none


def secret_like(name: str) -> bool:
    return bool(SECRET_LIKE.search(name)) and name not in NOT_SECRETS


def assert_secret_env_by_reference(manifests: list[Manifest]) -> None:
    for config in of_kind(manifests, "ConfigMap").values():
        if not config["metadata"]["name"].endswith("-csv"):
            assert not [key for key in config["data"] if secret_like(key)]
    for manifest in manifests:
        if manifest["kind"] in {"Deployment", "StatefulSet", "Job"}:
            for container in containers(manifest):
                for item in container.get("env", []):
                    if secret_like(item["name"]):
                        assert "value" not in item, (container["name"], item["name"])
                        assert "secretKeyRef" in item["valueFrom"], item["name"]


def test_existing_secrets_replace_the_charts_own() -> None:
    manifests = render("values-edge.yaml")
    (secret,) = of_kind(manifests, "Secret").values()
    assert set(secret["data"]) == {"django-secret-key"}  # the edge's own; DB and Redis given
    (streamer,) = deployments(manifests)["streamer"]["spec"]["template"]["spec"]["containers"]
    refs = {
        item["name"]: item["valueFrom"]["secretKeyRef"]["name"]
        for item in streamer["env"]
        if "valueFrom" in item
    }
    assert refs == {
        "DJANGO_SECRET_KEY": "rel-telemetry-pipeline",
        "DB_PASSWORD": "telemetry-database",
        "REDIS_PASSWORD": "telemetry-broker",
    }


# --- CSV sources --------------------------------------------------------------------------


def test_a_configmap_csv_over_one_mebibyte_is_refused_with_a_clear_message(
    tmp_path: Path,
) -> None:
    reference = REFERENCE_CSV
    assert reference.stat().st_size > ONE_MIB
    error = render_error(
        "--set-file", f"csv.configMap.files.dcgm\\.csv={reference}",
        "-f", str(sources_file(tmp_path, **{"from": "configMap", "file": "dcgm.csv"})),
    )  # fmt: skip
    assert '"dcgm.csv" is 1107455 bytes, over the 1 MiB' in error
    for alternative in ("image", "PVC", "URL"):
        assert alternative in error


def test_a_small_configmap_csv_is_mounted_in_the_streamers(tmp_path: Path) -> None:
    small = tmp_path / "small.csv"
    with (REFERENCE_CSV).open() as reference:
        small.write_text("".join(next(reference) for _ in range(50)))
    manifests = render(
        "values.yaml",
        "--set-file", f"csv.configMap.files.small\\.csv={small}",
        "-f", str(sources_file(tmp_path, **{"from": "configMap", "file": "small.csv"})),
    )  # fmt: skip
    config = of_kind(manifests, "ConfigMap")["rel-telemetry-pipeline-csv"]
    assert config["data"]["small.csv"] == small.read_text()
    (init,) = deployments(manifests)["streamer"]["spec"]["template"]["spec"]["initContainers"]
    assert "/data/csv-configmap/small.csv" in init["args"]
    assert {"name": "csv-configmap", "mountPath": "/data/csv-configmap", "readOnly": True} in init[
        "volumeMounts"
    ]


def test_a_source_can_be_a_url_without_any_volume(tmp_path: Path) -> None:
    url = "https://exports.example.com/dcgm.csv"
    manifests = render(
        "values.yaml", "-f", str(sources_file(tmp_path, **{"from": "url", "file": url}))
    )
    pod = deployments(manifests)["streamer"]["spec"]["template"]["spec"]
    assert url in pod["initContainers"][0]["args"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]


def test_the_baked_in_sample_is_the_default_source() -> None:
    (init,) = deployments(render())["streamer"]["spec"]["template"]["spec"]["initContainers"]
    assert init["args"][:3] == ["add-source", "sample", "/app/data/dcgm_metrics_sample.csv"]
    assert "--if-missing" in init["args"]
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "!data/dcgm_metrics_sample.csv" in ignore  # and the image holds it


# --- Deployment modes ---------------------------------------------------------------------


def test_edge_renders_streamers_only_with_their_files_and_no_database() -> None:
    manifests = render("values-edge.yaml")
    kinds = {m["kind"] for m in manifests}
    assert kinds == {"ServiceAccount", "Secret", "ConfigMap", "Deployment", "PodDisruptionBudget"}
    assert set(deployments(manifests)) == {"streamer"}
    assert not of_kind(manifests, "StatefulSet")
    assert not of_kind(manifests, "Job")
    config = of_kind(manifests, "ConfigMap")["rel-telemetry-pipeline"]["data"]
    assert config["DB_HOST"] == "central-db.example.com"
    assert config["REDIS_URL"] == "rediss://central-redis.example.com:6379/0"
    assert config["REDIS_TLS_CA_FILE"] == "/etc/telemetry/broker-ca/ca.crt"
    pod = deployments(manifests)["streamer"]["spec"]["template"]["spec"]
    claim = next(v for v in pod["volumes"] if v["name"] == "csv-pvc")
    assert claim["persistentVolumeClaim"] == {"claimName": "dcgm-exports", "readOnly": True}
    for init in pod["initContainers"]:
        assert "--site=edge1" in init["args"]
        assert init["args"][2].startswith("/data/csv/")
    # The streamers' location policy must allow the mounted claim they read from.
    assert "/data/csv" in config["STREAM_SOURCE_DIRS"].split(",")


def assert_every_role_and_both_services(manifests: list[Manifest]) -> None:
    assert set(deployments(manifests)) == {"web", "beat", "streamer", "collector"}
    services = {component(s) for s in of_kind(manifests, "StatefulSet").values()}
    assert services == {"postgresql", "redis"}


def test_central_runs_the_database_web_beat_and_elastic_collectors() -> None:
    manifests = render("values-central.yaml")
    assert_every_role_and_both_services(manifests)
    services = {component(s): s for s in of_kind(manifests, "Service").values()
                if s["spec"].get("type") == "LoadBalancer"}  # fmt: skip
    assert set(services) == {"postgresql", "redis"}  # reachable from the edges
    assert "ScaledObject" in {m["kind"] for m in manifests}


def test_all_in_one_runs_every_role_and_both_services() -> None:
    manifests = render("values-all-in-one.yaml")
    assert_every_role_and_both_services(manifests)
    assert set(of_kind(manifests, "HorizontalPodAutoscaler")) == {
        "rel-telemetry-pipeline-collector"
    }
    assert of_kind(manifests, "Ingress")


def test_config_keys_are_variables_the_project_reads() -> None:
    known = (REPO / "telemetry_project" / "settings.py").read_text()
    known += (REPO / "docker" / "entrypoint.sh").read_text()
    for values_file in VALUES_FILES:
        for config in of_kind(render(values_file), "ConfigMap").values():
            if not config["metadata"]["name"].endswith("-csv"):
                unread = [key for key in config["data"] if not re.search(rf"\b{key}\b", known)]
                assert unread == [], values_file


# --- Push: remote write through the web Service and an ingress ----------------------------


NGINX_BODY_SIZE = "nginx.ingress.kubernetes.io/proxy-body-size"


def test_remote_write_goes_through_the_web_service_and_an_ingress_documented_for_it(
    tmp_path: Path,
) -> None:
    ingress_values = tmp_path / "ingress.yaml"
    ingress_values.write_text(
        yaml.safe_dump(
            {
                "web": {
                    "ingress": {
                        "paths": ["/api/v1/write"],
                        "className": "nginx",
                        "annotations": {NGINX_BODY_SIZE: "32m"},
                        "tls": [
                            {"secretName": "telemetry-tls", "hosts": ["telemetry.example.com"]}
                        ],
                    }
                }
            }
        )
    )
    manifests = render("values-all-in-one.yaml", "-f", str(ingress_values))
    (ingress,) = of_kind(manifests, "Ingress").values()
    assert ingress["metadata"]["annotations"] == {NGINX_BODY_SIZE: "32m"}
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [
        {"secretName": "telemetry-tls", "hosts": ["telemetry.example.com"]}
    ]
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/api/v1/write", "Prefix")
    backend = path["backend"]["service"]
    # The backend is the web Service, whose selector picks the web pods' port 8000.
    service = of_kind(manifests, "Service")[backend["name"]]
    assert component(service) == "web"
    (port,) = service["spec"]["ports"]
    assert port["name"] == backend["port"]["name"] == "http"
    web = deployments(manifests)["web"]
    assert (
        service["spec"]["selector"].items() <= web["spec"]["template"]["metadata"]["labels"].items()
    )
    assert {"name": "http", "containerPort": 8000, "protocol": "TCP"} in main_container(web)[
        "ports"
    ]


def test_by_default_the_ingress_routes_everything_remote_write_included() -> None:
    (ingress,) = of_kind(render("values-all-in-one.yaml"), "Ingress").values()
    assert [p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]] == ["/"]


def test_push_settings_reach_every_role() -> None:
    manifests = render(
        "values.yaml",
        "--set", "pipeline.pushMaxBodyBytes=67108864",
        "--set", "pipeline.pushKeepJobInstanceLabels=true",
    )  # fmt: skip
    for role in ("web", "collector"):
        environment = container_environment(manifests, main_container(deployments(manifests)[role]))
        assert environment["PUSH_MAX_BODY_BYTES"] == "67108864"
        assert environment["PUSH_KEEP_JOB_INSTANCE_LABELS"] == "1"


# --- Broker options -----------------------------------------------------------------------

EXTERNAL_REDIS = ("--set", "redis.enabled=false", "--set", "broker.host=redis.example.com")


def test_an_external_redis_over_tls_gets_its_ca_in_every_pipeline_container() -> None:
    manifests = render(
        "values.yaml", *EXTERNAL_REDIS,
        "--set", "broker.tls.enabled=true", "--set", "broker.tls.caSecret=redis-ca",
        "--set", "broker.password=from-values",
    )  # fmt: skip
    config = of_kind(manifests, "ConfigMap")["rel-telemetry-pipeline"]["data"]
    assert config["REDIS_URL"] == "rediss://redis.example.com:6379/0"
    ca_file = Path(config["REDIS_TLS_CA_FILE"])
    for manifest in manifests:
        if manifest["kind"] in {"Deployment", "Job"}:
            volumes = {v["name"]: v for v in manifest["spec"]["template"]["spec"]["volumes"]}
            assert volumes["broker-ca"]["secret"]["secretName"] == "redis-ca"
            for container in containers(manifest):
                mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
                assert mounts["broker-ca"] == str(ca_file.parent)
    assert "redis-password" in of_kind(manifests, "Secret")["rel-telemetry-pipeline"]["data"]


def test_an_external_redis_without_a_password_gets_none() -> None:
    manifests = render("values.yaml", *EXTERNAL_REDIS)
    assert "redis-password" not in of_kind(manifests, "Secret")["rel-telemetry-pipeline"]["data"]
    for deployment in deployments(manifests).values():
        for container in containers(deployment):
            assert "REDIS_PASSWORD" not in {item["name"] for item in container["env"]}


def test_the_bundled_redis_requires_a_password_and_tls_on_both_ends() -> None:
    (redis,) = [s for s in of_kind(render(), "StatefulSet").values() if component(s) == "redis"]
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    assert '--requirepass "$REDIS_PASSWORD"' in container["command"][-1]
    error = render_error(
        "--set", "redis.tls.enabled=true", "--set", "redis.tls.certificateSecret=t"
    )
    assert "broker.tls.enabled must equal redis.tls.enabled" in error
