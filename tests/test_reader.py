"""Byte-level reading of a source: header, shard boundaries, runs of whole lines, ranges.

Files are built in temporary folders or read from the reference export; no database.
"""

from __future__ import annotations

import io
from itertools import pairwise
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import reader
from ingest.dcgm import ColumnLayout
from ingest.reader import (
    MAX_CHUNK_BYTES,
    LineRun,
    ShardBounds,
    SourceError,
    identity_of,
    open_at,
    read_header,
    read_line_runs,
    read_range,
    shard_bounds,
)
from tests.support.reference import REFERENCE_CSV, REFERENCE_DATA_LINES, REFERENCE_HEADER

HEADER_LINE = REFERENCE_HEADER + b"\n"


def write_file(folder: Path, content: bytes, name: str = "source.csv") -> str:
    path = folder / name
    path.write_bytes(content)
    return str(path)


def numbered_lines(count: int, width: int = 0) -> bytes:
    """``count`` lines ``line-1``, ``line-2``, ..., each padded to ``width`` characters."""
    return b"".join(
        f"line-{number}".ljust(width, "x").encode() + b"\n" for number in range(1, count + 1)
    )


def line_count(data: bytes) -> int:
    """Lines in ``data``: one per newline, plus an unterminated last line."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def runs_of(
    location: str,
    position: int,
    end: int | None = None,
    max_lines: int = 1_000_000,
    max_runs: int = 1_000_000,
    *,
    growing: bool = False,
) -> list[tuple[LineRun, bytes]]:
    with open_at(location, position) as stream:
        return list(read_line_runs(stream, position, end, max_lines, max_runs, growing=growing))


def line_starts(content: bytes) -> list[int]:
    """The offset of every line in ``content``."""
    starts = [0]
    starts.extend(index + 1 for index, byte in enumerate(content) if byte == ord("\n"))
    return [start for start in starts if start < len(content)]


# --- read_line_runs ------------------------------------------------------------------------


def test_runs_hold_whole_lines_only(tmp_path: Path) -> None:
    content = numbered_lines(50)
    runs = runs_of(write_file(tmp_path, content), 0, max_lines=7)
    starts = set(line_starts(content))
    assert all(run.start in starts and data.endswith(b"\n") for run, data in runs)


def test_runs_cover_the_range_exactly_once(tmp_path: Path) -> None:
    content = numbered_lines(50)
    runs = runs_of(write_file(tmp_path, content), 0, max_lines=7)
    bounds = [(run.start, run.end) for run, _ in runs]
    assert bounds[0][0] == 0
    assert bounds[-1][1] == len(content)
    assert all(previous[1] == following[0] for previous, following in pairwise(bounds))


def test_run_bytes_are_the_file_bytes_of_their_range(tmp_path: Path) -> None:
    content = numbered_lines(50)
    runs = runs_of(write_file(tmp_path, content), 0, max_lines=7)
    assert all(data == content[run.start : run.end] for run, data in runs)


def test_run_line_counts_sum_to_the_data_lines(tmp_path: Path) -> None:
    content = HEADER_LINE + numbered_lines(123)
    runs = runs_of(write_file(tmp_path, content), len(HEADER_LINE), max_lines=10)
    assert sum(run.line_count for run, _ in runs) == 123


def test_each_run_counts_the_lines_it_holds(tmp_path: Path) -> None:
    runs = runs_of(write_file(tmp_path, numbered_lines(23)), 0, max_lines=10)
    assert [(run.line_count, data.count(b"\n")) for run, data in runs] == [
        (10, 10),
        (10, 10),
        (3, 3),
    ]


def test_runs_never_exceed_max_lines(tmp_path: Path) -> None:
    runs = runs_of(write_file(tmp_path, numbered_lines(100)), 0, max_lines=9)
    assert max(run.line_count for run, _ in runs) == 9


def test_stops_after_max_runs(tmp_path: Path) -> None:
    content = numbered_lines(100)
    runs = runs_of(write_file(tmp_path, content), 0, max_lines=5, max_runs=3)
    starts = line_starts(content)
    assert [(run.start, run.end) for run, _ in runs] == [
        (starts[0], starts[5]),
        (starts[5], starts[10]),
        (starts[10], starts[15]),
    ]


def test_counts_a_last_line_without_a_newline(tmp_path: Path) -> None:
    content = numbered_lines(3) + b"line-4"
    runs = runs_of(write_file(tmp_path, content), 0)
    assert [(run.start, run.end, run.line_count) for run, _ in runs] == [(0, len(content), 4)]


def test_a_run_of_only_an_unterminated_last_line_holds_one_line(tmp_path: Path) -> None:
    content = numbered_lines(2) + b"tail"
    runs = runs_of(write_file(tmp_path, content), 0, max_lines=2)
    assert [(run.line_count, data) for run, data in runs][-1] == (1, b"tail")


def test_a_growing_file_leaves_its_unterminated_last_line_unread(tmp_path: Path) -> None:
    content = numbered_lines(3) + b"line-4 half wri"
    runs = runs_of(write_file(tmp_path, content), 0, growing=True)
    assert [(run.start, run.end, run.line_count) for run, _ in runs] == [(0, 21, 3)]
    assert runs[-1][1] == numbered_lines(3)


def test_a_growing_file_ends_its_last_run_before_the_unfinished_line(tmp_path: Path) -> None:
    content = numbered_lines(5) + b"line-6 half"
    runs = runs_of(write_file(tmp_path, content), 0, max_lines=2, growing=True)
    assert [(run.line_count, data) for run, data in runs] == [
        (2, b"line-1\nline-2\n"),
        (2, b"line-3\nline-4\n"),
        (1, b"line-5\n"),
    ]


def test_a_growing_file_with_only_a_partial_line_yields_nothing(tmp_path: Path) -> None:
    path = write_file(tmp_path, numbered_lines(2) + b"line-3 ha")
    assert runs_of(path, len(numbered_lines(2)), growing=True) == []


def test_a_growing_file_reads_the_line_once_its_newline_is_written(tmp_path: Path) -> None:
    path = Path(write_file(tmp_path, numbered_lines(2) + b"line-3 ha"))
    first = runs_of(str(path), 0, growing=True)
    with path.open("ab") as appending:
        appending.write(b"lf written\nline-4\n")

    second = runs_of(str(path), first[-1][0].end, growing=True)

    assert [(run.line_count, data) for run, data in second] == [
        (2, b"line-3 half written\nline-4\n")
    ]


def test_identity_names_the_open_file_and_its_size(tmp_path: Path) -> None:
    path = write_file(tmp_path, numbered_lines(4))
    with open_at(path, 0) as stream:
        identity = identity_of(stream)
    status = Path(path).stat()
    assert (identity.device, identity.inode, identity.size) == (
        status.st_dev,
        status.st_ino,
        len(numbered_lines(4)),
    )


def test_identity_tells_a_file_put_at_the_path_of_a_renamed_one(tmp_path: Path) -> None:
    path = write_file(tmp_path, numbered_lines(4))
    with open_at(path, 0) as stream:
        before = identity_of(stream)
    Path(path).rename(tmp_path / "source.csv.1")
    write_file(tmp_path, numbered_lines(4))
    with open_at(path, 0) as stream:
        after = identity_of(stream)
    assert (after.device, after.size) == (before.device, before.size)
    assert after.inode != before.inode


def test_stops_at_end(tmp_path: Path) -> None:
    content = numbered_lines(20)
    end = line_starts(content)[12]
    runs = runs_of(write_file(tmp_path, content), 0, end=end, max_lines=5)
    assert (runs[-1][0].end, sum(run.line_count for run, _ in runs)) == (end, 12)


def test_starts_at_a_later_position(tmp_path: Path) -> None:
    content = numbered_lines(20)
    start = line_starts(content)[15]
    runs = runs_of(write_file(tmp_path, content), start)
    assert [(run.start, data) for run, data in runs] == [(start, content[start:])]


def test_yields_nothing_at_the_end_of_the_file(tmp_path: Path) -> None:
    content = numbered_lines(5)
    assert runs_of(write_file(tmp_path, content), len(content)) == []


def test_yields_nothing_when_end_equals_the_position(tmp_path: Path) -> None:
    content = numbered_lines(5)
    assert runs_of(write_file(tmp_path, content), 7, end=7) == []


def test_the_byte_cap_is_sixteen_mebibytes() -> None:
    assert MAX_CHUNK_BYTES == 16 * 1024 * 1024


def test_a_line_longer_than_the_byte_cap_stays_whole(tmp_path: Path) -> None:
    content = b"short\n" + b"y" * 1_000 + b"\n" + b"after\n"
    with (
        mock.patch.object(reader, "MAX_CHUNK_BYTES", 100),
        mock.patch.object(reader, "BLOCK_SIZE", 64),
    ):
        runs = runs_of(write_file(tmp_path, content), 0)
    assert [data for _, data in runs][:1] == [b"short\n" + b"y" * 1_000 + b"\n"]


def test_the_byte_cap_ends_a_run_on_a_line_boundary(tmp_path: Path) -> None:
    content = numbered_lines(100, width=30)
    with (
        mock.patch.object(reader, "MAX_CHUNK_BYTES", 200),
        mock.patch.object(reader, "BLOCK_SIZE", 64),
    ):
        runs = runs_of(write_file(tmp_path, content), 0)
    assert len(runs) > 1
    assert all(data.endswith(b"\n") for _, data in runs)
    assert all(len(data) < 200 + 64 + 31 for _, data in runs)


@st.composite
def line_files(draw: st.DrawFn) -> bytes:
    """File content: lines of mixed lengths, perhaps with empty ones and no final newline."""
    lines = draw(
        st.lists(
            st.one_of(
                st.binary(max_size=20).map(lambda line: line.replace(b"\n", b"")),
                st.integers(min_value=50, max_value=400).map(lambda size: b"z" * size),
            ),
            max_size=40,
        )
    )
    content = b"".join(line + b"\n" for line in lines)
    if draw(st.booleans()):
        content += draw(st.binary(min_size=1, max_size=30)).replace(b"\n", b"")
    return content


@settings(max_examples=200, deadline=None)
@given(
    content=line_files(),
    bounds=st.tuples(st.integers(min_value=0), st.integers(min_value=0) | st.none()),
    max_lines=st.integers(min_value=1, max_value=12),
    max_runs=st.integers(min_value=1, max_value=50),
    block_size=st.integers(min_value=1, max_value=128),
    byte_cap=st.integers(min_value=1, max_value=600),
    growing=st.booleans(),
)
def test_runs_are_whole_contiguous_lines_for_any_file_and_limits(
    content: bytes,
    bounds: tuple[int, int | None],
    max_lines: int,
    max_runs: int,
    block_size: int,
    byte_cap: int,
    growing: bool,
) -> None:
    starts = [*line_starts(content), len(content)]
    position = starts[bounds[0] % len(starts)]
    end = None if bounds[1] is None else max(position, starts[bounds[1] % len(starts)])
    stop = len(content) if end is None else end
    if growing:  # a last line without its newline is not read yet
        stop = max(position, content.rfind(b"\n", 0, stop) + 1)
    stream = io.BytesIO(content)
    stream.seek(position)

    with (
        mock.patch.object(reader, "BLOCK_SIZE", block_size),
        mock.patch.object(reader, "MAX_CHUNK_BYTES", byte_cap),
    ):
        runs = list(read_line_runs(stream, position, end, max_lines, max_runs, growing=growing))

    assert len(runs) <= max_runs
    covered = position
    for run, data in runs:
        assert run.start == covered
        assert data == content[run.start : run.end]
        assert data.endswith(b"\n") or (run.end == len(content) and not growing)
        assert run.line_count == line_count(data)
        assert 1 <= run.line_count <= max_lines
        # The cap is checked between reads of at most one block, then the line is finished.
        assert data.rfind(b"\n", 0, len(data) - 1) + 1 < byte_cap + block_size
        covered = run.end
    assert covered <= stop
    if len(runs) < max_runs:
        assert covered == stop


# --- shard_bounds on the reference export --------------------------------------------------


@pytest.fixture(scope="module")
def reference_content() -> bytes:
    return REFERENCE_CSV.read_bytes()


def reference_shards(shards: int) -> list[ShardBounds]:
    header = read_header(str(REFERENCE_CSV))
    return shard_bounds(str(REFERENCE_CSV), header.data_start, shards)


@pytest.mark.parametrize("shards", range(1, 8))
def test_shards_start_at_line_starts(shards: int, reference_content: bytes) -> None:
    offsets = [bounds.start_offset for bounds in reference_shards(shards)]
    assert all(reference_content[offset - 1 : offset] == b"\n" for offset in offsets)


@pytest.mark.parametrize("shards", range(1, 8))
def test_shards_are_contiguous_from_the_first_data_line(
    shards: int, reference_content: bytes
) -> None:
    bounds = reference_shards(shards)
    assert bounds[0].start_offset == len(HEADER_LINE)
    assert [shard.end_offset for shard in bounds] == [
        *(shard.start_offset for shard in bounds[1:]),
        None,
    ]


@pytest.mark.parametrize("shards", range(1, 8))
def test_shards_make_the_requested_number_of_ranges(shards: int) -> None:
    assert len(reference_shards(shards)) == shards


@pytest.mark.parametrize("shards", range(1, 8))
def test_shards_cover_all_2470_lines_exactly_once(shards: int, reference_content: bytes) -> None:
    total = 0
    pieces = []
    for bounds in reference_shards(shards):
        for run, data in runs_of(str(REFERENCE_CSV), bounds.start_offset, bounds.end_offset):
            total += run.line_count
            pieces.append(data)
    assert total == REFERENCE_DATA_LINES
    assert b"".join(pieces) == reference_content[len(HEADER_LINE) :]


@pytest.mark.parametrize("shards", range(1, 8))
def test_each_shard_starts_on_its_true_line_number(shards: int, reference_content: bytes) -> None:
    for bounds in reference_shards(shards):
        assert bounds.start_line == reference_content[: bounds.start_offset].count(b"\n") + 1


def test_one_shard_is_the_whole_data_from_line_2() -> None:
    assert reference_shards(1) == [ShardBounds(len(HEADER_LINE), None, 2)]


def test_a_file_with_only_a_header_is_one_empty_shard(tmp_path: Path) -> None:
    location = write_file(tmp_path, HEADER_LINE)
    assert shard_bounds(location, len(HEADER_LINE), 4) == [ShardBounds(len(HEADER_LINE), None, 2)]


@pytest.fixture(scope="module")
def shard_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shards")


@settings(max_examples=200, deadline=None)
@given(body=line_files(), shards=st.integers(min_value=1, max_value=12))
def test_shards_of_any_file_are_contiguous_line_ranges_with_true_line_numbers(
    shard_folder: Path, body: bytes, shards: int
) -> None:
    content = HEADER_LINE + body
    location = write_file(shard_folder, content)
    starts = set(line_starts(content))

    bounds = shard_bounds(location, len(HEADER_LINE), shards)

    assert 1 <= len(bounds) <= shards
    assert bounds[0].start_offset == len(HEADER_LINE)
    assert bounds[-1].end_offset is None
    for shard, following in pairwise(bounds):
        assert shard.end_offset == following.start_offset
        assert shard.start_offset < following.start_offset
    for shard in bounds:
        assert shard.start_offset in starts or shard.start_offset == len(content)
        assert shard.start_line == content[: shard.start_offset].count(b"\n") + 1


# --- read_header ---------------------------------------------------------------------------


def test_read_header_finds_the_reference_layout() -> None:
    header = read_header(str(REFERENCE_CSV))
    assert header.layout == ColumnLayout.from_header_line(HEADER_LINE)


def test_read_header_puts_data_after_the_header_line() -> None:
    assert read_header(str(REFERENCE_CSV)).data_start == len(HEADER_LINE)


def test_read_header_counts_a_byte_order_mark_into_the_header(tmp_path: Path) -> None:
    location = write_file(tmp_path, b"\xef\xbb\xbf" + HEADER_LINE + b'"row"\n')
    assert read_header(location).data_start == 3 + len(HEADER_LINE)


def test_read_header_on_a_missing_file_raises_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read"):
        read_header(str(tmp_path / "absent.csv"))


def test_read_header_on_a_wrong_header_raises_source_error_naming_missing_columns(
    tmp_path: Path,
) -> None:
    wrong = HEADER_LINE.replace(b"timestamp", b"time").replace(b"uuid", b"id")
    location = write_file(tmp_path, wrong + b'"row"\n')
    with pytest.raises(SourceError, match=r"lacks the column\(s\) timestamp, uuid;"):
        read_header(location)


def test_read_header_on_an_empty_file_raises_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is empty"):
        read_header(write_file(tmp_path, b""))


def test_read_header_on_a_folder_raises_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError):
        read_header(str(tmp_path))


# --- read_range and open_at ----------------------------------------------------------------


def test_read_range_returns_the_exact_bytes(reference_content: bytes) -> None:
    start, end = 1_000, 250_000
    assert read_range(str(REFERENCE_CSV), start, end) == reference_content[start:end]


def test_read_range_of_an_empty_range_is_empty(tmp_path: Path) -> None:
    assert read_range(write_file(tmp_path, b"abc\n"), 2, 2) == b""


def test_read_range_past_the_end_of_the_file_raises_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="shorter than expected"):
        read_range(write_file(tmp_path, b"abc\ndef\n"), 4, 20)


def test_open_at_positions_the_stream(tmp_path: Path) -> None:
    with open_at(write_file(tmp_path, b"abc\ndef\n"), 4) as stream:
        assert stream.read() == b"def\n"


def test_open_at_on_a_missing_file_raises_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError), open_at(str(tmp_path / "absent.csv"), 0):
        pass
