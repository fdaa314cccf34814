"""A pushed body cut into the collect chunks it is stored and committed as (``ingest.push``).

Every cut depends on the body alone, so a byte-identical retry makes the very same parts, and
each part has at most ``PART_ROWS`` rows:

- a DCGM CSV: its header's columns, then runs of whole lines, numbered as in the body (the
  header is line 1); stored with the CSV's own timestamps;
- a text exposition page: runs of whole lines holding at most ``PART_ROWS`` sample lines. A run
  that starts inside a metric family begins with that family's ``# HELP``/``# TYPE`` lines
  again, so every part is a page the parser reads alone, typed as the whole page is; the part's
  first line number is set so that the page's own lines keep their numbers. A sample is stored
  at its own timestamp when the line has one, else at the time the request arrived;
- remote-written series: ``ingest.pushed_series``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime

from ingest.chunks import Chunk, ChunkFormat
from ingest.dcgm import ColumnLayout
from ingest.push import PART_ROWS, part_id
from ingest.pushed_series import Split
from ingest.reader import read_line_runs

COMMENT = b"#"


def csv_parts(token_id: int, digest: str, body: bytes) -> list[Chunk]:
    """The CSV's data lines in parts; raises ``HeaderError`` when its first line is not a
    DCGM header."""
    header, newline, _ = body.partition(b"\n")
    layout = ColumnLayout.from_header_line(header)
    runs = read_line_runs(
        io.BytesIO(body[len(header) + len(newline) :]), 0, None, PART_ROWS, max_runs=len(body)
    )
    parts = []
    first_line = 2
    for number, (run, data) in enumerate(runs):
        parts.append(
            Chunk(
                chunk_id=part_id(token_id, digest, number),
                source_id=None,
                first_line=first_line,
                line_count=run.line_count,
                columns=layout.names,
                stamp=None,
                data=data,
            )
        )
        first_line += run.line_count
    return parts


def page_parts(token_id: int, digest: str, page: bytes, received_at: datetime) -> list[Chunk]:
    """The exposition page's lines in parts, each a page of its own."""
    return [
        Chunk(
            chunk_id=part_id(token_id, digest, number),
            source_id=None,
            first_line=first_line,
            line_count=data.count(b"\n"),
            columns=(),
            stamp=None,
            data=data,
            format=ChunkFormat.EXPOSITION,
            scraped_at=received_at,
        )
        for number, (first_line, data) in enumerate(_page_runs(page, PART_ROWS))
    ]


def _page_runs(page: bytes, max_samples: int) -> Iterator[tuple[int, bytes]]:
    """(number of the first line, lines) of runs with at most ``max_samples`` sample lines."""
    lines = page.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    family: list[bytes] = []  # the comment lines heading the family in progress
    after_comment = False
    run: list[bytes] = []
    first_line = 1
    samples = 0
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if text.startswith(COMMENT):
            if not after_comment:
                family = []
            family.append(line)
            after_comment = True
        elif text:
            if samples == max_samples:
                yield first_line, b"\n".join(run) + b"\n"
                run, first_line, samples = list(family), number - len(family), 0
            samples += 1
            after_comment = False
        run.append(line)
    if run:
        yield first_line, b"\n".join(run) + b"\n"


def remote_write_parts(
    token_id: int, digest: str, split: Split, received_at: datetime
) -> list[Chunk]:
    """The parts of a remote write request, carrying the time it arrived."""
    return [
        Chunk(
            chunk_id=part_id(token_id, digest, number),
            source_id=None,
            first_line=part.first,
            line_count=part.samples,
            columns=(),
            stamp=None,
            data=part.encode(),
            format=ChunkFormat.REMOTE_WRITE,
            scraped_at=received_at,
        )
        for number, part in enumerate(split.parts)
    ]
