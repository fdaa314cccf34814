"""Pipeline totals from counters maintained at ingest: never a count of the sample table."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Max, Min, Sum

from ingest.models import Gpu, Metric, Tally
from ingest.queues import COLLECT_QUEUE, queue_depth


def pipeline_stats() -> dict[str, Any]:
    tallies = dict(Tally.objects.values_list("name").annotate(total=Sum("value")))
    per_metric = {
        metric.name: int(tallies.get(Tally.metric_key(metric.id), 0))
        for metric in Metric.objects.all()
    }
    gpus = Gpu.objects.filter(sample_count__gt=0).aggregate(
        unique_gpus=Count("id"),
        unique_hosts=Count("hostname", distinct=True),
        first_timestamp=Min("first_seen"),
        last_timestamp=Max("last_seen"),
    )
    try:
        depth: int | None = queue_depth(COLLECT_QUEUE)
    except Exception:  # noqa: BLE001  (stats stay useful while the broker is down)
        depth = None
    return {
        "total_records": sum(per_metric.values()),
        **gpus,
        "metrics": per_metric,
        "rejected_rows": int(tallies.get(Tally.REJECTED, 0)),
        "collect_queue_depth": depth,
    }
