"""The COPY ceiling of ``manage.py bench_pipeline``: the same rows, parsed and COPYed directly.

The pipeline's speed means little on its own on a shared machine; divided by what PostgreSQL
and the project's own parser can do with the same rows on the same cores at the same moment,
it says how much the queue, the chunk envelope and the collector's bookkeeping cost. So this
module measures that ceiling with nothing in between: one process per core takes a contiguous
share of the file's lines, parses them with ``ingest.dcgm.parse_lines`` (the collector's
parser), names mapped to ids with plain dicts, and COPYs the narrow sample rows with
``ingest.writer.copy_samples`` (the collector's writer: one sequence call per COPY for the
rows' ids, the same COPY text) into an empty table with the sample table's columns, defaults
and indexes.

The table is a plain table, not partitioned: a generated benchmark file spans about an hour
of sample time, so the pipeline writes every row into one daily partition, and a plain table
with that partition's indexes is what the COPY lands in there, minus the routing.

It talks to PostgreSQL with psycopg2 directly rather than through Django, because the
parallel workers are forked processes that must not share the parent's connection, and the
parent's Django settings need not point at the benchmark database at all.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Final, TypeVar

import psycopg2  # type: ignore[import-untyped]

from ingest import dimensions
from ingest.collector import sample_batch
from ingest.dcgm import ColumnLayout, DeviceKey, parse_lines
from ingest.dimensions import WorkloadKey
from ingest.writer import copy_samples

CEILING_TABLE: Final = "bench_copy_sample"
# How long the parent waits for the workers to connect before giving up.
START_TIMEOUT_SECONDS: Final = 60.0

Name = TypeVar("Name", str, DeviceKey, WorkloadKey)


@dataclass(frozen=True, slots=True)
class Share:
    """A contiguous run of whole lines of the file: bytes [start, end), first line number."""

    start: int
    end: int
    first_line: int


@dataclass(frozen=True, slots=True)
class CopyResult:
    rows: int
    rejected: int
    seconds: float  # wall time of the parallel phase, from the common start to the last commit
    processes: int

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def create_table(dsn: str) -> None:
    """(Re)create the empty ceiling table shaped like one partition of ``ingest_sample``."""
    connection = psycopg2.connect(dsn)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {CEILING_TABLE}")
            # The parent's indexes, whatever they are: the ceiling follows the table's shape.
            cursor.execute(
                f"CREATE TABLE {CEILING_TABLE} "
                "(LIKE ingest_sample INCLUDING DEFAULTS INCLUDING INDEXES)"
            )
    finally:
        connection.close()


def drop_table(dsn: str) -> None:
    connection = psycopg2.connect(dsn)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {CEILING_TABLE}")
    finally:
        connection.close()


def split_lines(path: Path, parts: int) -> tuple[ColumnLayout, list[Share]]:
    """The file's column layout and ``parts`` contiguous shares of its data lines.

    Boundaries are moved to the next line start, as the streamer's shards are; line numbers
    are counted so that a rejected line would be reported where it really is.
    """
    with path.open("rb") as handle:
        header = handle.readline()
        layout = ColumnLayout.from_header_line(header)
        data_start = handle.tell()
        size = path.stat().st_size
        cuts = [data_start]
        for part in range(1, parts):
            handle.seek(max(data_start + (size - data_start) * part // parts, cuts[-1]))
            if handle.tell() > data_start:
                handle.readline()  # move to the start of the next line
            cuts.append(min(handle.tell(), size))
        cuts.append(size)
        shares: list[Share] = []
        first_line = 2  # the header is line 1
        for start, end in itertools.pairwise(cuts):
            shares.append(Share(start, end, first_line))
            handle.seek(start)
            first_line += handle.read(end - start).count(b"\n")
    return layout, [share for share in shares if share.end > share.start]


def truncate(dsn: str) -> None:
    connection = psycopg2.connect(dsn)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {CEILING_TABLE}")
            cursor.execute("CHECKPOINT")  # neither phase pays for the other's dirty pages
    finally:
        connection.close()


def measure(dsn: str, path: Path, processes: int, lines_per_copy: int) -> CopyResult:
    """Parse and COPY the whole file with ``processes`` processes in parallel, in runs of
    ``lines_per_copy`` lines (the pipeline's chunk size); time it.

    Each worker connects first and waits at a barrier with the parent, so the time measured
    is the parallel phase alone: reading, parsing, COPY and commit, not process start-up.
    """
    layout, shares = split_lines(path, processes)
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(len(shares) + 1, timeout=START_TIMEOUT_SECONDS)
    results: multiprocessing.SimpleQueue[tuple[int, int, str]] = context.SimpleQueue()
    workers = [
        context.Process(
            target=_copy_share,
            args=(dsn, path, share, layout.names, lines_per_copy, barrier, results),
            name=f"bench-copy-{index}",
        )
        for index, share in enumerate(shares)
    ]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.monotonic()
    outcomes = [results.get() for _ in workers]
    seconds = time.monotonic() - started
    for worker in workers:
        worker.join()
    errors = [error for _, _, error in outcomes if error]
    if errors:
        raise RuntimeError(f"COPY ceiling worker failed: {errors[0]}")
    return CopyResult(
        rows=sum(rows for rows, _, _ in outcomes),
        rejected=sum(rejected for _, rejected, _ in outcomes),
        seconds=seconds,
        processes=len(workers),
    )


def _copy_share(
    dsn: str,
    path: Path,
    share: Share,
    names: tuple[str, ...],
    lines_per_copy: int,
    barrier: Barrier,
    results: multiprocessing.SimpleQueue[tuple[int, int, str]],
) -> None:
    """One worker: its share of the lines, parsed and COPYed in one transaction."""
    rows = rejected = 0
    try:
        connection = psycopg2.connect(dsn)
        layout = ColumnLayout.from_names(names)
        gpu_ids: dict[DeviceKey, int] = {}
        metric_ids: dict[str, int] = {}
        workload_ids: dict[WorkloadKey, int] = {}
        barrier.wait()
        with path.open("rb") as handle, connection.cursor() as cursor:
            handle.seek(share.start)
            position = share.start
            first_line = share.first_line
            while position < share.end:
                lines = list(itertools.islice(handle, lines_per_copy))
                if not lines:
                    break
                data = b"".join(lines)
                if position + len(data) > share.end:  # the next share's lines: not ours
                    data = data[: share.end - position]
                position += len(data)
                parsed = parse_lines(data, layout, first_line)
                first_line += data.count(b"\n")
                rejected += len(parsed.rejected)
                batch = sample_batch(
                    parsed,
                    _local_ids(gpu_ids, (gpu.device_key for gpu in parsed.gpus)),
                    _local_ids(metric_ids, parsed.metrics),
                    _local_ids(workload_ids, dimensions.workload_keys(parsed.gpus)),
                    None,
                )
                copy_samples(cursor, CEILING_TABLE, batch)
                rows += len(parsed)
        connection.commit()
        connection.close()
    except Exception as error:  # noqa: BLE001  (reported to the parent, which raises it)
        results.put((rows, rejected, f"{type(error).__name__}: {error}"))
        return
    results.put((rows, rejected, ""))


def _local_ids(ids: dict[Name, int], names: Iterable[Name]) -> dict[Name, int]:
    """Ids for ``names`` from a plain dict, a new name taking the next number."""
    for name in names:
        ids.setdefault(name, len(ids) + 1)
    return ids
