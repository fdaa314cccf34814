"""The reference of ``make bench-http``: the telemetry first page without HTTP or a framework.

One plain process per core, no Django: psycopg2 asks what the API asks (101 samples of the GPU
its uuid names, with their metric and workload in page order, in one query) and ``json`` encodes
the body the API sends, with a ``next`` link; pages per second, summed over the processes.
What the web tier serves is then read against what the same work costs alone, measured in
the same run on the same machine.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Sequence
from datetime import UTC
from typing import Any, Final

import psycopg2  # type: ignore[import-untyped]

PAGE_SIZE: Final = 100
PAGE_QUERY: Final = (
    "SELECT s.timestamp, m.name, s.value, w.namespace, w.pod, w.container, s.id "
    "FROM ingest_sample s JOIN ingest_metric m ON m.id = s.metric_id "
    "LEFT JOIN ingest_workload w ON w.id = s.workload_id "
    "WHERE s.gpu_id = (SELECT id FROM ingest_gpu "
    "WHERE uuid = %s AND gpu_instance_id IS NULL AND sample_count > 0 LIMIT 1) "
    "ORDER BY s.timestamp, s.id LIMIT %s"
)


def raw_pages_per_second(dsn: str, uuids: Sequence[str], processes: int, seconds: int) -> float:
    """First pages per second of ``processes`` processes for ``seconds``, over ``uuids`` in
    turn, summed."""
    # Spawned, not forked: a child of a Django process would inherit its state and threads.
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        rates = pool.starmap(_pages_per_second, [(dsn, list(uuids), seconds)] * processes)
    return sum(rates)


def _pages_per_second(dsn: str, uuids: list[str], seconds: int) -> float:
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    pages = 0
    try:
        with connection.cursor() as cursor:
            started = time.perf_counter()
            deadline = started + seconds
            while time.perf_counter() < deadline:
                uuid = uuids[pages % len(uuids)]
                cursor.execute(PAGE_QUERY, [uuid, PAGE_SIZE + 1])
                _page_body(uuid, cursor.fetchall())
                pages += 1
            return pages / (time.perf_counter() - started)
    finally:
        connection.close()


def _page_body(uuid: str, rows: list[tuple[Any, ...]]) -> bytes:
    """The API's body for the page: results, and a next link while a row follows."""
    results = [
        {
            "timestamp": timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "metric": metric,
            "value": value,
            "namespace": namespace or "",
            "pod": pod or "",
            "container": container or "",
        }
        for timestamp, metric, value, namespace, pod, container, _ in rows[:PAGE_SIZE]
    ]
    following = rows[PAGE_SIZE:]
    body = {
        "next": f"http://127.0.0.1/api/v1/gpus/{uuid}/telemetry?limit={PAGE_SIZE}&cursor="
        + (f"{following[0][0]}:{following[0][-1]}" if following else ""),
        "previous": None,
        "results": results,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
