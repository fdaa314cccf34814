"""Range partitions of the sample table on PostgreSQL, ``PARTITION_DAYS`` days wide.

A partition's bounds are midnights (UTC) aligned on a fixed epoch: the partition covering a
day starts at the epoch plus a whole number of widths, so every process computes the same
bounds without asking the others. The epoch is a Monday, so 7-day partitions run Monday to
Sunday.

The catalog, not a name, says which days a partition covers: partitions made under another
width (or before the width was configurable, named by their day alone) keep working, and a
new partition is narrowed to the gap between its neighbours rather than overlap one of them.

A partition is created standalone and then ATTACHed: ATTACH takes only a SHARE UPDATE
EXCLUSIVE lock on the parent, so collectors keep inserting while a partition is added, where
``CREATE TABLE ... PARTITION OF`` would wait for (and then block) every open insert.
Expired partitions are removed with ``DETACH ... CONCURRENTLY`` and a DROP of the detached
table. On other databases the table is not partitioned and these functions do nothing.
docs/design.md, "Partitions and retention".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import connection, transaction

from ingest import counters

logger = logging.getLogger(__name__)

PARENT = "ingest_sample"
# Both this module's names (first and last-exclusive day) and the older daily ones (first
# day only); the same pattern serves Python and PostgreSQL's regular expressions.
NAME_PATTERN = rf"^{PARENT}_p\d{{8}}(_\d{{8}})?$"
# A Monday: any fixed day would do, but this one makes weekly partitions calendar weeks.
EPOCH = date(2000, 1, 3)
# Any fixed number: serialises partition creation among collectors across processes.
_ADVISORY_LOCK_KEY = 7_253_101

# Days this process has seen covered by a partition, so a write asks the catalog only for
# days it has not met before.
_known: set[date] = set()


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime
    end: datetime
    detach_pending: bool = False

    def covers(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def is_partitioned() -> bool:
    return connection.vendor == "postgresql"


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def aligned_bounds(day: date, width_days: int) -> tuple[datetime, datetime]:
    """The bounds of the ``width_days``-wide partition that covers ``day``."""
    first = EPOCH + timedelta(days=(day - EPOCH).days // width_days * width_days)
    return midnight(first), midnight(first + timedelta(days=width_days))


def partition_name(start: datetime, end: datetime) -> str:
    """Named by its first and its last-exclusive day: unique whatever the width."""
    return f"{PARENT}_p{start:%Y%m%d}_{end:%Y%m%d}"


def forget() -> None:
    """Drop what this process knows about partitions (after they were changed behind it)."""
    _known.clear()


def ensure_partitions(days: Iterable[date]) -> None:
    """Make sure a partition covers each day, before a write lands in a missing one.

    Runs outside the caller's transaction (callers call it before opening theirs), so the
    new partition is committed and visible to every collector at once.
    """
    if not is_partitioned():
        return
    missing = sorted(set(days) - _known)
    if not missing:
        return
    attached = attached_partitions()
    for day in missing:
        if not any(partition.covers(midnight(day)) for partition in attached):
            attached = _create_partition(day)
        _known.add(day)


def attached_partitions() -> list[Partition]:
    """The sample table's partitions with their bounds, read from the catalog."""
    with connection.cursor() as cursor:
        # The bounds are printed in this session's time zone and cast back in it, so no
        # format is assumed; a DEFAULT partition (no bounds) is left out.
        cursor.execute(
            r"""
            SELECT child.relname, bounds[1]::timestamptz, bounds[2]::timestamptz,
                   inherits.inhdetachpending
            FROM pg_inherits inherits
            JOIN pg_class child ON child.oid = inherits.inhrelid
            CROSS JOIN LATERAL regexp_match(
                pg_get_expr(child.relpartbound, child.oid),
                'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)'
            ) AS bounds
            WHERE inherits.inhparent = %s::regclass AND bounds IS NOT NULL
            ORDER BY 2
            """,
            [PARENT],
        )
        return [Partition(*row) for row in cursor.fetchall()]


def _free_bounds(day: date, attached: list[Partition]) -> tuple[datetime, datetime]:
    """The aligned bounds for ``day``, narrowed so as not to overlap an existing partition.

    Partitions made under another width may cover part of the aligned range; the new one
    takes the gap around ``day`` between them.
    """
    start, end = aligned_bounds(day, settings.PARTITION_DAYS)
    moment = midnight(day)
    for partition in attached:
        if partition.end <= moment:
            start = max(start, partition.end)
        elif partition.start > moment:
            end = min(end, partition.start)
    return start, end


def _create_partition(day: date) -> list[Partition]:
    """Create the partition for ``day`` unless another process did; return the partitions."""
    # One transaction: the advisory lock makes a concurrent creator wait, then find it.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK_KEY])
        attached = attached_partitions()
        if any(partition.covers(midnight(day)) for partition in attached):
            return attached
        start, end = _free_bounds(day, attached)
        name = partition_name(start, end)
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
    return [*attached, Partition(name, start, end)]


def drop_partitions_before(cutoff: date) -> list[str]:
    """Retire every partition wholly before ``cutoff``: detach, uncount, drop.

    A partition that still holds a day from ``cutoff`` on stays whole until its last day
    has passed. ``DETACH ... CONCURRENTLY`` (outside a transaction) takes the partition out
    of every query without blocking writers; then one transaction subtracts its rows from
    the counters and drops the table, so /stats stays exact. A detach or a drop left
    unfinished by an interrupted run is finished on the next one.
    """
    if not is_partitioned():
        return []
    for partition in attached_partitions():
        if partition.end <= midnight(cutoff):
            how = "FINALIZE" if partition.detach_pending else "CONCURRENTLY"
            with connection.cursor() as cursor:
                cursor.execute(f'ALTER TABLE {PARENT} DETACH PARTITION "{partition.name}" {how}')
            forget()
    dropped = []
    for name in _detached_tables():
        _uncount_and_drop(name)
        dropped.append(name)
        logger.info("dropped sample partition %s", name)
    return dropped


def _detached_tables() -> list[str]:
    """Sample partition tables that exist but are no longer partitions of the sample table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND NOT relispartition "
            "AND relname ~ %s ORDER BY relname",
            [NAME_PATTERN],
        )
        return [row[0] for row in cursor.fetchall()]


def _uncount_and_drop(name: str) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f'SELECT gpu_id, metric_id, count(*) FROM "{name}" GROUP BY 1, 2')  # noqa: S608
        counts = {(gpu_id, metric_id): count for gpu_id, metric_id, count in cursor.fetchall()}
        cursor.execute(f'DROP TABLE "{name}"')
        counters.remove_samples(counts)
