"""Retention on SQLite (the embedded mode): expired rows deleted in small batches, counters exact.

SQLite's sample table has no partitions to drop, so the hourly task deletes expired samples
GPU by GPU through the (gpu, timestamp) index, a bounded batch per transaction, uncounting
each batch in the same transaction. The scenario runs in a child process with the embedded
settings (settings, and so the database, are read once per process), over a generated export
committed through the collector, and reports what it found as JSON.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Min

from ingest import retention
from ingest.models import Gpu, Sample, Tally
from ingest.tasks import maintain_partitions
from tests.support.api_data import load_csv
from tests.support.embedded import run_on_embedded_database
from tests.support.pipeline import write_days

DAYS = 10
BATCH_ROWS = 7  # small, so every GPU's expired rows take several transactions


def counters_match_the_samples() -> dict[str, bool]:
    """Whether each GPU's count and first time, and each metric's tally, are the table's."""
    per_gpu = {
        row["gpu_id"]: row
        for row in Sample.objects.values("gpu_id").annotate(n=Count("id"), first=Min("timestamp"))
    }
    gpus_exact = all(
        (gpu.sample_count, gpu.first_seen)
        == ((per_gpu[gpu.pk]["n"], per_gpu[gpu.pk]["first"]) if gpu.pk in per_gpu else (0, None))
        for gpu in Gpu.objects.all()
    )
    totals = Tally.totals()
    per_metric = dict(Sample.objects.values_list("metric_id").annotate(n=Count("id")))
    metrics_exact = all(
        totals.get(Tally.metric_key(metric_id), 0) == per_metric.get(metric_id, 0)
        for metric_id in {*per_metric, *range(1, 4)}
    )
    return {"gpus": gpus_exact, "metrics": metrics_exact}


def expire_on_this_database(csv_path: str) -> dict[str, Any]:
    """The scenario, on the database of this process (run in the child, on SQLite)."""
    call_command("migrate", verbosity=0)
    loaded = load_csv(Path(csv_path))
    retention.DELETE_BATCH_ROWS = BATCH_ROWS
    cutoff = datetime.combine(datetime.now(UTC).date() - timedelta(days=4), time(), tzinfo=UTC)
    expected = Sample.objects.filter(timestamp__gte=cutoff).count()
    plan = retention.expired_samples(1, cutoff)[:BATCH_ROWS].explain()

    batches = retention.delete_samples_before(cutoff)
    after_cutoff = {
        "remaining": Sample.objects.count(),
        "older_left": Sample.objects.filter(timestamp__lt=cutoff).count(),
        "counters": counters_match_the_samples(),
    }

    settings.RETENTION_DAYS = 2
    summary = maintain_partitions()
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    return {
        "vendor": connection.vendor,
        "loaded": loaded.rows,
        "expected": expected,
        "plan": plan,
        "batches": batches,
        "after_cutoff": after_cutoff,
        "task": summary,
        "older_than_two_days_left": Sample.objects.filter(timestamp__lt=two_days_ago).count(),
        "left": Sample.objects.count(),
        "counters_after_task": counters_match_the_samples(),
    }


def run_on_sqlite(tmp_path: Path) -> dict[str, Any]:
    csv_path = tmp_path / "days.csv"
    write_days(csv_path, DAYS)
    script = (
        "import json, sys\n"
        "from tests.test_retention_sqlite import expire_on_this_database\n"
        "print(json.dumps(expire_on_this_database(sys.argv[1]), default=str))\n"
    )
    report: dict[str, Any] = json.loads(run_on_embedded_database(script, tmp_path, str(csv_path)))
    return report


def test_retention_deletes_expired_samples_on_sqlite_in_small_batches_with_exact_counters(
    tmp_path: Path,
) -> None:
    report = run_on_sqlite(tmp_path)

    assert report["vendor"] == "sqlite"
    assert report["loaded"] == 2 * 2 * 3 * DAYS  # hosts x GPUs x metrics x days
    # Through the (gpu, timestamp) index, not a scan of the table.
    assert "USING INDEX ingest_sample_gpu_time_id (gpu_id=? AND timestamp<?)" in report["plan"]
    # Five days before the cutoff, three metrics each, for each of the four GPUs: 15 rows a
    # GPU, in batches of at most seven, each its own transaction.
    assert report["batches"] == [7, 7, 1] * 4
    assert report["after_cutoff"] == {
        "remaining": report["expected"],
        "older_left": 0,
        "counters": {"gpus": True, "metrics": True},
    }
    assert "transactions" in report["task"]
    assert "deleted" in report["task"]
    assert report["older_than_two_days_left"] == 0
    assert 0 < report["left"] < report["expected"]
    assert report["counters_after_task"] == {"gpus": True, "metrics": True}
