"""Committing chunks: duplicates, rejected rows, poison messages, attempts and retention."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis
from django.db import OperationalError
from pytest_django.fixtures import Settings

from ingest import collector, dimensions, faults
from ingest.bounds import bounded_database_work
from ingest.chunks import Chunk
from ingest.models import (
    ChunkAttempt,
    DeadLetter,
    Gpu,
    IngestedChunk,
    Metric,
    RejectedRow,
    Sample,
)
from telemetry_project.celery import app
from telemetry_project.routing import COLLECT_QUEUE, COLLECT_TASK
from tests.support.chunks import REFERENCE_LINES, chunk_of
from tests.support.sessions import second_session
from tests.support.workers import WorkerFactory, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_chunk_commits_its_rows_and_a_second_delivery_writes_nothing() -> None:
    payload = chunk_of(REFERENCE_LINES[1:41]).to_payload()

    first = collector.collect(payload)
    second = collector.collect(payload)

    assert (first.outcome, first.rows) == ("committed", 40)
    assert second.outcome == "duplicate"
    assert Sample.objects.count() == 40
    assert IngestedChunk.objects.get().rows_committed == 40


def test_processing_time_stamp_replaces_every_row_timestamp() -> None:
    stamp = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

    collector.collect(chunk_of(REFERENCE_LINES[1:11], stamp=stamp).to_payload())

    assert set(Sample.objects.values_list("timestamp", flat=True)) == {stamp}


def test_a_chunk_of_only_invalid_rows_is_rejected_once_and_counted_done() -> None:
    bad = [b'"not","enough","columns"', b"garbage without quotes", b""]

    result = collector.collect(chunk_of(bad).to_payload())
    again = collector.collect(chunk_of(bad).to_payload())

    assert (result.outcome, result.rows, result.rejected) == ("committed", 0, 3)
    assert again.outcome == "duplicate"
    assert RejectedRow.objects.count() == 3
    assert sorted(RejectedRow.objects.values_list("line_number", flat=True)) == [2, 3, 4]
    assert not ChunkAttempt.objects.exists()


@pytest.mark.parametrize("payload", ["not a chunk", {"id": "x"}, [1, 2, 3], None])
def test_an_unreadable_message_becomes_a_dead_letter(payload: object) -> None:
    result = collector.collect(payload)

    assert result.outcome == "dead-letter"
    letter = DeadLetter.objects.get()
    assert "not a readable chunk" in letter.reason or "not a chunk" in letter.reason


def test_a_chunk_that_keeps_failing_is_dead_lettered_after_the_attempt_limit(
    settings: Settings,
) -> None:
    settings.MAX_CHUNK_ATTEMPTS = 3
    chunk = chunk_of(REFERENCE_LINES[1:6], chunk_id="1:0:1:999")
    ChunkAttempt.objects.create(chunk_id=chunk.chunk_id, attempts=3, last_error="boom")

    result = collector.collect(chunk.to_payload())

    assert result.outcome == "dead-letter"
    letter = DeadLetter.objects.get()
    assert "boom" in letter.reason
    assert letter.attempts == 4
    assert IngestedChunk.objects.get(pk=chunk.chunk_id).dead_lettered
    assert Sample.objects.count() == 0


def test_rows_older_than_retention_are_rejected_with_that_reason(
    settings: Settings,
) -> None:
    settings.RETENTION_DAYS = 30  # the reference export is from 2025-07-18

    result = collector.collect(chunk_of(REFERENCE_LINES[1:6]).to_payload())

    assert (result.rows, result.rejected) == (0, 5)
    reasons = set(RejectedRow.objects.values_list("reason", flat=True))
    assert reasons == {"timestamp is older than the 30-day retention"}


@pytest.fixture
def outage_mid_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The database seems lost mid-commit on the next three deliveries of any chunk."""
    monkeypatch.setattr(faults, "_passes", {})
    monkeypatch.setenv("TELEMETRY_FAULT", faults.COLLECTOR_MID_COMMIT)
    monkeypatch.setenv("TELEMETRY_FAULT_TIMES", "3")


def attempts_of(chunk: Chunk) -> int:
    return ChunkAttempt.objects.values_list("attempts", flat=True).get(pk=chunk.chunk_id)


@pytest.mark.usefixtures(outage_mid_commit.__name__)
def test_an_outage_after_the_attempt_is_counted_is_given_back_by_the_next_delivery(
    settings: Settings,
) -> None:
    settings.MAX_CHUNK_ATTEMPTS = 1
    chunk = chunk_of(REFERENCE_LINES[1:6])
    delivery = collector.Delivery()
    counts = []
    for _ in range(3):  # each delivery counted, then met the outage
        with pytest.raises(OperationalError, match="fault injected"):
            collector.collect(chunk.to_payload(), delivery)
        counts.append(attempts_of(chunk))
        delivery = collector.Delivery(owed=delivery.owed_after_outage())

    result = collector.collect(chunk.to_payload(), delivery)

    assert counts == [1, 1, 1]
    assert (result.outcome, result.rows) == ("committed", 5)
    assert not DeadLetter.objects.exists()
    assert not ChunkAttempt.objects.exists()


@pytest.mark.usefixtures(outage_mid_commit.__name__)
def test_a_delivery_that_never_reports_back_keeps_its_count(settings: Settings) -> None:
    # A worker killed by the chunk (out of memory) sends no retry: its message comes back as
    # it was, owing nothing, and the count it took stands.
    settings.MAX_CHUNK_ATTEMPTS = 1
    chunk = chunk_of(REFERENCE_LINES[1:6])
    with pytest.raises(OperationalError):
        collector.collect(chunk.to_payload(), collector.Delivery())

    result = collector.collect(chunk.to_payload(), collector.Delivery())

    assert result.outcome == "dead-letter"
    assert DeadLetter.objects.get().attempts == 2


def test_a_debt_whose_counting_never_committed_is_still_owed() -> None:
    unsettled = collector.Delivery(owed=1)
    assert unsettled.owed_after_outage() == 1
    assert unsettled.owed_after_failure() == 1
    settled = collector.Delivery(owed=1, counted=True)
    assert settled.owed_after_outage() == 1  # its own count, this time
    assert settled.owed_after_failure() == 0


@pytest.mark.integration
def test_poison_and_invalid_chunks_through_a_worker_are_handled_once_without_retries(
    workers: WorkerFactory, broker: redis.Redis
) -> None:
    worker = workers.collector()
    good = chunk_of(REFERENCE_LINES[1:3], chunk_id="1:0:1:5")
    for payload in ("poison", chunk_of([b"x", b"y"]).to_payload(), good.to_payload()):
        app.send_task(COLLECT_TASK, args=[payload], queue=COLLECT_QUEUE)

    wait_for(lambda: Sample.objects.count() == 2, 60, what="the good chunk behind them")
    assert DeadLetter.objects.count() == 1
    assert RejectedRow.objects.count() == 2
    assert "retry" not in worker.output().lower()
    assert broker.llen(COLLECT_QUEUE) == 0


def test_a_collector_with_an_empty_cache_does_not_wait_for_chunks_holding_its_devices() -> None:
    first = chunk_of(REFERENCE_LINES[1:41], chunk_id="1:0:1:0")
    collector.collect(first.to_payload())
    stored = dict(dimensions.gpu_ids([]))
    dimensions.forget()  # a collector just started, beside busy ones
    # Another collector's chunk transaction, its GPU counters updated and not yet committed.
    counting = "UPDATE ingest_gpu SET sample_count = sample_count + 1"

    with second_session(counting), bounded_database_work(5.0):
        found = dimensions.gpu_ids(collector.parse_chunk(first).gpus)

    assert found == stored
    assert len(stored) > 1


def test_new_devices_and_metrics_are_inserted_in_sorted_order_whatever_order_they_come_in() -> None:
    # Collectors started together insert the same new names at once; in differing orders
    # they deadlock. Ids are drawn in insertion order, so they show it.
    parsed = collector.parse_chunk(chunk_of(REFERENCE_LINES[1:]))
    gpus = sorted(parsed.gpus, key=lambda gpu: gpu.device_key, reverse=True)

    dimensions.gpu_ids(gpus)
    dimensions.metric_ids(sorted(parsed.metrics, reverse=True))

    uuids = list(Gpu.objects.order_by("id").values_list("uuid", flat=True))
    names = list(Metric.objects.order_by("id").values_list("name", flat=True))
    assert len(uuids) > 1
    assert uuids == sorted(uuids)
    assert len(names) > 1
    assert names == sorted(names)
