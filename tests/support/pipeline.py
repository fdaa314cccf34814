"""Helpers for pipeline tests: generated inputs, imports in a subprocess, exactness checks."""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from django.db.models import Count

from bench.dcgm_generator import GeneratorSpec, write_dcgm_csv
from ingest import models
from telemetry_project.routing import COLLECT_QUEUE
from tests.support.reference import REPO
from tests.support.workers import Worker, WorkerFactory, wait_for

# Celery's worker log line for each step of a task: received, succeeded, retry, raised...
TASK_EVENT = re.compile(r"Task [\w.]+\[[\w-]+\] (\w+)")


def generate_csv(
    path: Path, *, hosts: int, gpus_per_host: int, metrics: int, timesteps: int
) -> int:
    """Write a generated DCGM file; returns its data row count."""
    spec = GeneratorSpec(
        hosts=hosts, gpus_per_host=gpus_per_host, metrics=metrics, timesteps=timesteps
    )
    with path.open("wb") as out:
        return write_dcgm_csv(out, spec)


def write_days(path: Path, days: int) -> list[dict[str, str]]:
    """One timestep a day at noon for the last ``days`` days (today included)."""
    today = datetime.now(UTC).date()
    first_day = today - timedelta(days=days - 1)
    start = datetime(first_day.year, first_day.month, first_day.day, 12, tzinfo=UTC)
    spec = GeneratorSpec(
        hosts=2, gpus_per_host=2, metrics=3, timesteps=days, interval_seconds=86400, start=start
    )
    with path.open("wb") as out:
        write_dcgm_csv(out, spec)
    with path.open(newline="") as source:
        return list(csv.DictReader(source))


def start_import(
    path: Path, env: dict[str, str], log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    """``manage.py import_csv`` in its own process, so the test can act while it runs."""
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "manage.py", "import_csv", str(path), "--no-progress", *extra],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def finish_import(process: subprocess.Popen[bytes], log: Path, timeout: float = 240) -> str:
    process.wait(timeout=timeout)
    output = log.read_text()
    assert process.returncode == 0, output
    return output


def duplicate_samples() -> int:
    """Samples whose (gpu, metric, timestamp) occurs more than once."""
    repeated = (
        models.Sample.objects.values("gpu_id", "metric_id", "timestamp")
        .annotate(copies=Count("id"))
        .filter(copies__gt=1)
        .values_list("copies", flat=True)
    )
    return sum(copies - 1 for copies in repeated)


STORED_BY_THE_PIPELINE = (
    models.StreamCursor,
    models.OutstandingChunk,
    models.IngestedChunk,
    models.Sample,
    models.RejectedRow,
    models.DeadLetter,
)


def assert_nothing_stored() -> None:
    """No cursor, outstanding chunk, ledger row, sample, rejected row or dead letter exists."""
    for model in STORED_BY_THE_PIPELINE:
        assert not model.objects.exists(), f"a {model.__name__} was stored"


def sample_count() -> int:
    return models.Sample.objects.count()


def task_in_hand(worker: Worker) -> bool:
    """Whether the last task the worker's log mentions was received and not yet finished."""
    events = TASK_EVENT.findall(worker.output()[-4000:])
    return bool(events) and events[-1] == "received"


def kill_with_task_in_hand(worker: Worker, patience: float = 30) -> bool:
    """SIGKILL the worker's process group, if possible while it works on a task.

    Killed between two tasks, a worker loses nothing in the first place; the case that
    needs the ledger and redelivery is a task cut off half way. Tasks take a fraction of a
    second, so the log is polled closely. Returns whether the kill caught a task in hand.
    """
    deadline = time.monotonic() + patience
    while not task_in_hand(worker) and time.monotonic() < deadline:
        time.sleep(0.005)
    worker.kill()
    assert worker.process.returncode == -signal.SIGKILL, worker.output()[-3000:]
    return task_in_hand(worker)  # the log now ends where the kill stopped the worker


def flush_the_broker_mid_import(
    workers: WorkerFactory, collector: Worker, broker: redis.Redis
) -> None:
    """Once some chunks are committed, destroy queued chunks and start a new collector."""
    wait_for(lambda: models.IngestedChunk.objects.count() >= 5, 120, what="some chunks to commit")
    collector.terminate()  # let messages pile up, so the flush surely destroys some
    wait_for(lambda: broker.llen(COLLECT_QUEUE) > 0, 60, what="queued chunks")
    broker.flushdb()
    workers.collector()
