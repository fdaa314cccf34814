"""Helpers for pipeline tests: generated inputs, imports in a subprocess, exactness checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from django.db import connection

from ingest.dcgm_generator import GeneratorSpec, write_dcgm_csv
from ingest.models import Sample
from tests.conftest import REPO


def generate_csv(
    path: Path, *, hosts: int, gpus_per_host: int, metrics: int, timesteps: int
) -> int:
    """Write a generated DCGM file; returns its data row count."""
    spec = GeneratorSpec(
        hosts=hosts, gpus_per_host=gpus_per_host, metrics=metrics, timesteps=timesteps
    )
    with path.open("wb") as out:
        return write_dcgm_csv(out, spec)


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
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(SUM(n - 1), 0) FROM ("
            "  SELECT COUNT(*) AS n FROM ingest_sample"
            "  GROUP BY gpu_id, metric_id, timestamp HAVING COUNT(*) > 1"
            ") AS repeated"
        )
        return int(cursor.fetchone()[0])


def sample_count() -> int:
    return Sample.objects.count()
