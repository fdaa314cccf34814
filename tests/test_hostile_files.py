"""Hostile CSV files through the real stream and collect tasks, every line accounted for.

Each file is registered with ``add_source`` and streamed by calling the ``ingest.stream``
task in this process; the collect messages it publishes are taken from the test Redis broker,
decoded as a worker decodes them, and handed to the ``ingest.collect`` task, tick after tick,
until the source is finished. What is promised, for any bytes after a valid DCGM header
(invalid UTF-8, UTF-16 or latin-1 lines, NUL bytes, huge fields, mixed line endings, a BOM,
a last line without its newline, valid rows in between):

- no exception escapes either task, and no chunk is dead-lettered or even retried: bad rows
  are the rows' problem, not the chunk's;
- every physical line after the header (lines split on ``\\n``; the header is line 1) ends
  as exactly one committed sample or exactly one rejected row with a reason, never both and
  never neither: rejected rows by exact line number, samples by count, and the valid rows
  written into the file (each carrying its own line number as its value) each exactly once.

The verdict each line must get is the parser's verdict on that line alone: a line's fate
may not depend on its neighbours, the chunk it lands in or the tick that streamed it.
A file whose header cannot be read is a clear error on its source and stores nothing.
"""

from __future__ import annotations

import io
import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.management import call_command
from django.db.models import Max, QuerySet
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pytest_django.fixtures import Settings

from ingest import tasks
from ingest.dcgm import MAX_STORED_LINE_CHARS, ColumnLayout, parse_lines
from ingest.models import (
    ChunkAttempt,
    DeadLetter,
    IngestedChunk,
    OutstandingChunk,
    RejectedRow,
    Sample,
    StreamCursor,
    StreamSource,
)
from telemetry_project.celery import app
from telemetry_project.routing import COLLECT_QUEUE, COLLECT_TASK
from tests.support.pipeline import assert_nothing_stored

pytestmark = pytest.mark.django_db(transaction=True)

HEADER = (
    b"timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,"
    b"container,pod,namespace,value,labels_raw"
)
LAYOUT = ColumnLayout.from_header_line(HEADER)
BOM = b"\xef\xbb\xbf"
LABELS = 'DCGM_FI_DRIVER_VERSION="535.129.03",job="dgx_dcgm_exporter",gpu="0"'
# A generous bound: a file that needs more ticks than this is not being streamed to its end.
MAX_TICKS = 500
# Sources and their files are named after this counter: hypothesis runs many examples in one
# test, and each registers a source of its own.
_source_numbers = itertools.count(1)


@pytest.fixture(autouse=True)
def _no_retention(settings: Settings) -> None:
    # The verdicts expected here are the parser's; retention would add its own on old rows.
    settings.RETENTION_DAYS = 0


def row(number: int, **fields: str) -> bytes:
    """A valid data line (no newline) quoted the way DCGM quotes every field."""
    values = {
        "timestamp": "2025-07-18T20:42:34Z",
        "metric_name": "DCGM_FI_DEV_GPU_UTIL",
        "gpu_id": "0",
        "device": "nvidia0",
        "uuid": "GPU-5fd4f087-86f3-7a43-b711-4771313afc50",
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": "mtv5-dgx1-hgpu-031",
        "container": "",
        "pod": "",
        "namespace": "",
        "value": str(number),
        "labels_raw": LABELS,
        **fields,
    }
    return row_text(values).encode("utf-8")


def row_text(values: dict[str, str]) -> str:
    names = HEADER.decode().split(",")
    return ",".join('"' + values[name].replace('"', '""') + '"' for name in names)


# --- the file's lines ----------------------------------------------------------------------

# A piece renders one or more physical lines given the line number it starts on; ``valid``
# pieces are rows the pipeline must commit, carrying that line number as their value.
Render = Callable[[int], bytes]


@dataclass(frozen=True)
class Piece:
    kind: str
    render: Render
    valid: bool = False


def _valid(kind: str, **fields: str) -> Piece:
    return Piece(kind, lambda line: row(line, **fields), valid=True)


def _hostile(kind: str, render: Render) -> Piece:
    return Piece(kind, render)


VALID_PIECES = st.one_of(
    st.just(_valid("valid row")),
    st.just(_valid("valid row, UTF-8 host", Hostname="hôte-ünïcode-ß-😀")),
    st.just(_valid("valid row, workload", namespace="ml", pod="trainer-0", container="main")),
    st.just(_valid("valid row, second GPU", uuid="GPU-other", gpu_id="3", Hostname="host-b")),
    # Below the csv module's field size limit (128 KiB); a longer field is a hostile piece.
    st.integers(min_value=1_000, max_value=120_000).map(
        lambda size: _valid("valid row, huge labels", labels_raw="k=" + "x" * size)
    ),
)


def _insert(position: int, extra: bytes) -> Callable[[bytes], bytes]:
    def insert(line: bytes) -> bytes:
        cut = position % (len(line) + 1)
        return line[:cut] + extra + line[cut:]

    return insert


# Hostile rows derived from a valid one carry minus their line number, so a hostile row that
# does parse can never be taken for one of the valid rows.
HOSTILE_PIECES = st.one_of(
    st.binary(max_size=300).map(lambda data: _hostile("arbitrary bytes", lambda _: data)),
    st.sampled_from([b"", b"   ", b"\r", b"\t", b",,,,,,,,,,,", b'"', b'"""', BOM]).map(
        lambda data: _hostile("blank or punctuation", lambda _: data)
    ),
    st.just(
        _hostile(
            "latin-1 row",
            lambda line: row(-line, Hostname="hôte").decode().encode("latin-1"),
        )
    ),
    st.sampled_from(["utf-16", "utf-16-le", "utf-32"]).map(
        lambda codec: _hostile(f"{codec} row", lambda line: row(-line).decode().encode(codec))
    ),
    st.integers(min_value=0, max_value=10_000).map(
        lambda at: _hostile("NUL in a row", lambda line: _insert(at, b"\x00")(row(-line)))
    ),
    st.integers(min_value=0, max_value=10_000).map(
        lambda at: _hostile("CR inside a row", lambda line: _insert(at, b"\r")(row(-line)))
    ),
    st.integers(min_value=0, max_value=10_000).map(
        lambda at: _hostile("stray quote", lambda line: _insert(at, b'"')(row(-line)))
    ),
    st.integers(min_value=0, max_value=10_000).map(
        lambda at: _hostile("cut row", lambda line: row(-line)[: at % 300])
    ),
    st.just(_hostile("BOM before a row", lambda line: BOM + row(-line))),
    st.integers(min_value=300, max_value=100_000).map(
        lambda size: _hostile("huge host", lambda line: row(-line, Hostname="h" * size))
    ),
    st.integers(min_value=120_000, max_value=300_000).map(
        lambda size: _hostile("huge labels", lambda line: row(-line, labels_raw="x" * size))
    ),
    st.integers(min_value=300, max_value=100_000).map(
        lambda size: _hostile("huge value", lambda line: row(-line, value="-" + "9" * size))
    ),
    st.sampled_from(
        [
            {"timestamp": "2025-07-18T20:42:34"},
            {"timestamp": "yesterday"},
            {"value": "nan"},
            {"value": "0x1F"},
            {"gpu_id": "-1"},
            {"uuid": "  "},
            {"metric_name": ""},
        ]
    ).map(lambda fields: _hostile("bad field", lambda line: row(-line, **fields))),
)


ENDINGS = st.sampled_from([b"\n", b"\r\n"])


@dataclass(frozen=True)
class HostileFile:
    data: bytes
    valid_lines: frozenset[int]  # line numbers of the valid rows written into it

    def __repr__(self) -> str:  # hypothesis prints failing examples; huge ones stay readable
        shown = self.data if len(self.data) <= 4000 else self.data[:4000] + b"..."
        return f"HostileFile(valid_lines={sorted(self.valid_lines)}, data={shown!r})"


@st.composite
def hostile_files(draw: st.DrawFn) -> HostileFile:
    pieces = draw(
        st.lists(st.tuples(st.one_of(VALID_PIECES, HOSTILE_PIECES), ENDINGS), max_size=25)
    )
    out = bytearray(BOM if draw(st.booleans()) else b"")
    out += HEADER + draw(ENDINGS)
    line = 2  # the header is line 1
    valid_lines: set[int] = set()
    for piece, ending in pieces:
        text = piece.render(line) + ending
        if piece.valid:
            valid_lines.add(line)
        out += text
        line += text.count(b"\n")
    last_line_unterminated = draw(st.booleans())
    if pieces and last_line_unterminated:
        del out[-len(pieces[-1][1]) :]
    return HostileFile(bytes(out), frozenset(valid_lines))


# --- streaming a file through the tasks ----------------------------------------------------


@dataclass(frozen=True)
class Streamed:
    source: StreamSource
    stream_results: list[str]
    collect_results: list[str]
    # Samples carry no source, so those of this file are told by id: ids only grow, and
    # nothing else writes samples meanwhile. This spares emptying the tables per example.
    last_sample_id_before: int
    dead_letters_before: int

    def samples(self) -> QuerySet[Sample]:
        return Sample.objects.filter(id__gt=self.last_sample_id_before)


def register(path: Path, **options: Any) -> StreamSource:
    """Register ``path`` the way an operator does, with ``manage.py add_source``."""
    name = f"hostile-{next(_source_numbers)}"
    call_command("add_source", name, str(path), stdout=io.StringIO(), **options)
    return StreamSource.objects.get(name=name)


def deliver_collect_messages() -> Iterator[str]:
    """Take each waiting collect message from the broker and run its task here, as a worker.

    The body is decoded with the message's own content type (the chunk's msgpack), accepted
    only if the app accepts it, and acked only after the task returned.
    """
    with app.connection_for_read() as connection:
        queue = app.amqp.queues[COLLECT_QUEUE](connection.default_channel)
        while (message := queue.get(no_ack=False, accept=app.conf.accept_content)) is not None:
            assert message.headers["task"] == COLLECT_TASK
            args, kwargs, _options = message.decode()
            yield tasks.collect(*args, **kwargs)
            message.ack()


def stream_to_the_end(source: StreamSource) -> Streamed:
    """Tick the source and deliver what each tick publishes until nothing is outstanding."""
    last_sample_id_before = Sample.objects.aggregate(last=Max("id"))["last"] or 0
    dead_letters_before = DeadLetter.objects.count()
    stream_results: list[str] = []
    collect_results: list[str] = []
    for _ in range(MAX_TICKS):
        stream_results.append(tasks.stream(source.pk))
        collect_results.extend(deliver_collect_messages())
        cursors = StreamCursor.objects.filter(source=source)
        if not cursors.exists() or (
            not cursors.filter(finished=False).exists()
            and not OutstandingChunk.objects.filter(cursor__source=source).exists()
        ):
            break
    else:
        pytest.fail(f"source {source.name} did not finish in {MAX_TICKS} ticks")
    source.refresh_from_db()
    return Streamed(
        source, stream_results, collect_results, last_sample_id_before, dead_letters_before
    )


def stream_file(path: Path, data: bytes, **options: Any) -> Streamed:
    path.write_bytes(data)
    return stream_to_the_end(register(path, pace="fast", **options))


# --- what must hold ------------------------------------------------------------------------


def physical_lines(data: bytes) -> list[bytes]:
    """The file's lines split on newlines; a final newline ends a line, it does not start one."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


@dataclass(frozen=True)
class Verdicts:
    rows: int
    rejected: dict[int, str]  # line number -> reason


def verdicts_line_by_line(data: bytes) -> Verdicts:
    """What each data line must become, judged by the parser on that line alone."""
    rows = 0
    rejected: dict[int, str] = {}
    for number, line in enumerate(physical_lines(data)[1:], start=2):
        parsed = parse_lines(line + b"\n", LAYOUT, number)
        assert len(parsed.rows) + len(parsed.rejected) == 1
        rows += len(parsed.rows)
        rejected.update((bad.line_number, bad.reason) for bad in parsed.rejected)
    return Verdicts(rows, rejected)


def assert_every_line_accounted_for(
    streamed: Streamed, data: bytes, expected: Verdicts | None = None
) -> None:
    """Every data line is one sample or one rejected row, as ``expected`` (by default, as the
    parser judges each line alone); no chunk failed, none was dead-lettered."""
    source = streamed.source
    data_lines = len(physical_lines(data)) - 1
    assert source.last_error == ""
    assert not [result for result in streamed.stream_results if "source error" in result]
    assert all(": committed " in result for result in streamed.collect_results), (
        streamed.collect_results
    )

    cursor = StreamCursor.objects.get(source=source)
    assert cursor.finished
    assert cursor.rows_streamed == data_lines
    assert cursor.next_line == data_lines + 2

    rejected = list(RejectedRow.objects.filter(source=source).values_list("line_number", "reason"))
    counts = Counter(number for number, _ in rejected)
    assert [number for number, seen in counts.items() if seen > 1] == [], "rejected twice"
    assert all(reason for _, reason in rejected)
    expected = expected or verdicts_line_by_line(data)
    assert dict(rejected) == expected.rejected
    assert streamed.samples().count() == expected.rows == data_lines - len(rejected)

    chunks = IngestedChunk.objects.filter(source=source)
    assert not chunks.filter(dead_lettered=True).exists()
    assert sum(chunks.values_list("rows_committed", flat=True)) == expected.rows
    assert sum(chunks.values_list("rows_rejected", flat=True)) == len(rejected)
    assert DeadLetter.objects.count() == streamed.dead_letters_before
    # No chunk failed even once (a failure leaves its attempt count behind).
    assert not ChunkAttempt.objects.filter(chunk_id__startswith=f"{source.pk}:").exists()


def assert_valid_rows_committed_once(streamed: Streamed, valid_lines: frozenset[int]) -> None:
    values = streamed.samples().filter(value__gt=0).values_list("value", flat=True)
    assert sorted(values) == sorted(valid_lines)


def assert_broker_empty(broker: redis.Redis) -> None:
    assert broker.llen(COLLECT_QUEUE) == 0
    assert broker.hlen("unacked") == 0


# --- the fuzzing ---------------------------------------------------------------------------


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples on every run, so CI is repeatable
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no slow "explain" re-runs
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # the broker is emptied per example
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(
    file=hostile_files(),
    batch_size=st.integers(min_value=1, max_value=8),
    timestamp_mode=st.sampled_from(StreamSource.TimestampMode.values),
)
def test_every_line_of_a_hostile_file_is_one_sample_or_one_rejected_row(
    file: HostileFile, batch_size: int, timestamp_mode: str, tmp_path: Path, broker: redis.Redis
) -> None:
    broker.flushdb()

    streamed = stream_file(
        tmp_path / f"hostile-{next(_source_numbers)}.csv",
        file.data,
        batch_size=batch_size,
        timestamp_mode=timestamp_mode,
    )

    assert_every_line_accounted_for(streamed, file.data)
    assert_valid_rows_committed_once(streamed, file.valid_lines)
    assert_broker_empty(broker)


# --- explicit cases ------------------------------------------------------------------------

TEN_MB = 10 * 1024 * 1024


def garbage(size: int, seed: int, *, newlines: bool) -> bytes:
    """Seeded random bytes; without ``newlines`` they form a single line."""
    data = random.Random(seed).randbytes(size)  # noqa: S311 (test data, not secrets)
    return data if newlines else data.replace(b"\n", b"\xff")


def test_a_10_mb_line_of_garbage_is_one_rejected_row_and_spares_its_neighbours(
    tmp_path: Path, broker: redis.Redis
) -> None:
    line = garbage(TEN_MB, 1, newlines=False)
    data = HEADER + b"\n" + row(2) + b"\n" + line + b"\n" + row(4) + b"\n"

    streamed = stream_file(tmp_path / "ten_mb_garbage.csv", data, batch_size=1000)

    # The verdict is known, and judging 10 MB of invalid UTF-8 a second time costs seconds.
    expected = Verdicts(rows=2, rejected={3: "line is not valid UTF-8"})
    assert_every_line_accounted_for(streamed, data, expected)
    assert_valid_rows_committed_once(streamed, frozenset({2, 4}))
    stored = RejectedRow.objects.get(source=streamed.source, line_number=3).raw_line
    assert len(stored) <= MAX_STORED_LINE_CHARS + len(f"... [{len(line)} bytes]")
    assert_broker_empty(broker)


def test_a_10_mb_row_is_one_verdict_and_spares_its_neighbours(
    tmp_path: Path, broker: redis.Redis
) -> None:
    data = b"\n".join([HEADER, row(2), row(3, labels_raw="k=" + "x" * TEN_MB), row(4), b""])

    streamed = stream_file(tmp_path / "ten_mb_row.csv", data, batch_size=1000)

    assert_every_line_accounted_for(streamed, data)
    values = set(streamed.samples().values_list("value", flat=True))
    assert values in ({2, 4}, {2, 3, 4})
    assert_broker_empty(broker)


def test_a_file_of_garbage_after_its_header_is_all_rejected_rows(
    tmp_path: Path, broker: redis.Redis
) -> None:
    data = HEADER + b"\n" + garbage(256 * 1024, 2, newlines=True)

    streamed = stream_file(tmp_path / "garbage.csv", data, batch_size=100)

    assert_every_line_accounted_for(streamed, data)
    assert Sample.objects.count() == 0
    assert RejectedRow.objects.count() == len(physical_lines(data)) - 1 > 1000
    assert_broker_empty(broker)


def test_a_file_of_only_a_bom_and_a_header_finishes_with_nothing_stored(
    tmp_path: Path, broker: redis.Redis
) -> None:
    # One test for the three endings: each case is cheap, the database flush after a test is not.
    for name, ending in {"lf": b"\n", "crlf": b"\r\n", "no-newline": b""}.items():
        data = BOM + HEADER + ending

        streamed = stream_file(tmp_path / f"header_only_{name}.csv", data)

        assert_every_line_accounted_for(streamed, data)
        assert not streamed.collect_results, name
        assert not RejectedRow.objects.exists(), name
    assert not Sample.objects.exists()
    assert_broker_empty(broker)


def assert_nothing_stored_or_sent(broker: redis.Redis) -> None:
    assert_nothing_stored()
    assert_broker_empty(broker)


WRONG_ENCODINGS = ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "cp037")


def test_a_header_in_a_wrong_encoding_is_a_clear_error_and_stores_nothing(
    tmp_path: Path, broker: redis.Redis
) -> None:
    text = (HEADER + b"\n" + row(2) + b"\n").decode()
    files = {codec: text.encode(codec) for codec in WRONG_ENCODINGS}
    files["all garbage"] = garbage(64 * 1024, 3, newlines=True)

    for name, data in files.items():
        streamed = stream_file(tmp_path / f"wrong_{name}.csv", data)

        source = streamed.source
        assert len(streamed.stream_results) == 1, name
        assert "source error" in streamed.stream_results[0], name
        assert "header" in source.last_error, (name, source.last_error)
        assert str(tmp_path) in source.last_error, (name, source.last_error)
        assert source.last_error_at is not None, name
        # A later tick reports the error again rather than crashing or storing anything.
        assert "source error" in tasks.stream(source.pk), name
        assert_nothing_stored_or_sent(broker)


# --- times at the edge of the calendar ---------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59Z"],
)
def test_a_row_timed_at_the_edge_of_the_calendar_does_not_fail_its_chunk(
    timestamp: str, tmp_path: Path, broker: redis.Redis
) -> None:
    data = b"\n".join([HEADER, row(2), row(-3, timestamp=timestamp), row(4), b""])

    streamed = stream_file(tmp_path / "calendar_edge.csv", data, timestamp_mode="source")

    # Line 3 is rejected alone, with its reason; rows 2 and 4 are committed regardless.
    assert not streamed.samples().filter(value=-3).exists()
    rejected = RejectedRow.objects.get(source=streamed.source, line_number=3)
    assert "outside the years" in rejected.reason
    assert_valid_rows_committed_once(streamed, frozenset({2, 4}))
    assert not DeadLetter.objects.exists()
