"""What a BRIN index costs the sample table's writes: WAL bytes and server CPU per row.

The sample table has one B-tree, the primary key ``(gpu_id, timestamp, id)``. A BRIN index
serves what that B-tree cannot: the admin's sample list over a time range without a GPU, and
(with ``id`` as a second column) a sample's page looked up by its id. This script measures what
such an index adds to every write, by the two figures that do not swing with the load of a
shared machine as a COPY rate does: the WAL written (``pg_current_wal_lsn()`` before and
after) and the CPU time of the server process that runs the COPYs (``/proc/<pid>/stat``,
user + system; the server is on this machine). The same rows, with ids assigned as the
writer assigns them (``ingest.sample_ids``), are COPYed into a fresh partitioned table of each
shape in turn, in transactions of ``--chunk`` rows as the collector commits them, ``--runs``
times, in a database of its own (``telemetry_brin_bench``, created and dropped here). A BRIN
index leaves a range of pages unsummarised while rows go in, so the measured work ends with
the summaries of the new ranges (``brin_summarize_new_values``), which the table's
``autosummarize`` has an autovacuum worker make in production. It prints each run, the
medians, and each shape's ratio to the table without a BRIN. The WAL position is the
server's: another database's writes during a run count too, hence the medians.

    .venv/bin/python -m bench.brin_cost --rows 1000000 --runs 3

docs/sample-indexes.md gives the figures and the choice made from them.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
from dataclasses import dataclass
from typing import Final

import psycopg2  # type: ignore[import-untyped]

from bench.primary_key import SERVER_DSN, create_table
from bench.primary_key import copy_text as narrow_rows
from ingest.sample_ids import MAX_CHUNK_ROWS

DATABASE: Final = "telemetry_brin_bench"
TABLE: Final = "brin_bench_sample"
SHAPES: Final = {
    "no BRIN": (),
    "BRIN (timestamp)": (f'CREATE INDEX ON {TABLE} USING brin ("timestamp")',),
    "BRIN (timestamp, id)": (f'CREATE INDEX ON {TABLE} USING brin ("timestamp", id)',),
    # For scale: the second B-tree the table had before, which the BRIN index replaces.
    "B-tree (id, timestamp)": (f'CREATE UNIQUE INDEX ON {TABLE} (id, "timestamp")',),
}
PRIMARY_KEY: Final = 'PRIMARY KEY (gpu_id, "timestamp", id)'
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
_SUMMARISE: Final = """
SELECT brin_summarize_new_values(index.oid)
FROM pg_index JOIN pg_class index ON index.oid = pg_index.indexrelid
JOIN pg_am ON pg_am.oid = index.relam
WHERE pg_index.indrelid = %s::regclass AND pg_am.amname = 'brin'
"""


@dataclass(frozen=True)
class Cost:
    wal_bytes: int
    cpu_seconds: float


def chunks_with_ids(rows: int, chunk: int) -> list[bytes]:
    """The rows in COPY text with an id column first, chunk ``k`` taking the serial ``k + 1``."""
    lines = narrow_rows(rows).splitlines(keepends=True)
    return [
        b"".join(
            b"%d\t%s" % ((number + 1) * MAX_CHUNK_ROWS + place, line)
            for place, line in enumerate(lines[start : start + chunk])
        )
        for number, start in enumerate(range(0, rows, chunk))
    ]


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def copy_cost(
    connection: psycopg2.extensions.connection, ddl: tuple[str, ...], chunks: list[bytes]
) -> Cost:
    connection.autocommit = True
    with connection.cursor() as cursor:
        create_table(cursor, TABLE, PRIMARY_KEY, ddl, id_type="bigint")
        cursor.execute("SELECT pg_backend_pid(), pg_current_wal_lsn()")
        pid, wal_before = cursor.fetchone()
    cpu_before = server_cpu_seconds(pid)
    connection.autocommit = False
    with connection.cursor() as cursor:
        for data in chunks:  # one transaction a chunk, as the collector commits
            cursor.copy_expert(
                f'COPY {TABLE} (id, gpu_id, workload_id, metric_id, "timestamp", value) FROM STDIN',
                io.BytesIO(data),
                len(data),  # one read, like the writer's single block
            )
            connection.commit()
        # The BRIN summaries: what autosummarize has an autovacuum worker do for each range of
        # pages once it is full (or a vacuum does), done here so that it is counted too.
        cursor.execute(_SUMMARISE, [f"{TABLE}_day"])
        connection.commit()
        cpu = server_cpu_seconds(pid) - cpu_before
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [wal_before])
        wal = int(cursor.fetchone()[0])
    connection.commit()
    return Cost(wal, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=10_000, help="Rows per COPY transaction.")
    options = parser.parse_args()
    if not 1 <= options.chunk <= MAX_CHUNK_ROWS:
        parser.error(f"--chunk must be between 1 and {MAX_CHUNK_ROWS}")
    server = psycopg2.connect(f"{SERVER_DSN} dbname=postgres")
    server.autocommit = True
    with server.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        cursor.execute(f"CREATE DATABASE {DATABASE}")
    chunks = chunks_with_ids(options.rows, options.chunk)
    costs: dict[str, list[Cost]] = {name: [] for name in SHAPES}
    connection = psycopg2.connect(f"{SERVER_DSN} dbname={DATABASE}")
    try:
        for run in range(1, options.runs + 1):
            for name, ddl in SHAPES.items():  # taking turns, so drift hits every shape alike
                cost = copy_cost(connection, ddl, chunks)
                costs[name].append(cost)
                print(
                    f"run {run}: {name}: {cost.wal_bytes / options.rows:.1f} WAL bytes/row, "
                    f"{cost.cpu_seconds / options.rows * 1e6:.2f} server CPU us/row",
                    flush=True,
                )
    finally:
        connection.close()
        with server.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        server.close()
    base_wal = statistics.median(cost.wal_bytes for cost in costs["no BRIN"])
    base_cpu = statistics.median(cost.cpu_seconds for cost in costs["no BRIN"])
    print(f"medians of {options.runs} runs, {options.rows:,} rows, ratio to no BRIN:")
    for name, measured in costs.items():
        wal = statistics.median(cost.wal_bytes for cost in measured)
        cpu = statistics.median(cost.cpu_seconds for cost in measured)
        print(
            f"  {name:<22} WAL {wal / options.rows:6.1f} bytes/row (x{wal / base_wal:.3f})   "
            f"server CPU {cpu / options.rows * 1e6:5.2f} us/row (x{cpu / base_cpu:.3f})"
        )


if __name__ == "__main__":
    main()
