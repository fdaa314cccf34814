"""The read model the fleet view reads: each device's newest value per metric and its newest
workload, kept by the collector in the transaction that writes a chunk's samples.

One upsert a chunk (on SQLite a few, whose statements take a bounded number of parameters)
writes the chunk's newest row of each (device, metric); the database keeps whichever
timestamp is newer, so chunks committed out of order, or a backfill of old data, never put an
older value over a newer one. docs/design.md, "Read model".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection

from ingest.sql_arrays import array_literal
from ingest.writer import SampleBatch

_ON_CONFLICT = (
    'ON CONFLICT (gpu_id, metric_id) DO UPDATE SET "timestamp" = excluded."timestamp", '
    'value = excluded.value WHERE excluded."timestamp" > ingest_latestvalue."timestamp"'
)
UPSERT_LATEST = (
    'INSERT INTO ingest_latestvalue (gpu_id, metric_id, "timestamp", value) VALUES {rows} '  # noqa: S608  (constants only)
    + _ON_CONFLICT
)
# On PostgreSQL the rows travel as four array literals (ingest.sql_arrays), the times as
# positions in the chunk's few distinct times.
_NEWEST = (
    'SELECT row.gpu_id, row.metric_id, (%(times)s::timestamptz[])[row.at_time] AS "timestamp", '
    "row.value FROM unnest(%(gpus)s::integer[], %(metrics)s::integer[], %(positions)s::integer[], "
    "%(values)s::float8[]) AS row(gpu_id, metric_id, at_time, value)"
)
# Nearly every pair of a chunk already has its row, holding an older time: a plain UPDATE
# writes those for about half the upsert's work (no conflict check through the unique index,
# no row-lock WAL record before each update, no id drawn from the sequence for every row).
UPDATE_LATEST = (
    'UPDATE ingest_latestvalue AS latest SET "timestamp" = row."timestamp", value = row.value '  # noqa: S608  (constants only)
    f"FROM ({_NEWEST}) AS row WHERE latest.gpu_id = row.gpu_id "
    'AND latest.metric_id = row.metric_id AND row."timestamp" > latest."timestamp"'
)
# Run only when the UPDATE left pairs out (a new device or metric, or rows older than those
# stored): inserts the pairs that have no row yet; a pair another collector inserts meanwhile
# conflicts, and the newer time wins as before.
INSERT_MISSING_LATEST = (
    'INSERT INTO ingest_latestvalue (gpu_id, metric_id, "timestamp", value) '  # noqa: S608  (constants only)
    f"SELECT * FROM ({_NEWEST}) AS row WHERE NOT EXISTS (SELECT FROM ingest_latestvalue AS latest "
    "WHERE latest.gpu_id = row.gpu_id AND latest.metric_id = row.metric_id) " + _ON_CONFLICT
)
# A device's newest workload moves only forward in time, like its values.
UPDATE_WORKLOADS = (
    "UPDATE ingest_gpu SET workload_id = v.column2, workload_seen_at = v.column3 "
    "FROM (VALUES {rows}) AS v WHERE ingest_gpu.id = v.column1 "
    "AND (ingest_gpu.workload_seen_at IS NULL OR v.column3 >= ingest_gpu.workload_seen_at)"
)


def newest_rows(batch: SampleBatch) -> dict[tuple[int, int], int]:
    """The batch's newest row of each (gpu id, metric id); of rows with the same time, the
    later one in the chunk."""
    in_time_order = (
        range(len(batch.values)) if len(batch.timestamps) == 1 else _in_time_order(batch)
    )
    gpu_of_series = [gpu for gpu, _ in batch.series]
    # Iterators of C-level lookups, no Python code run per row: a chunk has thousands of rows.
    gpus = map(gpu_of_series.__getitem__, map(batch.series_of_row.__getitem__, in_time_order))
    metrics = map(batch.metric_ids.__getitem__, map(batch.metric_of_row.__getitem__, in_time_order))
    # A repeated key keeps its last row: the newest, the later in the chunk among equal times.
    return dict(zip(zip(gpus, metrics, strict=True), in_time_order, strict=True))


def _in_time_order(batch: SampleBatch) -> list[int]:
    """The batch's row positions by time; a stable sort, so rows of one time keep their order."""
    chronological = sorted(range(len(batch.timestamps)), key=batch.timestamps.__getitem__)
    rank = [0] * len(chronological)
    for position, at_time in enumerate(chronological):
        rank[at_time] = position
    rank_of_row = list(map(rank.__getitem__, batch.time_of_row))
    return sorted(range(len(rank_of_row)), key=rank_of_row.__getitem__)


def newest_workloads(batch: SampleBatch) -> dict[int, tuple[int, datetime]]:
    """Each GPU's newest attributed workload in the batch: gpu id -> (workload id, time)."""
    newest: dict[int, tuple[int, datetime]] = {}
    # (series, time) pairs are a few hundred per chunk, not one per row.
    for at_series, at_time in set(zip(batch.series_of_row, batch.time_of_row, strict=True)):
        gpu_id, workload_id = batch.series[at_series]
        timestamp = batch.timestamps[at_time]
        if workload_id is not None and (gpu_id not in newest or timestamp > newest[gpu_id][1]):
            newest[gpu_id] = (workload_id, timestamp)
    return newest


def record_latest(batch: SampleBatch) -> None:
    """Write the batch's newest values and workloads; must run inside the chunk's transaction,
    after ``counters.add_gpu_samples`` has locked the batch's GPU rows.

    Those locks make the chunk's transaction the only writer of its devices' read-model rows
    until it commits, so the rows need no order of their own against deadlocks.
    """
    if not batch.values:
        return
    newest = newest_rows(batch)
    adapt = connection.ops.adapt_datetimefield_value
    if connection.vendor == "postgresql":
        _write_latest_arrays(batch, newest)
    else:
        latest = [
            (gpu_id, metric_id, adapt(batch.timestamps[batch.time_of_row[row]]), batch.values[row])
            for (gpu_id, metric_id), row in newest.items()
        ]
        _execute_in_batches(UPSERT_LATEST, latest)
    workloads = [
        (gpu_id, workload_id, adapt(timestamp))
        for gpu_id, (workload_id, timestamp) in sorted(newest_workloads(batch).items())
    ]
    _execute_in_batches(UPDATE_WORKLOADS, workloads)


def _write_latest_arrays(batch: SampleBatch, newest: dict[tuple[int, int], int]) -> None:
    rows = newest.values()
    parameters: dict[str, str | list[datetime]] = {
        "times": batch.timestamps,
        "gpus": array_literal(gpu_id for gpu_id, _ in newest),
        "metrics": array_literal(metric_id for _, metric_id in newest),
        # SQL arrays count from 1.
        "positions": array_literal(
            at_time + 1 for at_time in map(batch.time_of_row.__getitem__, rows)
        ),
        "values": array_literal(map(batch.values.__getitem__, rows)),
    }
    with connection.cursor() as cursor:
        cursor.execute(UPDATE_LATEST, parameters)
        if cursor.rowcount < len(newest):
            cursor.execute(INSERT_MISSING_LATEST, parameters)


def _execute_in_batches(template: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Run ``template`` with its ``{rows}`` as VALUES lists: in one statement on PostgreSQL,
    in as few as SQLite's parameter limit allows there."""
    if not rows:
        return
    width = len(rows[0])
    limit = connection.features.max_query_params
    per_statement = len(rows) if limit is None else max(1, limit // width)
    row_placeholders = "(" + ", ".join(["%s"] * width) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            part = rows[start : start + per_statement]
            parameters = [value for row in part for value in row]
            # Only placeholders are formatted in; every value is a parameter.
            cursor.execute(
                template.format(rows=", ".join([row_placeholders] * len(part))), parameters
            )
