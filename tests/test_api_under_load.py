"""The production web server under load while ingest runs (slow: 60 s of wrk).

200 concurrent connections for 60 seconds against gunicorn, on the real settings (no
DEBUG), while a streamer and a collector import a generated file into the same database:
no 5xx, no connection error, and the latency percentiles are printed for the record.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.http_capacity import ROTATE_SCRIPT, parse_wrk
from ingest.models import Gpu
from tests.support.pipeline import finish_import, generate_csv, start_import
from tests.support.reference import REPO
from tests.support.servers import answers, free_port
from tests.support.workers import WorkerFactory, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONNECTIONS = 200
DURATION_SECONDS = 60


def test_gunicorn_serves_200_connections_for_a_minute_while_ingest_runs(
    workers: WorkerFactory, pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    csv_path = tmp_path / "load.csv"
    generate_csv(csv_path, hosts=25, gpus_per_host=8, metrics=10, timesteps=200)
    workers.streamer()
    workers.collector()
    importer = start_import(csv_path, pipeline_env, tmp_path / "import.log", "--batch-size", "2000")
    wait_for(lambda: Gpu.objects.filter(sample_count__gt=0).exists(), 120, what="first rows")
    uuid = Gpu.objects.filter(sample_count__gt=0).values_list("uuid", flat=True).first()

    port = free_port()
    server = workers.start_process(
        "gunicorn",
        [sys.executable, "-m", "gunicorn", "telemetry_project.wsgi", "--bind", f"127.0.0.1:{port}",
         "--worker-class", "gthread", "--workers", "2", "--threads", "8", "--backlog", "2048"],
        extra_env={"DJANGO_ALLOWED_HOSTS": "127.0.0.1"},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{base}/health"), 60, what="gunicorn")
    script = tmp_path / "rotate.lua"
    # Rotates over the endpoints an operator's dashboard polls; every one must answer 200.
    script.write_text(ROTATE_SCRIPT)
    paths = [
        "/api/v1/stats",
        "/api/v1/gpus?limit=100",
        f"/api/v1/gpus/{uuid}/telemetry?limit=100",
        f"/api/v1/gpus/{uuid}/latest",
        "/api/v1/hosts",
        "/health",
    ]

    wrk = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{DURATION_SECONDS}s", "--latency", "--timeout",
         "10s", "-s", str(script), base, "--", *paths],
        capture_output=True, text=True, timeout=DURATION_SECONDS + 60, check=True, cwd=REPO,
    )  # fmt: skip
    output = wrk.stdout
    load = parse_wrk("mix", output)

    print(
        f"wrk {CONNECTIONS} connections x {DURATION_SECONDS}s against gunicorn while ingesting: "
        f"p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms\n" + output
    )
    assert "Socket errors" not in output, output
    assert "Non-2xx or 3xx responses" not in output, output
    assert re.search(r"(\d+) requests in", output), output
    assert server.process.poll() is None
    finish_import(importer, tmp_path / "import.log")
