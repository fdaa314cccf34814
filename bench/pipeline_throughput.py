"""``make bench`` (``manage.py bench_pipeline``): the pipeline's throughput against its ceiling.

One invocation generates a DCGM file with the project's generator and then, ``runs``
times, measures two things back to back on the same rows:

(a) the ceiling: the rows parsed with the project's parser and COPYed into an empty table
    shaped like the sample table by one process per core (``bench.copy_ceiling``);
(b) the pipeline: real streamer and collector Celery workers (solo pool, as deployed) on
    PostgreSQL and Redis, fed by ``manage.py import_csv``, timed from the first publish to
    the last commit as the ledger records them, with the sample count checked exactly.

A shared machine's absolute figures drift from minute to minute, so each pipeline run is
measured right after its ceiling, medians are reported, and the ratio of the two is the
figure to compare across machines and commits. The last line is machine-readable. The
figures measured so far, and how many collectors two cores want, are in the README
("Ingest throughput").

Everything happens in a database and a Redis database of its own (``telemetry_bench``,
Redis db 8), created, migrated and emptied here, so a running pipeline, the test suite and
``explain_api`` are never disturbed. This process talks to that database with psycopg2
and starts every Django process it needs (migrate, workers, import) with the benchmark's
environment, so the settings it was started with do not matter.
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import psycopg2  # type: ignore[import-untyped]
import redis
from django.conf import settings
from django.core.management.base import CommandError, OutputWrapper

from bench import copy_ceiling
from bench.dcgm_generator import GeneratorSpec, write_dcgm_csv
from bench.process_usage import ProcessUsage, UsageSampler
from bench.workers import Worker, start_worker, wait_until_ready, worker_logs
from ingest.apps import ingest_tables
from telemetry_project.env import CONNECTION_VARIABLES
from telemetry_project.routing import COLLECT_QUEUE, STREAM_QUEUE

SERVER_DSN: Final = "host=127.0.0.1 port=5432 user=postgres"
TICK_SECONDS: Final = 0.2
# The roles whose CPU time the report splits a row's cost into.
CPU_ROLES: Final = ("streamer", "collector", "importer", "postgres", "redis")


@dataclass(frozen=True)
class BenchDatabase:
    """A benchmark's own PostgreSQL database and Redis database."""

    name: str
    redis_url: str

    @property
    def dsn(self) -> str:
        return f"{SERVER_DSN} dbname={self.name}"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:5432/{self.name}"


DATABASE: Final = BenchDatabase("telemetry_bench", "redis://127.0.0.1:6379/8")


@dataclass(frozen=True)
class ThroughputOptions:
    """What one benchmark measures; the defaults are ``make bench``'s.

    One streamer and three collectors suit two cores (README, "Ingest throughput"): a
    one-shard import has one cursor, which one streamer holds at a time, and a collector
    more than cores parses while the others wait on their COPY and commit.
    """

    rows: int = 1_000_000
    streamers: int = 1
    collectors: int = 3
    runs: int = 3
    batch_size: int = 10_000  # lines per chunk, for the pipeline and the ceiling
    max_outstanding: int | None = None  # MAX_OUTSTANDING_CHUNKS; None: the project's
    queue_depth: int | None = None  # COLLECT_QUEUE_MAX_DEPTH; None: the project's

    def check(self) -> None:
        for name in ("rows", "streamers", "collectors", "runs", "batch_size"):
            if getattr(self, name) < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")


@dataclass(frozen=True)
class PipelineResult:
    rows: int
    seconds: float  # first publish (the source's creation) to the last ledger commit
    wall_seconds: float  # import_csv start to exit: process start-up and polling included
    chunks: int
    throttled_ticks: int

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


class ThroughputBenchmark:
    """Runs the ceiling and the pipeline ``options.runs`` times and reports to ``stdout``."""

    def __init__(
        self, options: ThroughputOptions, stdout: OutputWrapper, database: BenchDatabase = DATABASE
    ) -> None:
        options.check()
        self.options = options
        self.stdout = stdout
        self.database = database

    def run(self) -> None:
        options = self.options
        env = self.child_environment()
        prepare_database(self.database, env, self.stdout)
        broker = redis.Redis.from_url(self.database.redis_url)
        cores = os.cpu_count() or 1
        usage = ProcessUsage()
        copies: list[copy_ceiling.CopyResult] = []
        pipelines: list[PipelineResult] = []
        Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bench-", dir=settings.VAR_DIR) as folder:
            work = Path(folder)
            # Sources may read files only from allowed folders: allow exactly this one.
            env["STREAM_SOURCE_DIRS"] = str(work.resolve())
            csv_path = work / "bench.csv"
            self._generate(csv_path)
            dsn = self.database.dsn
            copy_ceiling.create_table(dsn)
            try:
                for run in range(1, options.runs + 1):
                    copy_ceiling.truncate(dsn)
                    copy = copy_ceiling.measure(dsn, csv_path, cores, options.batch_size)
                    if copy.rows != options.rows or copy.rejected:
                        raise CommandError(
                            f"ceiling run {run}: {copy.rows} rows COPYed, {copy.rejected} "
                            f"rejected, of {options.rows}"
                        )
                    copies.append(copy)
                    pipeline = self.pipeline_run(run, csv_path, env, broker, usage, work)
                    pipelines.append(pipeline)
                    self.stdout.write(
                        f"run {run}: copy {copy.rows_per_second:,.0f} rows/s "
                        f"({copy.seconds:.2f} s, {copy.processes} processes); pipeline "
                        f"{pipeline.rows_per_second:,.0f} rows/s ({pipeline.seconds:.2f} s)"
                    )
            finally:
                copy_ceiling.drop_table(dsn)
                broker.flushdb()
        self._report(copies, pipelines, usage)

    # --- set-up -------------------------------------------------------------------------

    def child_environment(self) -> dict[str, str]:
        """The environment of every process started here (``bench_environment``), with this
        benchmark's limits on chunks in flight."""
        env = bench_environment(self.database)
        if self.options.max_outstanding:
            env["MAX_OUTSTANDING_CHUNKS"] = str(self.options.max_outstanding)
        if self.options.queue_depth:
            env["COLLECT_QUEUE_MAX_DEPTH"] = str(self.options.queue_depth)
        return env

    def _generate(self, path: Path) -> None:
        rows = self.options.rows
        started = time.monotonic()
        with path.open("wb") as out:
            written = write_dcgm_csv(out, GeneratorSpec(rows=rows))
        if written != rows:
            raise CommandError(f"the generator wrote {written} rows, not {rows}")
        size = path.stat().st_size
        self.stdout.write(
            f"generated {rows:,} rows ({size / 2**20:.0f} MiB) in "
            f"{time.monotonic() - started:.1f} s; {os.cpu_count()} cores"
        )

    # --- one pipeline run ---------------------------------------------------------------

    def pipeline_run(
        self,
        run: int,
        csv_path: Path,
        env: dict[str, str],
        broker: redis.Redis,
        usage: ProcessUsage,
        work: Path,
    ) -> PipelineResult:
        """Empty tables and broker, start workers, import the file, read the ledger."""
        truncate_ingest_tables(self.database)
        broker.flushdb()
        workers: list[Worker] = []
        importer: subprocess.Popen[bytes] | None = None
        sampler: UsageSampler | None = None
        try:
            for index in range(self.options.streamers):
                workers.append(start_worker("streamer", STREAM_QUEUE, index, run, env, work))
            for index in range(self.options.collectors):
                workers.append(start_worker("collector", COLLECT_QUEUE, index, run, env, work))
            wait_until_ready(workers)

            def running() -> list[tuple[str, int]]:
                found = [(worker.role, worker.process.pid) for worker in workers]
                if importer is not None:
                    found.append(("importer", importer.pid))
                return found

            sampler = UsageSampler(usage, running, self.database.name)
            sampler.start()
            log = work / f"import-{run}.log"
            started = time.monotonic()
            with log.open("wb") as sink:
                importer = subprocess.Popen(  # noqa: S603  (this project's manage.py)
                    [
                        sys.executable,
                        str(Path(settings.BASE_DIR) / "manage.py"),
                        "import_csv",
                        str(csv_path),
                        "--batch-size",
                        str(self.options.batch_size),
                        "--tick",
                        str(TICK_SECONDS),
                        "--no-progress",
                    ],
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            status = importer.wait()
            wall_seconds = time.monotonic() - started
            sampler.stop()
            if status:
                raise CommandError(
                    f"pipeline run {run}: import_csv failed ({status}):\n"
                    f"{log.read_text(errors='replace')}{worker_logs(workers)}"
                )
        finally:
            if sampler is not None and sampler.is_alive():
                sampler.stop()
            for worker in workers:
                worker.stop()
        return _read_ledger(self.database, run, self.options.rows, wall_seconds)

    # --- the report ---------------------------------------------------------------------

    def _report(
        self,
        copies: list[copy_ceiling.CopyResult],
        pipelines: list[PipelineResult],
        usage: ProcessUsage,
    ) -> None:
        rows = self.options.rows
        self.stdout.write("")
        self.stdout.write(
            f"{'run':>3}  {'copy rows/s':>12}  {'copy s':>7}  {'pipeline rows/s':>15}  "
            f"{'pipeline s':>10}  {'import wall s':>13}  {'chunks':>6}  {'throttled':>9}  "
            f"{'ratio':>6}"
        )
        for run, (copy, pipeline) in enumerate(zip(copies, pipelines, strict=True), start=1):
            self.stdout.write(
                f"{run:>3}  {copy.rows_per_second:>12,.0f}  {copy.seconds:>7.2f}  "
                f"{pipeline.rows_per_second:>15,.0f}  {pipeline.seconds:>10.2f}  "
                f"{pipeline.wall_seconds:>13.2f}  {pipeline.chunks:>6}  "
                f"{pipeline.throttled_ticks:>9}  "
                f"{pipeline.rows_per_second / copy.rows_per_second:>6.3f}"
            )
        copy_median = statistics.median(copy.rows_per_second for copy in copies)
        pipeline_median = statistics.median(pipeline.rows_per_second for pipeline in pipelines)
        ratio = pipeline_median / copy_median if copy_median else 0.0
        self.stdout.write(
            f"medians: copy {copy_median:,.0f} rows/s, pipeline {pipeline_median:,.0f} rows/s "
            f"(targets: ratio >= 0.85, pipeline >= 100,000 rows/s); a shared machine is noisy"
        )
        self.stdout.write(
            "peak RSS: "
            + ", ".join(
                f"{role} {usage.peaks[role] / 2**20:.0f} MiB"
                for role in ("streamer", "collector", "importer")
                if role in usage.peaks
            )
            + " (per process, sampled every 0.1 s)"
        )
        total_rows = rows * len(pipelines)
        pipeline_seconds = sum(pipeline.seconds for pipeline in pipelines)
        cpu = usage.cpu_seconds
        self.stdout.write(
            "pipeline CPU per row: "
            + ", ".join(
                f"{role} {cpu[role] / total_rows * 1e6:.1f} us" for role in CPU_ROLES if role in cpu
            )
            + f"; total {sum(cpu.values()) / total_rows * 1e6:.1f} us, "
            f"{sum(cpu.values()) / pipeline_seconds:.2f} of {os.cpu_count()} cores busy"
        )
        self.stdout.write(
            f"bench: pipeline_rows_per_s={pipeline_median:.0f} copy_rows_per_s={copy_median:.0f} "
            f"ratio={ratio:.3f} rows={rows} streamers={self.options.streamers} "
            f"collectors={self.options.collectors}"
        )


def bench_environment(database: BenchDatabase) -> dict[str, str]:
    """The environment of every process a benchmark starts: its database and broker,
    production settings (DEBUG off: it records every query), quiet logs."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TELEMETRY_FAULT")
        # Settings that would point a child at another database or broker than the
        # benchmark's.
        and key.removesuffix("_FILE") not in CONNECTION_VARIABLES
    }
    env.pop("DJANGO_DEBUG", None)
    env.pop("DJANGO_SECRET_KEY_FILE", None)
    env.update(
        DATABASE_URL=database.url,
        REDIS_URL=database.redis_url,
        DJANGO_SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
        # Production settings (no DEBUG, so no query log) need these.
        DJANGO_ALLOWED_HOSTS=os.environ.get("DJANGO_ALLOWED_HOSTS") or "localhost",
        LOG_LEVEL="WARNING",
        # import_csv keeps the generated rows' 2025 timestamps: no window may reject them.
        RETENTION_DAYS="0",
        # A developer's var/dev.env must not fill in what this environment leaves unset.
        TELEMETRY_ENV_FILE="",
    )
    return env


def prepare_database(database: BenchDatabase, env: dict[str, str], stdout: OutputWrapper) -> None:
    """Create the benchmark's database when missing and migrate it, in a child process whose
    settings point there (settings are read once per process)."""
    connection = psycopg2.connect(f"{SERVER_DSN} dbname=postgres")
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database.name])
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{database.name}"')
                stdout.write(f"created database {database.name}")
    finally:
        connection.close()
    manage = str(Path(settings.BASE_DIR) / "manage.py")
    migrate = subprocess.run(  # noqa: S603  (this project's manage.py)
        [sys.executable, manage, "migrate", "--noinput", "-v", "0"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if migrate.returncode:
        raise CommandError(f"migrating {database.name} failed:\n{migrate.stderr}")


def truncate_ingest_tables(database: BenchDatabase) -> None:
    connection = psycopg2.connect(database.dsn)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(ingest_tables())} RESTART IDENTITY")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")  # the ceiling's dirty pages are not this run's cost
    finally:
        connection.close()


def _read_ledger(
    database: BenchDatabase, run: int, rows: int, wall_seconds: float
) -> PipelineResult:
    """The run's window and totals, from what the database recorded, checked exactly.

    The window opens when import_csv creates its source, just before its first publish
    (so the import process's own start-up is not counted), and closes at the ledger's last
    ``committed_at``, written by the collector inside the chunk's transaction.
    """
    connection = psycopg2.connect(database.dsn)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM ingest_sample")
            samples = _one(cursor.fetchone())
            cursor.execute(
                "SELECT count(*), coalesce(sum(rows_committed), 0), "
                "coalesce(sum(rows_rejected), 0), max(committed_at), "
                "count(*) FILTER (WHERE dead_lettered) FROM ingest_ingestedchunk"
            )
            chunks, committed, rejected, last_commit, dead = _row(cursor.fetchone())
            cursor.execute("SELECT min(created_at), sum(throttled_ticks) FROM ingest_streamsource")
            first_publish, throttled = _row(cursor.fetchone())
    finally:
        connection.close()
    if samples != rows or committed != rows or rejected or dead:
        raise CommandError(
            f"pipeline run {run}: {samples} samples in the table, {committed} committed, "
            f"{rejected} rejected and {dead} dead-lettered chunks in the ledger, of {rows} rows"
        )
    if not isinstance(first_publish, datetime) or not isinstance(last_commit, datetime):
        raise CommandError(f"pipeline run {run}: no source or ledger rows to time")
    return PipelineResult(
        rows=rows,
        seconds=(last_commit - first_publish).total_seconds(),
        wall_seconds=wall_seconds,
        chunks=int(chunks),
        throttled_ticks=int(throttled or 0),
    )


def _row(row: tuple[Any, ...] | None) -> tuple[Any, ...]:
    if row is None:
        raise CommandError("the benchmark database answered no row")
    return row


def _one(row: tuple[Any, ...] | None) -> int:
    return int(_row(row)[0])
