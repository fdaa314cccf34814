"""Collect messages for tests, built from whole lines as the streamer cuts them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ingest.chunks import Chunk
from tests.support.reference import REFERENCE_COLUMNS, REFERENCE_CSV

# The reference export's lines without their line breaks: the header, then 2,470 rows.
REFERENCE_LINES = REFERENCE_CSV.read_bytes().split(b"\n")


def chunk_of(
    lines: Sequence[bytes],
    *,
    chunk_id: str = "1:0:1:100",
    source_id: int = 1,
    first_line: int = 2,
    stamp: datetime | None = None,
    columns: tuple[str, ...] = REFERENCE_COLUMNS,
) -> Chunk:
    """A chunk of ``lines`` (each without its line break), in the reference export's layout
    unless ``columns`` says otherwise; by default its first line is the file's line 2."""
    return Chunk(
        chunk_id=chunk_id,
        source_id=source_id,
        first_line=first_line,
        line_count=len(lines),
        columns=columns,
        stamp=stamp,
        data=b"".join(line + b"\n" for line in lines),
    )
