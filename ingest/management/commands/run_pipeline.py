"""``manage.py run_pipeline``: web, beat, a streamer and a collector as separate processes.

This is what ``make run`` starts. Each role is its own OS process, exactly as in production
(no eager mode, no threads pretending to be workers); their output is relayed line by line
with the role's name in front. SIGINT or SIGTERM stops them all (workers finish their chunk);
if any process dies, the others are stopped and the command fails.
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
from django.core.management.base import BaseCommand, CommandError, CommandParser

STOP_GRACE_SECONDS = 20


def role_commands(host: str, port: int) -> dict[str, list[str]]:
    python = sys.executable
    celery = [python, "-m", "celery", "-A", "telemetry_project"]
    # Solo pool: no parent process relaying every message to a child (a third of the CPU).
    # Mingle, gossip and heartbeats need broadcast, which the filesystem transport lacks.
    worker = [*celery, "worker", "--pool=solo", "--loglevel=INFO"]
    worker += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
    return {
        "web": [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
        "beat": [*celery, "beat", "--loglevel=INFO"],
        "streamer": [*worker, "-Q", "stream", "-n", "streamer@%h"],
        "collector": [*worker, "-Q", "collect", "-n", "collector@%h"],
    }


class Command(BaseCommand):
    help = "Run web, beat, one streamer and one collector as separate processes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        processes: dict[str, subprocess.Popen[bytes]] = {}
        stopping = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

        for role, command in role_commands(host, port).items():
            process = subprocess.Popen(  # noqa: S603  (the project's own commands)
                command,
                cwd=settings.BASE_DIR,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals reach them through this command only
            )
            processes[role] = process
            if process.stdout is not None:  # always, with stdout=PIPE
                threading.Thread(target=_relay, args=(role, process.stdout), daemon=True).start()

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
        failed = ""
        while not stopping.is_set():
            for role, process in processes.items():
                if process.poll() is not None:
                    failed = f"{role} exited with status {process.returncode}"
                    stopping.set()
                    break
            stopping.wait(0.5)
        _stop_all(processes)
        if failed:
            raise CommandError(f"{failed}; stopped the others")


def _relay(role: str, stream: IO[bytes]) -> None:
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"{role:>9} | {line.decode(errors='replace')}")
        sys.stdout.flush()


def _stop_all(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM everything (a warm shutdown for workers), then SIGKILL what lingers."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
