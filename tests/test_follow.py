"""Followed files (``--follow``, like ``tail -F``): rows appended after the end are streamed, a
row still being written waits for its newline, and a rotated or truncated file starts a new
pass, every row committed exactly once, on real workers over PostgreSQL and Redis."""

from __future__ import annotations

import io
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import redis
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db.models import Sum
from django.test import Client
from pytest_django.fixtures import Settings

from ingest import follow, streamer
from ingest.dcgm import ColumnLayout
from ingest.models import (
    DeadLetter,
    Gpu,
    IngestedChunk,
    RejectedRow,
    Sample,
    StreamCursor,
    StreamSource,
)
from ingest.reader import identity_of
from tests.support.admin_forms import add_source_in_the_admin
from tests.support.pipeline import duplicate_samples, generate_csv, sample_count
from tests.support.workers import Worker, WorkerFactory, wait_for

# --- Rows to stream ------------------------------------------------------------------------


def generated_lines(folder: Path, timesteps: int) -> tuple[bytes, list[bytes]]:
    """A generated export's header line and data lines (each with its newline)."""
    path = folder / "generated.csv"
    generate_csv(path, hosts=2, gpus_per_host=2, metrics=3, timesteps=timesteps)
    header, *rows = path.read_bytes().splitlines(keepends=True)
    path.unlink()
    return header, rows


def stored_rows() -> Counter[tuple[str, str, datetime, float]]:
    """Every sample as (uuid, metric, time, value), counted."""
    return Counter(Sample.objects.values_list("gpu__uuid", "metric__name", "timestamp", "value"))


def written_rows(lines: list[bytes]) -> Counter[tuple[str, str, datetime, float]]:
    """The same for CSV data lines of the generated layout."""
    rows: Counter[tuple[str, str, datetime, float]] = Counter()
    for line in lines:
        fields = [field.strip('"') for field in line.decode().rstrip("\n").split('","')]
        timestamp, metric, uuid, value = fields[0], fields[1], fields[4], fields[10]
        rows[(uuid, metric, datetime.fromisoformat(timestamp), float(value))] += 1
    return rows


# --- Following a file, tick by tick (no database) -------------------------------------------


def followed(path: Path, header: bytes) -> tuple[StreamSource, StreamCursor]:
    """A followed source of ``path`` and its cursor at the first data line, as a first tick
    finds them (unsaved: ``follow.open_followed`` writes nothing while the columns stay)."""
    source = StreamSource(
        name="followed",
        location=str(path),
        follow=True,
        columns=list(ColumnLayout.from_header_line(header).names),
    )
    cursor = StreamCursor(
        source=source,
        shard=0,
        start_offset=len(header),
        start_line=2,
        position=len(header),
        next_line=2,
    )
    return source, cursor


def opened(source: StreamSource, cursor: StreamCursor) -> tuple[int, int] | None:
    """What ``follow.open_followed`` gives a tick: (the inode of the file, the offset), or
    None when there is nothing to read yet."""
    with follow.open_followed(source, cursor) as stream:
        return None if stream is None else (identity_of(stream).inode, stream.tell())


def test_the_first_tick_records_the_file_and_reads_on(tmp_path: Path) -> None:
    header, rows = generated_lines(tmp_path, 1)
    path = tmp_path / "followed.csv"
    path.write_bytes(header + b"".join(rows))
    source, cursor = followed(path, header)

    assert opened(source, cursor) == (path.stat().st_ino, len(header))
    assert (cursor.file_device, cursor.file_inode) == (path.stat().st_dev, path.stat().st_ino)
    assert cursor.pass_number == 1


@dataclass
class ReadToTheEnd:
    """A followed file whose rows a first tick has read."""

    path: Path
    header: bytes
    rows: list[bytes]
    source: StreamSource
    cursor: StreamCursor

    def rotate(self, new_content: bytes) -> int:
        """Rename the file away and put ``new_content`` at its path; the old file's inode."""
        inode = self.path.stat().st_ino
        self.path.rename(self.path.with_name("followed.csv.1"))
        self.path.write_bytes(new_content)
        return inode


def read_to_the_end(folder: Path, rows_written: int) -> ReadToTheEnd:
    header, rows = generated_lines(folder, 2)  # 24 rows
    path = folder / "followed.csv"
    path.write_bytes(header + b"".join(rows[:rows_written]))
    source, cursor = followed(path, header)
    opened(source, cursor)
    cursor.position = path.stat().st_size
    cursor.next_line += rows_written
    return ReadToTheEnd(path, header, rows, source, cursor)


def test_a_file_that_grew_is_read_on_from_the_cursor(tmp_path: Path) -> None:
    followed_file = read_to_the_end(tmp_path, 5)
    end = followed_file.cursor.position
    with followed_file.path.open("ab") as appending:
        appending.write(b"".join(followed_file.rows[5:]))

    assert opened(followed_file.source, followed_file.cursor) == (
        followed_file.cursor.file_inode,
        end,
    )
    assert (followed_file.cursor.pass_number, followed_file.cursor.next_line) == (1, 7)


def test_a_file_renamed_and_replaced_starts_a_new_pass_at_its_first_line(tmp_path: Path) -> None:
    followed_file = read_to_the_end(tmp_path, 24)
    header, cursor = followed_file.header, followed_file.cursor

    followed_file.rotate(header + b"".join(followed_file.rows[:3]))

    new_inode = followed_file.path.stat().st_ino
    assert opened(followed_file.source, cursor) == (new_inode, len(header))
    assert (cursor.pass_number, cursor.position, cursor.next_line) == (2, len(header), 2)
    assert (cursor.start_offset, cursor.file_inode) == (len(header), new_inode)


def test_rows_written_to_a_renamed_file_are_read_before_the_new_file(tmp_path: Path) -> None:
    followed_file = read_to_the_end(tmp_path, 10)
    header, cursor = followed_file.header, followed_file.cursor
    end = cursor.position
    with followed_file.path.open("ab") as appending:
        appending.write(b"".join(followed_file.rows[10:20]))

    old_inode = followed_file.rotate(header + b"".join(followed_file.rows[20:]))

    assert opened(followed_file.source, cursor) == (old_inode, end)
    assert (cursor.pass_number, cursor.file_inode) == (1, old_inode)
    # Read to its end, the old file gives way to the new one.
    cursor.position = followed_file.path.with_name("followed.csv.1").stat().st_size
    assert opened(followed_file.source, cursor) == (followed_file.path.stat().st_ino, len(header))
    assert cursor.pass_number == 2


def test_a_renamed_file_ending_in_an_unfinished_row_gives_way_to_the_new_one(
    tmp_path: Path,
) -> None:
    followed_file = read_to_the_end(tmp_path, 10)
    with followed_file.path.open("ab") as appending:
        appending.write(followed_file.rows[10][:30])

    followed_file.rotate(followed_file.header)

    assert opened(followed_file.source, followed_file.cursor) == (
        followed_file.path.stat().st_ino,
        len(followed_file.header),
    )
    assert followed_file.cursor.pass_number == 2


def test_a_truncated_file_starts_a_new_pass_at_its_first_line(tmp_path: Path) -> None:
    followed_file = read_to_the_end(tmp_path, 24)
    cursor = followed_file.cursor
    inode = cursor.file_inode

    with followed_file.path.open("r+b") as same_file:
        same_file.truncate(len(followed_file.header) + len(followed_file.rows[0]))

    assert opened(followed_file.source, cursor) == (inode, len(followed_file.header))
    assert (cursor.pass_number, cursor.next_line, cursor.file_inode) == (2, 2, inode)


def test_a_new_file_without_a_whole_header_is_waited_for(tmp_path: Path) -> None:
    followed_file = read_to_the_end(tmp_path, 24)
    cursor = followed_file.cursor
    before = (cursor.pass_number, cursor.position, cursor.file_inode)

    followed_file.rotate(followed_file.header[:20])

    assert opened(followed_file.source, cursor) is None
    assert (cursor.pass_number, cursor.position, cursor.file_inode) == before


# --- Which sources can be followed ----------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "refusal"),
    [
        ({"loop": True}, "follow and loop exclude each other"),
        ({"location": "https://exporter.example/metrics.csv"}, "only a local file"),
        ({"shards": 4}, "streamed as one shard"),
    ],
)
def test_a_follow_that_cannot_be_honoured_is_refused(
    options: dict[str, object], refusal: str
) -> None:
    source = StreamSource(**{"name": "f", "location": "/data/x.csv", "follow": True, **options})
    with pytest.raises(ValidationError, match=refusal) as raised:
        source.clean()
    assert list(raised.value.message_dict) == ["follow"]


def test_add_source_refuses_follow_with_loop(db: None, tmp_path: Path) -> None:
    header, rows = generated_lines(tmp_path, 1)
    path = tmp_path / "followed.csv"
    path.write_bytes(header + b"".join(rows))

    with pytest.raises(CommandError, match="follow and loop exclude each other"):
        call_command("add_source", "f", str(path), "--follow", "--loop", stdout=io.StringIO())
    call_command("add_source", "f", str(path), "--follow", stdout=io.StringIO())

    assert StreamSource.objects.get().follow is True


def test_the_admin_form_refuses_follow_with_loop(admin_client: Client, tmp_path: Path) -> None:
    header, rows = generated_lines(tmp_path, 1)
    path = tmp_path / "followed.csv"
    path.write_bytes(header + b"".join(rows))

    page = add_source_in_the_admin(admin_client, str(path), follow="on", loop="on")

    assert "follow and loop exclude each other" in page
    assert not StreamSource.objects.exists()


# --- On real workers --------------------------------------------------------------------------

STREAM_TICK_DONE = re.compile(r"ingest\.stream\[[\w-]+\] succeeded")


def wait_for_ticks(streamer_worker: Worker, ticks: int) -> None:
    """Wait until the streamer has finished ``ticks`` more stream ticks."""
    done = len(STREAM_TICK_DONE.findall(streamer_worker.output()))
    wait_for(
        lambda: len(STREAM_TICK_DONE.findall(streamer_worker.output())) >= done + ticks,
        30,
        what=f"{ticks} stream ticks",
    )


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as appending:
        appending.write(data)


@pytest.mark.integration
def test_rows_appended_in_bursts_and_a_rotated_file_are_each_committed_once(
    workers: WorkerFactory, tmp_path: Path
) -> None:
    header, rows = generated_lines(tmp_path, 20)  # 240 rows
    path = tmp_path / "followed.csv"
    cut = len(rows[60]) // 2
    # The first burst ends half way through a row, which the second completes.
    path.write_bytes(header + b"".join(rows[:60]) + rows[60][:cut])
    source = StreamSource.objects.create(
        name="followed",
        location=str(path),
        follow=True,
        batch_size=25,
        interval_seconds=1,
        pace=StreamSource.Pace.FAST,
        timestamp_mode=StreamSource.TimestampMode.SOURCE,
    )
    streamer_worker = workers.streamer()
    workers.collector()
    workers.start_process(
        "beat",
        [sys.executable, "-m", "celery", "-A", "telemetry_project", "beat", "--loglevel=INFO"],
    )

    wait_for(lambda: sample_count() == 60, 60, what="the first burst")
    wait_for_ticks(streamer_worker, 2)
    assert sample_count() == 60, "the half-written row was read"

    append(path, rows[60][cut:] + b"".join(rows[61:120]))
    wait_for(lambda: sample_count() == 120, 60, what="the second burst")
    append(path, b"".join(rows[120:160]))
    wait_for(lambda: sample_count() == 160, 60, what="the third burst")

    # Rows written just before the rotation, which the streamer may not have read yet: they
    # are read from the renamed file before the new one.
    append(path, b"".join(rows[160:180]))
    path.rename(tmp_path / "followed.csv.1")
    path.write_bytes(header + b"".join(rows[180:]))
    wait_for(lambda: sample_count() == 240, 60, what="the rotated file")
    wait_for_ticks(streamer_worker, 3)

    assert stored_rows() == written_rows(rows)
    assert duplicate_samples() == 0
    assert not RejectedRow.objects.exists()
    assert not DeadLetter.objects.exists()
    assert Gpu.objects.aggregate(total=Sum("sample_count"))["total"] == 240
    passes = Counter(
        chunk_id.split(":")[2] for chunk_id in IngestedChunk.objects.values_list("pk", flat=True)
    )
    assert set(passes) == {"1", "2"}
    cursor = StreamCursor.objects.get(source=source)
    assert (cursor.pass_number, cursor.finished, cursor.next_line) == (2, False, 62)


@pytest.mark.integration
def test_a_chunk_lost_before_rotation_is_published_again_from_its_kept_message(
    workers: WorkerFactory,
    tmp_path: Path,
    broker: redis.Redis,
    settings: Settings,
) -> None:
    header, rows = generated_lines(tmp_path, 4)  # 48 rows
    path = tmp_path / "followed.csv"
    path.write_bytes(header + b"".join(rows[:24]))
    source = StreamSource.objects.create(
        name="followed",
        location=str(path),
        follow=True,
        batch_size=100,
        scheduled=False,
        timestamp_mode=StreamSource.TimestampMode.SOURCE,
    )
    assert streamer.stream_tick(source.pk).published == 1
    broker.flushdb()  # the chunk's message is lost before any collector took it
    path.rename(tmp_path / "followed.csv.1")
    path.write_bytes(header + b"".join(rows[24:]))
    settings.REPUBLISH_AFTER_SECONDS = 0.1
    time.sleep(0.2)  # the chunk is now older than that: due to be published again

    report = streamer.stream_tick(source.pk)

    # The new file's rows are a new chunk; the old one goes again with its own rows.
    assert (report.published, report.republished) == (1, 1)
    workers.collector()
    wait_for(lambda: IngestedChunk.objects.count() == 2, 60, what="both chunks")
    assert stored_rows() == written_rows(rows)
    assert not RejectedRow.objects.exists()
