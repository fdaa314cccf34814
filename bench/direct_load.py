"""Committing a CSV file through the collect code path, inside this process.

For measurements and tests that want many rows stored exactly as the pipeline stores them,
without a broker or workers: the file is cut into runs of whole lines the way the streamer
cuts it, and each run is committed by ``ingest.collector.collect``. Chunk ids follow the
streamer's scheme (source, shard 0, pass 1, start byte), so loading a file twice into the
same source commits it once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from ingest.chunks import Chunk
from ingest.collector import CollectResult, collect
from ingest.dcgm import ColumnLayout
from ingest.models import chunk_id_for
from ingest.reader import read_line_runs


def collect_file(
    path: Path, *, source_id: int, lines_per_chunk: int
) -> Iterator[tuple[int, CollectResult]]:
    """Commit ``path`` chunk by chunk, keeping its timestamps; yield (lines, result) each."""
    with path.open("rb") as stream:
        columns = ColumnLayout.from_header_line(stream.readline()).names
        first_line = 2  # the header is line 1
        runs = read_line_runs(stream, stream.tell(), None, lines_per_chunk, sys.maxsize)
        for run, data in runs:
            chunk = Chunk(
                chunk_id=chunk_id_for(source_id, 0, 1, run.start),
                source_id=source_id,
                first_line=first_line,
                line_count=run.line_count,
                columns=columns,
                stamp=None,
                data=data,
            )
            first_line += run.line_count
            yield run.line_count, collect(chunk.to_payload())
