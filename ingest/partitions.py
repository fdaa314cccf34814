"""Daily range partitions of the sample table on PostgreSQL.

A partition is created standalone and then ATTACHed: ATTACH takes only a SHARE UPDATE
EXCLUSIVE lock on the parent, so collectors keep inserting while a new day is added, where
``CREATE TABLE ... PARTITION OF`` would wait for (and then block) every open insert.
Old days are removed with ``DETACH ... CONCURRENTLY`` and a DROP of the detached table.
On other databases the table is not partitioned and these functions do nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from django.db import connection, transaction

from ingest import counters

logger = logging.getLogger(__name__)

PARENT = "ingest_sample"
# Any fixed number: serialises partition creation among collectors across processes.
_ADVISORY_LOCK_KEY = 7_253_101

_known: set[date] = set()


def partition_name(day: date) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def is_partitioned() -> bool:
    return connection.vendor == "postgresql"


def ensure_partitions(days: Iterable[date]) -> None:
    """Make sure a partition exists for each day, before a write lands in a missing one.

    Runs outside the caller's transaction (callers call it before opening theirs), so the
    new partition is committed and visible to every collector at once.
    """
    if not is_partitioned():
        return
    missing = sorted(set(days) - _known)
    if not missing:
        return
    existing = _existing_partitions()
    for day in missing:
        if day not in existing:
            _create_partition(day)
        _known.add(day)


def _existing_partitions() -> set[date]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT child.relname FROM pg_inherits
            JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
            JOIN pg_class child ON child.oid = pg_inherits.inhrelid
            WHERE parent.relname = %s
            """,
            [PARENT],
        )
        names = [row[0] for row in cursor.fetchall()]
    days = set()
    for name in names:
        suffix = name.removeprefix(f"{PARENT}_p")
        try:
            days.add(datetime.strptime(suffix, "%Y%m%d").date())
        except ValueError:
            continue
    return days


def _create_partition(day: date) -> None:
    name = partition_name(day)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    # One transaction: the advisory lock makes a concurrent creator wait, then find it.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK_KEY])
        cursor.execute("SELECT to_regclass(%s)", [name])
        if cursor.fetchone()[0] is not None:
            return
        cursor.execute(
            f'CREATE TABLE "{name}" (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)'
        )
        # The CHECK lets ATTACH skip its validation scan.
        cursor.execute(
            f'ALTER TABLE "{name}" ADD CONSTRAINT "{name}_range" '
            "CHECK (timestamp >= %s AND timestamp < %s)",
            [start, end],
        )
        cursor.execute(
            f'ALTER TABLE {PARENT} ATTACH PARTITION "{name}" FOR VALUES FROM (%s) TO (%s)',
            [start, end],
        )
    logger.info("created sample partition %s", name)


def drop_partitions_before(cutoff: date) -> list[str]:
    """Retire every daily partition wholly before ``cutoff``: detach, uncount, drop.

    ``DETACH ... CONCURRENTLY`` (outside a transaction) takes the day out of every query
    without blocking writers; then one transaction subtracts its rows from the counters and
    drops the table, so /stats stays exact. A table left detached by an interrupted run is
    finished on the next one.
    """
    if not is_partitioned():
        return []
    for day in sorted(_existing_partitions()):
        if day < cutoff:
            with connection.cursor() as cursor:
                cursor.execute(
                    f'ALTER TABLE {PARENT} DETACH PARTITION "{partition_name(day)}" CONCURRENTLY'
                )
            _known.discard(day)
    dropped = []
    for name in _detached_tables():
        _uncount_and_drop(name)
        dropped.append(name)
        logger.info("dropped sample partition %s", name)
    return dropped


def _detached_tables() -> list[str]:
    """Daily sample tables that exist but are no longer partitions of the sample table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND NOT relispartition "
            "AND relname ~ %s ORDER BY relname",
            [f"^{PARENT}_p[0-9]{{8}}$"],
        )
        return [row[0] for row in cursor.fetchall()]


def _uncount_and_drop(name: str) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f'SELECT gpu_id, metric_id, count(*) FROM "{name}" GROUP BY 1, 2')  # noqa: S608
        counts = {(gpu_id, metric_id): count for gpu_id, metric_id, count in cursor.fetchall()}
        cursor.execute(f'DROP TABLE "{name}"')
        counters.remove_samples(counts)
