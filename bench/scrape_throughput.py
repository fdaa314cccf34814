"""``make bench-scrape`` (``manage.py bench_scrape``): how many exporters the pipeline scrapes
with no missed slot, on this machine.

A local HTTP server (threads of this process) serves one dcgm-exporter page per target, the
scale target's size (8 GPUs x 40 fields, every label dcgm-exporter 3.x prints, as
``bench.exposition_parsing`` builds them), its values changing at every scrape. Real beat,
streamer and collector processes (solo pool, as deployed) run on PostgreSQL and Redis in a
database and a Redis database of their own (``telemetry_bench_scrape``, Redis db 10). Then, for
each step of ``--targets`` (50, 100, 150, 200, 300, 400 by default), that many scrape sources are
registered at ``--interval`` seconds and, after one slot to warm up, ``--slots`` slots are
watched: a slot of a target is *missed* unless its chunk is in the ledger once the slot is
over and the pipeline has drained, and the collect queue's depth is sampled throughout. Every
committed slot must hold exactly the page's 320 samples. The steps stop at the first with a
missed slot.

Prints each step and, last, ``bench-scrape: targets=... samples_per_s=... missed_slots=0
slots=... interval=... max_collect_depth=...`` for the largest step with no missed slot (exit 1
when even the first step missed one). Figures: docs/measurements.md, "Scrape sources".
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Final

import redis
from django.conf import settings
from django.core.management.base import CommandError, OutputWrapper
from django.db.models import Sum

from bench.exposition_parsing import FIELDS, GPUS, label_sets
from bench.pipeline_throughput import (
    BenchDatabase,
    ThroughputBenchmark,
    ThroughputOptions,
    prepare_database,
)
from bench.sample_database import connected_to
from bench.workers import (
    start_beat,
    start_worker,
    stop_beat_and_workers,
    wait_until_ready,
    worker_logs,
)
from ingest.models import IngestedChunk, OutstandingChunk, StreamSource, scrape_chunk_id
from ingest.schedule import ensure_slot_dispatch
from telemetry_project.routing import COLLECT_QUEUE, STREAM_QUEUE

DATABASE: Final = BenchDatabase("telemetry_bench_scrape", "redis://127.0.0.1:6379/10")
SAMPLES_PER_PAGE: Final = GPUS * FIELDS
DEPTH_POLL_SECONDS: Final = 0.2


@dataclass(frozen=True)
class ScrapeOptions:
    """What the benchmark measures; the defaults are ``make bench-scrape``'s."""

    targets: str = "50,100,150,200,300,400"  # the steps, in order
    slots: int = 3  # slots watched per step
    interval: int = 10
    streamers: int = 2
    collectors: int = 2

    def steps(self) -> list[int]:
        try:
            steps = [int(step) for step in self.targets.split(",")]
        except ValueError:
            raise CommandError(f"--targets {self.targets!r}: comma-separated numbers") from None
        if not steps or min(steps) < 1:
            raise CommandError("--targets: at least one step, each at least 1")
        for name in ("slots", "interval", "streamers", "collectors"):
            if getattr(self, name) < 1:
                raise CommandError(f"--{name} must be at least 1")
        return steps


@dataclass(frozen=True)
class StepResult:
    targets: int
    expected: int  # target slots watched
    committed: int
    samples: int
    seconds: float
    max_collect_depth: int
    throttled_ticks: int

    @property
    def missed(self) -> int:
        return self.expected - self.committed

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds


def exporter_page(target: int, scrape: int) -> bytes:
    """The ``scrape``-th page of ``target``: every value moves from one scrape to the next."""
    lines = []
    for field in range(FIELDS):
        name = f"DCGM_FI_DEV_BENCH_FIELD_{field:02d}"
        lines += [f"# HELP {name} A field of the benchmark (in W).", f"# TYPE {name} gauge"]
        for gpu, labels in enumerate(label_sets(target)):
            value = (target * 31 + field * 7 + gpu * 3 + scrape * 11) % 700
            lines.append(f"{name}{{{labels}}} {value}.5")
    return ("\n".join(lines) + "\n").encode()


class _PageHandler(BaseHTTPRequestHandler):
    server: _PageServer

    def do_GET(self) -> None:
        target = int(self.path.rpartition("/")[2])
        with self.server.lock:
            self.server.scrapes[target] = scrape = self.server.scrapes.get(target, 0) + 1
        body = exporter_page(target, scrape)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _PageServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a slot's scrapes all start within a second

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _PageHandler)
        self.lock = threading.Lock()
        self.scrapes: dict[int, int] = {}

    def url(self, target: int) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/target/{target}"


class ScrapeBenchmark:
    def __init__(self, options: ScrapeOptions, stdout: OutputWrapper) -> None:
        self.options = options
        self.steps = options.steps()
        self.stdout = stdout

    def run(self) -> None:
        """Prepare the database, then measure in a child process whose settings point there."""
        env = ThroughputBenchmark(ThroughputOptions(), self.stdout, DATABASE).child_environment()
        env["SOURCE_URL_ALLOW"] = "127.0.0.0/8"  # the pages are served on this machine
        if connected_to(DATABASE.name):
            self._measure(env)
            return
        prepare_database(DATABASE, env, self.stdout)
        options = self.options
        arguments = [
            sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "bench_scrape",
            f"--targets={options.targets}", f"--slots={options.slots}",
            f"--interval={options.interval}", f"--streamers={options.streamers}",
            f"--collectors={options.collectors}",
        ]  # fmt: skip
        self.stdout.flush()
        status = subprocess.call(arguments, env=env)  # noqa: S603  (this very command)
        if status:
            raise SystemExit(status)  # the child said why; its summary is the last line

    def _measure(self, env: dict[str, str]) -> None:
        broker = redis.Redis.from_url(DATABASE.redis_url)
        broker.flushdb()
        StreamSource.objects.all().delete()
        server = _PageServer()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
        results: list[StepResult] = []
        with tempfile.TemporaryDirectory(prefix="bench-scrape-", dir=settings.VAR_DIR) as folder:
            work = Path(folder)
            workers = [
                start_worker("streamer", STREAM_QUEUE, index, 1, env, work)
                for index in range(self.options.streamers)
            ] + [
                start_worker("collector", COLLECT_QUEUE, index, 1, env, work)
                for index in range(self.options.collectors)
            ]
            beat: subprocess.Popen[bytes] | None = None
            try:
                wait_until_ready(workers)
                beat = start_beat(env, work)
                self.stdout.write(
                    f"{os.cpu_count()} cores; {self.options.streamers} streamers, "
                    f"{self.options.collectors} collectors; pages of {SAMPLES_PER_PAGE} samples "
                    f"({len(exporter_page(0, 1)) / 1024:.0f} KiB) every {self.options.interval} s"
                )
                for targets in self.steps:
                    result = self._step(targets, server, broker)
                    if beat.poll() is not None:
                        beat_log = (work / "beat.log").read_text(errors="replace")[-3000:]
                        raise CommandError(f"beat stopped:\n{beat_log}")
                    results.append(result)
                    self.stdout.write(
                        f"{targets} targets: {result.committed}/{result.expected} slots "
                        f"committed, {result.samples_per_second:,.0f} samples/s, max collect "
                        f"queue {result.max_collect_depth}, throttled ticks "
                        f"{result.throttled_ticks}"
                    )
                    self.stdout.flush()
                    if result.missed:
                        break
            except CommandError as error:
                raise CommandError(f"{error}{worker_logs(workers)}") from None
            finally:
                stop_beat_and_workers(beat, workers)
                server.shutdown()
                StreamSource.objects.all().delete()
                broker.flushdb()
        self._report(results)

    def _step(self, targets: int, server: _PageServer, broker: redis.Redis) -> StepResult:
        interval = self.options.interval
        StreamSource.objects.all().delete()  # the last step's sources, cursors and chunks
        sources = StreamSource.objects.bulk_create(
            StreamSource(
                name=f"bench-target-{target:04d}",
                kind=StreamSource.Kind.SCRAPE,
                location=server.url(target),
                interval_seconds=interval,
            )
            for target in range(targets)
        )
        ensure_slot_dispatch()
        # One whole slot to warm up (connections, the first GPUs and metrics), then the watch.
        first = (int(time.time()) // interval + 2) * interval
        end = first + self.options.slots * interval
        max_depth = 0
        while time.time() < end:
            max_depth = max(max_depth, int(broker.llen(COLLECT_QUEUE)))
            time.sleep(DEPTH_POLL_SECONDS)
        expected = {
            scrape_chunk_id(source.pk, slot * 1000)
            for source in sources
            for slot in range(first, end, interval)
        }
        deadline = time.monotonic() + 3 * interval
        while time.monotonic() < deadline and not _drained(broker):
            max_depth = max(max_depth, int(broker.llen(COLLECT_QUEUE)))
            time.sleep(DEPTH_POLL_SECONDS)
        committed = IngestedChunk.objects.filter(pk__in=expected)
        rows = committed.aggregate(rows=Sum("rows_committed"))["rows"] or 0
        count = committed.count()
        if rows != count * SAMPLES_PER_PAGE:
            raise CommandError(
                f"{count} slots committed {rows} samples, not {SAMPLES_PER_PAGE} each"
            )
        throttled = StreamSource.objects.aggregate(ticks=Sum("throttled_ticks"))["ticks"] or 0
        seconds = float(end - first)
        return StepResult(targets, len(expected), count, rows, seconds, max_depth, throttled)

    def _report(self, results: list[StepResult]) -> None:
        sustained = [result for result in results if not result.missed]
        best = sustained[-1] if sustained else results[0]
        self.stdout.write(
            f"bench-scrape: targets={best.targets if sustained else 0} "
            f"samples_per_s={best.samples_per_second:.0f} missed_slots={best.missed} "
            f"slots={self.options.slots} interval={self.options.interval} "
            f"max_collect_depth={best.max_collect_depth}"
        )
        if not sustained:
            raise SystemExit(1)


def _drained(broker: redis.Redis) -> bool:
    """Nothing queued, and every recorded slot committed."""
    if broker.llen(COLLECT_QUEUE) or broker.llen(STREAM_QUEUE):
        return False
    recorded = [
        scrape_chunk_id(source_id, start_ms)
        for source_id, start_ms in OutstandingChunk.objects.values_list(
            "cursor__source_id", "start_offset"
        )
    ]
    return IngestedChunk.objects.filter(pk__in=recorded).count() == len(recorded)
