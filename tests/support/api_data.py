"""Telemetry for API tests, loaded through the real collect code path.

A CSV file is cut into chunks of whole lines, as the streamer cuts it, and each
chunk is committed by ``ingest.collector.collect``: the API then reads rows that went through
parsing, validation, the dimension tables, the partitions, the GPU counters and the tallies.

``collect`` runs DDL (partitions) and its own transactions, so the data is loaded outside
pytest-django's per-test transaction by the module-scoped fixtures ``reference_data`` and
``generated_data`` (``tests/conftest.py``), and TRUNCATEd afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.db import connection
from pytest_django import DjangoDbBlocker

from bench.dcgm_generator import GeneratorSpec, write_dcgm_csv
from bench.direct_load import collect_file
from ingest import dimensions
from ingest.apps import ingest_tables

LINES_PER_CHUNK = 5000


@dataclass(frozen=True)
class Loaded:
    """What a load committed: figures the tests compare the API's answers with."""

    path: Path
    rows: int
    rejected: int
    chunks: int
    uuids: tuple[str, ...]


def load_csv(path: Path, *, source_id: int = 1, lines_per_chunk: int = LINES_PER_CHUNK) -> Loaded:
    """Stream ``path`` through ``collect`` in chunks of whole lines, keeping CSV timestamps.

    Chunk ids follow the streamer's scheme (source, shard 0, pass 1, start byte offset), so
    every chunk is unique and a second load of the same file commits nothing new.
    """
    rows = rejected = chunks = 0
    for _, result in collect_file(path, source_id=source_id, lines_per_chunk=lines_per_chunk):
        if result.outcome != "committed":
            raise AssertionError(f"chunk {result.chunk_id} was not committed: {result}")
        rows, rejected, chunks = rows + result.rows, rejected + result.rejected, chunks + 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT uuid FROM ingest_gpu WHERE sample_count > 0 ORDER BY uuid")
        uuids = tuple(uuid for (uuid,) in cursor.fetchall())
    return Loaded(path, rows, rejected, chunks, uuids)


def truncate_ingest_tables() -> None:
    """Empty the telemetry tables (partitions stay) and the collector's cached ids."""
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(ingest_tables())} RESTART IDENTITY")
    dimensions.forget()


def loaded_while_in_use(blocker: DjangoDbBlocker, path: Path) -> Iterator[Loaded]:
    """Load ``path`` into empty tables and ANALYZE them; empty them again once done with.

    The body of a module-scoped fixture: it runs outside any test's transaction, so it asks
    pytest-django's blocker for the database.
    """
    with blocker.unblock():
        truncate_ingest_tables()
        loaded = load_csv(path)
        analyze_ingest_tables()
    yield loaded
    with blocker.unblock():
        truncate_ingest_tables()


def generated_while_in_use(
    blocker: DjangoDbBlocker, folder: Path, spec: GeneratorSpec
) -> Iterator[Loaded]:
    """``loaded_while_in_use`` of a file the generator writes into ``folder`` from ``spec``."""
    path = folder / "generated.csv"
    with path.open("wb") as out:
        write_dcgm_csv(out, spec)
    yield from loaded_while_in_use(blocker, path)


def analyze_ingest_tables() -> None:
    """Fresh planner statistics, as autovacuum would gather them on a live system."""
    with connection.cursor() as cursor:
        for table in ingest_tables():
            cursor.execute(f"ANALYZE {table}")


# 248 GPUs x 10 metrics x 121 timesteps 24 min apart: 300,080 rows over 48 h (three partitions),
# so one GPU's samples are 0.4 % of the table and a sequential scan would be a real cost.
PLANNER_SPEC = GeneratorSpec(
    hosts=31, gpus_per_host=8, metrics=10, timesteps=121, interval_seconds=1440, seed=7
)
