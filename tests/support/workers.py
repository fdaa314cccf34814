"""Real processes for tests: Celery workers and project commands on the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db import connection

from telemetry_project.routing import COLLECT_QUEUE, STREAM_QUEUE
from tests.support.reference import REPO


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
        return self.start("streamer", STREAM_QUEUE, extra_env=extra_env)

    def collector(self, extra_env: dict[str, str] | None = None) -> Worker:
        return self.start("collector", COLLECT_QUEUE, extra_env=extra_env)

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.terminate(timeout=30)


def database_url_for_workers() -> str:
    """The URL of the database pytest-django created, for processes outside this one."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
