"""``import_csv`` of a file outside STREAM_SOURCE_DIRS: imported exactly once, by the command.

The person typing the command named the file, so it is imported, but no worker may read it:
the import is the file's streamer, in the foreground, with the streamer's own two-phase
cursor. The imports here run in their own process with STREAM_SOURCE_DIRS limited to data/
(the test environment also allows the temp directory the files are written to), with real
collectors on PostgreSQL and Redis and no streamer worker: they could not finish without
streaming the file themselves.
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path
from subprocess import Popen

import pytest
import redis
from django.core.management import CommandError, call_command
from pytest_django.fixtures import Settings

from ingest import sources
from ingest.models import IngestedChunk, OutstandingChunk, StreamCursor, StreamSource
from ingest.reader import SourceError, read_header
from telemetry_project.celery import app
from telemetry_project.routing import COLLECT_QUEUE
from tests.support.pipeline import (
    duplicate_samples,
    finish_import,
    flush_the_broker_mid_import,
    generate_csv,
    kill_with_task_in_hand,
    sample_count,
    start_import,
)
from tests.support.reference import REFERENCE_CSV, REPO
from tests.support.workers import WorkerFactory, wait_for

# 80 chunks of 1,000 rows: enough that a collector can be stopped or killed mid-import.
FLEET = {"hosts": 10, "gpus_per_host": 8, "metrics": 10, "timesteps": 100}


@pytest.fixture
def confined_env(pipeline_env: dict[str, str]) -> dict[str, str]:
    """The import's environment: files may be streamed by workers from data/ only."""
    return {**pipeline_env, "STREAM_SOURCE_DIRS": str(REPO / "data")}


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def assert_imported_once(output: str, rows: int) -> None:
    assert re.fullmatch(rf"committed={rows} rejected=0 seconds=\d+\.\d{{3}}", last_line(output))
    assert sample_count() == rows
    assert duplicate_samples() == 0


@pytest.mark.integration
def test_a_file_outside_the_source_directories_is_imported_exactly_once_without_any_streamer(
    workers: WorkerFactory, confined_env: dict[str, str], tmp_path: Path
) -> None:
    csv = tmp_path / "export.csv"
    rows = generate_csv(csv, hosts=4, gpus_per_host=8, metrics=10, timesteps=20)
    workers.collector()
    log = tmp_path / "import.log"

    output = finish_import(start_import(csv, confined_env, log, "--batch-size", "500"), log)

    assert "is outside STREAM_SOURCE_DIRS: this command streams it itself" in output
    assert_imported_once(output, rows)
    source = StreamSource.objects.get()
    assert source.command_line_only
    assert source.location == str(csv.resolve())
    assert not OutstandingChunk.objects.exists()


def start_outside_import(env: dict[str, str], tmp_path: Path) -> tuple[Popen[bytes], Path, int]:
    """An import of 80,000 generated rows from outside the source directories: (process,
    its log, rows)."""
    csv = tmp_path / "export.csv"
    rows = generate_csv(csv, **FLEET)
    log = tmp_path / "import.log"
    return start_import(csv, env, log, "--batch-size", "1000"), log, rows


@pytest.mark.integration
def test_a_broker_flushed_mid_import_of_a_file_outside_loses_no_row(
    workers: WorkerFactory, confined_env: dict[str, str], tmp_path: Path, broker: redis.Redis
) -> None:
    collector = workers.collector()
    importer, log, rows = start_outside_import(confined_env, tmp_path)

    flush_the_broker_mid_import(workers, collector, broker)

    output = finish_import(importer, log)
    assert_imported_once(output, rows)
    # The import itself published the lost chunks again (REPUBLISH_AFTER_SECONDS=5 here).
    assert re.search(r"published again: [1-9]\d* chunks", output), output


@pytest.mark.integration
def test_a_collector_killed_mid_chunk_of_a_file_outside_loses_and_duplicates_nothing(
    workers: WorkerFactory, confined_env: dict[str, str], tmp_path: Path
) -> None:
    doomed = workers.collector()
    importer, log, rows = start_outside_import(confined_env, tmp_path)

    wait_for(lambda: IngestedChunk.objects.count() >= 3, 120, what="some chunks to commit")
    assert kill_with_task_in_hand(doomed), "the kill did not catch a chunk in hand"
    workers.collector()

    assert_imported_once(finish_import(importer, log), rows)


@pytest.mark.integration
def test_a_streamer_worker_refuses_a_command_line_only_source(
    workers: WorkerFactory, tmp_path: Path, broker: redis.Redis
) -> None:
    # This worker may read the temp directory: only the source's mark stops it.
    workers.streamer()
    [csv] = reference_copies(tmp_path, "named.csv")
    source = StreamSource.objects.create(
        name="named", location=str(csv), pace="fast", scheduled=False, command_line_only=True
    )

    app.send_task("ingest.stream", args=[source.pk], queue=source.stream_queue)

    def refused() -> str:
        source.refresh_from_db()
        return source.last_error

    wait_for(refused, 60, what="the streamer's refusal")
    assert f"{csv} is outside STREAM_SOURCE_DIRS and was named to import_csv" in refused()
    assert "workers do not read it" in refused()
    assert not StreamCursor.objects.exists()
    assert broker.llen(COLLECT_QUEUE) == 0


@pytest.fixture
def confined(settings: Settings) -> None:
    """In this process, as in the imports above, workers may read files from data/ only."""
    settings.STREAM_SOURCE_DIRS = [str(REPO / "data")]


def reference_copies(folder: Path, *names: str) -> list[Path]:
    copies = [folder / name for name in names]
    for path in copies:
        shutil.copy(REFERENCE_CSV, path)
    return copies


@pytest.mark.django_db
def test_shards_are_refused_for_a_file_outside_the_source_directories(
    confined: None, tmp_path: Path
) -> None:
    [csv] = reference_copies(tmp_path, "export.csv")
    with pytest.raises(CommandError, match=r"--shards 2: .* streams it itself, as one shard"):
        call_command("import_csv", str(csv), shards=2, no_progress=True, stdout=io.StringIO())
    assert not StreamSource.objects.exists()


def test_a_named_file_is_readable_only_within_its_block_and_no_other_file_with_it(
    confined: None, tmp_path: Path
) -> None:
    named, other = reference_copies(tmp_path, "named.csv", "other.csv")

    with sources.reading_named_file(str(named)):
        assert "uuid" in read_header(str(named)).layout.names
        with pytest.raises(SourceError, match="outside the directories sources may read"):
            read_header(str(other))
    with pytest.raises(SourceError, match="outside the directories sources may read"):
        read_header(str(named))


def test_a_named_symlink_pointed_elsewhere_later_is_refused_at_its_next_read(
    confined: None, tmp_path: Path
) -> None:
    first, second = reference_copies(tmp_path, "first.csv", "second.csv")
    link = tmp_path / "export.csv"
    link.symlink_to(first)

    with sources.reading_named_file(str(link)):
        read_header(str(link))
        link.unlink()
        link.symlink_to(second)
        with pytest.raises(SourceError, match="outside the directories sources may read"):
            read_header(str(link))
