"""Committing a CSV file through the collect code path, inside this process.

For measurements and tests that want many rows stored exactly as the pipeline stores them,
without a broker or workers: the file is cut into runs of whole lines the way the streamer
cuts it, and each run is committed by ``ingest.collector.collect``. Chunk ids follow the
streamer's scheme (source, shard 0, pass, start byte), so loading a file twice into the
same source and pass commits it once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from ingest.chunks import Chunk
from ingest.collector import CollectResult, collect
from ingest.dcgm import ColumnLayout
from ingest.models import chunk_id_for
from ingest.reader import read_line_runs


def collect_file(
    path: Path,
    *,
    source_id: int,
    lines_per_chunk: int,
    pass_number: int = 1,
    stamp: datetime | None = None,
) -> Iterator[tuple[int, CollectResult]]:
    """Commit ``path`` chunk by chunk; yield (lines, result) each.

    Without ``stamp`` the file's timestamps are kept; with one, every row is stamped with it,
    as a streamer in processing mode stamps a pass (each pass of a file has chunk ids of its
    own, so a file committed again as another pass is stored again).
    """
    with path.open("rb") as stream:
        columns = ColumnLayout.from_header_line(stream.readline()).names
        first_line = 2  # the header is line 1
        runs = read_line_runs(stream, stream.tell(), None, lines_per_chunk, sys.maxsize)
        for run, data in runs:
            chunk = Chunk(
                chunk_id=chunk_id_for(source_id, 0, pass_number, run.start),
                source_id=source_id,
                first_line=first_line,
                line_count=run.line_count,
                columns=columns,
                stamp=stamp,
                data=data,
            )
            first_line += run.line_count
            yield run.line_count, collect(chunk.to_payload())
