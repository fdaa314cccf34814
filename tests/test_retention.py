"""Retention on PostgreSQL: whole partitions dropped, counters kept exact, partition bounds
aligned whatever ``PARTITION_DAYS`` is, a change of width handled, and a time range that
touches only its partitions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Max, Min
from django.test import Client
from pytest_django.fixtures import Settings

from ingest import partitions
from ingest.models import Gpu, Metric, Sample, Tally
from ingest.tasks import maintain_partitions
from tests.support.api_data import load_csv
from tests.support.pipeline import write_days

pytestmark = pytest.mark.django_db(transaction=True)

KEPT_DAYS = 3
# (partition width, days of data): a week needs more than retention + 7 days of data for
# one partition to lie wholly before the cutoff whatever weekday today is.
WIDTHS = [pytest.param(1, 10, id="daily"), pytest.param(7, 14, id="weekly")]


@pytest.fixture(autouse=True)
def no_partitions() -> Iterator[None]:
    """Start and end without partitions: widths left by other tests would decide the bounds."""
    _drop_all_partitions()
    yield
    _drop_all_partitions()


def _drop_all_partitions() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname ~ %s",
            [partitions.NAME_PATTERN],
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP TABLE "{name}"')
    partitions.forget()


@pytest.mark.parametrize(("width", "days"), WIDTHS)
def test_retention_drops_whole_partitions_and_keeps_counters_exact(
    tmp_path: Path, settings: Settings, client: Client, width: int, days: int
) -> None:
    settings.PARTITION_DAYS = width
    rows = write_days(tmp_path / "days.csv", days)
    load_csv(tmp_path / "days.csv")
    assert Sample.objects.count() == len(rows)

    settings.RETENTION_DAYS = KEPT_DAYS
    maintain_partitions()

    cutoff_day = datetime.now(UTC).date() - timedelta(days=KEPT_DAYS)
    # Daily partitions end at the cutoff; weekly ones at the Monday on or before it.
    kept_from = cutoff_day - timedelta(days=cutoff_day.weekday() if width == 7 else 0)
    kept = [r for r in rows if datetime.fromisoformat(r["timestamp"]).date() >= kept_from]
    assert 0 < len(kept) < len(rows)
    assert Sample.objects.count() == len(kept)
    assert not Sample.objects.filter(timestamp__lt=partitions.midnight(kept_from)).exists()

    remaining = partitions.attached_partitions()
    assert remaining[0].start == partitions.midnight(kept_from)
    for partition in remaining:
        assert partition.end - partition.start == timedelta(days=width)
        if width == 7:
            assert partition.start.weekday() == 0, partition

    per_gpu = Counter(r["uuid"] for r in kept)
    per_metric = Counter(r["metric_name"] for r in kept)
    assert {g.uuid: g.sample_count for g in Gpu.objects.all()} == per_gpu
    totals = Tally.totals()
    assert {m.name: totals[Tally.metric_key(m.pk)] for m in Metric.objects.all()} == per_metric
    seen = Sample.objects.values_list("gpu__uuid").annotate(Min("timestamp"), Max("timestamp"))
    assert {g.uuid: (g.first_seen, g.last_seen) for g in Gpu.objects.all()} == {
        uuid: (first, last) for uuid, first, last in seen
    }
    stats = client.get("/api/v1/stats").json()
    assert stats["total_records"] == Sample.objects.count()
    assert stats["metrics"] == per_metric
    assert stats["unique_gpus"] == len(per_gpu)


def test_a_change_of_width_keeps_old_partitions_and_fills_only_the_gaps(
    settings: Settings,
) -> None:
    monday = date(2030, 1, 7)

    def day(offset: int) -> datetime:
        return partitions.midnight(monday + timedelta(days=offset))

    # A partition named the way daily ones were before the width was configurable.
    legacy = f"{partitions.PARENT}_p{day(2):%Y%m%d}"
    with connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TABLE "{legacy}" PARTITION OF {partitions.PARENT} '
            "FOR VALUES FROM (%s) TO (%s)",
            [day(2), day(3)],
        )
    settings.PARTITION_DAYS = 1
    partitions.ensure_partitions([monday + timedelta(days=4)])

    settings.PARTITION_DAYS = 7
    week = [monday + timedelta(days=offset) for offset in range(7)]
    partitions.ensure_partitions([*week, monday + timedelta(days=7)])

    bounds = [(p.start, p.end) for p in partitions.attached_partitions()]
    # The week is covered by the two daily partitions and the gaps around them, no overlap;
    # the next week is a whole aligned one.
    assert bounds == [
        (day(0), day(2)),
        (day(2), day(3)),
        (day(3), day(4)),
        (day(4), day(5)),
        (day(5), day(7)),
        (day(7), day(14)),
    ]
    every_hour = [day(0) + timedelta(hours=hour) for hour in range(24 * 8)]
    Sample.objects.bulk_create(
        Sample(timestamp=moment, value=1.0, gpu_id=1, metric_id=1) for moment in every_hour
    )

    dropped = partitions.drop_partitions_before(monday + timedelta(days=5))
    assert legacy in dropped
    assert len(dropped) == 4
    assert Sample.objects.filter(timestamp__lt=day(5)).count() == 0
    assert Sample.objects.count() == 24 * 3


@pytest.mark.parametrize(("width", "days"), WIDTHS)
def test_a_time_range_touches_only_its_partitions(
    tmp_path: Path, settings: Settings, width: int, days: int
) -> None:
    settings.PARTITION_DAYS = width
    write_days(tmp_path / "days.csv", days)
    load_csv(tmp_path / "days.csv")
    day = datetime.now(UTC).date() - timedelta(days=2)
    start = partitions.midnight(day)

    query = Sample.objects.filter(
        gpu_id=1, timestamp__gte=start, timestamp__lt=start + timedelta(days=1)
    )
    plan = query.explain()

    attached = partitions.attached_partitions()
    assert len(attached) >= 2
    scanned = {p.name for p in attached if p.name in plan}
    assert scanned == {p.name for p in attached if p.covers(start)}
