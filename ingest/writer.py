"""The one place that writes samples: COPY on PostgreSQL, ``bulk_create`` elsewhere.

The ORM spends tens of times more Python per row than COPY through the connection Django
already holds, which also joins the caller's transaction with the ledger and counters
(docs/measurements.md, "COPY instead of the ORM"). The
COPY text is built from the batch's short lists of distinct GPUs, metrics and times, so each
row costs one string join and the repr of its value. On PostgreSQL the rows carry their ids,
taken with one sequence call for the batch (``ingest.sample_ids``); on SQLite the database
numbers them.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any, Final, NamedTuple

from django.db import connection

from ingest.models import Sample
from ingest.sample_ids import take_ids

BULK_CREATE_BATCH: Final = 500
# The order of the fields in each COPY line.
COPY_COLUMNS: Final = '(id, gpu_id, workload_id, metric_id, "timestamp", value)'
# psycopg2 reads the COPY source in blocks of this size; one block per chunk's text.
COPY_BLOCK_BYTES: Final = 1 << 20
NULL: Final = "\\N"


class SampleBatch(NamedTuple):
    """Samples as columns: row ``i`` is the GPU and workload ``series[series_of_row[i]]``,
    metric ``metric_ids[metric_of_row[i]]``, time ``timestamps[time_of_row[i]]`` and value
    ``values[i]``."""

    series: list[tuple[int, int | None]]  # (gpu id, workload id or None)
    metric_ids: list[int]
    timestamps: list[datetime]
    series_of_row: list[int]
    metric_of_row: list[int]
    time_of_row: list[int]
    values: list[float]


def write_samples(batch: SampleBatch) -> None:
    """Insert the batch's rows; must run inside the caller's transaction."""
    if not batch.values:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            copy_samples(cursor.cursor, "ingest_sample", batch)
        return
    series, metric_ids, timestamps = batch.series, batch.metric_ids, batch.timestamps
    Sample.objects.bulk_create(
        [
            Sample(
                gpu_id=series[at_series][0],
                workload_id=series[at_series][1],
                metric_id=metric_ids[at_metric],
                timestamp=timestamps[at_time],
                value=value,
            )
            for at_series, at_metric, at_time, value in _rows(batch)
        ],
        batch_size=BULK_CREATE_BATCH,
    )


def copy_samples(cursor: Any, table: str, batch: SampleBatch) -> None:
    """COPY the batch into ``table`` through ``cursor`` (psycopg2's), with ids taken for it."""
    ids = take_ids(cursor, len(batch.values))
    cursor.copy_expert(
        f"COPY {table} {COPY_COLUMNS} FROM STDIN",
        io.BytesIO(copy_text(batch, ids)),
        COPY_BLOCK_BYTES,
    )


def copy_text(batch: SampleBatch, ids: list[int]) -> bytes:
    """The batch in COPY's text format, fields in ``COPY_COLUMNS`` order, row ``i`` with the
    id ``ids[i]``."""
    series = [
        f"{gpu}\t{NULL if workload is None else workload}\t" for gpu, workload in batch.series
    ]
    metrics = [f"{metric_id}\t" for metric_id in batch.metric_ids]
    times = [f"{timestamp.isoformat()}\t" for timestamp in batch.timestamps]
    # repr is the shortest text that reads back as the same double (-0.0 and subnormals too).
    lines = [
        f"{row_id}\t{series[at_series]}{metrics[at_metric]}{times[at_time]}{value!r}\n"
        for row_id, (at_series, at_metric, at_time, value) in zip(ids, _rows(batch), strict=True)
    ]
    return "".join(lines).encode()


def _rows(batch: SampleBatch) -> zip[tuple[int, int, int, float]]:
    return zip(
        batch.series_of_row, batch.metric_of_row, batch.time_of_row, batch.values, strict=True
    )
