"""Sample ids: one sequence value (serial) per chunk, its rows numbered serial x 65,536 + their
place, and no producer of chunks making one of more than 65,536 rows."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from ingest import partitions, push
from ingest.models import Sample, StreamSource
from ingest.reader import read_line_runs
from ingest.sample_ids import MAX_CHUNK_ROWS, take_ids
from ingest.writer import SampleBatch, write_samples

START = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def batch(rows: int) -> SampleBatch:
    """``rows`` samples of one GPU and metric, a second apart."""
    return SampleBatch(
        series=[(1, None)],
        metric_ids=[1],
        timestamps=[START + timedelta(seconds=row) for row in range(rows)],
        series_of_row=[0] * rows,
        metric_of_row=[0] * rows,
        time_of_row=list(range(rows)),
        values=[float(row) for row in range(rows)],
    )


@pytest.mark.django_db(transaction=True)
def test_a_chunk_takes_one_serial_and_its_rows_the_ids_after_it() -> None:
    partitions.forget()
    partitions.ensure_partitions({START.date()})
    for rows in (3, 5):
        with transaction.atomic():
            write_samples(batch(rows))
    ids = list(Sample.objects.order_by("id").values_list("id", flat=True))
    first, second = ids[0] // MAX_CHUNK_ROWS, ids[3] // MAX_CHUNK_ROWS
    assert ids[:3] == [first * MAX_CHUNK_ROWS + place for place in range(3)]
    assert second == first + 1
    assert ids[3:] == [second * MAX_CHUNK_ROWS + place for place in range(5)]
    assert list(Sample.objects.order_by("id").values_list("value", flat=True)) == [
        0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 3.0, 4.0,
    ]  # fmt: skip


@pytest.mark.django_db
def test_a_batch_past_the_cap_takes_a_serial_per_65536_rows() -> None:
    with connection.cursor() as cursor:
        ids = take_ids(cursor, MAX_CHUNK_ROWS + 2)
        [after] = take_ids(cursor, 1)
    assert len(set(ids)) == MAX_CHUNK_ROWS + 2
    first = ids[0] // MAX_CHUNK_ROWS
    assert ids == [
        *range(first * MAX_CHUNK_ROWS, (first + 1) * MAX_CHUNK_ROWS),
        (first + 1) * MAX_CHUNK_ROWS,
        (first + 1) * MAX_CHUNK_ROWS + 1,
    ]
    assert after == (first + 2) * MAX_CHUNK_ROWS


# -- The cap, where chunks are made ----------------------------------------------------------


def test_the_reader_never_makes_a_run_of_more_than_65536_lines(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_bytes(b"".join(b"%d\n" % line for line in range(MAX_CHUNK_ROWS + 10)))
    with path.open("rb") as stream:
        runs = list(read_line_runs(stream, 0, None, max_lines=10 * MAX_CHUNK_ROWS, max_runs=5))
    assert [run.line_count for run, _ in runs] == [MAX_CHUNK_ROWS, 10]


def test_pushed_bodies_are_cut_into_parts_within_the_cap() -> None:
    assert push.PART_ROWS <= MAX_CHUNK_ROWS


def test_a_source_refuses_a_batch_size_past_the_cap() -> None:
    source = StreamSource(name="big", location="/data/dcgm.csv", batch_size=MAX_CHUNK_ROWS + 1)
    with pytest.raises(ValidationError, match="65536"):
        source.clean_fields()
    StreamSource(name="most", location="/data/dcgm.csv", batch_size=MAX_CHUNK_ROWS).clean_fields()


@pytest.mark.parametrize("command", ["add_source", "import_csv"])
def test_the_commands_refuse_a_batch_size_past_the_cap(command: str) -> None:
    arguments = ["name", "/data/dcgm.csv"] if command == "add_source" else ["/data/dcgm.csv"]
    with pytest.raises(CommandError, match="at most 65,536 rows per chunk"):
        call_command(
            command, *arguments, "--batch-size", str(MAX_CHUNK_ROWS + 1), stdout=io.StringIO()
        )
