"""Pipeline totals from counters maintained at ingest: never a count of the sample table."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Count, Max, Min, Sum
from django.utils import timezone

from ingest import push
from ingest.models import Gpu, IngestedChunk, Metric, Tally
from ingest.queues import queue_depth
from telemetry_project.routing import COLLECT_QUEUE

RATE_WINDOW = timedelta(minutes=1)


def pipeline_stats() -> dict[str, Any]:
    totals = Tally.totals()
    per_metric = {
        name: totals.get(Tally.metric_key(metric_id), 0)
        for metric_id, name in Metric.objects.order_by("name").values_list("id", "name")
    }
    gpus = Gpu.objects.filter(sample_count__gt=0).aggregate(
        # Physical GPUs: a GPU's MIG instances share its uuid.
        unique_gpus=Count("uuid", distinct=True),
        unique_hosts=Count("hostname", distinct=True),
        first_timestamp=Min("first_seen"),
        last_timestamp=Max("last_seen"),
    )
    # The ledger's committed_at index keeps this to the last minute's chunks.
    recent = IngestedChunk.objects.filter(committed_at__gte=timezone.now() - RATE_WINDOW)
    recent_rows = recent.aggregate(rows=Sum("rows_committed"))["rows"] or 0
    try:
        depth: int | None = queue_depth(COLLECT_QUEUE)
    except Exception:  # noqa: BLE001  (stats stay useful while the broker is down)
        depth = None
    return {
        "total_records": sum(per_metric.values()),
        **gpus,
        "metrics": per_metric,
        "rejected_rows": totals.get(Tally.REJECTED, 0),
        "push_ignored_samples": totals.get(push.IGNORED_SAMPLES, 0),
        "push_stale_markers": totals.get(push.STALE_MARKERS, 0),
        "collect_queue_depth": depth,
        "ingest_rate_per_s": round(recent_rows / RATE_WINDOW.total_seconds(), 3),
    }
