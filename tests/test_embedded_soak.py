"""Soak (slow): ``make run``'s processes on the embedded default take three 300,000-row
imports one after another while the bundled sample loops, and nothing falls over."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.support.embedded import (
    answers,
    embedded_environment,
    manage,
    query,
    start_pipeline,
    stop_pipeline,
)
from tests.support.reference import REFERENCE_CSV
from tests.support.servers import free_port
from tests.support.workers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IMPORTS = 3
ROWS = 300_000


@pytest.mark.timeout(1800)  # measured 205 s on two shared cores; SQLite serialises the writers
def test_three_imports_beside_the_looping_sample_are_exact_with_no_worker_exit(
    tmp_path: Path,
) -> None:
    var_dir = tmp_path / "var"
    # The generated rows are from 2025: kept in source mode only without retention.
    env = embedded_environment(var_dir, RETENTION_DAYS="0")
    manage(env, "migrate", "--noinput")
    manage(env, "add_source", "sample", str(REFERENCE_CSV), "--loop",
           "--batch-size", "100", "--interval", "2", "--if-missing")  # fmt: skip
    generated = var_dir / "generated.csv"
    manage(env, "generate_dcgm", str(generated), "--rows", str(ROWS))
    port, log = free_port(), tmp_path / "run_pipeline.log"
    pipeline = start_pipeline(env, port, log)
    try:
        wait_for(lambda: answers(port), 90, what="the web process")
        started = time.monotonic()
        lasts = []
        for _ in range(IMPORTS):
            output = manage(env, "import_csv", str(generated), "--no-progress", timeout=1200)
            lasts.append(output.strip().splitlines()[-1])
        elapsed = time.monotonic() - started
        print(f"soak: {IMPORTS} imports of {ROWS} rows in {elapsed:.0f} s: {lasts}")

        assert [last.split(" seconds=")[0] for last in lasts] == [
            f"committed={ROWS} rejected=0"
        ] * IMPORTS
        assert query(var_dir, "SELECT COUNT(*) FROM ingest_deadletter") == [(0,)]
        ((looped,),) = query(var_dir, "SELECT SUM(rows_committed) FROM ingest_ingestedchunk"
                             " WHERE source_id = (SELECT id FROM ingest_streamsource"
                             " WHERE name = 'sample')")  # fmt: skip
        print(f"soak: the looping sample committed {looped} rows meanwhile")
        assert isinstance(looped, int)
        assert looped > 0

        pipeline.send_signal(signal.SIGTERM)
        pipeline.wait(timeout=60)
        output = log.read_text()
        assert pipeline.returncode == 0, output[-3000:]
        assert "exited with" not in output, output[-3000:]
        assert "Unrecoverable error" not in output
    finally:
        stop_pipeline(pipeline)
    wait_for(lambda: pipeline.poll() is not None, 5, what="run_pipeline to end")
