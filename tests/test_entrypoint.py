"""docker/entrypoint.sh: each role's command line, from the environment alone.

The script runs here as a container runs it, with stand-ins for celery, python and gunicorn
that record how they were started (tests/support/entrypoint.py). A worker's queues, pool,
concurrency and name come from WORKER_* variables with defaults per role; every role ends by
exec-ing its program, so the program keeps the container's main process id and receives
SIGTERM itself.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.entrypoint import EntrypointRun, run_entrypoint
from tests.support.reference import REPO

CELERY_WORKER = ["celery", "-A", "telemetry_project", "worker"]
# Always on a worker: mingle and gossip off, and the heartbeat step loaded.
WORKER_FLAGS = ["--without-mingle", "--without-gossip", "--without-heartbeat"]


def run(tmp_path: Path, *args: str, **env: str) -> EntrypointRun:
    result = run_entrypoint(tmp_path, *args, env=env)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize(("role", "queue"), [("streamer", "stream"), ("collector", "collect")])
def test_a_worker_role_defaults_to_its_queue_the_solo_pool_and_its_role_as_node_name(
    tmp_path: Path, role: str, queue: str
) -> None:
    result = run(tmp_path, role, LOG_LEVEL="DEBUG")
    command = result.command
    assert command[:4] == CELERY_WORKER
    assert result.option("--queues") == queue
    assert result.option("--pool") == "solo"
    assert result.option("--hostname") == f"{role}@%h"
    assert result.option("--loglevel") == "DEBUG"
    assert result.option("--include") == "ingest.heartbeat"
    assert set(WORKER_FLAGS) <= set(command)
    assert "--concurrency" not in command  # a solo pool is one process
    assert len(result.starts) == 1  # no migration wait unless asked


@pytest.mark.parametrize("role", ["streamer", "collector"])
def test_worker_variables_override_every_default(tmp_path: Path, role: str) -> None:
    result = run(
        tmp_path, role,
        WORKER_QUEUES="stream.edge1,stream", WORKER_POOL="prefork", WORKER_CONCURRENCY="4",
        WORKER_NAME=f"{role}-a@%h",
    )  # fmt: skip
    assert result.command[:4] == CELERY_WORKER
    assert result.option("--queues") == "stream.edge1,stream"
    assert result.option("--pool") == "prefork"
    assert result.option("--concurrency") == "4"
    assert result.option("--hostname") == f"{role}-a@%h"


def test_concurrency_applies_only_to_pools_of_several_processes_or_threads(
    tmp_path: Path,
) -> None:
    solo = run(tmp_path / "solo", "collector", WORKER_CONCURRENCY="4")
    assert "--concurrency" not in solo.command
    threads = run(tmp_path / "threads", "collector", WORKER_POOL="threads")
    assert "--concurrency" not in threads.command  # Celery's default: the CPU count
    assert threads.option("--pool") == "threads"


def test_the_worker_replaces_the_entrypoint_process(tmp_path: Path) -> None:
    """exec: celery keeps the PID the container runtime signals, so SIGTERM reaches it."""
    result = run(tmp_path, "collector", WORKER_NAME="c1@%h")
    recorded = result.recorded()
    assert int(recorded["PID"]) == result.starts[-1].pid
    assert recorded["ROLE"] == "collector"
    assert recorded["POOL"] == "solo"
    # The node name the ping probe addresses: %h as Celery expands it, the host name.
    assert recorded["NODE"] == f"c1@{os.uname().nodename}"


def test_a_solo_worker_starts_with_a_fresh_heartbeat_file_exported(tmp_path: Path) -> None:
    stale = tmp_path / "run" / "worker-heartbeat"
    stale.parent.mkdir()
    stale.touch()
    result = run(tmp_path, "streamer")
    assert result.starts[-1].env["WORKER_HEARTBEAT_FILE"] == str(stale)
    assert not stale.exists()  # a stale file from a previous start never passes the probe


def test_a_pinging_pool_gets_no_heartbeat_file(tmp_path: Path) -> None:
    result = run(tmp_path, "collector", WORKER_POOL="prefork")
    assert "WORKER_HEARTBEAT_FILE" not in result.starts[-1].env
    assert result.recorded()["POOL"] == "prefork"


@pytest.mark.parametrize("role", ["web", "beat", "streamer", "collector"])
def test_long_running_roles_refuse_arguments_and_name_the_variables(
    tmp_path: Path, role: str
) -> None:
    result = run_entrypoint(tmp_path, role, "-Q", "collect")
    assert result.returncode == 64
    assert result.starts == []
    assert "takes no arguments" in result.stderr
    assert "set its variables" in result.stderr


def test_the_web_role_runs_gunicorn_from_its_variables(tmp_path: Path) -> None:
    default = run(tmp_path / "default", "web")
    assert default.command[:2] == ["gunicorn", "telemetry_project.wsgi:application"]
    assert default.option("--config") == "python:telemetry_project.gunicorn_config"
    assert default.option("--bind") == "0.0.0.0:8000"
    assert default.option("--workers") == "2"
    assert default.option("--timeout") == "60"
    assert default.recorded()["ROLE"] == "web"
    tuned = run(
        tmp_path / "tuned", "web", PORT="9000", WEB_HOST="127.0.0.1", WEB_CONCURRENCY="5",
        WEB_TIMEOUT="30",
    )  # fmt: skip
    assert tuned.option("--bind") == "127.0.0.1:9000"
    assert tuned.option("--workers") == "5"
    assert tuned.option("--timeout") == "30"
    assert int(tuned.recorded()["PID"]) == tuned.starts[-1].pid


def test_the_beat_role_runs_celery_beat(tmp_path: Path) -> None:
    result = run(tmp_path, "beat")
    assert result.command == ["celery", "-A", "telemetry_project", "beat", "--loglevel", "INFO"]
    assert result.recorded()["ROLE"] == "beat"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["migrate"], ["python", "manage.py", "migrate", "--noinput"]),
        (["collectstatic", "--dry-run"], ["python", "manage.py", "collectstatic", "--noinput",
                                          "--dry-run"]),
        (["check"], ["python", "manage.py", "check", "--deploy"]),
        (["add-source", "s", "/app/data/x.csv"], ["python", "manage.py", "add_source", "s",
                                                  "/app/data/x.csv"]),
        (["manage", "createsuperuser"], ["python", "manage.py", "createsuperuser"]),
        (["celery", "inspect", "ping"], ["celery", "-A", "telemetry_project", "inspect", "ping"]),
        (["python", "-c", "pass"], ["python", "-c", "pass"]),
    ],
)  # fmt: skip
def test_one_shot_roles_pass_their_arguments_on(
    tmp_path: Path, args: list[str], expected: list[str]
) -> None:
    assert run(tmp_path, *args).command == expected


def test_without_a_role_it_prints_the_usage(tmp_path: Path) -> None:
    result = run_entrypoint(tmp_path)
    assert result.returncode == 64
    assert "usage: entrypoint.sh web|beat|streamer|collector" in result.stderr


@pytest.mark.parametrize(
    ("args", "program"),
    [
        (["web"], ["gunicorn", "telemetry_project.wsgi:application"]),
        (["beat"], ["celery", "-A", "telemetry_project", "beat"]),
        (["streamer"], CELERY_WORKER),
        (["collector"], CELERY_WORKER),
        (["add-source", "s", "/app/data/x.csv"], ["python", "manage.py", "add_source"]),
    ],
)
def test_roles_that_need_the_schema_wait_for_migrations_when_asked(
    tmp_path: Path, args: list[str], program: list[str]
) -> None:
    result = run(tmp_path, *args, WAIT_FOR_MIGRATIONS="1")
    check, started = result.starts
    assert check.argv == ["python", "manage.py", "migrate", "--check"]
    assert started.argv[: len(program)] == program


def test_a_schema_never_migrated_stops_the_role_after_the_timeout(tmp_path: Path) -> None:
    result = run_entrypoint(
        tmp_path, "collector",
        env={"WAIT_FOR_MIGRATIONS": "1", "WAIT_FOR_MIGRATIONS_TIMEOUT": "0",
             "STAND_IN_EXIT_PYTHON": "1"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "migrations still missing (or the database unreachable) after 0s" in result.stderr
    assert {start.argv[0] for start in result.starts} == {"python"}  # celery never started


@pytest.mark.parametrize("probe", ["healthcheck.sh", "worker-ping.sh"])
def test_a_probe_before_the_entrypoint_recorded_a_role_fails_saying_so(
    tmp_path: Path, probe: str
) -> None:
    check = subprocess.run(
        [str(REPO / "docker" / probe)],
        env={**os.environ, "TELEMETRY_RUN_DIR": str(tmp_path / "run")},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip

    assert check.returncode == 1
    assert "has recorded no role here yet" in check.stdout


def test_the_health_check_reads_the_role_the_entrypoint_recorded(tmp_path: Path) -> None:
    # Records ROLE=beat and the process id of the stand-in it exec-ed, which has exited since.
    result = run(tmp_path, "beat")
    check = subprocess.run(
        [str(REPO / "docker" / "healthcheck.sh")],
        env={**os.environ, "TELEMETRY_RUN_DIR": str(result.run_dir)},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip

    # beat's check is that its process runs: the recorded one does not.
    assert check.returncode == 1
    assert "kill" in check.stderr
