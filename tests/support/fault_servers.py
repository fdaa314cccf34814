"""Private PostgreSQL and Redis servers that fault-injection tests may stop and restart.

The shared servers on the default ports serve every other test (and developers), so a
scenario that takes a server down runs its own instance on a free port. PostgreSQL's
``initdb`` refuses to run as root, so the cluster belongs to the ``postgres`` user: its data
directory and socket directory are made in the system temp directory and handed over to
that user, and ``initdb``/``pg_ctl`` run through ``runuser`` when the tests run as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2  # type: ignore[import-untyped]
import redis

from tests.support.servers import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"


def _poll(predicate: object, timeout: float, what: str, interval: float = 0.2) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def _as_pg_user(command: list[str]) -> list[str]:
    """Run ``command`` as the postgres user (only needed, and only possible, as root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--", *command]
    return command


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL 15 cluster with trust auth on 127.0.0.1:``port``."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="faults-pg-")))

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam(PG_USER)
            for path in (self.root, self.socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        command = [
            str(PG_BIN / "initdb"),
            "-D", str(self.data_dir),
            "-U", PG_USER,
            "--auth=trust",
            "--no-sync",
            "-E", "UTF8",
        ]  # fmt: skip
        subprocess.run(_as_pg_user(command), check=True, capture_output=True)

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            _as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), *args]),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file), "-o", options)
        _poll(self.accepts_connections, 60, "PostgreSQL to accept connections")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("stop", "-w", "-t", "60", "-m", mode)

    def accepts_connections(self) -> bool:
        try:
            psycopg2.connect(self.url, connect_timeout=2).close()
        except psycopg2.OperationalError:
            return False
        return True

    def connect(self) -> psycopg2.extensions.connection:
        connection = psycopg2.connect(self.url, connect_timeout=5)
        connection.autocommit = True
        return connection

    def scalar(self, sql: str, params: Sequence[object] | None = None) -> int:
        """One integer from a fresh connection (so a restart in between does not matter)."""
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                row = cursor.fetchone()
                assert row is not None
                return int(row[0] or 0)
        finally:
            connection.close()

    def execute(self, sql: str) -> None:
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
        finally:
            connection.close()

    def destroy(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            # Already down is fine: nothing to stop, and the directory goes next.
            with contextlib.suppress(subprocess.SubprocessError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class RedisServer:
    """A throwaway ``redis-server`` without persistence on 127.0.0.1:``port``."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="faults-redis-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        log = (self.root / "server.log").open("ab")
        command = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.root),
        ]  # fmt: skip
        with log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _poll(self.answers, 30, "Redis to answer")

    def answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.exceptions.ConnectionError:
            return False

    def stop(self) -> None:
        """Stop the server; without persistence every message it held is gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
