"""The sample writer stores the same thing on PostgreSQL (COPY) and on SQLite (bulk_create).

The two paths share nothing below ``write_samples``, so the same samples are written through
each and read back through the ORM: times to the microsecond as the same instant in UTC,
values bit for bit (float.hex tells -0.0 from 0.0 and keeps every digit of a subnormal), and
a missing workload as None. The SQLite side runs in a child process with the embedded
settings, since settings (and so the database) are read once per process.

One difference is SQLite's own and pinned here so that a change shows: a column of REAL
affinity stores a whole-number value as an integer, so -0.0 reads back as 0.0 (a column
without affinity would keep it, but Django declares FloatField as ``real``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple

import pytest
from django.db import transaction

from ingest import partitions
from ingest.models import Sample
from ingest.writer import SampleBatch, write_samples
from tests.support.embedded import run_on_embedded_database

pytestmark = pytest.mark.django_db(transaction=True)

INDIA = timezone(timedelta(hours=5, minutes=30))
PACIFIC = timezone(timedelta(hours=-8))

VALUES = [
    0.0,
    -0.0,
    5e-324,  # the smallest subnormal
    2.2250738585072014e-308,  # the smallest normal
    -1.7976931348623157e308,  # the largest finite, negated
    1.7976931348623157e308,
    1 / 3,
    0.1,
    1e-300,
    123456.789,
    float(2**53 + 2),
    -273.15,
]
TIMES = [
    datetime(2025, 7, 18, 13, 42, 34, 123456, tzinfo=UTC),
    datetime(2025, 7, 19, 3, 0, 0, 500000, tzinfo=INDIA),  # still 18 July in UTC
    datetime(2025, 7, 18, 20, 0, 0, 1, tzinfo=PACIFIC),  # already 19 July in UTC
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]


class Row(NamedTuple):
    timestamp: datetime
    value: float
    gpu_id: int
    metric_id: int
    workload_id: int | None


ROWS = [
    Row(
        TIMES[index % len(TIMES)],
        value,
        gpu_id=index % 3 + 1,
        metric_id=index % 5 + 1,
        workload_id=None if index % 2 else index,
    )
    for index, value in enumerate(VALUES)
]


def batch_of(rows: list[Row]) -> SampleBatch:
    """The rows in the writer's columnar form, each distinct GPU, metric and time listed once."""
    series: dict[tuple[int, int | None], int] = {}
    metrics: dict[int, int] = {}
    times: dict[datetime, int] = {}
    for row in rows:
        series.setdefault((row.gpu_id, row.workload_id), len(series))
        metrics.setdefault(row.metric_id, len(metrics))
        times.setdefault(row.timestamp, len(times))
    return SampleBatch(
        series=list(series),
        metric_ids=list(metrics),
        timestamps=list(times),
        series_of_row=[series[row.gpu_id, row.workload_id] for row in rows],
        metric_of_row=[metrics[row.metric_id] for row in rows],
        time_of_row=[times[row.timestamp] for row in rows],
        values=[row.value for row in rows],
    )


Stored = list[list[object]]


def write_and_read() -> Stored:
    """Write ``ROWS`` on this process's database and read them back, comparably."""
    partitions.ensure_partitions({row.timestamp.astimezone(UTC).date() for row in ROWS})
    with transaction.atomic():
        write_samples(batch_of(ROWS))
    stored = Sample.objects.order_by("id").values_list(
        "timestamp", "value", "gpu_id", "metric_id", "workload_id"
    )
    return [
        [stamp.isoformat(), value.hex(), gpu_id, metric_id, workload_id]
        for stamp, value, gpu_id, metric_id, workload_id in stored
    ]


def expected() -> Stored:
    return [
        [
            s.timestamp.astimezone(UTC).isoformat(),
            s.value.hex(),
            s.gpu_id,
            s.metric_id,
            s.workload_id,
        ]
        for s in ROWS
    ]


def write_and_read_on_sqlite(var_dir: Path) -> Stored:
    script = (
        "import json\n"
        "from django.core.management import call_command\n"
        "from django.db import connection\n"
        "call_command('migrate', verbosity=0)\n"
        "assert connection.vendor == 'sqlite', connection.vendor\n"
        "from tests.test_writer_databases import write_and_read\n"
        "print(json.dumps(write_and_read()))\n"
    )
    stored: Stored = json.loads(run_on_embedded_database(script, var_dir))
    return stored


def test_postgresql_and_sqlite_store_the_same_samples(tmp_path: Path) -> None:
    on_postgresql = write_and_read()
    on_sqlite = write_and_read_on_sqlite(tmp_path / "var")

    assert on_postgresql == expected()
    negative_zero = (-0.0).hex()
    assert on_sqlite == [
        [stamp, (0.0).hex() if value == negative_zero else value, *rest]
        for stamp, value, *rest in on_postgresql
    ]
