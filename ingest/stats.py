"""Pipeline totals from counters maintained at ingest: never a count of the sample table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ingest import push
from ingest.models import Tally
from ingest.queues import queue_depth
from telemetry_project.routing import COLLECT_QUEUE

RATE_WINDOW = timedelta(minutes=1)

# Two statements, written out rather than built by the ORM: /stats is polled by dashboards,
# and building its four querysets cost more than running them (docs/measurements.md,
# "The stats request"). The first reads every tally summed over its stripes ("t" rows) and
# every metric's name and id ("m" rows), in one round trip.
TALLIES_AND_METRICS = (
    "SELECT 't', name, SUM(value) FROM ingest_tally GROUP BY name "
    "UNION ALL SELECT 'm', name, id FROM ingest_metric"
)
# Physical GPUs and hosts: a GPU's MIG instances share its uuid. The ledger's committed_at
# index keeps the rate's sum to the last minute's chunks.
FLEET_AND_RATE = (
    "SELECT COUNT(DISTINCT uuid), COUNT(DISTINCT hostname), MIN(first_seen), MAX(last_seen), "
    "(SELECT SUM(rows_committed) FROM ingest_ingestedchunk WHERE committed_at >= %s) "
    "FROM ingest_gpu WHERE sample_count > 0"
)


def pipeline_stats() -> dict[str, Any]:
    totals: dict[str, int] = {}
    metric_ids: dict[str, int] = {}
    since = connection.ops.adapt_datetimefield_value(timezone.now() - RATE_WINDOW)
    with connection.cursor() as cursor:
        cursor.execute(TALLIES_AND_METRICS)
        for kind, name, number in cursor.fetchall():
            (totals if kind == "t" else metric_ids)[name] = int(number)
        cursor.execute(FLEET_AND_RATE, [since])
        unique_gpus, unique_hosts, first, last, recent_rows = cursor.fetchone()
    per_metric = {
        name: totals.get(Tally.metric_key(metric_ids[name]), 0) for name in sorted(metric_ids)
    }
    try:
        depth: int | None = queue_depth(COLLECT_QUEUE)
    except Exception:  # noqa: BLE001  (stats stay useful while the broker is down)
        depth = None
    return {
        "total_records": sum(per_metric.values()),
        "unique_gpus": unique_gpus,
        "unique_hosts": unique_hosts,
        "first_timestamp": _moment(first),
        "last_timestamp": _moment(last),
        "metrics": per_metric,
        "rejected_rows": totals.get(Tally.REJECTED, 0),
        "push_ignored_samples": totals.get(push.IGNORED_SAMPLES, 0),
        "push_stale_markers": totals.get(push.STALE_MARKERS, 0),
        "collect_queue_depth": depth,
        "ingest_rate_per_s": round((recent_rows or 0) / RATE_WINDOW.total_seconds(), 3),
    }


def _moment(value: datetime | str | None) -> datetime | None:
    """A timestamp column's MIN or MAX as an aware datetime: SQLite hands back the stored
    text (UTC, as Django writes it), PostgreSQL a datetime."""
    if not isinstance(value, str):
        return value
    moment = parse_datetime(value)
    return None if moment is None else moment.replace(tzinfo=UTC)
