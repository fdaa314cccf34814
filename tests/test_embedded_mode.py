"""The embedded default: SQLite and the filesystem transport, every role its own process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import REFERENCE_CSV, REPO, wait_for

pytestmark = pytest.mark.integration

SERVICE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DB_HOST")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    env.update(DJANGO_DEBUG="1", TELEMETRY_VAR_DIR=str(tmp_path / "var"), LOG_LEVEL="INFO")
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def pipeline(
    embedded_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    manage(embedded_env, "migrate", "--noinput")
    port = free_port()
    log = tmp_path / "run_pipeline.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "run_pipeline", "--port", str(port)],
            cwd=REPO, env=embedded_env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    yield port, process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def stats(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/stats", timeout=5) as reply:
        return dict(json.load(reply))


def answers(port: int) -> bool:
    try:
        stats(port)
    except OSError:
        return False
    return True


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

    manage(embedded_env, "add_source", "sample", str(REFERENCE_CSV), "--loop",
           "--batch-size", "100", "--interval", "1")  # fmt: skip
    started = time.monotonic()
    readings = [2470]

    def grew_twice() -> bool:
        readings.append(int(stats(port)["total_records"]))  # type: ignore[call-overload]
        return readings[-1] > readings[-2] > 2470

    wait_for(grew_twice, 30, interval=1.0, what="a growing row count")
    assert time.monotonic() - started < 30


def test_sigterm_to_the_runner_stops_every_process(
    pipeline: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, process = pipeline
    wait_for(lambda: answers(port), 60, what="the web process")
    children = psutil.Process(process.pid).children(recursive=True)
    assert len(children) >= 4  # web, beat, streamer, collector

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)

    assert process.returncode == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
