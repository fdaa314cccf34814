"""Fault injection: servers and workers fail mid-import, and every row still lands exactly once.

Each scenario streams a generated 200,000-row file through real streamer and collector
worker processes (``manage.py import_csv`` drives it, and waits out outages like the
workers do), takes something away once chunks are committing, gives it back, and then
checks the promise: the importer succeeds, the sample table holds every row read, and no
(gpu, metric, timestamp) appears twice. The scenarios:

- PostgreSQL stopped for 20 s (``/health`` says 503 meanwhile, collect tasks retry);
- Redis restarted without persistence (the queued chunks are lost and published again);
- SIGTERM to every worker, then new ones (warm shutdown finishes the chunk in hand);
- the collector's process group SIGKILLed twice, a new collector started each time;
- the streamer's process group SIGKILLed twice mid-stream, a new streamer started each time;
- a poison message (not a chunk) and a chunk whose every line is invalid, published to the
  collect queue mid-import: one dead letter, each invalid line rejected once, no retries;
- 10 streamers and 10 collectors on a file split into 10 shards.

The servers are private (``tests.fault_servers``): a scenario that stops PostgreSQL or
Redis must never touch the shared instances. Nothing here uses pytest-django's database;
the private database is queried with psycopg2. Each scenario prints its figures (rows,
seconds to recover, duplicates, losses, runtime): ``pytest -rP`` shows them.
"""

from __future__ import annotations

import csv
import io
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from kombu import Connection

from ingest.chunks import Chunk
from ingest.queues import publish_chunk
from telemetry_project.routing import COLLECT_QUEUE
from tests.support.fault_servers import PostgresServer, RedisServer
from tests.support.pipeline import generate_csv, kill_with_task_in_hand, start_import
from tests.support.reference import REPO
from tests.support.servers import free_port
from tests.support.workers import Worker, WorkerFactory, wait_for

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
# The streamer's own report of a tick (Celery's "succeeded" line repeats it: not counted).
TICK_REPUBLISHED = re.compile(r"ingest\.tasks stream source=.* republished=(\d+)")
STREAMING_CURSORS_SQL = "SELECT count(*) FROM ingest_streamcursor WHERE NOT finished"
OUTSTANDING_SQL = "SELECT count(*) FROM ingest_outstandingchunk"

# A worker is killed each time this many more chunks have committed: the first kill lands
# early in the import, the second well before its last chunks are even read.
KILL_EVERY_CHUNKS = 15

# A collect message that is a dict, as a chunk payload is, without the fields of one.
POISON_MESSAGE = {"id": "not-a-chunk", "lines": 3}
# The source the chunk of invalid rows claims to come from.
INVALID_ROWS_SOURCE = "invalid-rows"


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


def start_fault_import(
    servers: Servers, workers: WorkerFactory, tmp_path: Path, *extra: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """``import_csv`` of the module's file on the private servers, and the log it writes."""
    log = tmp_path / "import.log"
    return start_import(servers.csv_path, workers.env, log, *IMPORT_OPTIONS, *extra), log


def wait_mid_stream(servers: Servers, chunks: int) -> int:
    """Wait for ``chunks`` committed chunks, and make sure the file is still being read."""
    committed = wait_for_chunks(servers.postgres, chunks)
    streaming = servers.postgres.scalar(STREAMING_CURSORS_SQL)
    assert streaming > 0, "the whole file was read before the fault"
    return committed


@dataclass
class Recovery:
    """A worker SIGKILLed and replaced."""

    recover_seconds: float  # from the replacement being ready to the next commit
    outage_seconds: float  # from the kill to the next commit
    outstanding_chunks: int  # published or about to be, and not yet confirmed, at the kill
    task_in_hand: bool  # the kill interrupted a task (a chunk, or a stream tick)

    def __str__(self) -> str:
        return (
            f"recover_seconds={self.recover_seconds:.1f} "
            f"outage_seconds={self.outage_seconds:.1f} "
            f"outstanding_chunks_at_kill={self.outstanding_chunks} "
            f"task_in_hand_at_kill={self.task_in_hand}"
        )


def chunks_republished(workers: list[Worker]) -> int:
    """Chunks the streamers published again because no commit confirmed them in time."""
    return sum(
        int(count)
        for worker in workers
        if worker.role == "streamer"
        for count in TICK_REPUBLISHED.findall(worker.output())
    )


def kill_and_replace(
    servers: Servers, doomed: Worker, start_replacement: Callable[[], Worker], *, drain: bool
) -> tuple[Worker, Recovery]:
    """SIGKILL ``doomed``'s process group mid-stream, start its replacement, time the recovery.

    With ``drain``, the replacement starts only once the collect queue is empty: chunks a
    killed streamer had published keep the collectors committing without it, and only a
    commit after they are gone shows that the new streamer took over.
    """
    wait_mid_stream(servers, committed_chunks(servers.postgres) + KILL_EVERY_CHUNKS)
    outstanding = servers.postgres.scalar(OUTSTANDING_SQL)
    in_hand = kill_with_task_in_hand(doomed)
    killed = time.monotonic()
    if drain:
        broker = servers.redis.client()
        wait_for(lambda: broker.llen(COLLECT_QUEUE) == 0, 120, what="the collect queue to drain")
    replacement = start_replacement()
    ready = time.monotonic()
    recover = seconds_to_next_commit(servers.postgres, ready)
    return replacement, Recovery(recover, ready - killed + recover, outstanding, in_hand)


def spoiled_chunk(csv_path: Path, source_id: int) -> Chunk:
    """A chunk of ``source_id`` whose every line is the file's first row, spoiled in one way."""
    with csv_path.open(newline="") as rows:
        reader = csv.reader(rows)
        header = next(reader)
        good = next(reader)

    def spoiled(column: str, value: str) -> list[str]:
        fields = list(good)
        fields[header.index(column)] = value
        return fields

    lines = io.StringIO()
    csv.writer(lines, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(
        [
            spoiled("value", "not-a-number"),
            spoiled("value", "inf"),
            spoiled("timestamp", "2025-07-18T20:42:34"),  # no time zone
            spoiled("timestamp", "yesterday"),
            spoiled("uuid", ""),
            good[:5],  # a wrong column count
        ]
    )
    lines.write(f'"{good[0]}","{good[1]}\n')  # a quote that never closes
    data = lines.getvalue().encode()
    return Chunk(
        chunk_id=f"{source_id}:0:1:0",
        source_id=source_id,
        first_line=2,
        line_count=data.count(b"\n"),
        columns=tuple(header),
        stamp=None,
        data=data,
    )


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
    importer, log = start_fault_import(servers, workers, tmp_path)

    wait_mid_stream(servers, 10)
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
    importer, log = start_fault_import(servers, workers, tmp_path)

    wait_mid_stream(servers, 10)
    broker = servers.redis.client()
    wait_for(
        lambda: broker.llen(COLLECT_QUEUE) > 0, 60, what="queued chunks for the restart to lose"
    )
    queued = broker.llen(COLLECT_QUEUE)
    servers.redis.stop()
    servers.redis.start()
    cleared = time.monotonic()
    assert servers.redis.client().llen(COLLECT_QUEUE) == 0  # every queued message is gone

    recover = seconds_to_next_commit(servers.postgres, cleared)
    finish("redis-restart", servers, importer, log, started, recover, workers.workers)
    republished = chunks_republished([streamer])
    print(f"[redis-restart] queued_messages_lost={queued} chunks_republished={republished}")
    assert republished > 0, "nothing was published again"


@pytest.mark.timeout(600)
def test_sigterm_to_every_worker_then_restart_loses_and_duplicates_nothing(
    servers: Servers, workers: WorkerFactory, tmp_path: Path
) -> None:
    started = time.monotonic()
    first = [workers.streamer(), workers.collector(), workers.collector()]
    importer, log = start_fault_import(servers, workers, tmp_path)

    wait_mid_stream(servers, 10)
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


@pytest.mark.timeout(600)
@pytest.mark.parametrize("role", ["collector", "streamer"])
def test_worker_sigkilled_twice_mid_import_loses_and_duplicates_nothing(
    servers: Servers, workers: WorkerFactory, tmp_path: Path, role: str
) -> None:
    started = time.monotonic()
    starters = {"streamer": workers.streamer, "collector": workers.collector}
    running = {name: start() for name, start in starters.items()}  # one of each
    importer, log = start_fault_import(servers, workers, tmp_path)

    doomed = running[role]
    recoveries = []
    for _ in range(2):
        doomed, recovery = kill_and_replace(
            servers, doomed, starters[role], drain=role == "streamer"
        )
        recoveries.append(recovery)

    name = f"{role}-sigkill-twice"
    slowest = max(recovery.recover_seconds for recovery in recoveries)
    finish(name, servers, importer, log, started, slowest, workers.workers)
    for number, recovery in enumerate(recoveries, 1):
        print(f"[{name}] kill {number}: {recovery}")
    print(f"[{name}] chunks_republished={chunks_republished(workers.workers)}")


@pytest.mark.timeout(600)
def test_poison_message_and_all_invalid_chunk_mid_import_are_each_handled_once(
    servers: Servers, workers: WorkerFactory, tmp_path: Path
) -> None:
    started = time.monotonic()
    workers.streamer()
    collector = workers.collector()
    # The invalid chunk belongs to a source of its own, never ticked, so the import's own
    # accounting (every row it read committed, none rejected) stays exact.
    _manage(workers.env, "add_source", INVALID_ROWS_SOURCE, str(servers.csv_path), "--disabled")
    postgres = servers.postgres
    source_id = postgres.scalar(
        "SELECT id FROM ingest_streamsource WHERE name = %s", [INVALID_ROWS_SOURCE]
    )
    invalid = spoiled_chunk(servers.csv_path, source_id)
    importer, log = start_fault_import(servers, workers, tmp_path)

    wait_mid_stream(servers, 10)
    with Connection(servers.redis.url) as broker:
        publish_chunk(POISON_MESSAGE, broker)
        publish_chunk(invalid.to_payload(), broker)
    injected = time.monotonic()
    ledger_sql = "SELECT count(*) FROM ingest_ingestedchunk WHERE chunk_id = %s"

    def both_handled() -> bool:
        dead_lettered = postgres.scalar("SELECT count(*) FROM ingest_deadletter") > 0
        return dead_lettered and postgres.scalar(ledger_sql, [invalid.chunk_id]) > 0

    wait_for(both_handled, 120, what="the poison message and the invalid chunk to be handled")
    handled_seconds = time.monotonic() - injected
    assert committed_chunks(postgres) < servers.rows // BATCH_SIZE, "handled after the import"

    finish("poison-and-invalid-chunk", servers, importer, log, started, None, workers.workers)
    dead_letters = postgres.scalar(
        "SELECT count(*) FROM ingest_deadletter"
        " WHERE chunk_id = '' AND position('not a readable chunk' in reason) > 0"
    )
    rejected = postgres.scalar(
        "SELECT count(*) FROM ingest_rejectedrow WHERE chunk_id = %s AND source_id = %s",
        [invalid.chunk_id, source_id],
    )
    ledger_rows = postgres.scalar(
        f"{ledger_sql} AND rows_committed = 0 AND rows_rejected = %s",
        [invalid.chunk_id, invalid.line_count],
    )
    retried_chunks = postgres.scalar("SELECT count(*) FROM ingest_chunkattempt WHERE attempts > 1")
    logged = collector.output()
    poison_handled = logged.count("unreadable collect message dead-lettered")
    invalid_handled = logged.count(
        f"collect {invalid.chunk_id}: committed rows=0 rejected={invalid.line_count}"
    )
    print(
        f"[poison-and-invalid-chunk] dead_letters={dead_letters} "
        f"invalid_lines={invalid.line_count} rejected_rows={rejected} "
        f"invalid_chunk_ledger_rows={ledger_rows} retried_chunks={retried_chunks} "
        f"poison_handled={poison_handled} invalid_chunk_handled={invalid_handled} "
        f"handled_seconds={handled_seconds:.1f}"
    )
    assert postgres.scalar("SELECT count(*) FROM ingest_deadletter") == dead_letters == 1
    assert postgres.scalar("SELECT count(*) FROM ingest_rejectedrow") == rejected
    assert rejected == invalid.line_count
    assert ledger_rows == 1
    assert retried_chunks == 0
    assert (poison_handled, invalid_handled) == (1, 1), logged[-3000:]
    assert "collect: chunk failed" not in logged
    assert " retry: " not in logged  # Celery's line for a task sent back to retry


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
    importer, log = start_fault_import(servers, workers, tmp_path, "--shards", "10")

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
