"""Retention: samples older than ``RETENTION_DAYS`` leave the database, the counters in step.

On PostgreSQL whole partitions are dropped (``partitions.drop_partitions_before``). SQLite, the
embedded mode's database, has no partitions, so there expired rows are deleted: GPU by GPU,
oldest first, found through the (gpu, timestamp) index, at most ``DELETE_BATCH_ROWS`` rows a
transaction. SQLite has one writer at a time, and one long delete would hold the write lock
for as long as it ran while the collector waited on its busy timeout; between batches the
lock is free and a chunk can commit. Each batch subtracts the rows it deleted, by GPU and
metric, from the counters in the same transaction, so /gpus and /stats stay exact.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from ingest import counters, partitions
from ingest.models import Gpu, Sample

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
