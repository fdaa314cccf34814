"""The pipeline end to end on PostgreSQL + Redis with real worker processes: every row once."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import redis
from django.core.management import call_command
from django.db.models import Sum

from ingest import faults
from ingest.chunks import Chunk
from ingest.models import ChunkAttempt, DeadLetter, Gpu, IngestedChunk, Metric, StreamSource
from telemetry_project.celery import app
from telemetry_project.routing import COLLECT_QUEUE, COLLECT_TASK
from tests.support.chunks import REFERENCE_LINES, chunk_of
from tests.support.pipeline import (
    duplicate_samples,
    finish_import,
    flush_the_broker_mid_import,
    generate_csv,
    sample_count,
    start_import,
)
from tests.support.reference import REFERENCE_CSV
from tests.support.workers import WorkerFactory, wait_for

pytestmark = pytest.mark.integration

REFERENCE_ROWS = 2470


def import_reference(**options: object) -> str:
    out = io.StringIO()
    call_command("import_csv", str(REFERENCE_CSV), no_progress=True, stdout=out, **options)
    return out.getvalue()


def assert_reference_committed_once() -> None:
    assert sample_count() == REFERENCE_ROWS
    assert Gpu.objects.filter(sample_count__gt=0).count() == 247
    assert Gpu.objects.values("hostname").distinct().count() == 31
    assert Metric.objects.count() == 10
    assert Gpu.objects.aggregate(total=Sum("sample_count"))["total"] == REFERENCE_ROWS
    assert duplicate_samples() == 0


def first_hundred_reference_rows(source_name: str) -> Chunk:
    """The chunk a streamer would publish first for the reference export, 100 lines long."""
    source = StreamSource.objects.create(
        name=source_name, location=str(REFERENCE_CSV), scheduled=False
    )
    chunk_id = f"{source.pk}:0:1:{len(REFERENCE_LINES[0]) + 1}"
    return chunk_of(REFERENCE_LINES[1:101], chunk_id=chunk_id, source_id=source.pk)


def test_reference_csv_streamed_once_commits_every_row_exactly_once(
    workers: WorkerFactory,
) -> None:
    workers.streamer()
    workers.collector()

    output = import_reference(batch_size=500)

    assert f"committed={REFERENCE_ROWS} rejected=0" in output
    assert_reference_committed_once()


def test_two_streamers_three_collectors_and_four_shards_commit_every_row_once(
    workers: WorkerFactory,
) -> None:
    for _ in range(2):
        workers.streamer()
    for _ in range(3):
        workers.collector()

    output = import_reference(batch_size=200, shards=4)

    assert f"committed={REFERENCE_ROWS} rejected=0" in output
    assert_reference_committed_once()
    source = StreamSource.objects.get()
    assert source.cursors.count() == 4
    ledger_shards = {
        chunk_id.split(":")[1] for chunk_id in IngestedChunk.objects.values_list("pk", flat=True)
    }
    assert ledger_shards == {"0", "1", "2", "3"}


def test_the_same_collect_message_delivered_twice_writes_its_rows_once(
    workers: WorkerFactory,
) -> None:
    collector = workers.collector()
    chunk = first_hundred_reference_rows("twice")

    for _ in range(2):
        app.send_task(COLLECT_TASK, args=[chunk.to_payload()], queue=COLLECT_QUEUE)

    wait_for(lambda: collector.output().count("succeeded") >= 2, 60, what="both deliveries")
    assert "duplicate" in collector.output()
    assert sample_count() == 100
    assert IngestedChunk.objects.get().rows_committed == 100


def test_outages_after_the_attempt_is_counted_never_dead_letter_the_chunk(
    workers: WorkerFactory,
) -> None:
    # More outages in a row than the attempt limit, each after the attempt was counted and
    # the samples written: the chunk must still commit, whole, once the database is back.
    limit, outages = 2, 5
    collector = workers.collector(
        extra_env={
            "TELEMETRY_FAULT": faults.COLLECTOR_MID_COMMIT,
            "TELEMETRY_FAULT_TIMES": str(outages),
            "MAX_CHUNK_ATTEMPTS": str(limit),
        }
    )
    chunk = first_hundred_reference_rows("outage")

    app.send_task(COLLECT_TASK, args=[chunk.to_payload()], queue=COLLECT_QUEUE)

    wait_for(lambda: IngestedChunk.objects.exists(), 120, what="the chunk to commit")
    assert collector.output().count("infrastructure error, retry in") == outages
    ledger = IngestedChunk.objects.get()
    assert (ledger.rows_committed, ledger.dead_lettered) == (100, False)
    assert not DeadLetter.objects.exists()
    assert not ChunkAttempt.objects.exists()
    assert sample_count() == 100
    assert Gpu.objects.aggregate(total=Sum("sample_count"))["total"] == 100


@pytest.mark.parametrize("fault", ["streamer-after-record", "streamer-after-publish"])
def test_streamer_killed_around_publishing_loses_and_duplicates_nothing(
    workers: WorkerFactory, pipeline_env: dict[str, str], tmp_path: Path, fault: str
) -> None:
    doomed = workers.streamer(extra_env={"TELEMETRY_FAULT": fault, "TELEMETRY_FAULT_AFTER": "1"})
    workers.collector()
    log = tmp_path / "import.log"
    importer = start_import(REFERENCE_CSV, pipeline_env, log, "--batch-size", "300")

    wait_for(lambda: doomed.process.poll() is not None, 60, what="the fault to kill the streamer")
    assert doomed.process.returncode == 137
    workers.streamer()

    output = finish_import(importer, log)
    assert f"committed={REFERENCE_ROWS} rejected=0" in output
    assert_reference_committed_once()


def test_messages_flushed_from_the_broker_mid_import_are_published_again(
    workers: WorkerFactory, pipeline_env: dict[str, str], tmp_path: Path, broker: redis.Redis
) -> None:
    csv_path = tmp_path / "flushed.csv"
    rows = generate_csv(csv_path, hosts=10, gpus_per_host=8, metrics=10, timesteps=60)
    streamer = workers.streamer()
    collector = workers.collector()
    log = tmp_path / "import.log"
    importer = start_import(csv_path, pipeline_env, log, "--batch-size", "1000")

    flush_the_broker_mid_import(workers, collector, broker)

    output = finish_import(importer, log)
    assert f"committed={rows} rejected=0" in output
    assert sample_count() == rows
    assert duplicate_samples() == 0
    assert re.search(r"republished=[1-9]", streamer.output()), "nothing was published again"
