"""A local dcgm-exporter stand-in for scrape tests: real HTTP on a free port, pages in the
format exporters print, values changing at every scrape, and targets that fail in the ways
real ones do.

Paths: ``/metrics`` a text page (dcgm-exporter 2.x style: a space after each comma, empty
workload labels, a MIG instance beside its parent, a blank sentinel on the memory
temperature, a ``go_*`` family), ``/openmetrics`` the same as OpenMetrics (``_total``
counters, ``# EOF``), ``/openmetrics-as-text`` that page labelled ``text/plain``, ``/slow``
answers after ``HANG_SECONDS``, ``/broken`` answers 500, ``/huge`` streams 50 MB, ``/status``
answers an HTML page.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

from tests.support.exporter import NOT_SUPPORTED

# The GPUs of the text page, and those of the OpenMetrics page (another host).
TEXT_GPUS: Final = (
    "GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52",
    "GPU-1c7e2a90-5b3d-4f86-a1e2-7d09c4b85f31",
)
OPENMETRICS_GPUS: Final = (
    "GPU-9e2d4b71-0c3a-4e58-b6f1-2a8c7d05e493",
    "GPU-35f0a8c2-7d1e-4b96-8a03-c4e6f2b91d57",
)
MIG_INSTANCE: Final = 13
HANG_SECONDS: Final = 30.0
HUGE_BYTES: Final = 50 << 20
SENTINEL: Final = "9223372036854775794"
# Per page: GPU utilisation of two GPUs and the MIG instance, power of the two GPUs, memory
# temperature of the second GPU, and the energy counter of both. The first GPU's memory
# temperature is the sentinel (rejected), go_goroutines is another family (skipped).
VALID_SERIES: Final = 8
REJECTED_REASON: Final = NOT_SUPPORTED

_GPU_LABELS = (
    '{{gpu="{gpu}", UUID="{uuid}", pci_bus_id="00000000:{bus}:00.0", device="nvidia{gpu}", '
    'modelName="NVIDIA A100-SXM4-40GB", Hostname="{host}", '
    'DCGM_FI_DRIVER_VERSION="535.129.03"{mig}, container="", namespace="", pod=""}}'
)


def _labels(gpu: int, openmetrics: bool, mig: bool = False) -> str:
    uuid = (OPENMETRICS_GPUS if openmetrics else TEXT_GPUS)[gpu]
    host = "scrape-host-b" if openmetrics else "scrape-host-a"
    extra = f', GPU_I_PROFILE="1g.5gb", GPU_I_ID="{MIG_INSTANCE}"' if mig else ""
    return _GPU_LABELS.format(gpu=gpu, uuid=uuid, bus=f"{7 + 8 * gpu:02X}", host=host, mig=extra)


def utilisation(scrape: int, gpu: int, mig: bool = False) -> int:
    """The GPU utilisation the ``scrape``-th page (from 1) reports: a new value each scrape."""
    return (scrape * 7 + gpu * 31 + (50 if mig else 0)) % 101


def exporter_page(scrape: int, *, openmetrics: bool = False) -> bytes:
    counter = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
    counter_sample = f"{counter}_total" if openmetrics else counter
    lines = [
        "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).",
        "# TYPE DCGM_FI_DEV_GPU_UTIL gauge",
        f"DCGM_FI_DEV_GPU_UTIL{_labels(0, openmetrics)} {utilisation(scrape, 0)}",
        f"DCGM_FI_DEV_GPU_UTIL{_labels(0, openmetrics, mig=True)} "
        f"{utilisation(scrape, 0, mig=True)}",
        f"DCGM_FI_DEV_GPU_UTIL{_labels(1, openmetrics)} {utilisation(scrape, 1)}",
        "# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).",
        "# TYPE DCGM_FI_DEV_POWER_USAGE gauge",
        f"DCGM_FI_DEV_POWER_USAGE{_labels(0, openmetrics)} {100 + scrape}.5",
        f"DCGM_FI_DEV_POWER_USAGE{_labels(1, openmetrics)} {60 + scrape}.25",
        "# HELP DCGM_FI_DEV_MEMORY_TEMP Memory temperature (in C).",
        "# TYPE DCGM_FI_DEV_MEMORY_TEMP gauge",
        f"DCGM_FI_DEV_MEMORY_TEMP{_labels(0, openmetrics)} {SENTINEL}",
        f"DCGM_FI_DEV_MEMORY_TEMP{_labels(1, openmetrics)} {30 + scrape % 5}",
        f"# HELP {counter} Total energy consumption since boot (in mJ).",
        f"# TYPE {counter} counter",
        f"{counter_sample}{_labels(0, openmetrics)} {1_000_000 + scrape * 4000}",
        f"{counter_sample}{_labels(1, openmetrics)} {2_000_000 + scrape * 3000}",
        "# HELP go_goroutines Number of goroutines that currently exist.",
        "# TYPE go_goroutines gauge",
        f"go_goroutines {19 + scrape % 3}",
    ]
    if openmetrics:
        lines.append("# EOF")
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Exporter:
    """The running server: its base URL and how many requests each path has had."""

    url: str
    requests: Counter[str] = field(default_factory=Counter)
    accepted: set[str] = field(default_factory=set)  # the Accept headers scrapers sent


class _Handler(BaseHTTPRequestHandler):
    server: _ExporterServer

    def do_GET(self) -> None:
        exporter = self.server.exporter
        with self.server.lock:
            exporter.requests[self.path] += 1
            exporter.accepted.add(self.headers.get("Accept", ""))
            scrape = exporter.requests[self.path]
        if self.path in ("/metrics", "/openmetrics"):
            openmetrics = self.path == "/openmetrics"
            content_type = (
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
                if openmetrics
                else "text/plain; version=0.0.4; charset=utf-8"
            )
            self._answer(200, exporter_page(scrape, openmetrics=openmetrics), content_type)
        elif self.path == "/openmetrics-as-text":
            self._answer(200, exporter_page(scrape, openmetrics=True), "text/plain")
        elif self.path == "/status":
            self._answer(200, b"<html><body>exporter</body></html>", "text/html")
        elif self.path == "/slow":
            time.sleep(HANG_SECONDS)  # the scraper gave up long ago: nothing to answer
        elif self.path == "/broken":
            self._answer(500, b"collector failed\n", "text/plain")
        elif self.path == "/huge":
            self._stream_huge()
        else:
            self._answer(404, b"not found\n", "text/plain")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream_huge(self) -> None:
        # No Content-Length: the cap must hold on the bytes received, not on an announcement.
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        line = b"go_memstats_heap_bytes 1\n" * 4096
        try:
            for _ in range(HUGE_BYTES // len(line)):
                self.wfile.write(line)
        except OSError:
            pass  # the scraper hung up at its cap, as it should

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ExporterServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, exporter: Exporter) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.exporter = exporter
        self.lock = threading.Lock()


@contextmanager
def running_exporter() -> Iterator[Exporter]:
    """An exporter on 127.0.0.1 at a free port, serving from a thread until the block ends."""
    exporter = Exporter("")
    server = _ExporterServer(exporter)
    exporter.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield exporter
    finally:
        server.shutdown()
        server.server_close()
