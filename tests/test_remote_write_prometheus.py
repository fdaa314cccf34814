"""A real Prometheus (Debian's 2.42, ``make prometheus-tools``) scrapes a page in
dcgm-exporter's format whose values change every scrape, and remote-writes to a
write-protected view that reads each request as the remote write endpoint does. What the view
decoded must be exactly what Prometheus stored: every sample, once, with its own timestamp
and the labels Prometheus added; the GPU that vanished leaves one staleness marker per
series, counted and not a sample.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pytest_django.live_server_helper import LiveServer

from api.models import ApiToken
from tests.support.fault_servers import free_port
from tests.support.workers import wait_for
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


@pytest.fixture
def prometheus(
    tmp_path: Path, exporter: str, live_server: LiveServer, transactional_db: None
) -> Iterator[str]:
    """A Prometheus scraping the exporter every second and remote-writing to the live server
    with a write token; returns its address."""
    key = ApiToken.issue("prometheus", can_write=True).new_key
    received.take()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [
                    {"job_name": "dcgm", "static_configs": [{"targets": [exporter]}]}
                ],
                "remote_write": [
                    {
                        "url": f"{live_server.url}/write",
                        "authorization": {"type": "Bearer", "credentials": key},
                        # One shard keeps the order of the write-ahead log, and a short
                        # deadline sends each scrape within a second.
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
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    address = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(address) or process.poll() is not None, 30, what="prometheus")
        assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
        yield address
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


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
