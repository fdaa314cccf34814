"""``manage.py run_pipeline``: web, beat, a streamer and a collector as separate processes.

This is what ``make run`` starts. Each role is its own OS process, exactly as in production
(no eager mode, no threads pretending to be workers); their output is relayed line by line
with the role's name in front. A process that exits on its own is started again after a
backoff (1 s, doubling up to 30 s, and back to 1 s once it has stayed up for a minute), with
a line saying which role exited, with what status, and when it comes back. SIGINT or SIGTERM
stops them all (workers finish their chunk) and the command exits with status 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from telemetry_project.routing import COLLECT_QUEUE, STREAM_QUEUE

STOP_GRACE_SECONDS = 20
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
# A process that stayed up this long is taken to have been healthy: its next restart is quick.
STABLE_AFTER_SECONDS = 60.0


def role_commands(host: str, port: int) -> dict[str, list[str]]:
    python = sys.executable
    celery = [python, "-m", "celery", "-A", "telemetry_project"]
    # Solo pool: no parent process relaying every message to a child (docs/measurements.md).
    # Mingle, gossip and heartbeats need broadcast, which the filesystem transport lacks.
    worker = [*celery, "worker", "--pool=solo", "--loglevel=INFO"]
    worker += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
    return {
        "web": [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
        "beat": [*celery, "beat", "--loglevel=INFO"],
        "streamer": [*worker, "-Q", STREAM_QUEUE, "-n", "streamer@%h"],
        "collector": [*worker, "-Q", COLLECT_QUEUE, "-n", "collector@%h"],
    }


class Child:
    """One role's process, started again with a growing delay each time it exits."""

    def __init__(self, role: str, command: list[str]) -> None:
        self.role = role
        self.command = command
        self.restart_delay = FIRST_RESTART_DELAY
        self.restart_at: float | None = None  # set while it waits to be started again
        self.process, self.started_at = self._launch()

    def _launch(self) -> tuple[subprocess.Popen[bytes], float]:
        process = subprocess.Popen(  # noqa: S603  (the project's own commands)
            self.command,
            cwd=settings.BASE_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # signals reach them through this command only
        )
        if process.stdout is not None:  # always, with stdout=PIPE
            relay = threading.Thread(target=_relay, args=(self.role, process.stdout))
            relay.daemon = True
            relay.start()
        return process, time.monotonic()

    def supervise(self, now: float) -> str:
        """Notice an exit or restart when due; return the line to print, or ""."""
        if self.restart_at is None:
            if self.process.poll() is None:
                return ""
            return self._schedule_restart(now)
        if now < self.restart_at:
            return ""
        self.restart_at = None
        self.process, self.started_at = self._launch()
        return f"{self.role} restarted (pid {self.process.pid})"

    def _schedule_restart(self, now: float) -> str:
        uptime = now - self.started_at
        if uptime >= STABLE_AFTER_SECONDS:
            self.restart_delay = FIRST_RESTART_DELAY
        delay = self.restart_delay
        self.restart_delay = min(MAX_RESTART_DELAY, delay * 2)
        self.restart_at = now + delay
        return (
            f"{self.role} exited with {_status(self.process.returncode)} after {uptime:.0f} s; "
            f"restarting it in {delay:.0f} s"
        )


class Command(BaseCommand):
    help = "Run web, beat, one streamer and one collector as separate processes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        stopping = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

        children = [Child(role, command) for role, command in role_commands(host, port).items()]

        database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        broker = "filesystem" if settings.BROKER_IS_FILESYSTEM else "redis"
        self.stdout.write(
            f"pipeline running on {database} + {broker} broker\n"
            f"  API stats:  http://{host}:{port}/api/v1/stats\n"
            f"  health:     http://{host}:{port}/health\n"
            f"  API docs:   http://{host}:{port}/api/docs/\n"
            f"  admin:      http://{host}:{port}/admin/  (make superuser)\n"
            "Ctrl-C stops every process."
        )
        while not stopping.is_set():
            for child in children:
                if line := child.supervise(time.monotonic()):
                    _say(line)
            stopping.wait(0.5)
        _stop_all([child.process for child in children])


def _status(returncode: int) -> str:
    if returncode < 0:
        return f"signal {signal.Signals(-returncode).name}"
    return f"status {returncode}"


def _say(text: str) -> None:
    sys.stdout.write(f"{'pipeline':>9} | {time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
    sys.stdout.flush()


def _relay(role: str, stream: IO[bytes]) -> None:
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"{role:>9} | {line.decode(errors='replace')}")
        sys.stdout.flush()


def _stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM everything (a warm shutdown for workers), then SIGKILL what lingers."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
