"""A real Prometheus (Debian's 2.42, ``make prometheus-tools``) scrapes a page in
dcgm-exporter's format whose values change every scrape, and remote-writes with a write token.

First to a write-protected view that reads each request as the remote write endpoint does:
what it decoded must be exactly what Prometheus stored, every sample once, with its own
timestamp and the labels Prometheus added; the GPU that vanished leaves one staleness marker
per series, counted and not a sample.

Then to the pipeline itself: ``/api/v1/write`` served by gunicorn, with real collector,
streamer and beat processes. The samples the pipeline stored must equal, series by series,
value and timestamp, those Prometheus holds (its query API, a range selector covering the whole
run): nothing missing, nothing twice. The same holds with the web process SIGKILLed and started
again while Prometheus sends, and with the collectors stopped long enough for the collect queue
to reach its bound and the endpoint to answer 503 (``make test-slow``).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.live_server_helper import LiveServer

from api.models import ApiToken
from ingest import push
from ingest.models import PushChunk, RejectedRow, Sample, Tally
from tests.support.push import start_beat, start_web
from tests.support.servers import free_port
from tests.support.workers import Worker, WorkerFactory, wait_for
from tests.support.write_views import received

pytestmark = [pytest.mark.integration, pytest.mark.urls("tests.support.write_views")]

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
METRICS = ("DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_UTIL")
GPUS = {
    "0": ("GPU-5fd4f087-86f3-7a43-b711-4771313afc50", "00000000:07:00.0"),
    "1": ("GPU-9a1c2b3d-0000-4000-8000-00000000b1e5", "00000000:0F:00.0"),
}
VANISHING_GPU = "1"
SCRAPES_WITH_EVERY_GPU = 3
COMPARED_SAMPLES = 6  # of the steady GPU's temperature

Labels = frozenset[tuple[str, str]]


class ExporterPage:
    """A dcgm-exporter page that changes with every scrape; GPU 1 leaves after the third."""

    def __init__(self) -> None:
        self.scrapes = 0
        self._lock = threading.Lock()

    def render(self) -> bytes:
        with self._lock:
            self.scrapes += 1
            scrape = self.scrapes
        gpus = [g for g in GPUS if g != VANISHING_GPU or scrape <= SCRAPES_WITH_EVERY_GPU]
        lines = []
        for number, metric in enumerate(METRICS):
            lines += [f"# HELP {metric} {metric} as DCGM reports it.", f"# TYPE {metric} gauge"]
            for gpu in gpus:
                uuid, bus = GPUS[gpu]
                labels = (
                    f'gpu="{gpu}",UUID="{uuid}",pci_bus_id="{bus}",device="nvidia{gpu}",'
                    'modelName="NVIDIA H100 80GB HBM3",Hostname="mtv5-dgx1-hgpu-031",'
                    'DCGM_FI_DRIVER_VERSION="535.129.03",container="",namespace="",pod=""'
                )
                lines.append(f"{metric}{{{labels}}} {scrape * 10 + number + int(gpu) / 4}")
        return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def exporter() -> Iterator[str]:
    """The page's address (a server thread on a free port)."""
    page = ExporterPage()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page.render()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@contextmanager
def running_prometheus(folder: Path, exporter: str, write_url: str, key: str) -> Iterator[str]:
    """A Prometheus scraping the exporter every second and remote-writing to ``write_url`` with
    the token ``key``; yields its address."""
    port = free_port()
    config = folder / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [
                    {"job_name": "dcgm", "static_configs": [{"targets": [exporter]}]}
                ],
                "remote_write": [
                    {
                        "url": write_url,
                        "authorization": {"type": "Bearer", "credentials": key},
                        # One shard keeps the order of the write-ahead log, and a short
                        # deadline sends each scrape within a second; a failed batch is sent
                        # again within a second.
                        "queue_config": {
                            "min_shards": 1,
                            "max_shards": 1,
                            "batch_send_deadline": "1s",
                            "min_backoff": "100ms",
                            "max_backoff": "1s",
                        },
                    }
                ],
            }
        )
    )
    log_path = folder / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={folder / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    address = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(address) or process.poll() is not None, 30, what="prometheus")
        assert process.poll() is None, log_path.read_text()
        yield address
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def prometheus(
    tmp_path: Path, exporter: str, live_server: LiveServer, transactional_db: None
) -> Iterator[str]:
    """A Prometheus remote-writing to the write-protected test view of the live server."""
    key = ApiToken.issue("prometheus", can_write=True).new_key
    received.take()
    with running_prometheus(tmp_path, exporter, f"{live_server.url}/write", key) as address:
        yield address


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (a local URL)
        body: bytes = response.read()
    return body


def _ready(address: str) -> bool:
    try:
        fetch(f"{address}/-/ready")  # an error status raises HTTPError, an OSError
    except OSError:
        return False
    return True


def stored_by_prometheus(
    address: str, metric: str, at_ms: int
) -> dict[Labels, list[tuple[int, float]]]:
    """Every sample Prometheus holds of ``metric`` up to ``at_ms``, by series."""
    query = urllib.parse.urlencode({"query": f"{metric}[10m]", "time": f"{at_ms / 1000:.3f}"})
    result = json.loads(fetch(f"{address}/api/v1/query?{query}"))["data"]["result"]
    return {
        frozenset(series["metric"].items() | {("__name__", metric)}): [
            (round(float(stamp) * 1000), float(value)) for stamp, value in series["values"]
        ]
        for series in result
    }


def is_steady(labels: Labels) -> bool:
    """The series the comparison is timed by: the temperature of the GPU that stays."""
    return ("gpu", "0") in labels and ("__name__", METRICS[0]) in labels


def test_what_prometheus_remote_writes_is_decoded_exactly_as_it_stored_it(
    prometheus: str, exporter: str
) -> None:
    decoded: dict[Labels, list[tuple[int, float]]] = defaultdict(list)
    stale_markers = 0

    def steady_samples() -> int:
        nonlocal stale_markers
        for batch in received.take():
            stale_markers += batch.stale_markers
            for series in batch.series:
                assert series.problem == ""
                assert series.too_far_ahead == []
                decoded[frozenset(series.labels.items())].extend(series.samples)
        return max((len(decoded[labels]) for labels in decoded if is_steady(labels)), default=0)

    # A later sample of the same series proves the earlier ones were sent (one shard, in
    # order); by then the vanished GPU's markers, written at scrape 4, were sent too.
    wait_for(lambda: steady_samples() > COMPARED_SAMPLES, 60, what="remote-written scrapes")
    steady = next(labels for labels in decoded if is_steady(labels))
    cutoff = decoded[steady][COMPARED_SAMPLES - 1][0]

    for metric in METRICS:
        stored = stored_by_prometheus(prometheus, metric, cutoff)
        assert len(stored) == len(GPUS), stored.keys()
        for labels, samples in stored.items():
            assert dict(labels)["job"] == "dcgm"
            assert dict(labels)["instance"] == exporter
            assert "container" not in dict(labels)  # Prometheus drops empty labels
            sent = [sample for sample in decoded[labels] if sample[0] <= cutoff]
            assert sent == samples, (metric, dict(labels))
            vanished = ("gpu", VANISHING_GPU) in labels
            assert len(samples) == (SCRAPES_WITH_EVERY_GPU if vanished else COMPARED_SAMPLES)
    assert stale_markers == len(METRICS)  # one per series of the GPU that left


# --- Through the pipeline -------------------------------------------------------------------

RUN_SECONDS = 30
# The comparison covers samples up to this long before the run's end: scraped by then for sure.
SETTLE_SECONDS = 3
# A range selector reaching back before the run started.
WINDOW = "5m"
Samples = dict[tuple[str, str], list[tuple[int, float]]]


@dataclass
class Pipeline:
    """The pipeline's processes: gunicorn serving the API, collector, streamer and beat."""

    workers: WorkerFactory
    port: int
    key: str
    web: Worker
    collectors: list[Worker]

    @property
    def write_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/write"

    def restart_web(self) -> None:
        self.web = start_web(self.workers, self.port)


def start_pipeline(workers: WorkerFactory) -> Pipeline:
    key = ApiToken.issue("prometheus", can_write=True).new_key
    port = free_port()
    web = start_web(workers, port)
    collector = workers.collector()
    workers.streamer()  # runs the re-publisher
    start_beat(workers)
    return Pipeline(workers, port, key, web, [collector])


def prometheus_metric(address: str, name: str) -> float:
    """The value of one of Prometheus's own metrics (its single remote write queue's)."""
    for family in text_string_to_metric_families(fetch(f"{address}/metrics").decode()):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"Prometheus has no metric {name}")


def held_by_prometheus(address: str, until_s: float) -> Samples:
    """Every DCGM sample Prometheus holds up to ``until_s``, by (UUID, metric)."""
    query = urllib.parse.urlencode(
        {"query": f'{{__name__=~"DCGM_FI_.*"}}[{WINDOW}]', "time": f"{until_s:.3f}"}
    )
    result = json.loads(fetch(f"{address}/api/v1/query?{query}"))["data"]["result"]
    return {
        (series["metric"]["UUID"], series["metric"]["__name__"]): [
            (round(float(stamp) * 1000), float(value)) for stamp, value in series["values"]
        ]
        for series in result
    }


def stored_by_pipeline(until_s: float) -> Samples:
    """Every sample the pipeline stored up to ``until_s``, by (UUID, metric), in time order."""
    stored: Samples = defaultdict(list)
    rows = (
        Sample.objects.filter(timestamp__lte=datetime.fromtimestamp(until_s, UTC))
        .order_by("timestamp", "id")
        .values_list("gpu__uuid", "metric__name", "timestamp", "value")
    )
    for uuid, metric, timestamp, value in rows:
        stored[(uuid, metric)].append((round(timestamp.timestamp() * 1000), value))
    return dict(stored)


def compare_after_the_run(prometheus: str, started: float) -> Samples:
    """Wait until Prometheus has sent, and the pipeline committed, everything up to a moment
    of the run; return what Prometheus holds up to it, checked equal to what was stored."""
    until = started + RUN_SECONDS - SETTLE_SECONDS
    highest_sent = "prometheus_remote_storage_queue_highest_sent_timestamp_seconds"
    wait_for(lambda: prometheus_metric(prometheus, highest_sent) >= until, 120, what="sending")
    # Every part holding a sample up to `until` was answered 2xx by now, so it is stored;
    # once none received before now waits, all of them are committed.
    sent_by = timezone.now()
    wait_for(
        lambda: not PushChunk.objects.filter(received_at__lte=sent_by).exists(),
        120,
        what="the parts received to be committed",
    )
    held = held_by_prometheus(prometheus, until)
    assert len(held) == len(GPUS) * len(METRICS), held.keys()
    assert all(len(samples) >= SCRAPES_WITH_EVERY_GPU for samples in held.values())
    stored = stored_by_pipeline(until)
    for series, samples in held.items():
        assert stored.get(series) == samples, series
    assert stored.keys() == held.keys()
    assert not RejectedRow.objects.exists()
    # One marker per series of the GPU that left, whatever the retries.
    assert Tally.totals()[push.STALE_MARKERS] == len(METRICS)
    return held


@pytest.fixture
def pipeline(workers: WorkerFactory, pipeline_env: dict[str, str]) -> Pipeline:
    return start_pipeline(workers)


def test_the_pipeline_stores_exactly_the_samples_prometheus_holds(
    tmp_path: Path, exporter: str, pipeline: Pipeline
) -> None:
    with running_prometheus(tmp_path, exporter, pipeline.write_url, pipeline.key) as prometheus:
        started = time.time()
        time.sleep(RUN_SECONDS)
        held = compare_after_the_run(prometheus, started)
    steady = held[(GPUS["0"][0], METRICS[0])]
    assert len(steady) >= RUN_SECONDS // 2  # one a second, from Prometheus's first scrape


@pytest.mark.slow
def test_a_web_process_sigkilled_and_restarted_while_prometheus_sends_loses_and_doubles_nothing(
    tmp_path: Path, exporter: str, pipeline: Pipeline
) -> None:
    with running_prometheus(tmp_path, exporter, pipeline.write_url, pipeline.key) as prometheus:
        started = time.time()
        retried = "prometheus_remote_storage_samples_retried_total"
        time.sleep(RUN_SECONDS / 3)
        pipeline.web.kill()
        wait_for(lambda: prometheus_metric(prometheus, retried) > 0, 30, what="a failed send")
        time.sleep(3)
        pipeline.restart_web()
        time.sleep(max(0.0, started + RUN_SECONDS - time.time()))
        compare_after_the_run(prometheus, started)


@pytest.mark.slow
def test_collectors_stopped_until_writes_are_refused_with_503_lose_and_double_nothing(
    tmp_path: Path, exporter: str, workers: WorkerFactory, pipeline_env: dict[str, str]
) -> None:
    pipeline_env["COLLECT_QUEUE_MAX_DEPTH"] = "2"
    pipeline = start_pipeline(workers)
    with running_prometheus(tmp_path, exporter, pipeline.write_url, pipeline.key) as prometheus:
        started = time.time()
        time.sleep(RUN_SECONDS / 4)
        for collector in pipeline.collectors:
            collector.terminate()
        wait_for(
            lambda: "Service Unavailable: /api/v1/write" in pipeline.web.output(),
            60,
            what="the collect queue to fill and writes to be refused",
        )
        time.sleep(5)  # Prometheus keeps retrying the refused batch
        workers.collector()
        time.sleep(max(0.0, started + RUN_SECONDS - time.time()))
        compare_after_the_run(prometheus, started)
