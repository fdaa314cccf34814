"""The streamer's memory stays flat for any file size (slow: a 1,000,000-row import)."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from tests.support.pipeline import finish_import, generate_csv, sample_count, start_import
from tests.support.workers import WorkerFactory

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RSS_LIMIT_BYTES = 150 * 1024 * 1024


def resident_bytes(pid: int) -> int:
    """RSS of a process and all its children together."""
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def test_streaming_a_million_rows_keeps_the_streamer_under_150_mb(
    workers: WorkerFactory, pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    csv_path = tmp_path / "million.csv"
    rows = generate_csv(csv_path, hosts=50, gpus_per_host=8, metrics=10, timesteps=250)
    assert rows == 1_000_000
    streamer = workers.streamer()
    workers.collector()
    workers.collector()
    log = tmp_path / "import.log"
    importer = start_import(csv_path, pipeline_env, log, "--batch-size", "5000")

    peak = 0
    while importer.poll() is None:
        peak = max(peak, resident_bytes(streamer.process.pid))
        time.sleep(0.2)

    output = finish_import(importer, log)
    print(f"streamer peak RSS: {peak / 2**20:.1f} MiB; {output.strip()}")
    assert f"committed={rows} rejected=0" in output
    assert sample_count() == rows
    assert 0 < peak < RSS_LIMIT_BYTES
