"""The Celery worker processes a benchmark run starts, as they are deployed, and stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from django.conf import settings
from django.core.management.base import CommandError

WORKER_START_TIMEOUT_SECONDS: Final = 60.0
WORKER_STOP_TIMEOUT_SECONDS: Final = 30.0


@dataclass
class Worker:
    role: str
    process: subprocess.Popen[bytes]
    log: Path
    alive_file: Path

    def stop(self) -> None:
        """SIGTERM (warm shutdown) the worker's process group; SIGKILL if it lingers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=WORKER_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=WORKER_STOP_TIMEOUT_SECONDS)


def start_worker(
    role: str, queue: str, index: int, run: int, env: dict[str, str], work: Path
) -> Worker:
    """A solo-pool Celery worker, as deployed; its heartbeat file says it is consuming."""
    alive = work / f"{role}{index}-run{run}.alive"
    log = work / f"{role}{index}-run{run}.log"
    command = [
        sys.executable, "-m", "celery", "-A", "telemetry_project", "worker",
        "-Q", queue, "-n", f"bench-{role}{index}@%h", "--pool=solo", "--loglevel=WARNING",
        "--without-mingle", "--without-gossip", "--without-heartbeat",
        "--include", "ingest.heartbeat",
    ]  # fmt: skip
    worker_env = {**env, "WORKER_HEARTBEAT_FILE": str(alive), "WORKER_HEARTBEAT_INTERVAL": "1"}
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603  (celery from this virtualenv)
            command,
            cwd=settings.BASE_DIR,
            env=worker_env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Worker(role, process, log, alive)


def wait_until_ready(workers: list[Worker]) -> None:
    deadline = time.monotonic() + WORKER_START_TIMEOUT_SECONDS
    while not all(worker.alive_file.exists() for worker in workers):
        failed = [worker for worker in workers if worker.process.poll() is not None]
        if failed or time.monotonic() > deadline:
            raise CommandError(f"workers did not start:{worker_logs(failed or workers)}")
        time.sleep(0.05)


def worker_logs(workers: list[Worker]) -> str:
    return "".join(
        f"\n--- {worker.log.name}\n{worker.log.read_text(errors='replace')[-3000:]}"
        for worker in workers
    )


def start_beat(env: dict[str, str], work: Path) -> subprocess.Popen[bytes]:
    """Beat, with the database scheduler as deployed; its log is ``work/beat.log``."""
    with (work / "beat.log").open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "telemetry_project", "beat"],
            cwd=settings.BASE_DIR, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip


def stop_beat_and_workers(beat: subprocess.Popen[bytes] | None, workers: Iterable[Worker]) -> None:
    """Stop beat first, so no tick is sent to a worker already gone, then the workers."""
    if beat is not None:
        beat.terminate()
        beat.wait(timeout=30)
    for worker in workers:
        worker.stop()
