"""The exact counters behind /gpus, /stats and /metrics, kept in step with the sample table.

They change in the same transaction as the samples they count: a chunk's commit adds to
them, and dropping an expired partition subtracts its rows. Updates touch rows in a fixed
order, so concurrent writers cannot deadlock.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Mapping
from typing import Any

from django.db import connection

from ingest.models import StreamSource, Tally
from ingest.sql_arrays import array_literal
from ingest.writer import SampleBatch


def stripe_for(chunk_id: str) -> int:
    """The tally stripe a chunk adds to: spread, so collectors rarely update the same row."""
    return zlib.crc32(chunk_id.encode()) % Tally.STRIPES


def source_label(source_id: int | None, *, pushed: bool = False) -> str:
    """The label a chunk of ``source_id`` (or a ``pushed`` one, of no source) is counted under
    in the per-source tallies.

    Read for every chunk (a primary-key lookup, small beside a chunk's commit) rather than
    cached, so a source the admin switches between scheduled and one-off is counted as what
    it is now.
    """
    if pushed:
        return Tally.PUSHES
    if source_id is None:
        return Tally.UNKNOWN_SOURCE
    scheduled = StreamSource.objects.filter(pk=source_id).values_list("scheduled", flat=True)
    found = scheduled.first()
    if found is None:  # the source was deleted while its chunks were in flight
        return Tally.UNKNOWN_SOURCE
    return str(source_id) if found else Tally.IMPORTS


def add_tallies(additions: Mapping[str, int], *, stripe: int) -> None:
    """Add to the named tallies (negative values subtract) in one upsert."""
    names = sorted(name for name, amount in additions.items() if amount)
    if not names:
        return
    placeholders = ", ".join(["(%s, %s, %s)"] * len(names))
    parameters: list[str | int] = []
    for name in names:
        parameters += [name, stripe, additions[name]]
    with connection.cursor() as cursor:
        # Only the placeholder list is formatted in; every value is a parameter.
        cursor.execute(
            f"INSERT INTO ingest_tally (name, stripe, value) VALUES {placeholders} "  # noqa: S608
            "ON CONFLICT (name, stripe) DO UPDATE SET value = ingest_tally.value + excluded.value",
            parameters,
        )


def _lock_gpus(ids: list[int]) -> None:
    # SQLite has a single writer; on PostgreSQL, id order makes concurrent updates safe.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM ingest_gpu WHERE id = ANY(%s::integer[]) ORDER BY id FOR UPDATE",
                [array_literal(ids)],
            )


# On PostgreSQL the GPUs travel as four array literals (ingest.sql_arrays), their first and
# last times as positions in the chunk's few distinct times: a VALUES list of four
# placeholders per GPU cost the client about 2.6 ms a chunk to quote (248 GPUs) and the server
# about 1 ms to parse.
ADD_GPU_SAMPLES_ARRAYS = (
    "UPDATE ingest_gpu SET sample_count = ingest_gpu.sample_count + v.samples, "
    "first_seen = LEAST(COALESCE(ingest_gpu.first_seen, v.first_seen), v.first_seen), "
    "last_seen = GREATEST(COALESCE(ingest_gpu.last_seen, v.last_seen), v.last_seen) "
    "FROM (SELECT v.id, v.samples, (%(times)s::timestamptz[])[v.first_at] AS first_seen, "
    "(%(times)s::timestamptz[])[v.last_at] AS last_seen FROM unnest(%(ids)s::integer[], "
    "%(samples)s::bigint[], %(firsts)s::integer[], %(lasts)s::integer[]) "
    "AS v(id, samples, first_at, last_at)) AS v WHERE ingest_gpu.id = v.id"
)


def add_gpu_samples(batch: SampleBatch) -> None:
    """Add a batch's samples to each GPU's exact count and first/last seen, in one UPDATE."""
    counts: Counter[int] = Counter()
    for at_series, count in Counter(batch.series_of_row).items():
        counts[batch.series[at_series][0]] += count
    if not counts:
        return
    # Each GPU's first and last time, as positions in batch.timestamps: a set of (series,
    # time) positions is a few hundred pairs per chunk.
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    timestamps = batch.timestamps
    for at_series, at_time in set(zip(batch.series_of_row, batch.time_of_row, strict=True)):
        gpu_id, timestamp = batch.series[at_series][0], timestamps[at_time]
        if gpu_id not in first or timestamp < timestamps[first[gpu_id]]:
            first[gpu_id] = at_time
        if gpu_id not in last or timestamp > timestamps[last[gpu_id]]:
            last[gpu_id] = at_time
    ids = sorted(counts)
    _lock_gpus(ids)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                ADD_GPU_SAMPLES_ARRAYS,
                {
                    "times": timestamps,
                    "ids": array_literal(ids),
                    "samples": array_literal(counts[gpu_id] for gpu_id in ids),
                    # SQL arrays count from 1.
                    "firsts": array_literal(first[gpu_id] + 1 for gpu_id in ids),
                    "lasts": array_literal(last[gpu_id] + 1 for gpu_id in ids),
                },
            )
        return
    adapt = connection.ops.adapt_datetimefield_value
    parameters: list[Any] = []
    for gpu_id in ids:
        parameters += [
            gpu_id,
            counts[gpu_id],
            adapt(timestamps[first[gpu_id]]),
            adapt(timestamps[last[gpu_id]]),
        ]
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(ids))
    with connection.cursor() as cursor:
        # Only placeholders are formatted in; values are parameters.
        cursor.execute(
            "UPDATE ingest_gpu SET sample_count = ingest_gpu.sample_count + v.column2, "  # noqa: S608
            "first_seen = MIN(COALESCE(ingest_gpu.first_seen, v.column3), v.column3), "
            "last_seen = MAX(COALESCE(ingest_gpu.last_seen, v.column4), v.column4) "
            f"FROM (VALUES {rows}) AS v WHERE ingest_gpu.id = v.column1",
            parameters,
        )


def remove_samples(counts: Mapping[tuple[int, int], int]) -> None:
    """Subtract dropped samples, by (gpu id, metric id), from the GPU and metric counters.

    Called once the samples are gone (a partition detached on PostgreSQL, rows deleted on
    SQLite), so ``first_seen`` is recomputed from the samples that remain (one indexed probe
    per GPU); a GPU left with none has no first or last time.
    """
    per_gpu: Counter[int] = Counter()
    per_metric: Counter[str] = Counter()
    for (gpu_id, metric_id), count in counts.items():
        per_gpu[gpu_id] += count
        per_metric[Tally.metric_key(metric_id)] -= count
    if not per_gpu:
        return
    ids = sorted(per_gpu)
    _lock_gpus(ids)
    rows = ", ".join(["(%s, %s)"] * len(ids))
    parameters: list[int] = []
    for gpu_id in ids:
        parameters += [gpu_id, per_gpu[gpu_id]]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ingest_gpu SET sample_count = ingest_gpu.sample_count - v.column2 "  # noqa: S608
            f"FROM (VALUES {rows}) AS v WHERE ingest_gpu.id = v.column1",
            parameters,
        )
        cursor.execute(
            "UPDATE ingest_gpu SET first_seen = ("  # noqa: S608  (placeholders only)
            "  SELECT min(s.timestamp) FROM ingest_sample s WHERE s.gpu_id = ingest_gpu.id"
            "), last_seen = CASE WHEN sample_count > 0 THEN last_seen END "
            f"WHERE id IN ({', '.join(['%s'] * len(ids))})",
            ids,
        )
    add_tallies(per_metric, stripe=0)
