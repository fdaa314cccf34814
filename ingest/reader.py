"""Byte-level reading of a source: its header, shard boundaries and runs of whole lines.

Everything works from byte offsets with bounded reads, so memory stays flat for any file size
and a resumed stream seeks instead of re-reading. http(s) sources are read with Range
requests; a server that ignores Range is read from the start and the prefix discarded.

Every open goes through the source policy (``ingest.sources``): a file must be a regular file
under ``STREAM_SOURCE_DIRS`` and a URL must be http(s), checked at each read rather than only
when the source was registered. URLs are fetched through ``ingest.fetch`` (only addresses the
policy allows), with ``STREAM_SOURCE_HTTP_TIMEOUT_SECONDS`` and refused beyond
``STREAM_SOURCE_MAX_BYTES``, so a hostile or broken server can neither hang a streamer nor
feed it forever.
"""

from __future__ import annotations

import http.client
import io
import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

from django.conf import settings

from ingest import fetch, sources
from ingest.dcgm import ColumnLayout, HeaderError
from ingest.sample_ids import MAX_CHUNK_ROWS

BLOCK_SIZE = 1 << 20
# A chunk ends at a line boundary once it holds this many bytes (checked per block read, so
# it may exceed it by up to one block), whatever its line count: a file of enormous lines
# still makes messages the broker can carry.
MAX_CHUNK_BYTES = 16 << 20


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
    return sources.is_url(location)


@contextmanager
def open_at(location: str, position: int) -> Iterator[IO[bytes]]:
    """A binary stream of the source positioned at ``position``, once the policy allows it."""
    try:
        target = sources.check_location(location)
        if sources.is_url(target):
            with _open_url(target, position) as stream:
                yield stream
        else:
            with sources.open_source_file(target) as stream:
                stream.seek(position)
                yield stream
    except (sources.LocationRefusedError, fetch.AddressRefusedError) as error:
        raise SourceError(str(error)) from None
    except fetch.TooLargeError as error:
        size = (
            "sent more bytes than allowed"
            if error.announced is None
            else (f"is {error.announced} bytes")
        )
        raise SourceError(_too_large(location, size)) from None
    except (OSError, http.client.HTTPException) as error:
        raise SourceError(f"cannot read {location}: {error}") from error


@contextmanager
def _open_url(url: str, position: int) -> Iterator[IO[bytes]]:
    """The URL's bytes from ``position``, refused when the source exceeds the size cap.

    The cap is on the whole source: a server that honours the Range request (206) may send
    the cap less ``position``; one that ignores it (200) sends from byte 0, up to the cap.
    """
    cap = settings.STREAM_SOURCE_MAX_BYTES or None
    with fetch.open_url(
        url,
        timeout=settings.STREAM_SOURCE_HTTP_TIMEOUT_SECONDS,
        headers={"Range": f"bytes={position}-"},
        max_bytes=cap,
    ) as response:
        start = position if response.status == 206 else 0
        total = _announced_size(response, start)
        if cap is not None and total is not None and total > cap:
            raise SourceError(_too_large(url, f"is {total} bytes"))
        response.max_bytes = None if cap is None else cap - start
        with io.BufferedReader(response, BLOCK_SIZE) as stream:
            if position and not start:
                _discard(stream, position)
            yield stream


def _announced_size(response: fetch.Response, start: int) -> int | None:
    """The whole source's size as the server states it (Content-Range, else Content-Length)."""
    content_range = response.headers.get("Content-Range", "")
    total = content_range.rpartition("/")[2].strip()
    if total.isdigit():
        return int(total)
    length = response.headers.get("Content-Length", "").strip()
    return start + int(length) if length.isdigit() else None


def _too_large(url: str, size: str) -> str:
    return (
        f"{url} {size}, more than STREAM_SOURCE_MAX_BYTES "
        f"({settings.STREAM_SOURCE_MAX_BYTES}); raise that setting to read it"
    )


def _discard(stream: IO[bytes], count: int) -> None:
    while count > 0:
        block = stream.read(min(count, BLOCK_SIZE))
        if not block:
            return
        count -= len(block)


def read_header(location: str) -> Header:
    with open_at(location, 0) as stream:
        return parse_header(stream, location)


def parse_header(stream: IO[bytes], location: str) -> Header:
    """The header of a stream positioned at byte 0; the stream is left at the first data line.

    Split from ``read_header`` so a caller holding an open stream (``validate_csv``) reads
    the header exactly as the streamer does.
    """
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
    stream: IO[bytes],
    position: int,
    end: int | None,
    max_lines: int,
    max_runs: int,
    *,
    growing: bool = False,
) -> Iterator[tuple[LineRun, bytes]]:
    """Yield up to ``max_runs`` runs of at most ``max_lines`` whole lines from ``stream``,
    and never more than ``MAX_CHUNK_ROWS`` (a chunk's rows share one id serial,
    ``ingest.sample_ids``), whatever ``max_lines`` a caller asks for.

    ``stream`` must be positioned at ``position``; reading stops at ``end`` (a line start) or
    at the end of the file. There a last line without a newline counts as a line in a
    finished file; in a ``growing`` one (a followed file) it is a row still being written,
    left unread until its newline arrives.
    Each byte is copied once into its run and scanned once for newlines: on these machines
    memory bandwidth, not Python, is what a streamer's reading costs.
    """
    max_lines = min(max_lines, MAX_CHUNK_ROWS)
    blocks = _Blocks(stream, position, end)
    for _ in range(max_runs):
        run_start = blocks.offset
        parts: list[bytes] = []
        line_count = 0
        size = 0
        # Whole lines until the line count or the byte cap is reached...
        while line_count < max_lines and size < MAX_CHUNK_BYTES and blocks.fill():
            cut, found = blocks.find_newlines(max_lines - line_count)
            parts.append(blocks.take(cut))
            line_count += found
            size += len(parts[-1])
        # ...and the rest of a line cut by the byte cap or by the end of the file.
        unterminated = False
        while parts and not parts[-1].endswith(b"\n"):
            if not blocks.fill():
                unterminated = True
                break
            cut, found = blocks.find_newlines(1)
            parts.append(blocks.take(cut))
            line_count += found
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if unterminated and growing:
            # Nothing more is read after the end of the file, so dropping the partial row
            # from this last run is all it takes to leave it for a later tick.
            data = data[: data.rfind(b"\n") + 1]
        elif unterminated:
            line_count += 1  # the file's last line has no newline
        if not data:
            return
        yield LineRun(run_start, run_start + len(data), line_count), data


class _Blocks:
    """The stream read in large blocks, consumed from the front without copying the rest."""

    def __init__(self, stream: IO[bytes], position: int, end: int | None) -> None:
        self.stream = stream
        self.end = end
        self.block = b""
        self.at = 0  # first unconsumed byte of ``block``
        self.offset = position  # file offset of ``block[at]``
        self.read_to = position  # file offset just past ``block``

    def fill(self) -> bool:
        """Make sure unconsumed bytes are at hand; False at the end of the range."""
        if self.at < len(self.block):
            return True
        limit = BLOCK_SIZE if self.end is None else min(BLOCK_SIZE, self.end - self.read_to)
        self.block = self.stream.read(limit) if limit > 0 else b""
        self.at = 0
        self.read_to += len(self.block)
        return bool(self.block)

    def find_newlines(self, wanted: int) -> tuple[int, int]:
        """(end, lines): just past the ``wanted``-th newline from ``at``, or the block's end
        and how many newlines it holds."""
        block, index = self.block, self.at - 1
        for found in range(wanted):
            index = block.find(b"\n", index + 1)
            if index == -1:
                return len(block), found
        return index + 1, wanted

    def take(self, cut: int) -> bytes:
        """The unconsumed bytes up to ``cut``, consumed."""
        whole = self.at == 0 and cut == len(self.block)
        piece = self.block if whole else self.block[self.at : cut]
        self.offset += cut - self.at
        self.at = cut
        return piece


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Which file an open stream reads, and its size: what tells a rotated or truncated file."""

    device: int
    inode: int
    size: int


def identity_of(stream: IO[bytes]) -> FileIdentity:
    """The identity of the file a stream from ``open_at`` reads (a file, not a URL).

    Taken from the open descriptor, not the path, so it describes the very bytes read.
    """
    status = os.fstat(stream.fileno())
    return FileIdentity(status.st_dev, status.st_ino, status.st_size)


def read_range(location: str, start: int, end: int) -> bytes:
    """The exact bytes of a recorded chunk, for publishing it (again)."""
    with open_at(location, start) as stream:
        data = stream.read(end - start)
    if len(data) != end - start:
        raise SourceError(f"{location} is shorter than expected: it changed while streamed")
    return data
