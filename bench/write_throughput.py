"""``make bench-write`` (``manage.py bench_write``): how fast ``POST /api/v1/write`` takes
Prometheus batches and the pipeline commits them, beside ``import_csv`` of the same samples in
the same run.

Generates ``samples`` DCGM samples with the project's generator and, from the same rows, the
remote write requests a Prometheus sends: ``batch`` samples each (Prometheus sends 500 to
2,000), the series of a batch grouped, the ``WriteRequest`` built with the generated protobuf
module and compressed with snappy. Then, ``runs`` times, on emptied tables:

- write: gunicorn (``bench.web_server``: the web role's configuration, one worker per core)
  serving the API, real collector workers (solo pool), ``senders`` client threads posting
  the requests with a write token, as a Prometheus's shards do (a 503 is sent again after a
  short pause, as Prometheus retries it), timed from the first request to the last commit in
  the ledger;
- import: ``import_csv`` of the generated file through a streamer and as many collectors,
  measured exactly as ``make bench`` measures its pipeline (``bench.pipeline_throughput``).

Each run checks that exactly ``samples`` samples were stored, and the CPU every role used is
sampled. Prints each run, the medians, the CPU per sample by role and, last,
``bench-write: samples_per_s=... ratio_to_import=... samples=... batch=...``. Works in a
database and a Redis database of its own (``telemetry_bench_write``, Redis db 9), created,
migrated and emptied here. Figures: README, "Push throughput".
"""

from __future__ import annotations

import csv
import http.client
import os
import queue
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import cramjam
import psycopg2  # type: ignore[import-untyped]
import redis
from django.conf import settings
from django.core.management.base import CommandError, OutputWrapper

from api.models import hash_key
from bench import web_server
from bench.dcgm_generator import GeneratorSpec, write_dcgm_csv
from bench.pipeline_throughput import (
    BenchDatabase,
    ThroughputBenchmark,
    ThroughputOptions,
    prepare_database,
    truncate_ingest_tables,
)
from bench.process_usage import ProcessUsage, UsageSampler
from bench.workers import Worker, start_worker, wait_until_ready, worker_logs
from ingest.dcgm import parse_labels
from ingest.remote_write_pb2 import WriteRequest
from telemetry_project.routing import COLLECT_QUEUE

DATABASE: Final = BenchDatabase("telemetry_bench_write", "redis://127.0.0.1:6379/9")
TOKEN_KEY: Final = "bench-write-token-" + "w" * 32
RETRY_PAUSE_SECONDS: Final = 0.05
COMMIT_TIMEOUT_SECONDS: Final = 600.0
CPU_ROLES: Final = ("web", "streamer", "collector", "importer", "postgres", "redis")


@dataclass(frozen=True)
class WriteOptions:
    """What one benchmark measures; the defaults are ``make bench-write``'s."""

    samples: int = 300_000
    batch: int = 2000  # samples per request
    senders: int = 2  # concurrent requests, like Prometheus's shards
    collectors: int = 3
    runs: int = 3

    def check(self) -> None:
        for name in ("samples", "batch", "senders", "collectors", "runs"):
            if getattr(self, name) < 1:
                raise CommandError(f"--{name} must be at least 1")


@dataclass(frozen=True)
class Timed:
    samples: int
    seconds: float
    retries: int = 0  # requests answered 503 and sent again

    @property
    def per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


def write_requests(csv_path: Path, batch: int) -> Iterator[bytes]:
    """The file's rows as remote write bodies of ``batch`` samples, series grouped; a row's
    ``labels_raw`` holds the label set Prometheus would have sent for it."""
    with csv_path.open(newline="") as source:
        rows = csv.DictReader(source)
        while True:
            request = WriteRequest()
            series: dict[str, Any] = {}
            taken = 0
            for row in rows:
                timeseries = series.get(row["labels_raw"])
                if timeseries is None:
                    timeseries = series[row["labels_raw"]] = request.timeseries.add()
                    for name, value in sorted(parse_labels(row["labels_raw"]).items()):
                        timeseries.labels.add(name=name, value=value)
                moment = datetime.strptime(row["timestamp"], "%Y-%m-%dT%H:%M:%S%z")
                timeseries.samples.add(
                    timestamp=int(moment.timestamp() * 1000), value=float(row["value"])
                )
                taken += 1
                if taken == batch:
                    break
            if not taken:
                return
            yield bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


class WriteBenchmark:
    """Runs the write and the import ``options.runs`` times and reports to ``stdout``."""

    def __init__(
        self, options: WriteOptions, stdout: OutputWrapper, database: BenchDatabase = DATABASE
    ) -> None:
        options.check()
        self.options = options
        self.stdout = stdout
        self.database = database
        # The import is make bench's pipeline measurement, on this benchmark's database.
        self.imports = ThroughputBenchmark(
            ThroughputOptions(rows=options.samples, collectors=options.collectors, runs=1),
            stdout,
            database,
        )

    def run(self) -> None:
        options = self.options
        env = self.imports.child_environment()
        env["DJANGO_ALLOWED_HOSTS"] = "127.0.0.1,localhost"  # gunicorn answers on 127.0.0.1
        prepare_database(self.database, env, self.stdout)
        self._add_token()
        broker = redis.Redis.from_url(self.database.redis_url)
        usage = {"write": ProcessUsage(), "import": ProcessUsage()}
        writes: list[Timed] = []
        imports: list[Timed] = []
        Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bench-write-", dir=settings.VAR_DIR) as folder:
            work = Path(folder)
            env["STREAM_SOURCE_DIRS"] = str(work.resolve())  # import_csv reads the file here
            csv_path = work / "samples.csv"
            with csv_path.open("wb") as out:
                write_dcgm_csv(out, GeneratorSpec(rows=options.samples))
            bodies = list(write_requests(csv_path, options.batch))
            self.stdout.write(
                f"{options.samples:,} samples: {len(bodies)} requests of up to {options.batch} "
                f"samples ({sum(map(len, bodies)) / len(bodies) / 1024:.1f} KiB each, snappy); "
                f"{os.cpu_count()} cores"
            )
            try:
                for run in range(1, options.runs + 1):
                    # Each start has its own run number: a worker's heartbeat file says it is
                    # ready.
                    writes.append(self._write_run(2 * run, bodies, env, broker, usage, work))
                    result = self.imports.pipeline_run(
                        2 * run + 1, csv_path, env, broker, usage["import"], work
                    )
                    imports.append(Timed(result.rows, result.seconds))
                    self.stdout.write(
                        f"run {run}: write {writes[-1].per_second:,.0f} samples/s "
                        f"({writes[-1].seconds:.2f} s, {writes[-1].retries} requests answered "
                        f"503 and sent again); import {imports[-1].per_second:,.0f} samples/s "
                        f"({imports[-1].seconds:.2f} s)"
                    )
            finally:
                truncate_ingest_tables(self.database)
                broker.flushdb()
        self._report(writes, imports, usage)

    def _add_token(self) -> None:
        connection = psycopg2.connect(self.database.dsn)
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO api_apitoken (name, key_hash, can_write, created) "
                    "VALUES ('bench-write', %s, true, now()) ON CONFLICT (name) DO NOTHING",
                    [hash_key(TOKEN_KEY)],
                )
        finally:
            connection.close()

    def _write_run(
        self,
        run: int,
        bodies: list[bytes],
        env: dict[str, str],
        broker: redis.Redis,
        usage: dict[str, ProcessUsage],
        work: Path,
    ) -> Timed:
        truncate_ingest_tables(self.database)
        broker.flushdb()
        web = web_server.start(env, work / "web.log", workers=os.cpu_count() or 1)
        collectors: list[Worker] = []
        sampler: UsageSampler | None = None
        try:
            for index in range(self.options.collectors):
                collectors.append(start_worker("collector", COLLECT_QUEUE, index, run, env, work))
            wait_until_ready(collectors)

            def running() -> list[tuple[str, int]]:
                found = [(worker.role, worker.process.pid) for worker in collectors]
                return found + [("web", pid) for pid in (web.process.pid, *web.worker_pids())]

            sampler = UsageSampler(usage["write"], running, self.database.name)
            sampler.start()
            started = datetime.now(UTC)
            retries = _send_all(web.port, bodies, self.options.senders)
            seconds = self._committed_since(started)
            sampler.stop()
        except CommandError as error:
            raise CommandError(
                f"{error}{worker_logs(collectors)}\n--- web.log\n"
                f"{(work / 'web.log').read_text(errors='replace')[-3000:]}"
            ) from None
        finally:
            if sampler is not None and sampler.is_alive():
                sampler.stop()
            web_server.stop(web)
            for worker in collectors:
                worker.stop()
        return Timed(self.options.samples, seconds, retries)

    def _committed_since(self, started: datetime) -> float:
        """Wait until every sample is committed, check the count, and return the seconds
        from ``started`` to the last commit the ledger records."""
        expected = self.options.samples
        deadline = time.monotonic() + COMMIT_TIMEOUT_SECONDS
        connection = psycopg2.connect(self.database.dsn)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                while True:
                    cursor.execute(
                        "SELECT coalesce(sum(rows_committed), 0), max(committed_at) "
                        "FROM ingest_ingestedchunk"
                    )
                    committed, last = cursor.fetchone()
                    if committed >= expected or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                cursor.execute("SELECT count(*) FROM ingest_sample")
                (stored,) = cursor.fetchone()
        finally:
            connection.close()
        if stored != expected or committed != expected:
            raise CommandError(
                f"write: {stored} samples stored and {committed} committed, of {expected}"
            )
        return float((last - started).total_seconds())

    def _report(
        self, writes: list[Timed], imports: list[Timed], usage: dict[str, ProcessUsage]
    ) -> None:
        write_rate = statistics.median(timed.per_second for timed in writes)
        import_rate = statistics.median(timed.per_second for timed in imports)
        self.stdout.write(
            f"medians: write {write_rate:,.0f} samples/s, import {import_rate:,.0f} samples/s"
        )
        total = self.options.samples * self.options.runs
        for kind, used in usage.items():
            cpu = used.cpu_seconds
            self.stdout.write(
                f"{kind} CPU per sample: "
                + ", ".join(
                    f"{role} {cpu[role] / total * 1e6:.1f} us" for role in CPU_ROLES if role in cpu
                )
                + f"; total {sum(cpu.values()) / total * 1e6:.1f} us"
            )
        self.stdout.write(
            f"bench-write: samples_per_s={write_rate:.0f} ratio_to_import="
            f"{write_rate / import_rate:.3f} samples={self.options.samples} "
            f"batch={self.options.batch}"
        )


def _send_all(port: int, bodies: list[bytes], senders: int) -> int:
    """Post every body from ``senders`` threads; returns how many 503s were sent again."""
    work: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    for body in bodies:
        work.put(body)
    retries = [0] * senders
    failures: list[str] = []
    headers = {
        "Authorization": f"Bearer {TOKEN_KEY}",
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    }

    def sender(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not failures:
            try:
                body = work.get_nowait()
            except queue.Empty:
                return
            while True:
                connection.request("POST", "/api/v1/write", body, headers)
                response = connection.getresponse()
                answer = response.read()
                if response.status == 204:
                    break
                if response.status != 503:
                    failures.append(f"{response.status}: {answer[:200]!r}")
                    return
                retries[index] += 1
                time.sleep(RETRY_PAUSE_SECONDS)

    threads = [threading.Thread(target=sender, args=(index,)) for index in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise CommandError(f"a write was refused: {failures[0]}")
    return sum(retries)
