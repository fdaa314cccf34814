"""``manage.py bench_pipeline`` (``make bench``): the pipeline's throughput against its ceiling.

One invocation generates a DCGM file with the project's generator and then, ``--runs``
times, measures two things back to back on the same rows:

(a) the ceiling: the rows parsed with the project's parser and COPYed into an empty table
    shaped like the sample table by one process per core (``ingest.bench_copy``);
(b) the pipeline: real streamer and collector Celery workers (solo pool, as deployed) on
    PostgreSQL and Redis, fed by ``manage.py import_csv``, timed from the first publish to
    the last commit as the ledger records them, with the sample count checked exactly.

A shared machine's absolute figures drift from minute to minute, so each pipeline run is
measured right after its ceiling, medians are reported, and the ratio of the two is the
figure to compare across machines and commits. The last line is machine-readable.

Everything happens in a database and a Redis database of its own (``telemetry_bench``,
Redis db 8), created, migrated and emptied here, so a running pipeline, the test suite and
``explain_api`` are never disturbed. The command itself talks to that database with psycopg2
and starts every Django process it needs (migrate, workers, import) with the benchmark's
environment, so the settings it was started with do not matter.
"""

from __future__ import annotations

import math
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import psutil
import psycopg2  # type: ignore[import-untyped]
import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest import bench_copy
from ingest.apps import ingest_tables
from ingest.dcgm_generator import GeneratorSpec, write_dcgm_csv
from telemetry_project.env import CONNECTION_VARIABLES

DATABASE_NAME: Final = "telemetry_bench"
SERVER_DSN: Final = "host=127.0.0.1 port=5432 user=postgres"
DATABASE_URL: Final = f"postgres://postgres@127.0.0.1:5432/{DATABASE_NAME}"
BENCH_DSN: Final = f"{SERVER_DSN} dbname={DATABASE_NAME}"
REDIS_URL: Final = "redis://127.0.0.1:6379/8"

DEFAULT_ROWS: Final = 1_000_000
DEFAULT_RUNS: Final = 3
# Sized for 2 cores by measurement. Earlier (1M rows, one run each): ratio 0.36 with
# 1 streamer + 1 collector, 0.50 with 1 + 2, 0.49 with 2 + 2: a second streamer does not
# pay, since a one-shard import has one cursor that one streamer holds at a time. With the
# columnar collector (1M rows, medians of 3, quiet machine): 64,109 rows/s with 2
# collectors, 74,734 with 3, 64,859 with 4; a third collector parses while the other two
# wait on their COPY and commit, a fourth only adds switching.
DEFAULT_STREAMERS: Final = 1
DEFAULT_COLLECTORS: Final = 3
BATCH_SIZE: Final = 10_000
TICK_SECONDS: Final = 0.2

WORKER_START_TIMEOUT_SECONDS: Final = 60.0
WORKER_STOP_TIMEOUT_SECONDS: Final = 30.0
RSS_SAMPLE_SECONDS: Final = 0.1
SERVICE_SCAN_SECONDS: Final = 2.0
# The roles whose CPU time the report splits a row's cost into.
CPU_ROLES: Final = ("streamer", "collector", "importer", "postgres", "redis")


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


@dataclass
class ProcessUsage:
    """Per role: the largest resident set seen (over every process and run), and the CPU
    seconds its processes used during each run's import (from first to last sample)."""

    peaks: dict[str, int] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    first_cpu: dict[int, float] = field(default_factory=dict)
    last_cpu: dict[int, tuple[str, float]] = field(default_factory=dict)

    def record(self, role: str, pid: int, rss: int, cpu: float) -> None:
        self.peaks[role] = max(self.peaks.get(role, 0), rss)
        self.first_cpu.setdefault(pid, cpu)
        self.last_cpu[pid] = (role, cpu)

    def close_run(self) -> None:
        """Add this run's CPU per role, and forget its processes."""
        for pid, (role, cpu) in self.last_cpu.items():
            used = cpu - self.first_cpu[pid]
            self.cpu_seconds[role] = self.cpu_seconds.get(role, 0.0) + used
        self.first_cpu.clear()
        self.last_cpu.clear()


@dataclass
class Worker:
    role: str
    process: subprocess.Popen[bytes]
    log: Path
    alive_file: Path

    def stop(self) -> None:
        """SIGTERM (warm shutdown) the worker's process group; SIGKILL if it lingers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=WORKER_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=WORKER_STOP_TIMEOUT_SECONDS)


class UsageSampler(threading.Thread):
    """Samples the RSS and CPU time of the processes of a run, in the background.

    Besides the benchmark's own processes it samples the PostgreSQL backends serving the
    benchmark database and the Redis server, so the report can say where each row's CPU
    goes on a machine whose cores all of them share.
    """

    def __init__(self, usage: ProcessUsage, processes: Callable[[], list[tuple[str, int]]]) -> None:
        super().__init__(daemon=True, name="bench-usage")
        self.usage = usage
        self.processes = processes
        self.done = threading.Event()
        self.services: list[tuple[str, int]] = []
        self.services_found_at = -math.inf

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(RSS_SAMPLE_SECONDS)
        self.sample()

    def sample(self) -> None:
        # Finding the services walks every process (~13 ms): every 0.1 s that would take a
        # tenth of a core from the pipeline being measured. Backends live as long as their
        # worker's connection, so looking again now and then finds them all.
        if time.monotonic() - self.services_found_at >= SERVICE_SCAN_SECONDS:
            self.services = _service_processes()
            self.services_found_at = time.monotonic()
        for role, pid in [*self.processes(), *self.services]:
            try:
                process = psutil.Process(pid)
                with process.oneshot():
                    times = process.cpu_times()
                    rss = process.memory_info().rss
            except psutil.Error:
                continue
            self.usage.record(role, pid, rss, times.user + times.system)

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.usage.close_run()


def _service_processes() -> list[tuple[str, int]]:
    """The PostgreSQL backends of the benchmark database and the Redis server."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if command.startswith("postgres: ") and f" {DATABASE_NAME} " in command:
            found.append(("postgres", process.pid))
        elif (process.info["name"] or "").startswith("redis-server"):
            found.append(("redis", process.pid))
    return found


class Command(BaseCommand):
    help = (
        "Benchmark the pipeline (streamer + collector workers on PostgreSQL and Redis) "
        "against a parallel COPY of the same rows; prints medians of --runs runs."
    )
    # The benchmark database may not exist yet, and this process never uses its own.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
        parser.add_argument("--streamers", type=int, default=DEFAULT_STREAMERS)
        parser.add_argument("--collectors", type=int, default=DEFAULT_COLLECTORS)
        parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
        parser.add_argument(
            "--batch-size",
            type=int,
            default=BATCH_SIZE,
            help=f"Lines per chunk, for the pipeline and the ceiling (default {BATCH_SIZE}).",
        )
        parser.add_argument(
            "--max-outstanding",
            type=int,
            help="MAX_OUTSTANDING_CHUNKS for the workers (default: the project's).",
        )
        parser.add_argument(
            "--queue-depth",
            type=int,
            help="COLLECT_QUEUE_MAX_DEPTH for the workers (default: the project's).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        rows: int = options["rows"]
        streamers: int = options["streamers"]
        collectors: int = options["collectors"]
        runs: int = options["runs"]
        for name in ("rows", "streamers", "collectors", "runs", "batch_size"):
            if options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
        env = self._child_environment(options)
        self._prepare_database(env)
        broker = redis.Redis.from_url(REDIS_URL)
        cores = os.cpu_count() or 1
        usage = ProcessUsage()
        copies: list[bench_copy.CopyResult] = []
        pipelines: list[PipelineResult] = []
        Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bench-", dir=settings.VAR_DIR) as folder:
            work = Path(folder)
            # Sources may read files only from allowed folders: allow exactly this one.
            env["STREAM_SOURCE_DIRS"] = str(work.resolve())
            csv_path = work / "bench.csv"
            self._generate(csv_path, rows)
            bench_copy.create_table(BENCH_DSN)
            try:
                for run in range(1, runs + 1):
                    bench_copy.truncate(BENCH_DSN)
                    copy = bench_copy.measure(BENCH_DSN, csv_path, cores, options["batch_size"])
                    if copy.rows != rows or copy.rejected:
                        raise CommandError(
                            f"ceiling run {run}: {copy.rows} rows COPYed, {copy.rejected} "
                            f"rejected, of {rows}"
                        )
                    copies.append(copy)
                    pipeline = self._pipeline_run(
                        run,
                        csv_path,
                        rows,
                        streamers,
                        collectors,
                        env,
                        broker,
                        usage,
                        work,
                        options["batch_size"],
                    )
                    pipelines.append(pipeline)
                    self.stdout.write(
                        f"run {run}: copy {copy.rows_per_second:,.0f} rows/s "
                        f"({copy.seconds:.2f} s, {copy.processes} processes); pipeline "
                        f"{pipeline.rows_per_second:,.0f} rows/s ({pipeline.seconds:.2f} s)"
                    )
            finally:
                bench_copy.drop_table(BENCH_DSN)
                broker.flushdb()
        self._report(copies, pipelines, usage, rows, streamers, collectors)

    # --- set-up -------------------------------------------------------------------------

    @staticmethod
    def _child_environment(options: dict[str, Any]) -> dict[str, str]:
        """The environment of every process started here: the benchmark's database and
        broker, production settings (DEBUG off: it records every query), quiet logs."""
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
            DATABASE_URL=DATABASE_URL,
            REDIS_URL=REDIS_URL,
            DJANGO_SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
            # Production settings (no DEBUG, so no query log) need these; nothing serves HTTP.
            DJANGO_ALLOWED_HOSTS=os.environ.get("DJANGO_ALLOWED_HOSTS") or "localhost",
            LOG_LEVEL="WARNING",
            # import_csv keeps the generated rows' 2025 timestamps: no window may reject them.
            RETENTION_DAYS="0",
            # A developer's var/dev.env must not fill in what this environment leaves unset.
            TELEMETRY_ENV_FILE="",
        )
        if options["max_outstanding"]:
            env["MAX_OUTSTANDING_CHUNKS"] = str(options["max_outstanding"])
        if options["queue_depth"]:
            env["COLLECT_QUEUE_MAX_DEPTH"] = str(options["queue_depth"])
        return env

    def _prepare_database(self, env: dict[str, str]) -> None:
        """Create ``telemetry_bench`` when missing and migrate it, in a child process whose
        settings point there (settings are read once per process)."""
        connection = psycopg2.connect(f"{SERVER_DSN} dbname=postgres")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME])
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
                    self.stdout.write(f"created database {DATABASE_NAME}")
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
            raise CommandError(f"migrating {DATABASE_NAME} failed:\n{migrate.stderr}")

    def _generate(self, path: Path, rows: int) -> None:
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

    def _pipeline_run(
        self,
        run: int,
        csv_path: Path,
        rows: int,
        streamers: int,
        collectors: int,
        env: dict[str, str],
        broker: redis.Redis,
        usage: ProcessUsage,
        work: Path,
        batch_size: int,
    ) -> PipelineResult:
        """Empty tables and broker, start workers, import the file, read the ledger."""
        _truncate_ingest_tables()
        broker.flushdb()
        workers: list[Worker] = []
        importer: subprocess.Popen[bytes] | None = None
        sampler: UsageSampler | None = None
        try:
            for index in range(streamers):
                workers.append(_start_worker("streamer", "stream", index, run, env, work))
            for index in range(collectors):
                workers.append(_start_worker("collector", "collect", index, run, env, work))
            _wait_until_ready(workers)

            def running() -> list[tuple[str, int]]:
                found = [(worker.role, worker.process.pid) for worker in workers]
                if importer is not None:
                    found.append(("importer", importer.pid))
                return found

            sampler = UsageSampler(usage, running)
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
                        str(batch_size),
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
                    f"{log.read_text(errors='replace')}{_worker_logs(workers)}"
                )
        finally:
            if sampler is not None and sampler.is_alive():
                sampler.stop()
            for worker in workers:
                worker.stop()
        return _read_ledger(run, rows, wall_seconds)

    # --- the report ---------------------------------------------------------------------

    def _report(
        self,
        copies: list[bench_copy.CopyResult],
        pipelines: list[PipelineResult],
        usage: ProcessUsage,
        rows: int,
        streamers: int,
        collectors: int,
    ) -> None:
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
            f"(targets: ratio >= 0.8, pipeline >= 100,000 rows/s); a shared machine is noisy"
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
            f"ratio={ratio:.3f} rows={rows} streamers={streamers} collectors={collectors}"
        )


def _truncate_ingest_tables() -> None:
    connection = psycopg2.connect(BENCH_DSN)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(ingest_tables())} RESTART IDENTITY")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")  # the ceiling's dirty pages are not this run's cost
    finally:
        connection.close()


def _start_worker(
    role: str, queue: str, index: int, run: int, env: dict[str, str], work: Path
) -> Worker:
    """A solo-pool Celery worker, as deployed; its heartbeat file says it is consuming."""
    alive = work / f"{role}{index}-run{run}.alive"
    log = work / f"{role}{index}-run{run}.log"
    command = [
        sys.executable, "-m", "celery", "-A", "telemetry_project", "worker",
        "-Q", queue, "-n", f"bench-{role}{index}@%h", "--pool=solo", "--loglevel=WARNING",
        "--without-mingle", "--without-gossip", "--without-heartbeat",
        "--include", "ingest.heartbeat",
    ]  # fmt: skip
    worker_env = {**env, "WORKER_HEARTBEAT_FILE": str(alive), "WORKER_HEARTBEAT_INTERVAL": "1"}
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603  (celery from this virtualenv)
            command,
            cwd=settings.BASE_DIR,
            env=worker_env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Worker(role, process, log, alive)


def _wait_until_ready(workers: list[Worker]) -> None:
    deadline = time.monotonic() + WORKER_START_TIMEOUT_SECONDS
    while not all(worker.alive_file.exists() for worker in workers):
        failed = [worker for worker in workers if worker.process.poll() is not None]
        if failed or time.monotonic() > deadline:
            raise CommandError(f"workers did not start:{_worker_logs(failed or workers)}")
        time.sleep(0.05)


def _worker_logs(workers: list[Worker]) -> str:
    return "".join(
        f"\n--- {worker.log.name}\n{worker.log.read_text(errors='replace')[-3000:]}"
        for worker in workers
    )


def _read_ledger(run: int, rows: int, wall_seconds: float) -> PipelineResult:
    """The run's window and totals, from what the database recorded, checked exactly.

    The window opens when import_csv creates its source, just before its first publish
    (so the import process's own start-up is not counted), and closes at the ledger's last
    ``committed_at``, written by the collector inside the chunk's transaction.
    """
    connection = psycopg2.connect(BENCH_DSN)
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
