"""Stream sources on real workers: loop passes under beat, timestamps, bad rows, bad sources,
and backpressure while collectors are away; and, in this process, two streamers racing to
prepare a source."""

from __future__ import annotations

import io
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from django.core.management import call_command
from django.db.models import Max, Min, Sum

from ingest import reader, streamer
from ingest.models import IngestedChunk, RejectedRow, Sample, StreamSource
from telemetry_project.celery import app
from telemetry_project.routing import COLLECT_QUEUE
from tests.support.pipeline import duplicate_samples, sample_count
from tests.support.reference import REFERENCE_CSV
from tests.support.workers import WorkerFactory, wait_for

pytestmark = pytest.mark.integration

REFERENCE_ROWS = 2470


def tick(source: StreamSource) -> None:
    app.send_task("ingest.stream", args=[source.pk], queue=source.stream_queue, expires=5)


def committed_rows_of_pass(source: StreamSource, pass_number: int) -> int:
    chunks = IngestedChunk.objects.filter(
        source=source, chunk_id__regex=rf"^\d+:\d+:{pass_number}:"
    )
    return chunks.aggregate(total=Sum("rows_committed"))["total"] or 0


def test_loop_mode_under_beat_commits_whole_passes_stamped_with_processing_time(
    workers: WorkerFactory, tmp_path: Path
) -> None:
    started = datetime.now(UTC)
    source = StreamSource.objects.create(
        name="looping",
        location=str(REFERENCE_CSV),
        batch_size=1000,
        interval_seconds=1,
        loop=True,
        pace=StreamSource.Pace.PACED,
    )
    workers.streamer()
    workers.collector()
    beat = workers.start_process(
        "beat",
        [sys.executable, "-m", "celery", "-A", "telemetry_project", "beat", "--loglevel=INFO"],
    )

    wait_for(
        lambda: committed_rows_of_pass(source, 2) == REFERENCE_ROWS,
        120,
        what="two whole passes under beat",
    )
    source.enabled = False
    source.save()  # the signal disables the periodic task; beat stops ticking it
    beat.terminate()
    finished = datetime.now(UTC)

    assert committed_rows_of_pass(source, 1) == REFERENCE_ROWS
    assert committed_rows_of_pass(source, 2) == REFERENCE_ROWS
    span = Sample.objects.aggregate(first=Min("timestamp"), last=Max("timestamp"))
    assert started <= span["first"] <= span["last"] <= finished


def test_source_timestamp_mode_keeps_the_csv_timestamps(workers: WorkerFactory) -> None:
    workers.streamer()
    workers.collector()

    call_command("import_csv", str(REFERENCE_CSV), timestamp_mode="source", no_progress=True,
                 stdout=io.StringIO())  # fmt: skip

    csv_times = {
        line.split(b",", 1)[0].strip(b'"').decode()
        for line in REFERENCE_CSV.read_bytes().splitlines()[1:]
    }
    stored = {
        t.isoformat().replace("+00:00", "Z")
        for t in Sample.objects.values_list("timestamp", flat=True).distinct()
    }
    assert stored == csv_times


def write_file_with_bad_rows(path: Path) -> tuple[int, dict[int, str]]:
    """The reference's first 50 rows with five kinds of bad row mixed in, by line number."""
    lines = REFERENCE_CSV.read_bytes().splitlines()
    header, good = lines[0], lines[1:51]
    template = good[0]
    uuid = b"GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
    bad = {
        "expected 12 columns": b'"2025-07-18T20:42:34Z","DCGM_FI_DEV_GPU_UTIL","0"',
        "is not a number": template.replace(b'"0","DCGM_FI_DRIVER', b'"abc","DCGM_FI_DRIVER', 1),
        "is not an RFC 3339 time": template.replace(b"2025-07-18T20:42:34Z", b"yesterday", 1),
        "uuid is empty": template.replace(uuid, b"", 1),
        "malformed CSV": b'"2025-07-18T20:42:34Z","DCGM_FI_DEV_GPU_UTIL"x"y,"0"',
    }
    out = [header]
    expected: dict[int, str] = {}
    for index, row in enumerate(good):
        out.append(row)
        if index % 10 == 5:
            reason, line = bad.popitem()
            out.append(line)
            expected[len(out)] = reason  # the line number of the bad row (header = 1)
    assert not bad
    path.write_bytes(b"\n".join(out) + b"\n")
    return len(good), expected


def test_bad_rows_are_rejected_alone_with_line_number_and_reason(
    workers: WorkerFactory, tmp_path: Path
) -> None:
    workers.streamer()
    workers.collector()
    path = tmp_path / "bad_rows.csv"
    good_rows, expected = write_file_with_bad_rows(path)

    out = io.StringIO()
    call_command("import_csv", str(path), batch_size=20, no_progress=True, stdout=out)

    assert f"committed={good_rows} rejected={len(expected)}" in out.getvalue()
    assert sample_count() == good_rows
    rejected = {row.line_number: row.reason for row in RejectedRow.objects.all()}
    assert rejected.keys() == expected.keys()
    for line_number, reason in expected.items():
        assert reason in rejected[line_number]


def test_missing_file_and_wrong_header_are_errors_on_their_source_while_others_stream(
    workers: WorkerFactory, tmp_path: Path
) -> None:
    streamer = workers.streamer()
    collector = workers.collector()
    wrong_header = tmp_path / "wrong_header.csv"
    wrong_header.write_text("time,name,val\n1,2,3\n")
    missing = StreamSource.objects.create(
        name="missing", location=str(tmp_path / "gone.csv"), scheduled=False
    )
    bad_header = StreamSource.objects.create(
        name="bad-header", location=str(wrong_header), scheduled=False
    )
    good = StreamSource.objects.create(
        name="good", location=str(REFERENCE_CSV), batch_size=500,
        pace=StreamSource.Pace.FAST, scheduled=False,
    )  # fmt: skip

    def all_done() -> bool:
        for source in (missing, bad_header, good):
            tick(source)
        return sample_count() == REFERENCE_ROWS

    wait_for(all_done, 60, interval=0.5, what="the good source to finish")

    missing.refresh_from_db()
    bad_header.refresh_from_db()
    assert "gone.csv" in missing.last_error
    assert "No such file" in missing.last_error
    assert "header lacks the column(s)" in bad_header.last_error
    assert "uuid" in bad_header.last_error
    assert streamer.process.poll() is None
    assert collector.process.poll() is None
    assert duplicate_samples() == 0


def test_collect_queue_stays_bounded_while_collectors_are_away_then_drains_exactly(
    workers: WorkerFactory, broker: redis.Redis
) -> None:
    bound = 4
    workers.streamer(
        extra_env={"COLLECT_QUEUE_MAX_DEPTH": str(bound), "MAX_OUTSTANDING_CHUNKS": "100"}
    )
    source = StreamSource.objects.create(
        name="bounded", location=str(REFERENCE_CSV), batch_size=50,
        pace=StreamSource.Pace.FAST, timestamp_mode="source", scheduled=False,
    )  # fmt: skip

    deepest = 0
    for _ in range(30):
        tick(source)
        for _ in range(5):
            deepest = max(deepest, broker.llen(COLLECT_QUEUE))
            time.sleep(0.04)
    source.refresh_from_db()

    # One streamer: at most one tick's chunks beyond the bound, and this streamer's ticks
    # publish only what fits under it.
    assert 0 < deepest <= bound
    assert source.throttled_ticks > 0
    assert sample_count() == 0

    workers.collector()

    def drained() -> bool:
        tick(source)
        return sample_count() == REFERENCE_ROWS

    wait_for(drained, 90, interval=0.5, what="the backlog to drain")
    time.sleep(2)
    assert sample_count() == REFERENCE_ROWS
    assert duplicate_samples() == 0


def test_stream_ticks_queued_while_streamers_are_down_expire_instead_of_piling_up(
    workers: WorkerFactory, broker: redis.Redis
) -> None:
    source = StreamSource.objects.create(
        name="expiring", location=str(REFERENCE_CSV), interval_seconds=1, scheduled=False
    )
    for _ in range(5):
        app.send_task("ingest.stream", args=[source.pk], queue=source.stream_queue, expires=1)
    assert broker.llen(source.stream_queue) == 5
    time.sleep(1.5)

    streamer = workers.streamer()

    wait_for(lambda: streamer.output().count("Discarding revoked task") == 5, 30, what="expiry")
    assert "succeeded" not in streamer.output()
    assert broker.llen(source.stream_queue) == 0
    assert sample_count() == 0


@pytest.mark.django_db
def test_a_streamer_that_lost_the_race_to_prepare_a_source_sends_its_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    call_command("add_source", "raced", str(REFERENCE_CSV), stdout=io.StringIO())
    read_header = reader.read_header
    raced = False

    def read_while_another_streamer_prepares(location: str) -> reader.Header:
        nonlocal raced
        header = read_header(location)
        if not raced:  # the other streamer records the cursors and the header first
            raced = True
            streamer.prepare_source(StreamSource.objects.get(name="raced"))
        return header

    monkeypatch.setattr(reader, "read_header", read_while_another_streamer_prepares)
    source = StreamSource.objects.get(name="raced")

    cursors = streamer.prepare_source(source)

    assert raced
    assert len(cursors) == source.cursors.count()
    assert source.columns[:2] == ["timestamp", "metric_name"]
