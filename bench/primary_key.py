"""COPY rate of the sample table's former two B-trees against the one key that serves both.

The sample table had the primary key ``(id, timestamp)`` and the index
``(gpu_id, timestamp)``. A primary key ``(gpu_id, timestamp, id)`` alone serves every API
query (it leads with the same two columns) and saves a B-tree insert per row; it is the
table's key since migration 0014. This script measures what that is worth: the same narrow
rows, COPYed as the collector writes them, into a fresh partitioned table of each shape in
turn, ``--runs`` times, in a database of its own (``telemetry_pk_bench``, created and dropped
here). It prints each rate and the medians.

    .venv/bin/python -m bench.primary_key --rows 1000000 --runs 3

docs/sample-indexes.md gives the figures and the choice made from them.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

import psycopg2  # type: ignore[import-untyped]

SERVER_DSN: Final = "host=127.0.0.1 port=5432 user=postgres"
DATABASE: Final = "telemetry_pk_bench"
TABLE: Final = "pk_bench_sample"
GPUS: Final = 248
METRICS: Final = 10
START: Final = datetime(2025, 7, 18, 20, 0, tzinfo=UTC)
SHAPES: Final = {
    "primary key (id, timestamp) + index (gpu_id, timestamp)": (
        'PRIMARY KEY (id, "timestamp")',
        f'CREATE INDEX ON {TABLE} (gpu_id, "timestamp")',
    ),
    "primary key (gpu_id, timestamp, id) alone": ('PRIMARY KEY (gpu_id, "timestamp", id)',),
}


def copy_text(rows: int) -> bytes:
    """Rows of the reference fleet, 10 s apart, in the collector's COPY column order."""
    rng = random.Random(1)  # noqa: S311  (sample values, not secrets)
    lines = []
    for row in range(rows):
        step, within = divmod(row, GPUS * METRICS)
        stamp = (START + timedelta(seconds=10 * step)).isoformat()
        gpu, metric = within % GPUS + 1, within // GPUS + 1
        lines.append(f"{gpu}\t\\N\t{metric}\t{stamp}\t{rng.random() * 100!r}\n")
    return "".join(lines).encode()


def create_table(
    cursor: psycopg2.extensions.cursor,
    table: str,
    key: str,
    statements: Iterable[str],
    id_type: str = "bigserial",
) -> None:
    """A fresh table shaped like the sample table with the primary key ``key``, partitioned by
    time with one partition that holds every generated row; ``statements`` then run on it
    (its other indexes), and a checkpoint, so no run pays for the previous one's dirty pages."""
    cursor.execute(f"DROP TABLE IF EXISTS {table}")
    cursor.execute(
        f'CREATE TABLE {table} (id {id_type} NOT NULL, "timestamp" timestamptz NOT NULL, '
        "value double precision NOT NULL, gpu_id integer NOT NULL, "
        f"metric_id smallint NOT NULL, workload_id integer, {key}) "
        'PARTITION BY RANGE ("timestamp")'
    )
    for statement in statements:
        cursor.execute(statement)
    cursor.execute(
        f"CREATE TABLE {table}_day PARTITION OF {table} "
        "FOR VALUES FROM ('2025-07-18') TO ('2025-07-20')"
    )
    cursor.execute("CHECKPOINT")


def copy_rate(
    connection: psycopg2.extensions.connection, ddl: tuple[str, ...], data: bytes, rows: int
) -> float:
    connection.autocommit = True
    with connection.cursor() as cursor:
        create_table(cursor, TABLE, ddl[0], ddl[1:])
    connection.autocommit = False
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.copy_expert(
            f'COPY {TABLE} (gpu_id, workload_id, metric_id, "timestamp", value) FROM STDIN',
            io.BytesIO(data),
            1 << 20,
        )
    connection.commit()
    return rows / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    server = psycopg2.connect(f"{SERVER_DSN} dbname=postgres")
    server.autocommit = True
    with server.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        cursor.execute(f"CREATE DATABASE {DATABASE}")
    data = copy_text(options.rows)
    rates: dict[str, list[float]] = {name: [] for name in SHAPES}
    connection = psycopg2.connect(f"{SERVER_DSN} dbname={DATABASE}")
    try:
        for run in range(1, options.runs + 1):
            for name, ddl in SHAPES.items():  # taking turns, so drift hits both alike
                rates[name].append(copy_rate(connection, ddl, data, options.rows))
                print(f"run {run}: {name}: {rates[name][-1]:,.0f} rows/s", flush=True)
    finally:
        connection.close()
        with server.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        server.close()
    for name, values in rates.items():
        print(f"median: {name}: {statistics.median(values):,.0f} rows/s")


if __name__ == "__main__":
    main()
