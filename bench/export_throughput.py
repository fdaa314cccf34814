"""``make bench-export`` (``manage.py bench_export``): rows/s and peak memory of a CSV export.

The database is a sample database of its own (``bench.sample_database``:
``telemetry_bench_export`` by default, 10,000,000 samples generated and committed through the
collector). A real gunicorn (``bench.web_server``, the web role's configuration and its 60 s
worker timeout) serves ``GET /api/v1/telemetry.csv`` over the whole range to a client in this
process, which reads the stream as fast as it comes and counts its lines; a thread samples
the resident memory of the gunicorn worker meanwhile. The last line is
``bench-export: rows=... rows_per_s=... peak_rss_mb=...``; the run fails only when the file
does not hold every sample. Figures measured so far: docs/measurements.md.

``export_run`` is also what the default suite's memory test runs, on a smaller table.
"""

from __future__ import annotations

import http.client
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final
from urllib.parse import urlencode

import psutil
from django.db import connections
from django.db.models import Max, Min

from bench.measurement import Measurement
from bench.sample_database import SampleDatabase, rfc3339
from bench.web_server import WebServer, gunicorn
from ingest.models import Gpu

READ_BYTES: Final = 1 << 20
RSS_SAMPLE_SECONDS: Final = 0.02
MEGABYTE: Final = 1 << 20


@dataclass(frozen=True)
class ExportRun:
    """One export read whole: its size, its time, and the web worker's memory around it."""

    rows: int
    bytes: int
    seconds: float
    baseline_rss: int  # the worker's RSS just before the export, after a warm-up request
    peak_rss: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def growth_mb(self) -> float:
        return (self.peak_rss - self.baseline_rss) / MEGABYTE


class _PeakRss(threading.Thread):
    """The largest resident set of the server's workers until stopped."""

    def __init__(self, server: WebServer) -> None:
        super().__init__(daemon=True, name="export-rss")
        self.server = server
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, worker_rss(self.server))
            self.done.wait(RSS_SAMPLE_SECONDS)

    def stop(self) -> int:
        self.done.set()
        self.join()
        return max(self.peak, worker_rss(self.server))


def worker_rss(server: WebServer) -> int:
    """The largest resident set among the server's workers now."""
    sizes = []
    for pid in server.worker_pids():
        try:
            sizes.append(psutil.Process(pid).memory_info().rss)
        except psutil.NoSuchProcess:
            continue
    return max(sizes, default=0)


def export_run(server: WebServer, path: str) -> ExportRun:
    """GET ``path`` from ``server``, read whole as fast as it comes; what it took."""
    # The first request of a worker imports and connects: not the export's memory.
    warm_up = http.client.HTTPConnection(server.host, server.port, timeout=60)
    warm_up.request("GET", "/api/v1/metrics")
    warm_up.getresponse().read()
    warm_up.close()
    baseline = worker_rss(server)
    sampler = _PeakRss(server)
    sampler.start()
    connection = http.client.HTTPConnection(server.host, server.port, timeout=600)
    started = time.monotonic()
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {response.read()[:500]!r}")
        lines = size = 0
        while piece := response.read(READ_BYTES):
            lines += piece.count(b"\n")
            size += len(piece)
        seconds = time.monotonic() - started
    finally:
        connection.close()
        peak = sampler.stop()
    return ExportRun(lines - 1, size, seconds, baseline, peak)  # less the header line


def measure(database: SampleDatabase) -> tuple[str, list[str]]:
    rows = database.prepare()
    span = Gpu.objects.aggregate(first=Min("first_seen"), last=Max("last_seen"))
    query = urlencode(
        {
            "start_time": rfc3339(span["first"]),
            "end_time": rfc3339(span["last"] + timedelta(seconds=1)),
        }
    )
    connections.close_all()  # the server's worker reads the table, not this process
    database.say(f"\n=== GET /api/v1/telemetry.csv?{query} from gunicorn (gthread, --timeout 60)")
    with (
        tempfile.TemporaryDirectory(prefix="bench-export-") as folder,
        gunicorn(dict(os.environ), Path(folder) / "gunicorn.log") as server,
    ):
        run = export_run(server, f"/api/v1/telemetry.csv?{query}")
    database.say(
        f"  {run.rows:,} rows, {run.bytes / MEGABYTE:,.0f} MB in {run.seconds:.1f}s: "
        f"{run.rows_per_s:,.0f} rows/s, {run.bytes / MEGABYTE / run.seconds:,.1f} MB/s; "
        f"worker RSS {run.baseline_rss / MEGABYTE:.0f} MB before, "
        f"{run.peak_rss / MEGABYTE:.0f} MB at its peak (+{run.growth_mb:.1f} MB)"
    )
    problems = [] if run.rows == rows else [f"the file holds {run.rows:,} of {rows:,} samples"]
    summary = (
        f"bench-export: rows={run.rows} rows_per_s={run.rows_per_s:.0f} "
        f"peak_rss_mb={run.peak_rss / MEGABYTE:.1f}"
    )
    return summary, problems


MEASUREMENT: Final = Measurement(
    rows=10_000_000, database="telemetry_bench_export", requests=1, measure=measure
)
