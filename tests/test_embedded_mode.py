"""The embedded default: SQLite and the filesystem transport, every role its own process,
started again by ``run_pipeline`` when it dies."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.embedded import (
    answers,
    api_get,
    embedded_environment,
    manage,
    start_pipeline,
    stats,
    stop_pipeline,
)
from tests.support.reference import REFERENCE_CSV, REFERENCE_UUID
from tests.support.servers import free_port
from tests.support.workers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    return embedded_environment(tmp_path / "var")


@pytest.fixture
def pipeline(
    embedded_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    manage(embedded_env, "migrate", "--noinput")
    port = free_port()
    process = start_pipeline(embedded_env, port, tmp_path / "run_pipeline.log")
    yield port, process
    stop_pipeline(process)


def collector_processes(pipeline_pid: int) -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process(pipeline_pid).children(recursive=True)
        if "collector@%h" in child.cmdline()
    ]


def total_records(port: int) -> int:
    total = stats(port)["total_records"]
    assert isinstance(total, int)
    return total


def test_embedded_mode_imports_the_reference_exactly_then_streams_a_looping_source(
    pipeline: tuple[int, subprocess.Popen[bytes]], embedded_env: dict[str, str]
) -> None:
    port, _ = pipeline
    wait_for(lambda: answers(port), 60, what="the web process")

    output = manage(embedded_env, "import_csv", str(REFERENCE_CSV), "--batch-size", "500",
                    "--no-progress")  # fmt: skip
    assert "committed=2470 rejected=0" in output
    after_import = stats(port)
    assert after_import["total_records"] == 2470
    assert after_import["unique_gpus"] == 247
    assert after_import["unique_hosts"] == 31
    # SQLite hands the fleet's first and last times back as text, and the ledger's times
    # are compared as text: both must come out as the PostgreSQL mode's do.
    assert after_import["first_timestamp"] == "2025-07-18T20:42:34Z"
    assert after_import["last_timestamp"] == "2025-07-18T20:42:37Z"
    assert set(after_import["metrics"].values()) == {247}
    assert after_import["ingest_rate_per_s"] > 0
    # The device endpoints on SQLite: labels read as the stored JSON text, and the device
    # found inside the sample queries.
    listed = api_get(port, "/api/v1/gpus?limit=1")["results"][0]
    assert listed["labels"]["DCGM_FI_DRIVER_VERSION"] == "535.129.03"
    page = api_get(port, f"/api/v1/gpus/{REFERENCE_UUID}/telemetry")["results"]
    assert len(page) == 10
    latest = api_get(port, f"/api/v1/gpus/{REFERENCE_UUID}/latest")
    assert len(latest) == 10
    assert None not in [item["value"] for item in latest]
    with pytest.raises(urllib.error.HTTPError) as missing:
        api_get(port, "/api/v1/gpus/GPU-unknown/latest")
    assert missing.value.code == 404

    manage(embedded_env, "add_source", "sample", str(REFERENCE_CSV), "--loop",
           "--batch-size", "100", "--interval", "1")  # fmt: skip
    started = time.monotonic()
    readings = [2470]

    def grew_twice() -> bool:
        readings.append(total_records(port))
        return readings[-1] > readings[-2] > 2470

    wait_for(grew_twice, 30, interval=1.0, what="a growing row count")
    assert time.monotonic() - started < 30


def test_a_killed_collector_is_restarted_and_sigterm_still_stops_every_process(
    pipeline: tuple[int, subprocess.Popen[bytes]], embedded_env: dict[str, str], tmp_path: Path
) -> None:
    port, process = pipeline
    log = tmp_path / "run_pipeline.log"
    manage(embedded_env, "add_source", "sample", str(REFERENCE_CSV), "--loop",
           "--batch-size", "100", "--interval", "1")  # fmt: skip
    wait_for(lambda: answers(port) and total_records(port) > 0, 90, what="first commits")
    (collector,) = collector_processes(process.pid)

    collector.send_signal(signal.SIGKILL)

    wait_for(lambda: "restarted" in log.read_text(), 30, what="the collector's restart")
    restarted_at = total_records(port)
    wait_for(lambda: total_records(port) > restarted_at, 60, what="commits after the restart")
    (replacement,) = collector_processes(process.pid)
    output = log.read_text()
    assert "collector exited with signal SIGKILL" in output
    assert "restarting it in 1 s" in output
    assert f"collector restarted (pid {replacement.pid})" in output
    children = psutil.Process(process.pid).children(recursive=True)
    assert len(children) >= 4  # web, beat, streamer, collector

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)

    assert process.returncode == 0, log.read_text()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    assert "exited with" not in log.read_text().split("collector restarted")[1]
