"""One index on the sample table, or two: what a (gpu_id, metric_id, timestamp) index costs
at ingest and what it saves the API. Figures in docs/sample-indexes.md.

    DJANGO_DEBUG=1 .venv/bin/python -m bench.sample_index [--rows 1000000] [--runs 3]

Works in a PostgreSQL database of its own (``telemetry_index_bench`` on the server of
``DB_HOST``/``DB_PORT``/``DB_USER``, by default 127.0.0.1:5432 as postgres), migrated with the
project's migrations and dropped at the end (``--keep`` keeps it). Steps:

1. Generate ``--rows`` rows with the project's generator (the reference fleet, 10 s apart)
   and load them once through the real collect path, so GPUs, metrics and counters exist.
2. Export the sample rows, then ``--runs`` times for each variant, alternating so that a
   shared machine's drift hits both alike: empty the sample table, set the variant's
   indexes, and COPY the rows back into the partitioned table in 5,000-row transactions
   (the pipeline's chunk size). Median rows/s per variant, and the WAL each load wrote
   (a figure a busy machine does not blur).
3. After each variant's last load, VACUUM (ANALYZE) as autovacuum would, then table and
   index sizes, and ``EXPLAIN (ANALYZE, BUFFERS)`` of the SQL the API runs for metric-
   filtered requests (captured from the API itself), median execution time of 15 runs.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Final

DATABASE: Final = "telemetry_index_bench"
CHUNK_ROWS: Final = 5000
EXPLAIN_RUNS: Final = 15
METRIC_INDEX: Final = "ingest_sample_gpu_metric_time"
PARTITION_PREFIX: Final = re.compile(r"^ingest_sample_p\d{8}(_\d{8})?_")
COLUMNS: Final = '("timestamp", value, gpu_id, metric_id, workload_id)'


def configure(database: str = DATABASE) -> None:
    """Point this process's Django at a benchmark database before settings are read."""
    host = os.environ.get("DB_HOST", "127.0.0.1")
    port = os.environ.get("DB_PORT", "5432")
    user = os.environ.get("DB_USER", "postgres")
    os.environ["DATABASE_URL"] = f"postgres://{user}@{host}:{port}/{database}"
    # The generator dates its rows July 2025: no retention window may reject them.
    os.environ["RETENTION_DAYS"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemetry_project.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    options = parser.parse_args()
    configure()
    import django

    django.setup()
    from django.db import connection

    with connection._nodb_cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{DATABASE}"')
    try:
        run(options.rows, options.runs)
    finally:
        if not options.keep:
            connection.close()
            with connection._nodb_cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def run(rows: int, runs: int) -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    load_once(rows)
    exported = export_samples()
    print(f"{rows:,} rows loaded through the collector; COPYing them {runs} times per variant")
    rates: dict[str, list[float]] = {"one index": [], "two indexes": []}
    for attempt in range(1, runs + 1):
        for variant in rates:
            rate, wal = copy_rate(exported, with_metric_index=variant == "two indexes")
            rates[variant].append(rate)
            print(f"  run {attempt} {variant}: {rate:,.0f} rows/s, {wal / 2**20:,.0f} MiB of WAL")
            if attempt == runs:
                describe(variant)
    for variant, figures in rates.items():
        runs_text = ", ".join(f"{figure:,.0f}" for figure in figures)
        print(f"{variant}: median {statistics.median(figures):,.0f} rows/s (runs: {runs_text})")


def load_once(rows: int) -> None:
    from bench.dcgm_generator import GeneratorSpec, write_dcgm_csv
    from bench.direct_load import collect_file
    from ingest.models import StreamSource

    source = StreamSource.objects.create(
        name="index-bench",
        location="generated",
        timestamp_mode=StreamSource.TimestampMode.SOURCE,
        enabled=False,
        scheduled=False,
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.csv"
        with path.open("wb") as out:
            write_dcgm_csv(out, GeneratorSpec(rows=rows))
        for _, result in collect_file(path, source_id=source.pk, lines_per_chunk=CHUNK_ROWS):
            if result.outcome != "committed" or result.rejected:
                raise SystemExit(f"loading failed: {result}")


def export_samples() -> list[bytes]:
    """The sample rows in COPY text, in insertion order, cut into the pipeline's chunks."""
    from django.db import connection

    buffer = io.BytesIO()
    with connection.cursor() as cursor:
        cursor.cursor.copy_expert(
            'COPY (SELECT "timestamp", value, gpu_id, metric_id, workload_id '
            "FROM ingest_sample ORDER BY id) TO STDOUT",
            buffer,
        )
    lines = buffer.getvalue().splitlines(keepends=True)
    return [b"".join(lines[at : at + CHUNK_ROWS]) for at in range(0, len(lines), CHUNK_ROWS)]


def copy_rate(chunks: list[bytes], *, with_metric_index: bool) -> tuple[float, int]:
    """Rows per second, and bytes of WAL written: a figure a busy machine does not blur."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE ingest_sample")
        cursor.execute(f"DROP INDEX IF EXISTS {METRIC_INDEX}")
        if with_metric_index:
            cursor.execute(
                f'CREATE INDEX {METRIC_INDEX} ON ingest_sample (gpu_id, metric_id, "timestamp")'
            )
        cursor.execute("CHECKPOINT")
        cursor.execute("SELECT pg_current_wal_lsn()")
        (wal_before,) = cursor.fetchone()
    rows = 0
    started = time.perf_counter()
    for chunk in chunks:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.cursor.copy_expert(f"COPY ingest_sample {COLUMNS} FROM STDIN", io.BytesIO(chunk))
        rows += chunk.count(b"\n")
    rate = rows / (time.perf_counter() - started)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [wal_before])
        (wal_bytes,) = cursor.fetchone()
    return rate, int(wal_bytes)


def describe(variant: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) ingest_sample")
        cursor.execute(
            """
            SELECT sum(pg_table_size(c.oid)),
                   sum(pg_indexes_size(c.oid))
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'ingest_sample'::regclass
            """
        )
        table, indexes = cursor.fetchone()
        cursor.execute(
            """
            SELECT regexp_replace(ix.relname, '^ingest_sample_p[0-9_]+_', ''),
                   sum(pg_relation_size(ix.oid))
            FROM pg_inherits i
            JOIN pg_index x ON x.indrelid = i.inhrelid
            JOIN pg_class ix ON ix.oid = x.indexrelid
            WHERE i.inhparent = 'ingest_sample'::regclass
            GROUP BY 1 ORDER BY 1
            """
        )
        per_index = ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in cursor.fetchall())
    print(
        f"{variant}: table {table / 2**20:.1f} MiB, indexes {indexes / 2**20:.1f} MiB ({per_index})"
    )
    for label, sql in api_queries():
        print(f"  {label}: {explain(sql)}")


def api_queries() -> list[tuple[str, str]]:
    """The SQL on the sample table behind metric-filtered API requests, as the API sends it."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, override_settings

    from ingest.models import Gpu, Metric

    gpu = Gpu.objects.order_by("hostname", "gpu_index")[Gpu.objects.count() // 2]
    metric = Metric.objects.order_by("name").first()
    if gpu.first_seen is None or gpu.last_seen is None or metric is None:
        raise SystemExit("the load left no GPU with samples")
    quarter = (gpu.last_seen - gpu.first_seen) / 4
    window = (
        f"start_time={(gpu.first_seen + quarter):%Y-%m-%dT%H:%M:%SZ}"
        f"&end_time={(gpu.last_seen - quarter):%Y-%m-%dT%H:%M:%SZ}"
    )
    base = f"/api/v1/gpus/{gpu.uuid}"
    requests = {
        "telemetry ?metric first page": f"{base}/telemetry?metric={metric.name}&limit=100",
        "telemetry ?metric range offset 100": (
            f"{base}/telemetry?metric={metric.name}&{window}&limit=100&offset=100"
        ),
        "telemetry unfiltered first page": f"{base}/telemetry?limit=100",
        "latest (one probe per metric)": f"{base}/latest",
    }
    queries = []
    client = Client()
    with override_settings(ALLOWED_HOSTS=["testserver"]):
        for label, url in requests.items():
            with CaptureQueriesContext(connection) as captured:
                response = client.get(url)
            if response.status_code != 200:
                raise SystemExit(f"{url}: {response.status_code}")
            queries += [(label, q["sql"]) for q in captured if "ingest_sample" in q["sql"]]
    return queries


def explain(sql: str) -> str:
    from django.db import connection

    timings: list[float] = []
    document: dict[str, Any] = {}
    with connection.cursor() as cursor:
        for _ in range(EXPLAIN_RUNS):
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
            document = cursor.fetchone()[0][0]
            timings.append(float(document["Execution Time"]))
    plan = document["Plan"]
    buffers = plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
    return f"median {statistics.median(timings):.3f} ms, {buffers} buffers: {shape(plan)}"


def shape(node: dict[str, Any]) -> str:
    """The plan's nodes, with the index each scan used (named by its columns)."""
    name = str(node["Node Type"])
    if "Index Name" in node:
        # A partition's index is named after the partition: keep the part naming the columns.
        name += f" {PARTITION_PREFIX.sub('', node['Index Name'])}"
    children: list[dict[str, Any]] = node.get("Plans", [])
    if not children:
        return name
    return f"{name} > ({', '.join(shape(child) for child in children)})"


if __name__ == "__main__":
    main()
