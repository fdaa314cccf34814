"""A real gunicorn serving the project on a free port, as the web role runs it.

The server reads ``telemetry_project/gunicorn_config.py`` like the image's entrypoint, on the
database and broker of the environment it is given; measurements read its worker processes'
memory, tests its behaviour (``tests/test_export_behind_gunicorn.py``).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil

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


@contextmanager
def gunicorn(
    env: Mapping[str, str], log: Path, *, timeout: int = 60, options: Sequence[str] = ()
) -> Iterator[WebServer]:
    """One gunicorn worker serving the project until the block ends; ``options`` are added
    to its command line (``--worker-class sync``, ...)."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "telemetry_project.wsgi:application",
        "--config", "python:telemetry_project.gunicorn_config",
        "--bind", f"127.0.0.1:{port}", "--workers", "1", "--timeout", str(timeout), *options,
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603  (the project's own server)
            command,
            cwd=Path(__file__).resolve().parents[1],
            env={**env, "DJANGO_ALLOWED_HOSTS": "127.0.0.1"},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        server = WebServer("127.0.0.1", port, process, log)
        _wait_until_listening(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_listening(server: WebServer) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            socket.create_connection((server.host, server.port), timeout=1).close()
        except OSError:
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start: {server.log.read_text()}") from None
            time.sleep(0.2)
        else:
            return
