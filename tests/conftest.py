"""Shared fixtures: real Celery worker processes on the test database and a clean broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from ingest import dimensions

REPO = Path(__file__).resolve().parent.parent
REFERENCE_CSV = REPO / "data" / "dcgm_metrics_sample.csv"


def wait_for(
    predicate: Callable[[], object], timeout: float, interval: float = 0.2, what: str = ""
) -> None:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")


@pytest.fixture(autouse=True)
def _fresh_dimension_cache() -> Iterator[None]:
    # Each test starts from empty tables; ids cached by an earlier test would be stale.
    dimensions.forget()
    yield
    dimensions.forget()


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    """The test Redis database, emptied before and after the test."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()
    yield client
    client.flushdb()


@dataclass
class Worker:
    role: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker's whole process group: no warm shutdown, no cleanup."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> None:
        """SIGTERM: Celery's warm shutdown lets the chunk in hand finish."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class WorkerFactory:
    """Starts ``celery worker`` processes against the test database and broker."""

    env: dict[str, str]
    log_dir: Path
    workers: list[Worker] = field(default_factory=list)

    def start_process(
        self,
        role: str,
        command: list[str],
        *,
        ready: str = "",
        extra_env: dict[str, str] | None = None,
    ) -> Worker:
        """Start one of the project's processes with the test environment, logging to a file."""
        log = self.log_dir / f"{role}-{len(self.workers)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                command,
                cwd=REPO,
                env={**self.env, **(extra_env or {})},
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(role, process, log)
        self.workers.append(worker)
        if ready:
            wait_for(
                lambda: ready in worker.output() or process.poll() is not None,
                timeout=60,
                what=f"{role} to start",
            )
            assert process.poll() is None, worker.output()
        return worker

    def start(self, role: str, queue: str, *, extra_env: dict[str, str] | None = None) -> Worker:
        """A ``celery worker`` on ``queue``, returned once it is ready for messages."""
        command = [
            sys.executable, "-m", "celery", "-A", "telemetry_project", "worker",
            "-Q", queue, "-n", f"{role}{len(self.workers)}@%h", "--pool=solo",
            "--loglevel=INFO", "--without-mingle", "--without-gossip", "--without-heartbeat",
        ]  # fmt: skip
        return self.start_process(role, command, ready="ready.", extra_env=extra_env)

    def streamer(self, extra_env: dict[str, str] | None = None) -> Worker:
        return self.start("streamer", "stream", extra_env=extra_env)

    def collector(self, extra_env: dict[str, str] | None = None) -> Worker:
        return self.start("collector", "collect", extra_env=extra_env)

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.terminate(timeout=30)


SERVICE_VARIABLES = ("DATABASE_URL", "DATABASE_URL_FILE", "DB_HOST")


def run_on_embedded_database(script: str, var_dir: Path, *args: str) -> str:
    """Run ``script`` (after ``django.setup()``) in a child process on the embedded settings:
    SQLite under ``var_dir``. Settings, and so the database, are read once per process.

    Returns the last line the script printed; fails the test if it exits non-zero.
    """
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
    env.update(DJANGO_SETTINGS_MODULE="telemetry_project.settings", TELEMETRY_VAR_DIR=str(var_dir))
    code = f"import django\ndjango.setup()\n{script}"
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


def database_url_for_workers() -> str:
    """The URL of the database pytest-django created, for processes outside this one."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def pipeline_env(transactional_db: None, broker: redis.Redis) -> dict[str, str]:
    """Environment for worker and command processes: the test database and broker.

    Short delivery timings keep recovery scenarios quick; tests override them as needed.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST", "COV_", "TELEMETRY_FAULT"))
    }
    env.update(
        DATABASE_URL=database_url_for_workers(),
        REDIS_URL=settings.CELERY_BROKER_URL,
        LOG_LEVEL="INFO",
        REPUBLISH_AFTER_SECONDS="5",
        CELERY_VISIBILITY_TIMEOUT="10",
        RETRY_BACKOFF_MAX_SECONDS="2",
    )
    return env


@pytest.fixture
def workers(pipeline_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(pipeline_env, tmp_path)
    yield factory
    factory.stop_all()
