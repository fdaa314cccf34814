"""Byte-level reading of a source: its header, shard boundaries and runs of whole lines.

Everything works from byte offsets with bounded reads, so memory stays flat for any file size
and a resumed stream seeks instead of re-reading. http(s) sources are read with Range
requests; a server that ignores Range is read from the start and the prefix discarded.
"""

from __future__ import annotations

import itertools
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

from ingest.dcgm import ColumnLayout, HeaderError

BLOCK_SIZE = 1 << 20
# A chunk ends at a line boundary once it holds this many bytes (checked per block read, so
# it may exceed it by up to one block), whatever its line count: a file of enormous lines
# still makes messages the broker can carry.
MAX_CHUNK_BYTES = 16 << 20
HTTP_TIMEOUT_SECONDS = 30


class SourceError(Exception):
    """The source cannot be read (missing file, bad header, unreachable URL)."""


@dataclass(frozen=True, slots=True)
class Header:
    layout: ColumnLayout
    data_start: int  # byte offset of the first data line (line 2)


@dataclass(frozen=True, slots=True)
class ShardBounds:
    start_offset: int
    end_offset: int | None
    start_line: int


@dataclass(frozen=True, slots=True)
class LineRun:
    """A run of whole lines: bytes [start, end) holding ``line_count`` lines."""

    start: int
    end: int
    line_count: int


def _is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


@contextmanager
def open_at(location: str, position: int) -> Iterator[IO[bytes]]:
    """A binary stream of the source positioned at ``position``."""
    try:
        if _is_url(location):
            # Only http(s) reaches here (_is_url), never file:// or a custom scheme.
            range_header = {"Range": f"bytes={position}-"}
            request = urllib.request.Request(location, headers=range_header)  # noqa: S310
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
                if position and response.status != 206:
                    _discard(response, position)
                yield response
        else:
            with open(location, "rb") as stream:
                stream.seek(position)
                yield stream
    except OSError as error:
        raise SourceError(f"cannot read {location}: {error}") from error


def _discard(stream: IO[bytes], count: int) -> None:
    while count > 0:
        block = stream.read(min(count, BLOCK_SIZE))
        if not block:
            return
        count -= len(block)


def read_header(location: str) -> Header:
    with open_at(location, 0) as stream:
        line = stream.readline(BLOCK_SIZE)
    if not line:
        raise SourceError(f"{location} is empty: expected a DCGM CSV header")
    try:
        layout = ColumnLayout.from_header_line(line)
    except HeaderError as error:
        raise SourceError(f"{location}: {error}") from None
    return Header(layout=layout, data_start=len(line))


def file_size(location: str) -> int | None:
    """The size of a local file; None for a URL (URLs are streamed as a single shard)."""
    if _is_url(location):
        return None
    with open_at(location, 0) as stream:
        return stream.seek(0, 2)


def shard_bounds(location: str, data_start: int, shards: int) -> list[ShardBounds]:
    """Split a file's data into ``shards`` byte ranges, each moved to start on a line.

    Line numbers of later shards are counted once here, so rejected rows can name their line.
    """
    size = file_size(location)
    if size is None or shards <= 1 or size <= data_start:
        return [ShardBounds(data_start, None, 2)]
    starts = [data_start]
    with open_at(location, 0) as stream:
        for shard in range(1, shards):
            target = data_start + (size - data_start) * shard // shards
            stream.seek(target - 1)
            stream.readline()
            boundary = stream.tell()
            if boundary > starts[-1] and boundary < size:
                starts.append(boundary)
        lines = [2]
        stream.seek(data_start)
        for previous, start in itertools.pairwise(starts):
            lines.append(lines[-1] + _count_newlines(stream, start - previous))
    ends: list[int | None] = [*starts[1:], None]
    return [ShardBounds(s, e, n) for s, e, n in zip(starts, ends, lines, strict=True)]


def _count_newlines(stream: IO[bytes], length: int) -> int:
    count = 0
    while length > 0:
        block = stream.read(min(length, BLOCK_SIZE))
        if not block:
            break
        count += block.count(b"\n")
        length -= len(block)
    return count


def read_line_runs(
    stream: IO[bytes], position: int, end: int | None, max_lines: int, max_runs: int
) -> Iterator[tuple[LineRun, bytes]]:
    """Yield up to ``max_runs`` runs of at most ``max_lines`` whole lines from ``stream``.

    ``stream`` must be positioned at ``position``; reading stops at ``end`` (a line start) or
    at the end of the file, where a last line without a newline still counts as a line.
    """
    pending = b""
    pending_start = position
    exhausted = False
    for _ in range(max_runs):
        run_bytes = bytearray()
        line_count = 0
        while line_count < max_lines and len(run_bytes) < MAX_CHUNK_BYTES:
            if not pending:
                if exhausted:
                    break
                limit = BLOCK_SIZE if end is None else min(BLOCK_SIZE, end - pending_start)
                pending = stream.read(limit) if limit > 0 else b""
                if not pending:
                    exhausted = True
                    break
            cut = _nth_newline_end(pending, max_lines - line_count)
            if cut is None:
                run_bytes += pending
                line_count += pending.count(b"\n")
                pending_start += len(pending)
                pending = b""
            else:
                run_bytes += pending[:cut]
                line_count = max_lines
                pending_start += cut
                pending = pending[cut:]
        if exhausted and run_bytes and not run_bytes.endswith(b"\n"):
            line_count += 1  # the file's last line has no newline
        elif run_bytes and not run_bytes.endswith(b"\n"):
            # Stopped on the byte cap mid-line: finish that line before ending the run.
            while True:
                if not pending:
                    limit = BLOCK_SIZE if end is None else min(BLOCK_SIZE, end - pending_start)
                    pending = stream.read(limit) if limit > 0 else b""
                    if not pending:
                        line_count += 1
                        exhausted = True
                        break
                newline = pending.find(b"\n")
                if newline == -1:
                    run_bytes += pending
                    pending_start += len(pending)
                    pending = b""
                    continue
                run_bytes += pending[: newline + 1]
                pending_start += newline + 1
                pending = pending[newline + 1 :]
                line_count += 1
                break
        if not run_bytes:
            return
        run_start = pending_start - len(run_bytes)
        yield LineRun(run_start, pending_start, line_count), bytes(run_bytes)


def _nth_newline_end(block: bytes, n: int) -> int | None:
    """The offset just past the n-th newline in ``block``, or None if it has fewer."""
    if block.count(b"\n") < n:
        return None
    index = -1
    for _ in range(n):
        index = block.find(b"\n", index + 1)
    return index + 1


def read_range(location: str, start: int, end: int) -> bytes:
    """The exact bytes of a recorded chunk, for publishing it (again)."""
    with open_at(location, start) as stream:
        data = stream.read(end - start)
    if len(data) != end - start:
        raise SourceError(f"{location} is shorter than expected: it changed while streamed")
    return data
