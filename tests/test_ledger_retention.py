"""The ledger's window: the hourly task prunes ledger rows and attempt counts older than
``LEDGER_RETENTION_DAYS`` in small batches, keeps newer ones, keeps a row whose chunk is still
outstanding, and keeps everything when the setting is 0, on PostgreSQL and on SQLite.

The scenario runs on the database of the process that calls it: this one for PostgreSQL, a
child process with the embedded settings for SQLite (settings, and so the database, are read
once per process). It reports what it found as JSON-ready data.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from ingest import retention
from ingest.models import (
    ChunkAttempt,
    IngestedChunk,
    OutstandingChunk,
    StreamCursor,
    StreamSource,
    chunk_id_for,
    scrape_chunk_id,
)
from ingest.tasks import maintain_partitions
from tests.support.embedded import run_on_embedded_database

WINDOW_DAYS = 7
# Ledger rows by age in days, several of each so a prune takes more than one batch.
AGES_DAYS = (0, 1, 6.5, 7.5, 8, 30)
ROWS_PER_AGE = 4
BATCH_ROWS = 3


def ledger_of_every_age() -> list[str]:
    """Ledger rows and attempt counts of every age, ids ``age:<days>:<n>``; and 30-day-old
    ledger rows whose chunks are still outstanding on a cursor (a file's chunk and a scrape
    source's slot), whose ids it returns."""
    now = timezone.now()
    for age in AGES_DAYS:
        committed_at = now - timedelta(days=age)
        IngestedChunk.objects.bulk_create(
            IngestedChunk(chunk_id=f"age:{age}:{n}", committed_at=committed_at)
            for n in range(ROWS_PER_AGE)
        )
        ChunkAttempt.objects.create(chunk_id=f"age:{age}:0", attempts=1)
        # updated_at is set on every save: the age is given with update().
        ChunkAttempt.objects.filter(pk=f"age:{age}:0").update(updated_at=committed_at)
    source = StreamSource.objects.create(name="ledger", location="/dev/null", scheduled=False)
    cursor = StreamCursor.objects.create(
        source=source, shard=0, start_offset=10, start_line=2, position=10, next_line=2
    )
    OutstandingChunk.objects.create(
        cursor=cursor, pass_number=1, start_offset=999, end_offset=1999, first_line=2,
        line_count=10, published_at=now,
    )  # fmt: skip
    outstanding_id = chunk_id_for(source.pk, 0, 1, 999)
    IngestedChunk.objects.create(chunk_id=outstanding_id, committed_at=now - timedelta(days=30))
    # A scrape source's slot, outstanding as long: its ledger id is made another way.
    scraped = StreamSource.objects.create(
        name="scraped", kind=StreamSource.Kind.SCRAPE, location="http://127.0.0.1:9400/metrics",
        interval_seconds=10, scheduled=False,
    )  # fmt: skip
    slot_cursor = StreamCursor.objects.create(
        source=scraped, shard=0, start_offset=0, start_line=1, position=0, next_line=1
    )
    slot_ms = 1_700_000_000_000
    OutstandingChunk.objects.create(
        cursor=slot_cursor, pass_number=1, start_offset=slot_ms, end_offset=slot_ms,
        first_line=1, line_count=1, published_at=now,
    )  # fmt: skip
    IngestedChunk.objects.create(
        chunk_id=scrape_chunk_id(scraped.pk, slot_ms), committed_at=now - timedelta(days=30)
    )
    return [outstanding_id, scrape_chunk_id(scraped.pk, slot_ms)]


def ages_left(model: type[IngestedChunk | ChunkAttempt]) -> list[float]:
    """The ages of the ``age:`` rows left, each once."""
    ids = model.objects.filter(pk__startswith="age:").values_list("pk", flat=True)
    return sorted({float(chunk_id.split(":")[1]) for chunk_id in ids})


def prune_on_this_database() -> dict[str, Any]:
    """The scenario, on the database of this process."""
    outstanding_ids = ledger_of_every_age()
    with mock.patch.object(retention, "DELETE_BATCH_ROWS", BATCH_ROWS):
        with override_settings(LEDGER_RETENTION_DAYS=0):
            kept_forever = maintain_partitions()
        counts_kept = [IngestedChunk.objects.count(), ChunkAttempt.objects.count()]
        with override_settings(LEDGER_RETENTION_DAYS=WINDOW_DAYS):
            pruned = maintain_partitions()
    return {
        "vendor": connection.vendor,
        "kept_forever": kept_forever,
        "counts_kept": counts_kept,
        "pruned": pruned,
        "ledger_ages": ages_left(IngestedChunk),
        "outstanding_kept": IngestedChunk.objects.filter(pk__in=outstanding_ids).count(),
        "attempt_ages": ages_left(ChunkAttempt),
    }


def assert_pruned_to_the_window(report: dict[str, Any]) -> None:
    assert report["kept_forever"].endswith("ledger kept")
    assert report["counts_kept"] == [len(AGES_DAYS) * ROWS_PER_AGE + 2, len(AGES_DAYS)]
    # Three ages past the window: four ledger rows each (in batches of three) and one
    # attempt count each; the outstanding chunks' rows stay although they are 30 days old.
    assert report["pruned"].endswith("pruned 12 ledger rows and 3 attempt counts")
    assert report["ledger_ages"] == [0, 1, 6.5]
    assert report["outstanding_kept"] == 2
    assert report["attempt_ages"] == [0, 1, 6.5]


@pytest.mark.django_db(transaction=True)
def test_ledger_rows_past_the_window_are_pruned_on_postgresql() -> None:
    report = prune_on_this_database()

    assert report["vendor"] == "postgresql"
    assert_pruned_to_the_window(report)


def test_ledger_rows_past_the_window_are_pruned_on_sqlite(tmp_path: Path) -> None:
    script = (
        "import json\n"
        "from django.core.management import call_command\n"
        "from tests.test_ledger_retention import prune_on_this_database\n"
        "call_command('migrate', verbosity=0)\n"
        "print(json.dumps(prune_on_this_database()))\n"
    )
    report = json.loads(run_on_embedded_database(script, tmp_path))

    assert report["vendor"] == "sqlite"
    assert_pruned_to_the_window(report)


def test_rows_are_deleted_a_bounded_batch_at_a_time(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    IngestedChunk.objects.bulk_create(IngestedChunk(chunk_id=f"chunk:{n}") for n in range(7))
    monkeypatch.setattr(retention, "DELETE_BATCH_ROWS", BATCH_ROWS)

    batches = retention.delete_in_batches(IngestedChunk.objects.all())

    assert batches == [3, 3, 1]
    assert not IngestedChunk.objects.exists()
