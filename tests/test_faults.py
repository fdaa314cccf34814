"""Fault injection: servers and workers fail mid-import, and every row still lands exactly once.

Each scenario streams a generated 200,000-row file through real streamer and collector
worker processes (``manage.py import_csv`` drives it, and waits out outages like the
workers do), takes something away once chunks are committing, gives it back, and then
checks the promise: the importer succeeds, the sample table holds every row read, and no
(gpu, metric, timestamp) appears twice.

The servers are private (``tests.fault_servers``): a scenario that stops PostgreSQL or
Redis must never touch the shared instances. Nothing here uses pytest-django's database;
the private database is queried with psycopg2. Each scenario prints its figures (rows,
seconds to recover, duplicates, losses, runtime): ``pytest -rP`` shows them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import REPO, Worker, WorkerFactory, wait_for
from tests.fault_servers import PostgresServer, RedisServer, free_port
from tests.pipeline_helpers import generate_csv, start_import

pytestmark = [pytest.mark.faults, pytest.mark.integration]

BATCH_SIZE = 2000
IMPORT_OPTIONS = (
    "--timestamp-mode", "source",
    "--batch-size", str(BATCH_SIZE),
    "--stall-timeout", "180",
)  # fmt: skip
DUPLICATES_SQL = (
    "SELECT COALESCE(SUM(n - 1), 0) FROM ("
    "  SELECT COUNT(*) AS n FROM ingest_sample"
    "  GROUP BY gpu_id, metric_id, timestamp HAVING COUNT(*) > 1"
    ") AS repeated"
)
CHUNKS_SQL = "SELECT count(*) FROM ingest_ingestedchunk"

ROWS_READ_SQL = "SELECT COALESCE(SUM(rows_streamed), 0) FROM ingest_streamcursor"


@dataclass
class Servers:
    postgres: PostgresServer
    redis: RedisServer
    csv_path: Path
    rows: int
    base_env: dict[str, str]


@dataclass
class Outcome:
    """What a scenario measured, printed for ``pytest -rP``."""

    name: str
    rows: int
    read: int
    stored: int
    duplicates: int
    recover_seconds: float | None
    runtime_seconds: float
    importer_output: str

    @property
    def losses(self) -> int:
        return max(self.read - self.stored, 0)

    def report(self) -> None:
        recovered = "n/a" if self.recover_seconds is None else f"{self.recover_seconds:.1f}"
        print(
            f"[{self.name}] rows={self.rows} read={self.read} stored={self.stored} "
            f"duplicates={self.duplicates} losses={self.losses} "
            f"recover_seconds={recovered} "
            f"runtime_seconds={self.runtime_seconds:.1f}"
        )
        print(f"[{self.name}] importer: {self.importer_output.strip().splitlines()[-1:]}")


def _manage(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    """A private PostgreSQL (migrated) and Redis, plus one 200,000-row file, for the module."""
    work = Path(tempfile.mkdtemp(prefix="faults-data-"))
    postgres = PostgresServer()
    redis_server = RedisServer()
    try:
        postgres.init()
        postgres.start()
        redis_server.start()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PYTEST", "COV_", "TELEMETRY_FAULT"))
        }
        env.update(
            DATABASE_URL=postgres.url,
            REDIS_URL=redis_server.url,
            DJANGO_SECRET_KEY=os.environ["DJANGO_SECRET_KEY"],
            STREAM_SOURCE_DIRS=f"{REPO / 'data'},{work}",
            REPUBLISH_AFTER_SECONDS="5",
            CELERY_VISIBILITY_TIMEOUT="10",
            RETRY_BACKOFF_MAX_SECONDS="2",
            LOG_LEVEL="INFO",
        )
        env.pop("CELERY_BROKER_URL", None)  # it would win over REDIS_URL
        _manage(env, "migrate", "--noinput")
        csv_path = work / "faults.csv"
        rows = generate_csv(csv_path, hosts=25, gpus_per_host=8, metrics=10, timesteps=100)
        assert rows >= 200_000
        yield Servers(postgres, redis_server, csv_path, rows, env)
    finally:
        redis_server.destroy()
        postgres.destroy()
        for leftover in work.iterdir():
            leftover.unlink()
        work.rmdir()


def _reset(servers: Servers) -> None:
    """Empty every ingest table (partitions go with their parent) and the broker."""
    if not servers.postgres.accepts_connections():
        servers.postgres.start()
    if not servers.redis.answers():
        servers.redis.start()
    connection = servers.postgres.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
                " AND NOT c.relispartition AND c.relname LIKE 'ingest\\_%'"
            )
            tables = [name for (name,) in cursor.fetchall()]
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    finally:
        connection.close()
    servers.redis.client().flushall()


@pytest.fixture
def workers(servers: Servers, tmp_path: Path) -> Iterator[WorkerFactory]:
    _reset(servers)
    factory = WorkerFactory(dict(servers.base_env), tmp_path)
    yield factory
    # Signal every process first, then wait: twenty one-by-one warm shutdowns add up.
    alive = [w for w in factory.workers if w.process.poll() is None]
    for worker in alive:
        os.killpg(worker.process.pid, signal.SIGTERM)
    for worker in alive:
        try:
            worker.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()


def committed_chunks(postgres: PostgresServer) -> int:
    try:
        return postgres.scalar(CHUNKS_SQL)
    except Exception:  # noqa: BLE001  (the database may be down on purpose)
        return -1


def wait_for_chunks(postgres: PostgresServer, at_least: int, timeout: float = 180) -> int:
    wait_for(lambda: committed_chunks(postgres) >= at_least, timeout, what=f"{at_least} chunks")
    return committed_chunks(postgres)


def seconds_to_next_commit(postgres: PostgresServer, since: float, timeout: float = 180) -> float:
    """Seconds from ``since`` (the fault cleared) until a chunk commits that was not before."""
    wait_for(lambda: committed_chunks(postgres) >= 0, timeout, what="the database")
    baseline = committed_chunks(postgres)
    wait_for(
        lambda: committed_chunks(postgres) > baseline, timeout, what="a commit after the fault"
    )
    return time.monotonic() - since


def finish(
    name: str,
    servers: Servers,
    importer: subprocess.Popen[bytes],
    log: Path,
    started: float,
    recover_seconds: float | None,
    workers: list[Worker],
) -> Outcome:
    """Wait for the import, then check and print the promise: every row once."""
    importer.wait(timeout=600)
    output = log.read_text(errors="replace")
    postgres = servers.postgres
    outcome = Outcome(
        name=name,
        rows=servers.rows,
        read=postgres.scalar(ROWS_READ_SQL),
        stored=postgres.scalar("SELECT count(*) FROM ingest_sample"),
        duplicates=postgres.scalar(DUPLICATES_SQL),
        recover_seconds=recover_seconds,
        runtime_seconds=time.monotonic() - started,
        importer_output=output,
    )
    outcome.report()
    logs = "\n".join(f"--- {w.role} ---\n{w.output()[-3000:]}" for w in workers)
    assert importer.returncode == 0, f"{output}\n{logs}"
    assert f"committed={servers.rows} rejected=0" in output
    assert outcome.read == servers.rows
    assert outcome.stored == servers.rows
    assert outcome.duplicates == 0
    return outcome


def health(port: int) -> tuple[int, dict[str, str]]:
    """``GET /health`` on the private web server: status code and body."""
    url = f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read())


def health_or_none(port: int) -> tuple[int, dict[str, str]] | None:
    try:
        return health(port)
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None


def started_or_exited(worker: Worker) -> bool:
    return "ready." in worker.output() or worker.process.poll() is not None


def start_web(workers: WorkerFactory) -> tuple[Worker, int]:
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "telemetry_project.wsgi:application",
        "--bind", f"127.0.0.1:{port}",
        "--workers", "1",
        "--timeout", "60",
    ]  # fmt: skip
    web = workers.start_process("web", command)
    wait_for(lambda: health_or_none(port) is not None, 60, what="the web server")
    return web, port


@pytest.mark.timeout(600)
def test_postgres_stopped_for_20_seconds_loses_and_duplicates_nothing(
    servers: Servers, workers: WorkerFactory, tmp_path: Path
) -> None:
    started = time.monotonic()
    workers.streamer()
    workers.collector()
    workers.collector()
    _web, port = start_web(workers)
    assert health(port)[0] == 200
    log = tmp_path / "import.log"
    command = [
        sys.executable, "manage.py", "import_csv",
        str(servers.csv_path), "--no-progress", *IMPORT_OPTIONS,
    ]  # fmt: skip
    with log.open("wb") as sink:
        importer = subprocess.Popen(
            command,
            cwd=REPO,
            env={**workers.env, "DJANGO_SETTINGS_MODULE": "telemetry_project.settings"},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )

    before = wait_for_chunks(servers.postgres, 10)
    assert before < servers.rows // BATCH_SIZE, "the import finished before the fault"
    servers.postgres.stop("fast")
    down_since = time.monotonic()
    status, body = health(port)
    assert status == 503, body
    assert body["database"].startswith("down"), body
    assert body["broker"] == "ok", body
    time.sleep(max(0.0, 20 - (time.monotonic() - down_since)))
    servers.postgres.start()
    cleared = time.monotonic()

    recover = seconds_to_next_commit(servers.postgres, cleared)
    wait_for(lambda: (health_or_none(port) or (0, {}))[0] == 200, 60, what="/health 200")
    healthy_after = time.monotonic() - cleared
    assert health(port)[1] == {"status": "ok", "database": "ok", "broker": "ok"}
    finish("postgres-stop-20s", servers, importer, log, started, recover, workers.workers)
    collectors = "".join(w.output() for w in workers.workers if w.role == "collector")
    retries = collectors.count("collect: infrastructure error, retry in")
    assert retries > 0, "no collector met the outage"
    print(
        f"[postgres-stop-20s] outage_seconds={cleared - down_since:.1f} "
        f"health_503_during_outage={body} health_200_seconds_after_start={healthy_after:.1f} "
        f"collect_retries={retries} "
        f"importer_waits={log.read_text().count('waiting for the database and broker')}"
    )


@pytest.mark.timeout(600)
def test_redis_restarted_without_persistence_loses_and_duplicates_nothing(
    servers: Servers, workers: WorkerFactory, tmp_path: Path
) -> None:
    started = time.monotonic()
    streamer = workers.streamer()
    workers.collector()
    log = tmp_path / "import.log"
    importer = start_import(servers.csv_path, workers.env, log, *IMPORT_OPTIONS)

    before = wait_for_chunks(servers.postgres, 10)
    assert before < servers.rows // BATCH_SIZE, "the import finished before the fault"
    broker = servers.redis.client()
    wait_for(lambda: broker.llen("collect") > 0, 60, what="queued chunks for the restart to lose")
    queued = broker.llen("collect")
    servers.redis.stop()
    servers.redis.start()
    cleared = time.monotonic()
    assert servers.redis.client().llen("collect") == 0  # every queued message is gone

    recover = seconds_to_next_commit(servers.postgres, cleared)
    finish("redis-restart", servers, importer, log, started, recover, workers.workers)
    republished = sum(int(n) for n in re.findall(r"republished=(\d+)", streamer.output()))
    print(f"[redis-restart] queued_messages_lost={queued} chunks_republished={republished}")
    assert republished > 0, "nothing was published again"


@pytest.mark.timeout(600)
def test_sigterm_to_every_worker_then_restart_loses_and_duplicates_nothing(
    servers: Servers, workers: WorkerFactory, tmp_path: Path
) -> None:
    started = time.monotonic()
    first = [workers.streamer(), workers.collector(), workers.collector()]
    log = tmp_path / "import.log"
    importer = start_import(servers.csv_path, workers.env, log, *IMPORT_OPTIONS)

    before = wait_for_chunks(servers.postgres, 10)
    assert before < servers.rows // BATCH_SIZE, "the import finished before the fault"
    for worker in first:
        os.killpg(worker.process.pid, signal.SIGTERM)
    for worker in first:  # one signal each: a second one would cut the warm shutdown short
        try:
            worker.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
    codes = [worker.process.returncode for worker in first]
    assert codes == [0, 0, 0], codes  # warm shutdown, not a kill
    workers.streamer()
    workers.collector()
    workers.collector()
    cleared = time.monotonic()

    recover = seconds_to_next_commit(servers.postgres, cleared)
    finish("sigterm-all-workers", servers, importer, log, started, recover, workers.workers)
    in_hand = sum(
        w.output().partition("Warm shutdown")[2].count("succeeded")
        for w in first
        if w.role == "collector"
    )
    print(f"[sigterm-all-workers] exit_codes={codes} chunks_finished_after_sigterm={in_hand}")


@pytest.mark.timeout(900)
def test_ten_streamers_ten_collectors_ten_shards_commit_every_row_once(
    servers: Servers, workers: WorkerFactory, tmp_path: Path
) -> None:
    started = time.monotonic()
    command = [
        sys.executable, "-m", "celery", "-A", "telemetry_project", "worker",
        "--pool=solo", "--loglevel=INFO",
        "--without-mingle", "--without-gossip", "--without-heartbeat",
    ]  # fmt: skip
    for role, queue in (("streamer", "stream"), ("collector", "collect")):
        for index in range(10):
            workers.start_process(role, [*command, "-Q", queue, "-n", f"{role}{index}@%h"])
    for worker in workers.workers:  # all start at once; wait for each at the end
        wait_for(partial(started_or_exited, worker), 240, what=f"{worker.role} to start")
        assert worker.process.poll() is None, worker.output()
    ready = time.monotonic()
    log = tmp_path / "import.log"
    importer = start_import(servers.csv_path, workers.env, log, *IMPORT_OPTIONS, "--shards", "10")

    outcome = finish("10x10-shards", servers, importer, log, started, None, workers.workers)
    shards = servers.postgres.scalar(
        "SELECT count(DISTINCT split_part(chunk_id, ':', 2)) FROM ingest_ingestedchunk"
    )
    busy = sum("succeeded" in w.output() for w in workers.workers)
    print(
        f"[10x10-shards] workers_start_seconds={ready - started:.1f} "
        f"import_seconds={outcome.runtime_seconds - (ready - started):.1f} "
        f"shards_in_ledger={shards} workers_that_ran_tasks={busy}/20"
    )
    assert shards == 10
