"""Following a file as it grows, like ``tail -F``: rows appended after its end, and the new file
put at its path when it is rotated.

A followed source is never finished: a tick that reaches the end of the file publishes what
is there and the next one looks again. The last row is read only once its newline is written
(``reader.read_line_runs``, ``growing``), so a row caught half written is never split.

Rotation is seen from the file itself. The cursor keeps the device and inode of the file it
reads; each tick compares them with the file open at the path, and its size with the cursor's
position. Another file there (``mv`` then a new file, as logrotate does by default), or this
one shorter than what was read (truncated, as with ``copytruncate``), starts a new pass at the
first data line of what is there now: a new pass number, so the new file's chunks get new ids
and nothing of the old one is read by offset from it. Before that, rows written to a renamed
file after the last tick read it are read from it, if it is still in the same directory under
any name. Chunks of the old file still outstanding publish the message they keep
(``OutstandingChunk.payload``), never bytes from the path.

What polling the path cannot see, and is documented as such (docs/design.md, "Followed
files"): the rest of an old file moved to another directory or compressed, a last row of an
old file never finished, and a file truncated and grown back past the cursor's position
between two ticks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from ingest import reader
from ingest.models import StreamCursor, StreamSource


@contextmanager
def open_followed(source: StreamSource, cursor: StreamCursor) -> Iterator[IO[bytes] | None]:
    """The stream a followed cursor reads this tick, at the cursor's position; None while there
    is nothing to read yet.

    The first tick records the file's identity. When the file at the path is another one, the
    rest of the old file is read first if it is still beside it (found by its identity under
    whatever name it was renamed to) and holds whole rows past the cursor. Then, or when the
    file was truncated, a new pass starts at the first data line of the file at the path, once
    its header is whole (a file just created may not have one yet: that is waiting, not an
    error).
    """
    with ExitStack() as opened:
        current = opened.enter_context(reader.open_at(source.location, cursor.position))
        identity = reader.identity_of(current)
        same_file = (cursor.file_device, cursor.file_inode) == (identity.device, identity.inode)
        if cursor.file_inode is not None and not (same_file and identity.size >= cursor.position):
            rest = None if same_file else _rest_of_renamed_file(source, cursor, opened)
            if rest is not None:
                yield rest
                return
            if not _start_new_pass(source, cursor, current):
                yield None
                return
        cursor.file_device, cursor.file_inode = identity.device, identity.inode
        yield current


def _rest_of_renamed_file(
    source: StreamSource, cursor: StreamCursor, opened: ExitStack
) -> IO[bytes] | None:
    """The file the cursor was reading, renamed in the same directory, at the cursor's
    position, if whole rows were written to it past there; else None.

    A writer often appends to the old file until it reopens the path, and the last tick read
    it before the rename; these rows are read before the new file. The file is opened through
    the source policy like any other, and its identity checked on the opened descriptor.
    """
    renamed = _file_with_identity(Path(source.location).parent, cursor)
    if renamed is None:
        return None
    try:
        stream = opened.enter_context(reader.open_at(str(renamed), cursor.position))
    except reader.SourceError:  # gone since the directory was listed: nothing to read
        return None
    identity = reader.identity_of(stream)
    if (identity.device, identity.inode) != (cursor.file_device, cursor.file_inode):
        return None
    if not _newline_follows(stream):
        return None  # nothing, or a last row never finished: the old file is done
    stream.seek(cursor.position)
    return stream


def _file_with_identity(folder: Path, cursor: StreamCursor) -> Path | None:
    """The regular file in ``folder`` with the cursor's device and inode, if there is one."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.inode() != cursor.file_inode or not entry.is_file(follow_symlinks=False):
                    continue
                if entry.stat(follow_symlinks=False).st_dev == cursor.file_device:
                    return Path(entry.path)
    except OSError:  # the folder cannot be listed: the old file is out of reach
        return None
    return None


def _newline_follows(stream: IO[bytes]) -> bool:
    """Whether a newline lies ahead in ``stream`` (read up to the first one)."""
    while block := stream.read(reader.BLOCK_SIZE):
        if b"\n" in block:
            return True
    return False


def _start_new_pass(source: StreamSource, cursor: StreamCursor, stream: IO[bytes]) -> bool:
    """Point the cursor at the first data line of the file open in ``stream``, as a new pass;
    False while the file's header is not whole yet. The stream is left at that line."""
    stream.seek(0)
    if not stream.readline(reader.BLOCK_SIZE).endswith(b"\n"):
        return False
    stream.seek(0)
    header = reader.parse_header(stream, source.location)
    cursor.pass_number += 1
    cursor.start_offset = cursor.position = header.data_start
    cursor.next_line = cursor.start_line
    if list(header.layout.names) != source.columns:
        source.columns = list(header.layout.names)
        StreamSource.objects.filter(pk=source.pk).update(columns=source.columns)
    return True
