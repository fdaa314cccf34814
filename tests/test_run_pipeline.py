"""``run_pipeline`` supervises its processes: one that dies is started again, the rest run on."""

from __future__ import annotations

import signal
from pathlib import Path

import psutil
import pytest

from tests.conftest import REFERENCE_CSV, wait_for
from tests.embedded import (
    answers,
    embedded_environment,
    free_port,
    manage,
    start_pipeline,
    stats,
    stop_pipeline,
)

pytestmark = pytest.mark.integration


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


def test_a_killed_collector_is_restarted_and_sigterm_still_stops_everything(
    tmp_path: Path,
) -> None:
    env = embedded_environment(tmp_path / "var")
    manage(env, "migrate", "--noinput")
    manage(env, "add_source", "sample", str(REFERENCE_CSV), "--loop",
           "--batch-size", "100", "--interval", "1")  # fmt: skip
    port, log = free_port(), tmp_path / "run_pipeline.log"
    pipeline = start_pipeline(env, port, log)
    try:
        wait_for(lambda: answers(port) and total_records(port) > 0, 90, what="first commits")
        (collector,) = collector_processes(pipeline.pid)

        collector.send_signal(signal.SIGKILL)

        wait_for(lambda: "restarted" in log.read_text(), 30, what="the collector's restart")
        restarted_at = total_records(port)
        wait_for(lambda: total_records(port) > restarted_at, 60, what="commits after the restart")
        (replacement,) = collector_processes(pipeline.pid)
        assert replacement.pid != collector.pid
        output = log.read_text()
        assert "collector exited with signal SIGKILL" in output
        assert "restarting it in 1 s" in output
        assert f"collector restarted (pid {replacement.pid})" in output
        children = psutil.Process(pipeline.pid).children(recursive=True)

        pipeline.send_signal(signal.SIGTERM)
        pipeline.wait(timeout=60)

        assert pipeline.returncode == 0, log.read_text()
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == []
        assert "exited with" not in log.read_text().split("collector restarted")[1]
    finally:
        stop_pipeline(pipeline)
