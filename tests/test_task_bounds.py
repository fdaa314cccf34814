"""Every task bounds its own database work, since the solo pool enforces no time limit.

Each case holds a lock the task needs from a second PostgreSQL session, so that without the
bound the task would wait as long as the lock is held, then checks that it gives up after
``TASK_STATEMENT_TIMEOUT_SECONDS`` and leaves its connection at the server's defaults.
"""

from __future__ import annotations

import time

import pytest
from django.db import OperationalError, connection, transaction
from pytest_django.fixtures import Settings

from ingest import partitions, tasks
from ingest.bounds import bounded_database_work
from ingest.models import StreamSource
from tests.support.chunks import REFERENCE_LINES, chunk_of
from tests.support.reference import REFERENCE_CSV
from tests.support.sessions import second_session

pytestmark = pytest.mark.django_db(transaction=True)

BOUND_SECONDS = 0.5
# The advisory lock partition creation takes (ingest.partitions).
PARTITION_LOCK = partitions._ADVISORY_LOCK_KEY


def server_default_bounds() -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        statement = cursor.fetchone()[0]
        cursor.execute("SHOW idle_in_transaction_session_timeout")
        return statement, cursor.fetchone()[0]


@pytest.fixture(autouse=True)
def _short_bound(settings: Settings) -> None:
    settings.TASK_STATEMENT_TIMEOUT_SECONDS = BOUND_SECONDS


def test_a_collect_task_waiting_on_a_ledger_row_gives_up_at_the_bound() -> None:
    chunk = chunk_of(REFERENCE_LINES[1:2], chunk_id="1:0:1:0")
    # Another delivery of the same chunk, mid-commit: its ledger row is not committed yet.
    claim = (
        "INSERT INTO ingest_ingestedchunk (chunk_id, source_id, committed_at, rows_committed, "
        "rows_rejected, dead_lettered) VALUES ('1:0:1:0', 1, now(), 1, 0, false)"
    )
    defaults = server_default_bounds()
    started = time.monotonic()
    with second_session(claim), pytest.raises(OperationalError, match="statement timeout"):
        tasks.collect(chunk.to_payload())  # called directly, a retry raises its cause

    assert time.monotonic() - started < 10 * BOUND_SECONDS
    assert server_default_bounds() == defaults


def test_a_stream_tick_waiting_on_its_source_is_skipped_at_the_bound() -> None:
    source = StreamSource.objects.create(name="locked", location=str(REFERENCE_CSV))
    defaults = server_default_bounds()
    started = time.monotonic()
    with second_session(f"SELECT * FROM ingest_streamsource WHERE id = {source.pk} FOR UPDATE"):
        outcome = tasks.stream(source.pk)

    assert outcome.startswith("skipped:"), outcome
    assert "statement timeout" in outcome
    assert time.monotonic() - started < 10 * BOUND_SECONDS
    assert server_default_bounds() == defaults


def test_partition_maintenance_waiting_on_another_creator_gives_up_at_the_bound(
    settings: Settings,
) -> None:
    settings.PARTITIONS_AHEAD_DAYS = 4000  # reaches days no partition covers yet
    partitions.forget()
    with (
        second_session(f"SELECT pg_advisory_lock({PARTITION_LOCK})"),
        pytest.raises(OperationalError, match="statement timeout"),
    ):
        tasks.maintain_partitions()

    assert server_default_bounds() == ("0", "0")


def idle_in_a_transaction(seconds: float) -> None:
    """What a tick reading a slow source inside its transaction does."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        time.sleep(seconds)
        cursor.execute("SELECT 1")


def test_a_transaction_left_idle_past_the_bound_loses_its_session() -> None:
    with bounded_database_work(BOUND_SECONDS), pytest.raises(OperationalError):
        idle_in_a_transaction(4 * BOUND_SECONDS)
    connection.close()  # as the task's error handling does

    assert server_default_bounds() == ("0", "0")


def test_outside_the_block_statements_run_unbounded() -> None:
    with bounded_database_work(BOUND_SECONDS), connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        inside = cursor.fetchone()[0]

    assert inside == f"{round(BOUND_SECONDS * 1000)}ms"
    assert server_default_bounds() == ("0", "0")
