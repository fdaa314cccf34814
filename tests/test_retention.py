"""Retention on PostgreSQL: whole daily partitions dropped, counters kept exact, and a time
range that touches only its partitions."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Min
from pytest_django.fixtures import Settings

from ingest import partitions
from ingest.dcgm_generator import GeneratorSpec, write_dcgm_csv
from ingest.models import Gpu, Metric, Sample, Tally
from ingest.tasks import maintain_partitions
from tests.api_data import load_csv

pytestmark = pytest.mark.django_db(transaction=True)

DAYS = 10
KEPT_DAYS = 3


def write_ten_days(path: Path) -> list[dict[str, str]]:
    """One timestep a day at noon for the last ten days (today included)."""
    today = datetime.now(UTC).date()
    start = datetime.combine(today - timedelta(days=DAYS - 1), time(12), tzinfo=UTC)
    spec = GeneratorSpec(
        hosts=2, gpus_per_host=2, metrics=3, timesteps=DAYS, interval_seconds=86400, start=start
    )
    with path.open("wb") as out:
        write_dcgm_csv(out, spec)
    with path.open(newline="") as source:
        return list(csv.DictReader(source))


def test_retention_drops_old_partitions_and_keeps_counters_exact(
    tmp_path: Path, settings: Settings
) -> None:
    rows = write_ten_days(tmp_path / "ten_days.csv")
    settings.RETENTION_DAYS = 0
    load_csv(tmp_path / "ten_days.csv")
    assert Sample.objects.count() == len(rows)

    settings.RETENTION_DAYS = KEPT_DAYS
    maintain_partitions()

    cutoff = datetime.combine(
        datetime.now(UTC).date() - timedelta(days=KEPT_DAYS), time(), tzinfo=UTC
    )
    kept = [r for r in rows if datetime.fromisoformat(r["timestamp"]) >= cutoff]
    assert 0 < len(kept) < len(rows)
    assert Sample.objects.count() == len(kept)
    assert not Sample.objects.filter(timestamp__lt=cutoff).exists()
    per_gpu = Counter(r["uuid"] for r in kept)
    assert {g.uuid: g.sample_count for g in Gpu.objects.all()} == per_gpu
    totals = Tally.totals()
    per_metric = Counter(r["metric_name"] for r in kept)
    assert {m.name: totals[Tally.metric_key(m.pk)] for m in Metric.objects.all()} == per_metric
    first = dict(Sample.objects.values_list("gpu__uuid").annotate(first=Min("timestamp")))
    assert {g.uuid: g.first_seen for g in Gpu.objects.all()} == first
    days_left = {name.removeprefix("ingest_sample_p") for name in _partition_names()}
    assert min(days_left) >= f"{cutoff:%Y%m%d}"


def test_a_time_range_touches_only_its_partitions(tmp_path: Path, settings: Settings) -> None:
    write_ten_days(tmp_path / "ten_days.csv")
    settings.RETENTION_DAYS = 0
    load_csv(tmp_path / "ten_days.csv")
    day = datetime.now(UTC).date() - timedelta(days=2)
    start = datetime.combine(day, time(), tzinfo=UTC)

    query = Sample.objects.filter(
        gpu_id=1, timestamp__gte=start, timestamp__lt=start + timedelta(days=1)
    )
    plan = query.explain()

    scanned = {name for name in _partition_names() if name in plan}
    assert scanned == {partitions.partition_name(day)}


def _partition_names() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'ingest_sample'::regclass ORDER BY 1"
        )
        return [row[0] for row in cursor.fetchall()]
