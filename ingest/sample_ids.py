"""Sample ids on PostgreSQL: one sequence call per chunk, not one per row.

A chunk's write takes the next number of ``SEQUENCE``, its serial, and its rows take the ids
``serial * MAX_CHUNK_ROWS + 0, 1, 2, ...``. The ids stay unique (no two chunks share a
serial, and no chunk has more rows than ``MAX_CHUNK_ROWS``) and grow with the order chunks
are written in, while the server computes one sequence value per chunk instead of one per
row. Every producer of chunks caps them at ``MAX_CHUNK_ROWS`` rows (``ingest.reader``, the
push parts, the source settings); should a larger batch reach the writer all the same (a page
scraped from an exporter is one chunk whatever its size), it takes one serial per
``MAX_CHUNK_ROWS`` rows, still in one call.

The column's default, for a row inserted without an id (by hand, or by the ORM), takes a whole
serial: ``nextval(SEQUENCE) * MAX_CHUNK_ROWS``. SQLite (the embedded mode) keeps its own
autoincrementing ids. docs/design.md, "Sample ids".
"""

from __future__ import annotations

from typing import Any, Final

# 2**16: the id's low 16 bits are the row's place in its chunk.
MAX_CHUNK_ROWS: Final = 65_536
SEQUENCE: Final = "ingest_sample_chunk_seq"
_NEXT_SERIALS: Final = "SELECT nextval(%s) FROM generate_series(1, %s)"


def serials_needed(rows: int) -> int:
    return -(-rows // MAX_CHUNK_ROWS)


def take_ids(cursor: Any, rows: int) -> list[int]:
    """Ids for ``rows`` new samples, from one sequence call through ``cursor`` (a DB-API
    cursor on PostgreSQL: Django's or a bare psycopg2 one)."""
    if rows <= 0:
        return []
    cursor.execute(_NEXT_SERIALS, [SEQUENCE, serials_needed(rows)])
    ids: list[int] = []
    for (serial,) in cursor.fetchall():
        first = serial * MAX_CHUNK_ROWS
        ids.extend(range(first, first + min(MAX_CHUNK_ROWS, rows - len(ids))))
    return ids
