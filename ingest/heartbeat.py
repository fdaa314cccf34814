"""A liveness signal for workers whose pool cannot answer ``celery inspect ping`` while busy.

A solo-pool worker runs each task inside its event loop, so a remote-control ping waits until
the task in hand ends. Instead, when ``WORKER_HEARTBEAT_FILE`` is set, the worker touches that
file from its event loop every ``WORKER_HEARTBEAT_INTERVAL`` seconds. The loop is blocked while
a task runs, so the file's age is the time since the worker last went back to its loop:
``docker/worker-alive.sh`` calls the worker dead when that exceeds the longest task should take.

The step is registered on the consumer blueprint, so it is started again (and its timer entry
renewed) each time the consumer reconnects after a broker outage. Workers load this module
with ``--include ingest.heartbeat`` (``docker/entrypoint.sh`` passes it); without the
variable set it does nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from celery import bootsteps

from telemetry_project.celery import app
from telemetry_project.env import env_float, env_str

logger = logging.getLogger(__name__)


def heartbeat_file() -> Path | None:
    path = env_str("WORKER_HEARTBEAT_FILE")
    return Path(path) if path else None


def touch(path: Path) -> None:
    """Refresh the file's modification time; a full disk must not kill the worker."""
    try:
        path.touch()
    except OSError as error:
        logger.warning("worker heartbeat: cannot touch %s: %s", path, error)


class Heartbeat(bootsteps.StartStopStep):
    """Touches the heartbeat file now and then from the consumer's event loop."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        self.path = heartbeat_file()
        self.interval = env_float("WORKER_HEARTBEAT_INTERVAL", 10.0, minimum=0.1)
        self.entry: Any = None

    def include_if(self, parent: Any) -> bool:
        return self.path is not None

    def start(self, parent: Any) -> None:
        if self.path is None:  # never: include_if keeps the step out without a path
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        touch(self.path)
        self.entry = parent.timer.call_repeatedly(self.interval, touch, (self.path,))

    def stop(self, parent: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
        if self.path is not None:
            self.path.unlink(missing_ok=True)


app.steps["consumer"].add(Heartbeat)
