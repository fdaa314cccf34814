"""A PostgreSQL database of its own, filled with millions of generated samples, for measuring.

``explain_api`` (query plans, ``bench.query_plans``) and ``bench_api`` (latency percentiles,
``bench.api_latency``) both need a sample table far larger than any test database, filled
exactly as the pipeline fills it. This module is what they share:

1. The work happens only in the measurement's own database, created and migrated here; the
   command re-runs itself with ``DATABASE_URL`` pointing there when started against any other
   database, and refuses names of the project's and the tests' databases.
2. The sample table is filled through ``ingest.collector.collect``, the real write path
   (COPY, counters, ledger, partitions), from a CSV made by the project's generator. The file
   is cut into fixed-size chunks with ids derived from their first line, so a database kept
   with ``--keep`` skips chunks it already holds and grows to a larger ``--rows`` without
   duplicates. Without ``--keep`` the database is dropped at the end (10M rows are ~2 GB).
3. ``ANALYZE`` (``VACUUM (ANALYZE)`` with ``--vacuum``) follows the fill, and requests are
   timed in this process (``bench.request_timing``).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError, OutputWrapper
from django.db import connection, connections
from django.db.models import Sum
from django.test.utils import override_settings

from bench.dcgm_generator import GeneratorSpec, write_dcgm_csv
from bench.direct_load import collect_file
from bench.request_timing import Get, Timing, time_requests
from ingest import dimensions
from ingest.models import Gpu, StreamSource

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 5432
DEFAULT_USER: Final = "postgres"

# Lines per collect call: the size of a fast-mode chunk in the real pipeline.
CHUNK_LINES: Final = 5000
PROGRESS_EVERY_ROWS: Final = 500_000
# Chunk ids derive from the source: a kept database grows without duplicates only while the
# name stays the same, whichever command fills it.
SOURCE_NAME: Final = "explain-api"
# The reference fleet (31 hosts x 8 GPUs x 10 metrics = 2,480 rows per timestep). At the
# exporter's usual 10 s interval 5M rows would cover under 6 hours, one or two partitions; a
# 2-minute interval spreads them over ~2.8 days (4 partitions) so partition pruning and
# ordered appends across partitions are part of every plan. The start is just before
# midnight so that even a small trial run spans two partitions.
FLEET: Final = GeneratorSpec(
    interval_seconds=120,
    start=datetime(2025, 7, 18, 23, 0, 0, tzinfo=UTC),
    workload_fraction=0.1,
)


class SampleDatabase:
    """The measurement's database: created, filled to ``--rows``, analysed, timed."""

    def __init__(
        self, options: dict[str, Any], stdout: OutputWrapper, fleet: GeneratorSpec = FLEET
    ) -> None:
        self.options = options
        self.name: str = options["database_name"]
        self.stdout = stdout
        self.fleet = fleet

    def say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()

    # --- the database ---------------------------------------------------------------------

    def create(self) -> None:
        # _nodb_cursor is how Django's own test-database creation reaches the server.
        with connection._nodb_cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self.name])
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{self.name}"')
                self.stdout.write(f"created database {self.name}")
        call_command("migrate", interactive=False, verbosity=0)

    def drop(self) -> None:
        connections.close_all()
        with connection._nodb_cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.stdout.write(f"database {self.name} dropped (pass --keep to reuse its samples)")

    # --- filling --------------------------------------------------------------------------

    def prepare(self) -> int:
        """Fill to ``--rows``, then analyse; return how many samples the table holds."""
        options = self.options
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
        self.say(
            f"{statement} in {time.monotonic() - started:.1f}s (server autovacuum: {autovacuum})"
        )
        self._describe_table()
        return rows

    def _fill(self, wanted: int, interval: int, *, reload: bool) -> int:
        """Make sure the sample table holds at least ``wanted`` rows; return how many it holds.

        Rows go through ``collect``, as a collector would commit them, in chunks whose ids
        name the generator's layout and their first line: a chunk a kept database already
        holds is recognised by the ledger and skipped, so growing the table never doubles it.
        """
        if reload:
            self._empty()
        rows = count_samples()
        if rows >= wanted:
            self.say(f"reusing {rows:,} samples already loaded (--reload loads them again)")
            return rows
        target = math.ceil(wanted / CHUNK_LINES) * CHUNK_LINES
        spec = dataclasses.replace(self.fleet, interval_seconds=interval, rows=target)
        span = timedelta(seconds=interval * (spec.timestep_count - 1))
        self.say(
            f"{rows:,} samples present, {wanted:,} wanted: generating {target:,} rows "
            f"({spec.gpu_count} GPUs x {spec.metrics} metrics x {spec.timestep_count:,} "
            f"timesteps every {interval}s, {spec.start:%Y-%m-%d %H:%M}Z + {span})"
        )
        source, _ = StreamSource.objects.get_or_create(
            name=SOURCE_NAME,
            defaults={
                "location": "generated for the API measurements",
                "batch_size": CHUNK_LINES,
                "timestamp_mode": StreamSource.TimestampMode.SOURCE,
                "pace": StreamSource.Pace.FAST,
                "enabled": False,
                "scheduled": False,
            },
        )
        with tempfile.TemporaryDirectory(prefix="sample-database-") as folder:
            path = Path(folder) / "dcgm.csv"
            started = time.monotonic()
            with path.open("wb") as out:
                write_dcgm_csv(out, spec)
            megabytes = path.stat().st_size / 1e6
            self.say(f"generated {megabytes:,.0f} MB in {time.monotonic() - started:.1f}s")
            # The generated days lie in the past: a retention window would reject them all.
            with override_settings(RETENTION_DAYS=0):
                self._load(path, source.pk, target)
        rows = count_samples()
        counted = Gpu.objects.aggregate(total=Sum("sample_count"))["total"] or 0
        if counted != rows:
            self.say(f"WARNING: GPU counters say {counted:,} samples, the table holds {rows:,}")
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
                self.say(
                    f"  {done:,}/{total:,} rows: {committed:,} committed, {skipped:,} "
                    f"already there, {rejected:,} rejected; {rate:,.0f} rows/s, "
                    f"{elapsed:.0f}s elapsed, ~{left:.0f}s left"
                )
        if rejected:
            self.say(f"WARNING: {rejected:,} generated rows were rejected")

    def _empty(self) -> None:
        """Empty what the loader fills, so counters and ledger agree with the samples."""
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE ingest_sample, ingest_ingestedchunk, ingest_chunkattempt, "
                "ingest_rejectedrow, ingest_deadletter, ingest_tally, ingest_gpu, "
                "ingest_workload, ingest_latestvalue"
            )
        dimensions.forget()
        self.say("emptied the sample table, its counters and the ledger")

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

    # --- timing ---------------------------------------------------------------------------

    def time(
        self,
        get: Get,
        label: str,
        next_url: Callable[[], str],
        budget_ms: float | None,
    ) -> Timing:
        """``--requests`` requests from ``next_url``, timed (``bench.request_timing``)."""
        timing = time_requests(get, label, next_url, self.options["requests"], budget_ms)
        self.say(f"  {label}: p50 {timing.p50_ms:.2f} ms, p99 {timing.p99_ms:.2f} ms")
        return timing


def connected_to(name: str) -> bool:
    database = settings.DATABASES["default"]
    return bool(connections["default"].vendor == "postgresql" and database["NAME"] == name)


def database_url(name: str) -> str:
    """A URL for ``name`` on the server of the current settings, or on the local default."""
    database = settings.DATABASES["default"]
    if connections["default"].vendor != "postgresql":
        return f"postgres://{DEFAULT_USER}@{DEFAULT_HOST}:{DEFAULT_PORT}/{name}"
    user = quote(str(database.get("USER") or DEFAULT_USER), safe="")
    password = database.get("PASSWORD")
    credentials = f"{user}:{quote(str(password), safe='')}" if password else user
    host = database.get("HOST") or DEFAULT_HOST
    port = database.get("PORT") or DEFAULT_PORT
    return f"postgres://{credentials}@{host}:{port}/{name}"


def count_samples() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ingest_sample")
        return int(cursor.fetchone()[0])


def without_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
