"""``manage.py explain_api``: prove on millions of samples that every API query uses an index.

The design promises that every API query touching the sample table is served by an index
and that ``/api/v1/stats`` answers from counters, fast at any size. Whether the planner
keeps that promise depends on table size and statistics, which a unit-test database never
has, so this command builds a large table of its own and looks at the real plans:

1. It works only in its own PostgreSQL database (``telemetry_explain`` by default), created
   and migrated here; it re-runs itself with ``DATABASE_URL`` pointing there when started
   against any other database, and refuses names of the project's and the tests' databases.
2. It fills the sample table through ``ingest.collector.collect``, the real write path (COPY,
   counters, ledger, partitions), from a CSV made by the project's generator. The file is
   cut into fixed-size chunks with ids derived from their first line, so a database kept
   with ``--keep`` skips chunks it already holds and grows to a larger ``--rows`` without
   duplicates. Without ``--keep`` the database is dropped at the end (5M rows are ~1 GB).
3. After ``ANALYZE`` (``VACUUM (ANALYZE)`` with ``--vacuum``) it calls each endpoint through
   Django's test client, captures the SQL it ran and shows ``EXPLAIN (ANALYZE, BUFFERS)`` of
   every query that reads samples; a sequential scan of the sample table or of one of its
   partitions fails the run.
4. It times every endpoint over many requests and prints the median and the 99th percentile.

The last line is a machine-readable summary. The exit status is non-zero when a plan scans
the sample table sequentially or an endpoint does not answer 200; timings are reported
against their budgets, not enforced, since a shared machine's timings vary.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, connections
from django.db.models import Sum
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings

from ingest import dimensions, partitions
from ingest.dcgm_generator import GeneratorSpec, write_dcgm_csv
from ingest.direct_load import collect_file
from ingest.models import Gpu, Metric, StreamSource

DEFAULT_ROWS: Final = 5_000_000
DEFAULT_DATABASE: Final = "telemetry_explain"
# The project's own and the test suite's databases are never this command's to fill or drop.
FORBIDDEN_DATABASES: Final = re.compile(r"^(telemetry|test.*|postgres|template\d)$")
DATABASE_NAME: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 5432
DEFAULT_USER: Final = "postgres"

# Lines per collect call: the size of a fast-mode chunk in the real pipeline.
CHUNK_LINES: Final = 5000
PROGRESS_EVERY_ROWS: Final = 500_000
SOURCE_NAME: Final = "explain-api"
# The reference fleet (31 hosts x 8 GPUs x 10 metrics = 2,480 rows per timestep). At the
# exporter's usual 10 s interval 5M rows would cover under 6 hours, one or two partitions; a
# 2-minute interval spreads them over ~2.8 days (4 partitions) so partition pruning and
# ordered appends across partitions are part of every plan. The start is just before
# midnight so that even a small trial run spans two partitions.
FLEET_HOSTS: Final = 31
GPUS_PER_HOST: Final = 8
FLEET_METRICS: Final = 10
DEFAULT_INTERVAL_SECONDS: Final = 120
DATA_START: Final = datetime(2025, 7, 18, 23, 0, 0, tzinfo=UTC)
WORKLOAD_FRACTION: Final = 0.1
SEED: Final = 1

DEEP_OFFSET: Final = 5000
PAGE_SIZE: Final = 100
WARM_UP_REQUESTS: Final = 10
DEFAULT_REQUESTS: Final = 200
# Timing budgets in ms (p99) that the report flags: /stats is promised under 20 ms.
STATS_BUDGET_MS: Final = 20.0
PAGE_BUDGET_MS: Final = 10.0
AGGREGATE_BUDGET_MS: Final = 50.0

SAMPLE_TABLE: Final = re.compile(r'\b"?ingest_sample"?(?![a-z_])')
SAMPLE_RELATION: Final = re.compile(rf"^{partitions.PARENT}$|{partitions.NAME_PATTERN}")


@dataclass(frozen=True)
class Endpoint:
    label: str
    path: str
    params: dict[str, str | list[str]] = field(default_factory=dict)
    budget_ms: float | None = None

    @property
    def url(self) -> str:
        return f"{self.path}?{urlencode(self.params, doseq=True)}" if self.params else self.path


@dataclass
class PlanReport:
    endpoint: str
    sql: str
    text: str
    execution_ms: float
    seq_scans: list[str]
    scans: list[str]
    shape: str


@dataclass
class Timing:
    endpoint: Endpoint
    p50_ms: float
    p99_ms: float
    queries: int  # per request
    sql_p50_ms: float  # time spent in the database per request (median)


class Command(BaseCommand):
    help = (
        "Fill a separate PostgreSQL database with at least --rows samples, then EXPLAIN ANALYZE "
        "every API query that reads samples (fails on a sequential scan) and time each endpoint."
    )
    # The database may not exist yet when the command starts: no check may connect first.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--rows", type=int, default=DEFAULT_ROWS, help="Fewest samples (default 5,000,000)."
        )
        parser.add_argument(
            "--database-name",
            default=DEFAULT_DATABASE,
            help=f"The PostgreSQL database to work in (default {DEFAULT_DATABASE}).",
        )
        parser.add_argument(
            "--keep",
            action="store_true",
            help="Keep the database afterwards; the next run reuses its samples.",
        )
        parser.add_argument(
            "--reload", action="store_true", help="Empty the sample table and load it again."
        )
        parser.add_argument(
            "--vacuum",
            action="store_true",
            help="VACUUM (ANALYZE) instead of ANALYZE, as autovacuum would have done.",
        )
        parser.add_argument(
            "--interval",
            type=int,
            default=DEFAULT_INTERVAL_SECONDS,
            help=f"Seconds between generated timesteps (default {DEFAULT_INTERVAL_SECONDS}).",
        )
        parser.add_argument(
            "--requests",
            type=int,
            default=DEFAULT_REQUESTS,
            help=f"Timed requests per endpoint (default {DEFAULT_REQUESTS}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["database_name"]
        if not DATABASE_NAME.match(name) or FORBIDDEN_DATABASES.match(name):
            raise CommandError(f"refusing to work in the database {name!r}: choose another name")
        if options["rows"] < 1 or options["requests"] < 1 or options["interval"] < 1:
            raise CommandError("--rows, --requests and --interval must be at least 1")
        if not _connected_to(name):
            self._run_in(name, options)
            return
        self._create_database(name)
        try:
            summary, problems = self._explain(options)
        finally:
            if options["keep"]:
                self.stdout.write(f"database {name} kept: the next run reuses its samples")
            else:
                self._drop_database(name)
        for problem in problems:
            self.stdout.write(f"FAILED: {problem}")
        # The summary stays the last line, for scripts that read it; the status tells failure.
        self._say(summary)
        if problems:
            raise SystemExit(1)

    # --- the database ---------------------------------------------------------------------

    def _run_in(self, name: str, options: dict[str, Any]) -> None:
        """Run this command again in a child whose default database is ``name``.

        Settings are read once per process, so pointing Django at another database means a
        new process; everything it prints goes straight to this one's output.
        """
        url = _database_url(name)
        self._say(f"running in a subprocess with DATABASE_URL={_without_password(url)}")
        env = {**os.environ, "DATABASE_URL": url}
        env.pop("DATABASE_URL_FILE", None)
        command = [
            sys.executable,
            str(Path(settings.BASE_DIR) / "manage.py"),
            "explain_api",
            f"--rows={options['rows']}",
            f"--database-name={name}",
            f"--interval={options['interval']}",
            f"--requests={options['requests']}",
            *(f"--{flag}" for flag in ("keep", "reload", "vacuum") if options[flag]),
        ]
        status = subprocess.call(command, env=env)  # noqa: S603  (this very command, re-run)
        if status:
            raise SystemExit(status)  # the child has said why; its summary stays the last line

    def _create_database(self, name: str) -> None:
        # _nodb_cursor is how Django's own test-database creation reaches the server.
        with connection._nodb_cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
                self.stdout.write(f"created database {name}")
        call_command("migrate", interactive=False, verbosity=0)

    def _drop_database(self, name: str) -> None:
        connections.close_all()
        with connection._nodb_cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.stdout.write(f"database {name} dropped (pass --keep to reuse its samples)")

    # --- the run --------------------------------------------------------------------------

    def _explain(self, options: dict[str, Any]) -> tuple[str, list[str]]:
        """Fill, analyse, explain and time; return the summary line and what failed."""
        rows = self._fill(options["rows"], options["interval"], reload=options["reload"])
        # Plain ANALYZE by default: fresh statistics on a table no vacuum has visited yet is
        # the least favourable state for index plans (no index-only scans). --vacuum gives the
        # state autovacuum keeps a production database in (the counter rows of ingest_gpu are
        # rewritten by every chunk, so unvacuumed they bloat).
        statement = "VACUUM (ANALYZE)" if options["vacuum"] else "ANALYZE"
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute(statement)
            cursor.execute("SHOW autovacuum")
            autovacuum = cursor.fetchone()[0]
        self._say(
            f"{statement} in {time.monotonic() - started:.1f}s (server autovacuum: {autovacuum})"
        )
        self._describe_table()

        endpoints = self._endpoints()
        # The test client's host; the settings' own hosts are kept.
        hosts = [*settings.ALLOWED_HOSTS, "testserver"]
        client = Client()
        with override_settings(ALLOWED_HOSTS=hosts):
            reports, bad_status = self._explain_endpoints(client, endpoints)
            # Timed without DEBUG's query log, as the API runs in production.
            with override_settings(DEBUG=False):
                timings = self._time_endpoints(client, endpoints, options["requests"])

        failing = [report for report in reports if report.seq_scans]
        self._print_summary(reports, timings)
        stats = next(timing for timing in timings if timing.endpoint.label == "stats")
        summary = (
            f"explain-api: rows={rows} queries={len(reports)} seq_scans={len(failing)} "
            f"stats_p50_ms={stats.p50_ms:.3f} stats_p99_ms={stats.p99_ms:.3f}"
        )
        problems = []
        if failing:
            problems.append(f"{len(failing)} of {len(reports)} sample queries scan sequentially")
        if bad_status:
            problems.append(f"endpoints without a 200 answer: {', '.join(bad_status)}")
        return summary, problems

    def _say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()

    # --- filling --------------------------------------------------------------------------

    def _fill(self, wanted: int, interval: int, *, reload: bool) -> int:
        """Make sure the sample table holds at least ``wanted`` rows; return how many it holds.

        Rows go through ``collect``, as a collector would commit them, in chunks whose ids
        name the generator's layout and their first line: a chunk a kept database already
        holds is recognised by the ledger and skipped, so growing the table never doubles it.
        """
        if reload:
            self._empty()
        rows = _count_samples()
        if rows >= wanted:
            self._say(f"reusing {rows:,} samples already loaded (--reload loads them again)")
            return rows
        target = math.ceil(wanted / CHUNK_LINES) * CHUNK_LINES
        spec = GeneratorSpec(
            hosts=FLEET_HOSTS,
            gpus_per_host=GPUS_PER_HOST,
            metrics=FLEET_METRICS,
            interval_seconds=interval,
            start=DATA_START,
            rows=target,
            seed=SEED,
            workload_fraction=WORKLOAD_FRACTION,
        )
        span = timedelta(seconds=interval * (spec.timestep_count - 1))
        self._say(
            f"{rows:,} samples present, {wanted:,} wanted: generating {target:,} rows "
            f"({spec.gpu_count} GPUs x {spec.metrics} metrics x {spec.timestep_count:,} "
            f"timesteps every {interval}s, {DATA_START:%Y-%m-%d %H:%M}Z + {span})"
        )
        source, _ = StreamSource.objects.get_or_create(
            name=SOURCE_NAME,
            defaults={
                "location": "generated by manage.py explain_api",
                "batch_size": CHUNK_LINES,
                "timestamp_mode": StreamSource.TimestampMode.SOURCE,
                "pace": StreamSource.Pace.FAST,
                "enabled": False,
                "scheduled": False,
            },
        )
        with tempfile.TemporaryDirectory(prefix="explain-api-") as folder:
            path = Path(folder) / "dcgm.csv"
            started = time.monotonic()
            with path.open("wb") as out:
                write_dcgm_csv(out, spec)
            megabytes = path.stat().st_size / 1e6
            self._say(f"generated {megabytes:,.0f} MB in {time.monotonic() - started:.1f}s")
            # The data is dated DATA_START (fixed, so plans compare across runs): older than
            # any retention window, which would reject it at ingest.
            with override_settings(RETENTION_DAYS=0):
                self._load(path, source.pk, target)
        rows = _count_samples()
        counted = Gpu.objects.aggregate(total=Sum("sample_count"))["total"] or 0
        if counted != rows:
            self._say(f"WARNING: GPU counters say {counted:,} samples, the table holds {rows:,}")
        return rows

    def _load(self, path: Path, source_id: int, total: int) -> None:
        committed = skipped = rejected = 0
        started = time.monotonic()
        next_report = PROGRESS_EVERY_ROWS
        for line_count, result in collect_file(
            path, source_id=source_id, lines_per_chunk=CHUNK_LINES
        ):
            if result.outcome == "duplicate":
                skipped += line_count
            elif result.outcome == "committed":
                committed += result.rows
                rejected += result.rejected
            else:
                raise CommandError(f"chunk {result.chunk_id} was dead-lettered")
            done = committed + skipped + rejected
            if done >= next_report or done == total:
                next_report += PROGRESS_EVERY_ROWS
                elapsed = time.monotonic() - started
                rate = committed / elapsed if elapsed else 0.0
                left = (total - done) / rate if rate else 0.0
                self._say(
                    f"  {done:,}/{total:,} rows: {committed:,} committed, {skipped:,} "
                    f"already there, {rejected:,} rejected; {rate:,.0f} rows/s, "
                    f"{elapsed:.0f}s elapsed, ~{left:.0f}s left"
                )
        if rejected:
            self._say(f"WARNING: {rejected:,} generated rows were rejected")

    def _empty(self) -> None:
        """Empty what the loader fills, so counters and ledger agree with the samples."""
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE ingest_sample, ingest_ingestedchunk, ingest_chunkattempt, "
                "ingest_rejectedrow, ingest_deadletter, ingest_tally, ingest_gpu, "
                "ingest_workload"
            )
        dimensions.forget()
        self._say("emptied the sample table, its counters and the ledger")

    def _describe_table(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT child.relname, child.reltuples::bigint,
                       pg_total_relation_size(child.oid)
                FROM pg_inherits
                JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
                JOIN pg_class child ON child.oid = pg_inherits.inhrelid
                WHERE parent.relname = 'ingest_sample'
                ORDER BY child.relname
                """
            )
            partitions = cursor.fetchall()
        for name, estimate, size in partitions:
            self.stdout.write(f"  {name}: ~{estimate:,} rows, {size / 1e6:,.0f} MB with indexes")

    # --- explaining -----------------------------------------------------------------------

    def _endpoints(self) -> list[Endpoint]:
        """Requests a client makes, on a GPU from the middle of the fleet and inside its data."""
        gpus = Gpu.objects.filter(sample_count__gt=0).order_by("hostname", "gpu_index", "id")
        gpu = gpus[gpus.count() // 2]
        if gpu.first_seen is None or gpu.last_seen is None:
            raise CommandError(f"GPU {gpu.uuid} has samples but no first/last seen times")
        span = gpu.last_seen - gpu.first_seen
        range_start = _minute(gpu.first_seen + span / 4)
        range_end = _minute(gpu.first_seen + span * 3 / 4)
        # A deep-ish page: well inside the range (half the GPU's samples fall in it).
        offset = max(0, min(DEEP_OFFSET, gpu.sample_count // 4 // PAGE_SIZE * PAGE_SIZE))
        metric = Metric.objects.order_by("name").values_list("name", flat=True).first() or ""
        metric_offset = max(0, offset // FLEET_METRICS // PAGE_SIZE * PAGE_SIZE)
        hour_start = _minute(gpu.first_seen + span / 2)
        day_start = _minute(gpu.first_seen + span / 4)
        base = f"/api/v1/gpus/{quote(gpu.uuid)}"
        window = {"start_time": _rfc3339(range_start), "end_time": _rfc3339(range_end)}
        self.stdout.write(
            f"GPU {gpu.uuid} ({gpu.hostname}/{gpu.device}): {gpu.sample_count:,} samples "
            f"from {_rfc3339(gpu.first_seen)} to {_rfc3339(gpu.last_seen)}"
        )
        return [
            Endpoint("gpus", "/api/v1/gpus", budget_ms=PAGE_BUDGET_MS),
            Endpoint("gpu", base, budget_ms=PAGE_BUDGET_MS),
            Endpoint("telemetry first page", f"{base}/telemetry", budget_ms=PAGE_BUDGET_MS),
            Endpoint(
                f"telemetry range offset={offset}",
                f"{base}/telemetry",
                {**window, "limit": str(PAGE_SIZE), "offset": str(offset)},
                budget_ms=PAGE_BUDGET_MS,
            ),
            Endpoint(
                f"telemetry range metric offset={metric_offset}",
                f"{base}/telemetry",
                {
                    **window,
                    "metric": [metric],
                    "limit": str(PAGE_SIZE),
                    "offset": str(metric_offset),
                },
                budget_ms=PAGE_BUDGET_MS,
            ),
            Endpoint(
                "aggregate 1h/1m",
                f"{base}/telemetry/aggregate",
                {
                    "start_time": _rfc3339(hour_start),
                    "end_time": _rfc3339(hour_start + timedelta(hours=1)),
                    "bucket": "1m",
                },
                budget_ms=AGGREGATE_BUDGET_MS,
            ),
            Endpoint(
                "aggregate 24h/1h",
                f"{base}/telemetry/aggregate",
                {
                    "start_time": _rfc3339(day_start),
                    "end_time": _rfc3339(day_start + timedelta(days=1)),
                    "bucket": "1h",
                },
                budget_ms=AGGREGATE_BUDGET_MS,
            ),
            Endpoint("latest", f"{base}/latest", budget_ms=PAGE_BUDGET_MS),
            Endpoint("hosts", "/api/v1/hosts"),
            Endpoint("metrics", "/api/v1/metrics"),
            Endpoint("stats", "/api/v1/stats", budget_ms=STATS_BUDGET_MS),
        ]

    def _explain_endpoints(
        self, client: Client, endpoints: list[Endpoint]
    ) -> tuple[list[PlanReport], list[str]]:
        reports: list[PlanReport] = []
        bad_status: list[str] = []
        for endpoint in endpoints:
            client.get(endpoint.url)  # warm caches (GPU ids, metric names, buffers)
            with CaptureQueriesContext(connection) as captured:
                response = client.get(endpoint.url)
            sample_queries = [q["sql"] for q in captured if SAMPLE_TABLE.search(q["sql"])]
            self._say(
                f"\n=== {endpoint.label}: GET {endpoint.url} -> {response.status_code}, "
                f"{len(captured)} queries, {len(sample_queries)} read samples"
            )
            if response.status_code != 200:
                bad_status.append(endpoint.label)
                self.stdout.write(response.content.decode(errors="replace")[:500])
            for number, sql in enumerate(sample_queries, 1):
                label = f"{endpoint.label} #{number}" if len(sample_queries) > 1 else endpoint.label
                report = _explain(label, sql)
                reports.append(report)
                verdict = "FAIL" if report.seq_scans else "PASS"
                self.stdout.write(f"--- query {number}: {sql}")
                self.stdout.write(report.text)
                self.stdout.write(
                    f"{verdict} {label}: {report.shape}; "
                    f"scans: {', '.join(report.scans) or 'none'}"
                    + (f"; SEQ SCAN on {', '.join(report.seq_scans)}" if report.seq_scans else "")
                )
        return reports, bad_status

    # --- timing ---------------------------------------------------------------------------

    def _time_endpoints(
        self, client: Client, endpoints: list[Endpoint], requests: int
    ) -> list[Timing]:
        """Median and p99 of whole requests, with the share spent waiting for the database.

        The split tells a slow plan from slow Python (serialisers, many round trips).
        """
        self._say(f"\n=== timing: {WARM_UP_REQUESTS} warm-up + {requests} requests per endpoint")
        timings = []
        for endpoint in endpoints:
            for _ in range(WARM_UP_REQUESTS):
                client.get(endpoint.url)
            totals: list[float] = []
            in_database: list[float] = []
            stopwatch = _QueryStopwatch()
            with connection.execute_wrapper(stopwatch):
                for _ in range(requests):
                    stopwatch.reset()
                    started = time.perf_counter()
                    response = client.get(endpoint.url)
                    totals.append((time.perf_counter() - started) * 1000)
                    in_database.append(stopwatch.seconds * 1000)
                    if response.status_code != 200:
                        raise CommandError(f"{endpoint.label} answered {response.status_code}")
            timing = Timing(
                endpoint,
                p50_ms=statistics.median(totals),
                p99_ms=_p99(totals),
                queries=stopwatch.queries,
                sql_p50_ms=statistics.median(in_database),
            )
            timings.append(timing)
            self._say(f"  {endpoint.label}: p50 {timing.p50_ms:.2f} ms")
        return timings

    def _print_summary(self, reports: list[PlanReport], timings: list[Timing]) -> None:
        broker = _without_password(str(settings.CELERY_BROKER_URL))
        self.stdout.write(f"\n=== summary (queue depth for /stats from {broker})")
        for report in reports:
            verdict = "FAIL" if report.seq_scans else "PASS"
            self.stdout.write(
                f"{verdict} {report.endpoint:<40} {report.execution_ms:8.3f} ms  {report.shape}"
            )
        for timing in timings:
            self.stdout.write(
                f"time {timing.endpoint.label:<40} p50 {timing.p50_ms:7.2f} ms  "
                f"p99 {timing.p99_ms:7.2f} ms  SQL p50 {timing.sql_p50_ms:6.2f} ms "
                f"({timing.queries} queries){_over_budget(timing)}"
            )


# --- helpers ------------------------------------------------------------------------------


class _QueryStopwatch:
    """A database execute wrapper: queries of the current request and their time."""

    def __init__(self) -> None:
        self.queries = 0
        self.seconds = 0.0

    def reset(self) -> None:
        self.queries = 0
        self.seconds = 0.0

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.queries += 1


def _connected_to(name: str) -> bool:
    database = settings.DATABASES["default"]
    return bool(database["ENGINE"] == "django.db.backends.postgresql" and database["NAME"] == name)


def _database_url(name: str) -> str:
    """A URL for ``name`` on the server of the current settings, or on the local default."""
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.postgresql":
        return f"postgres://{DEFAULT_USER}@{DEFAULT_HOST}:{DEFAULT_PORT}/{name}"
    user = quote(str(database.get("USER") or DEFAULT_USER), safe="")
    password = database.get("PASSWORD")
    credentials = f"{user}:{quote(str(password), safe='')}" if password else user
    host = database.get("HOST") or DEFAULT_HOST
    port = database.get("PORT") or DEFAULT_PORT
    return f"postgres://{credentials}@{host}:{port}/{name}"


def _count_samples() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ingest_sample")
        return int(cursor.fetchone()[0])


def _explain(endpoint: str, sql: str) -> PlanReport:
    """The query's plan as PostgreSQL prints it, and its scans read from the JSON form."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
        text = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
        document = cursor.fetchone()[0]
    root = document[0]
    nodes = list(_walk(root["Plan"]))
    scans: list[str] = []
    seq_scans: list[str] = []
    for node in nodes:
        kind = node["Node Type"]
        relation = node.get("Relation Name", "")
        if not kind.endswith("Scan"):
            continue
        if SAMPLE_RELATION.match(relation) and "Seq Scan" in kind:
            seq_scans.append(relation)
        if SAMPLE_RELATION.match(relation) or node.get("Index Name", "").startswith(
            "ingest_sample"
        ):
            backward = " Backward" if node.get("Scan Direction") == "Backward" else ""
            scans.append(f"{kind}{backward} {node.get('Index Name', relation)}")
    shape = " > ".join(_distinct(_node_name(node) for node in nodes))
    return PlanReport(
        endpoint=endpoint,
        sql=sql,
        text=text,
        execution_ms=float(root["Execution Time"]),
        seq_scans=seq_scans,
        scans=_counted(scans),
        shape=shape,
    )


def _node_name(node: dict[str, Any]) -> str:
    """The node's type; a scan of a small table also names the table (it may be scanned)."""
    kind = str(node["Node Type"])
    relation = node.get("Relation Name", "")
    if kind == "Seq Scan" and not SAMPLE_RELATION.match(relation):
        return f"{kind} {relation}"
    return kind


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


def _distinct(items: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _counted(items: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return [f"{item} x{count}" if count > 1 else item for item, count in counts.items()]


def _p99(samples: list[float]) -> float:
    """Nearest-rank 99th percentile: with 200 requests, the second slowest."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def _over_budget(timing: Timing) -> str:
    budget = timing.endpoint.budget_ms
    return f"  SLOW (> {budget:.0f} ms)" if budget is not None and timing.p99_ms > budget else ""


def _without_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def _minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
