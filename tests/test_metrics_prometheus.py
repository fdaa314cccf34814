"""/metrics served by gunicorn and scraped by a real Prometheus.

gunicorn runs with the project's config module (``telemetry_project.gunicorn_config``): two
worker processes in prometheus_client's multiprocess mode, against the test database, with
tokens required. Debian's Prometheus (``make prometheus-tools``) is started on a free port
with its own configuration and data folder under the test's tmp_path, scrapes every second
with a bearer token, and is stopped afterwards; what it stored is read back through its HTTP
API and compared with the database.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from api.models import ApiToken
from tests.support.pipeline import finish_import, generate_csv, sample_count, start_import
from tests.support.reference import REPO
from tests.support.servers import answers, free_port
from tests.support.workers import Worker, WorkerFactory, wait_for

pytestmark = pytest.mark.integration

STATS_ROUTE = {"method": "GET", "route": "api/v1/stats", "status": "200"}


def start_gunicorn(
    workers: WorkerFactory, port: int, extra_env: dict[str, str] | None = None
) -> Worker:
    server = workers.start_process(
        "gunicorn",
        [sys.executable, "-m", "gunicorn", "telemetry_project.wsgi:application",
         "--config", "python:telemetry_project.gunicorn_config",
         "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        extra_env={"DJANGO_ALLOWED_HOSTS": "127.0.0.1", **(extra_env or {})},
    )  # fmt: skip
    wait_for(lambda: answers(f"http://127.0.0.1:{port}/health"), 60, what="gunicorn")
    return server


def get(url: str, token: str = "") -> str:
    request = urllib.request.Request(url)  # noqa: S310 (a local URL)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 (a local URL)
        return str(reply.read().decode())


def requests_counted(page: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == "telemetry_http_requests_total" and sample.labels == labels:
                return float(sample.value)
    return 0.0


def single_value(prometheus: str, promql: str) -> float | None:
    """The value of a Prometheus instant query that returns one series, else None."""
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    body = json.loads(get(url))
    assert body["status"] == "success", body
    result = body["data"]["result"]
    if len(result) != 1:
        return None
    _, number = result[0]["value"]  # [unix time, "value"]
    return float(number)


def test_prometheus_scrapes_metrics_and_its_committed_rows_equal_the_database(
    workers: WorkerFactory, pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: run `make prometheus-tools`")
    csv_path = tmp_path / "fleet.csv"
    rows = generate_csv(csv_path, hosts=4, gpus_per_host=8, metrics=10, timesteps=10)
    workers.streamer()
    workers.collector()
    log = tmp_path / "import.log"
    finish_import(start_import(csv_path, pipeline_env, log), log)
    assert sample_count() == rows
    token = ApiToken.issue("prometheus", can_write=False).new_key

    port = free_port()
    # No PROMETHEUS_MULTIPROC_DIR: the config module makes one under TMPDIR, and removes it.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    server = start_gunicorn(workers, port, {"API_REQUIRE_TOKEN": "1", "TMPDIR": str(scratch)})
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": "pipeline",
                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                "authorization": {"type": "Bearer", "credentials": token},
            }
        ],
    }
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    prometheus_port = free_port()
    prometheus = f"http://127.0.0.1:{prometheus_port}"
    workers.start_process(
        "prometheus",
        [binary, f"--config.file={config_file}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}"],
    )  # fmt: skip
    wait_for(lambda: answers(f"{prometheus}/-/ready"), 60, what="Prometheus to be ready")

    wait_for(
        lambda: single_value(prometheus, 'up{job="pipeline"}') == 1,
        60,
        what="Prometheus to scrape /metrics with the token",
    )
    committed = 'telemetry_rows_committed_total{job="pipeline",source="import"}'
    wait_for(lambda: single_value(prometheus, committed) is not None, 30, what="the series")
    assert single_value(prometheus, committed) == sample_count() == rows
    # A scrape is counted once answered, so the next one carries it.
    scrapes = 'telemetry_http_requests_total{route="metrics",method="GET",status="200"}'
    wait_for(lambda: (single_value(prometheus, scrapes) or 0) >= 1, 30, what="scrapes counted")

    server.terminate()
    assert list(scratch.iterdir()) == [], "the multiprocess directory is removed on exit"


def test_request_counts_are_summed_over_gunicorn_workers_alive_and_replaced(
    workers: WorkerFactory, pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    # A previous server's values, as a restarted container finds them in its /tmp.
    subprocess.run(
        [sys.executable, "-c", "from api.request_metrics import REQUESTS; "
         "REQUESTS.labels('GET', 'api/v1/stats', '200').inc(1000)"],
        cwd=REPO, env={**pipeline_env, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}, check=True,
    )  # fmt: skip
    assert list(multiproc.glob("counter_*.db"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_gunicorn(workers, port, {"PROMETHEUS_MULTIPROC_DIR": str(multiproc)})
    for _ in range(20):
        get(f"{base}/api/v1/stats")

    # SIGKILL a worker that served requests: gunicorn starts another in its place.
    master = psutil.Process(server.process.pid)
    served = {int(path.stem.split("_")[-1]) for path in multiproc.glob("counter_*.db")}
    victim = next(child for child in master.children() if child.pid in served)
    victim.send_signal(signal.SIGKILL)

    def replaced() -> bool:
        pids = [child.pid for child in master.children()]
        return len(pids) == 2 and victim.pid not in pids

    wait_for(replaced, 60, what="gunicorn to replace the worker")

    for _ in range(4):  # whichever worker answers, the sum is the same
        assert requests_counted(get(f"{base}/metrics"), STATS_ROUTE) == 20
