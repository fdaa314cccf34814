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
and nothing of the old one is read by offset from it. Chunks of the old file still outstanding
publish the message they keep (``OutstandingChunk.payload``), never bytes from the path.

What polling the path cannot see, and is documented as such (docs/design.md, "Followed
files"): rows written to the old file after the last tick read it and before it was rotated,
and a file truncated and grown back past the cursor's position between two ticks.
"""

from __future__ import annotations

from typing import IO

from ingest import reader
from ingest.models import StreamCursor, StreamSource


def check_file(source: StreamSource, cursor: StreamCursor, stream: IO[bytes]) -> bool:
    """Make the cursor read the file open in ``stream``; False while it cannot be read yet.

    The first tick records the file's identity. A rotated or truncated file starts a new pass
    at its first data line, once its header is whole (a file just created may not have one
    yet: that is waiting, not an error). The stream is left at the cursor's position.
    """
    identity = reader.identity_of(stream)
    same_file = (cursor.file_device, cursor.file_inode) == (identity.device, identity.inode)
    if cursor.file_inode is not None and (not same_file or identity.size < cursor.position):
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
    cursor.file_device, cursor.file_inode = identity.device, identity.inode
    stream.seek(cursor.position)
    return True
