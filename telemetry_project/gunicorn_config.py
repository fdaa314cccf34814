"""gunicorn's settings for the web role: threaded workers, and prometheus_client's
multiprocess mode across them.

Loaded with ``gunicorn --config python:telemetry_project.gunicorn_config`` (as
docker/entrypoint.sh does; the other settings come from its command line). The request series
of ``api.request_metrics`` live in files under ``PROMETHEUS_MULTIPROC_DIR``, one set per
worker process, and whichever worker answers a scrape of /metrics sums them all. So the
variable must be set before any worker imports prometheus_client, which decides at import
where values live, and the directory must not hold a previous server's files. Without the
variable a fresh temporary directory is used, and removed when the server exits.

Workers are gthread workers, ``WEB_THREADS`` threads each (4 by default). A sync worker
beats gunicorn's heartbeat only between requests, so the arbiter kills one whose request
runs past ``--timeout`` (WEB_TIMEOUT, 60 s): a CSV export streaming for minutes would be cut
off mid-file. A gthread worker's main loop beats it while requests run in its threads, so a
stream lasts as long as the client reads, and the timeout still replaces a worker whose main
loop hangs. docs/design.md, "CSV export". Measured against sync workers with make bench-http:
README, "Web tier".
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from telemetry_project.env import env_int

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


class _Worker(Protocol):
    pid: int


def _metrics_directory() -> tuple[Path, bool]:
    """The directory of the workers' values, and whether this module made it."""
    given = os.environ.get(MULTIPROC_VARIABLE)
    if given:
        return Path(given), False
    made = Path(tempfile.mkdtemp(prefix="telemetry-web-metrics-"))
    os.environ[MULTIPROC_VARIABLE] = str(made)
    return made, True


worker_class = "gthread"
# Each thread holds its own database connection (CONN_MAX_AGE): workers x threads per pod.
threads = env_int("WEB_THREADS", 4, minimum=1)

# Set when gunicorn reads this module: before it loads the application (even with --preload)
# and before it forks a worker, which inherits the variable.
METRICS_DIRECTORY, _MADE_HERE = _metrics_directory()


def on_starting(server: object) -> None:
    """Start from zero: a previous server's files (a restarted container keeps /tmp) would
    add its totals to this one's."""
    METRICS_DIRECTORY.mkdir(parents=True, exist_ok=True)
    for stale in METRICS_DIRECTORY.glob("*.db"):
        stale.unlink()


def child_exit(server: object, worker: _Worker) -> None:
    """A worker has exited: remove its live-gauge files. Its counter and histogram files stay
    and keep counting in the sums, so totals never go down when gunicorn replaces a worker."""
    # Imported here, never at the top: the master must not import prometheus_client before
    # the variable is set, or the workers it forks would keep their values in memory.
    from prometheus_client import multiprocess

    # prometheus_client leaves this function unannotated.
    multiprocess.mark_process_dead(worker.pid, str(METRICS_DIRECTORY))  # type: ignore[no-untyped-call]


def on_exit(server: object) -> None:
    if _MADE_HERE:
        shutil.rmtree(METRICS_DIRECTORY, ignore_errors=True)
