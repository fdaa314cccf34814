"""Retention: samples older than ``RETENTION_DAYS`` leave the database, the counters in step.

On PostgreSQL whole partitions are dropped (``partitions.drop_partitions_before``). SQLite, the
embedded mode's database, has no partitions, so there expired rows are deleted: GPU by GPU,
oldest first, found through the (gpu, timestamp) index, at most ``DELETE_BATCH_ROWS`` rows a
transaction. SQLite has one writer at a time, and one long delete would hold the write lock
for as long as it ran while the collector waited on its busy timeout; between batches the
lock is free and a chunk can commit. Each batch subtracts the rows it deleted, by GPU and
metric, from the counters in the same transaction, so /gpus and /stats stay exact.

The ledger has a window of its own, ``LEDGER_RETENTION_DAYS``: it gains a row per chunk and is
needed only while a copy of that chunk can still arrive (a redelivery, a re-publishing, a
client's retry of a push). Its rows older than the window, and attempt counts left as old, are
deleted in batches of the same size, by primary key, each its own transaction, so no delete
holds its locks for long. A ledger row whose chunk is still outstanding on a cursor is kept
whatever its age: the streamer confirms a chunk by finding that row, and without it would
publish the chunk again. docs/design.md, "The ledger's window".
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Model, QuerySet

from ingest import counters, partitions
from ingest.models import (
    ChunkAttempt,
    Gpu,
    IngestedChunk,
    OutstandingChunk,
    Sample,
    outstanding_chunk_id,
)

# A few thousand rows: a batch takes milliseconds on SQLite, so the lock passes to the
# collector many times a second while a large backlog is deleted.
DELETE_BATCH_ROWS = 2000


def enforce(now: datetime) -> str:
    """Apply ``RETENTION_DAYS`` as of ``now``; what was done, for the task's result."""
    retention_days = settings.RETENTION_DAYS
    if not retention_days:
        return "retention off"
    if partitions.is_partitioned():
        cutoff_day = now.date() - timedelta(days=retention_days)
        return f"dropped {partitions.drop_partitions_before(cutoff_day)}"
    # The same cutoff as the collector's rejection of rows past retention.
    batches = delete_samples_before(now - timedelta(days=retention_days))
    return f"deleted {sum(batches)} samples in {len(batches)} transactions"


def expired_samples(gpu_id: int, cutoff: datetime) -> QuerySet[Sample]:
    """The GPU's samples older than ``cutoff``, oldest first: a range of the (gpu, timestamp)
    index."""
    return Sample.objects.filter(gpu_id=gpu_id, timestamp__lt=cutoff).order_by("timestamp")


def delete_samples_before(cutoff: datetime) -> list[int]:
    """Delete every sample older than ``cutoff`` in batches; the rows each batch deleted.

    A GPU's ``first_seen`` is its oldest sample's time, so GPUs with nothing to delete are
    passed over without touching the sample table.
    """
    batches = []
    expiring = Gpu.objects.filter(first_seen__lt=cutoff).order_by("id")
    for gpu_id in expiring.values_list("id", flat=True):
        while True:
            deleted = _delete_batch(gpu_id, cutoff)
            if deleted:
                batches.append(deleted)
            if deleted < DELETE_BATCH_ROWS:
                break
    return batches


def _delete_batch(gpu_id: int, cutoff: datetime) -> int:
    """Delete up to ``DELETE_BATCH_ROWS`` of the GPU's oldest expired samples, and uncount
    them, in one transaction."""
    with transaction.atomic():
        batch = list(
            expired_samples(gpu_id, cutoff).values_list("id", "metric_id")[:DELETE_BATCH_ROWS]
        )
        if not batch:
            return 0
        Sample.objects.filter(pk__in=[sample_id for sample_id, _ in batch]).delete()
        per_metric = Counter(metric_id for _, metric_id in batch)
        counters.remove_samples({(gpu_id, metric_id): n for metric_id, n in per_metric.items()})
    return len(batch)


def prune_ledger(now: datetime) -> str:
    """Apply ``LEDGER_RETENTION_DAYS`` as of ``now``; what was done, for the task's result."""
    retention_days = settings.LEDGER_RETENTION_DAYS
    if not retention_days:
        return "ledger kept"
    cutoff = now - timedelta(days=retention_days)
    expired_ledger = IngestedChunk.objects.filter(committed_at__lt=cutoff).exclude(
        pk__in=_outstanding_chunk_ids()
    )
    ledger = sum(delete_in_batches(expired_ledger))
    attempts = sum(delete_in_batches(ChunkAttempt.objects.filter(updated_at__lt=cutoff)))
    return f"pruned {ledger} ledger rows and {attempts} attempt counts"


def _outstanding_chunk_ids() -> list[str]:
    """Ids of the chunks cursors still wait to see in the ledger (a few per cursor)."""
    outstanding = OutstandingChunk.objects.values_list(
        "cursor__source__kind", "cursor__source_id", "cursor__shard", "pass_number", "start_offset"
    )
    return [outstanding_chunk_id(*fields) for fields in outstanding]


def delete_in_batches(rows: QuerySet[Model]) -> list[int]:
    """Delete ``rows`` at most ``DELETE_BATCH_ROWS`` a transaction; the rows each deleted."""
    batches = []
    while True:
        with transaction.atomic():
            batch = list(rows.values_list("pk", flat=True)[:DELETE_BATCH_ROWS])
            if batch:
                rows.filter(pk__in=batch).delete()
        if batch:
            batches.append(len(batch))
        if len(batch) < DELETE_BATCH_ROWS:
            return batches
