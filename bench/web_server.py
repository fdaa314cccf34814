"""A real gunicorn serving the project on a free port, as the web role runs it.

The server reads ``telemetry_project/gunicorn_config.py`` like the image's entrypoint, on the
database and broker of the environment it is given: ``make bench-write`` sends it remote
writes, ``make bench-export`` reads its worker's memory, and tests its behaviour
(``tests/test_export_behind_gunicorn.py``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil
from django.core.management.base import CommandError

START_SECONDS: Final = 60.0


@dataclass(frozen=True)
class WebServer:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def worker_pids(self) -> list[int]:
        """The worker processes gunicorn's arbiter has forked (and not yet replaced)."""
        return [child.pid for child in psutil.Process(self.process.pid).children()]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(
    env: Mapping[str, str],
    log: Path,
    *,
    workers: int = 1,
    timeout: int = 60,
    options: Sequence[str] = (),
    preexec_fn: Callable[[], None] | None = None,
) -> WebServer:
    """gunicorn serving the project, once it accepts connections; ``options`` are added to
    its command line (``--worker-class sync``, ...), ``preexec_fn`` runs in its process
    before gunicorn does (a raised limit, ...). It runs in a session of its own, which
    ``stop`` ends whole."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "telemetry_project.wsgi:application",
        "--config", "python:telemetry_project.gunicorn_config",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--timeout", str(timeout),
        *options,
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603  (gunicorn from this virtualenv)
            command,
            cwd=Path(__file__).resolve().parents[1],
            env={**env, "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost"},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
    server = WebServer("127.0.0.1", port, process, log)
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            socket.create_connection((server.host, server.port), timeout=1).close()
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop(server)
                raise CommandError(f"gunicorn did not start: {log.read_text()}") from None
            time.sleep(0.1)
        else:
            return server


def stop(server: WebServer) -> None:
    """SIGTERM to the server's session (arbiter and workers), SIGKILL after 30 s."""
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()


@contextmanager
def gunicorn(
    env: Mapping[str, str], log: Path, *, timeout: int = 60, options: Sequence[str] = ()
) -> Iterator[WebServer]:
    """One gunicorn worker serving the project until the block ends."""
    server = start(env, log, timeout=timeout, options=options)
    try:
        yield server
    finally:
        stop(server)
