"""The read model the fleet view reads: each device's newest value per metric and its newest
workload, kept by the collector in the transaction that writes a chunk's samples.

One upsert a chunk (on SQLite a few, whose statements take a bounded number of parameters)
writes the chunk's newest row of each (device, metric); the database keeps whichever
timestamp is newer, so chunks committed out of order, or a backfill of old data, never put an
older value over a newer one. docs/design.md, "Read model".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import connection

from ingest.writer import SampleBatch

# Rows in (gpu, metric) order: with the GPU rows already locked in id order by the counters'
# update, concurrent collectors take these row locks in one order too.
_ON_CONFLICT = (
    'ON CONFLICT (gpu_id, metric_id) DO UPDATE SET "timestamp" = excluded."timestamp", '
    'value = excluded.value WHERE excluded."timestamp" > ingest_latestvalue."timestamp"'
)
UPSERT_LATEST = (
    'INSERT INTO ingest_latestvalue (gpu_id, metric_id, "timestamp", value) VALUES {rows} '  # noqa: S608  (constants only)
    + _ON_CONFLICT
)
# On PostgreSQL the rows travel as four arrays, the times as positions in the chunk's few
# distinct times: adapting four lists of numbers costs a fraction of a placeholder per value,
# which for a chunk's thousands of rows was more than the statement itself.
UPSERT_LATEST_ARRAYS = (
    'INSERT INTO ingest_latestvalue (gpu_id, metric_id, "timestamp", value) '
    "SELECT row.gpu_id, row.metric_id, (%s::timestamptz[])[row.at_time], row.value "
    "FROM unnest(%s::integer[], %s::integer[], %s::integer[], %s::float8[]) "
    "AS row(gpu_id, metric_id, at_time, value) " + _ON_CONFLICT
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
    if len(batch.timestamps) == 1:  # a stamped chunk: every row has the one time
        in_time_order: Iterable[int] = range(len(batch.values))
    else:
        chronological = sorted(range(len(batch.timestamps)), key=batch.timestamps.__getitem__)
        rank = [0] * len(chronological)
        for position, at_time in enumerate(chronological):
            rank[at_time] = position
        time_of_row = batch.time_of_row
        # A stable sort: rows of one time keep their order in the chunk.
        in_time_order = sorted(range(len(batch.values)), key=lambda row: rank[time_of_row[row]])
    gpu_of_series = [gpu for gpu, _ in batch.series]
    series_of_row, metric_of_row = batch.series_of_row, batch.metric_of_row
    return {
        (gpu_of_series[series_of_row[row]], batch.metric_ids[metric_of_row[row]]): row
        for row in in_time_order
    }


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
    """Upsert the batch's newest values and workloads; must run inside the chunk's transaction,
    after ``counters.add_gpu_samples`` has locked the batch's GPU rows."""
    if not batch.values:
        return
    adapt = connection.ops.adapt_datetimefield_value
    newest = sorted(newest_rows(batch).items())
    if connection.vendor == "postgresql":
        time_of_row, values = batch.time_of_row, batch.values
        with connection.cursor() as cursor:
            cursor.execute(
                UPSERT_LATEST_ARRAYS,
                [
                    batch.timestamps,
                    [gpu_id for (gpu_id, _), _ in newest],
                    [metric_id for (_, metric_id), _ in newest],
                    [time_of_row[row] + 1 for _, row in newest],  # SQL arrays count from 1
                    [values[row] for _, row in newest],
                ],
            )
    else:
        latest = [
            (gpu_id, metric_id, adapt(batch.timestamps[batch.time_of_row[row]]), batch.values[row])
            for (gpu_id, metric_id), row in newest
        ]
        _execute_in_batches(UPSERT_LATEST, latest)
    workloads = [
        (gpu_id, workload_id, adapt(timestamp))
        for gpu_id, (workload_id, timestamp) in sorted(newest_workloads(batch).items())
    ]
    _execute_in_batches(UPDATE_WORKLOADS, workloads)


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
