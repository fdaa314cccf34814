"""CSV exports from a real gunicorn: whole past the worker timeout, in flat memory, and
rolled back when the client leaves.

The server is the web role's (``telemetry_project/gunicorn_config.py``: gthread workers) on the
test database, which holds 200,000 generated samples (~80 MB of CSV) for the module. The
timeout test reads the export slowly, through a small receive buffer, so the stream outlasts
gunicorn's ``--timeout`` several times over; a sync worker serving the same slow client is
killed mid-file, which shows the reading is slow enough to matter. The memory test is the
CI-sized run of ``make bench-export``. A client that leaves mid-file ends the export's
transaction (the worker's write fails, gunicorn closes the response, the stream's
transaction rolls back).
"""

from __future__ import annotations

import http.client
import os
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.db.models import Max, Min
from pytest_django import DjangoDbBlocker

from bench.dcgm_generator import GeneratorSpec
from bench.export_throughput import export_run
from bench.sample_database import rfc3339
from bench.web_server import WebServer, gunicorn
from ingest.models import Gpu
from tests.support.api_data import Loaded, generated_while_in_use
from tests.support.workers import database_url_for_workers, wait_for

# django_db: the tests read the time span themselves (the rows are the module fixture's).
# Minutes of a real gunicorn streaming 200,000 rows to slow clients: in make test-slow.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db]

ROWS = 200_000
SMALL_ROWS = 50_000
SPEC = GeneratorSpec(rows=ROWS, interval_seconds=60, seed=11)
WORKER_TIMEOUT = 4
# Read this many bytes per pause through a receive buffer this small: the kernel's buffers
# then hold little of the file, so the server's writes wait on the reader. The pause spreads
# the ~80 MB file (at least 400 bytes a row) over three timeouts.
SLOW_READ_BYTES = 64 * 1024
RECEIVE_BUFFER = 64 * 1024
SLOW_READ_PAUSE = 3 * WORKER_TIMEOUT / (ROWS * 400 / SLOW_READ_BYTES)
# Memory a worker may gain while exporting, whatever the size: a few batches of rows and
# the allocator's slack. Four times the rows must not need more.
GROWTH_BOUND_MB = 48.0
EXTRA_GROWTH_BOUND_MB = 16.0


@pytest.fixture(scope="module")
def exported_table(
    django_db_setup: None,
    django_db_blocker: DjangoDbBlocker,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Loaded]:
    """200,000 generated samples, committed for the module."""
    yield from generated_while_in_use(django_db_blocker, tmp_path_factory.mktemp("export"), SPEC)


@pytest.fixture(scope="module")
def server_env(exported_table: Loaded, django_db_blocker: DjangoDbBlocker) -> dict[str, str]:
    with django_db_blocker.unblock():
        url = database_url_for_workers()
    return {**os.environ, "DATABASE_URL": url}


def whole_range(share: float = 1.0) -> str:
    """The export path of the first ``share`` of the table's time span."""
    span = Gpu.objects.aggregate(first=Min("first_seen"), last=Max("last_seen"))
    end = span["first"] + (span["last"] - span["first"]) * share + timedelta(seconds=1)
    query = urlencode({"start_time": rfc3339(span["first"]), "end_time": rfc3339(end)})
    return f"/api/v1/telemetry.csv?{query}"


class SlowReader(http.client.HTTPConnection):
    """A client whose socket receives into a small buffer (set before it connects)."""

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.sock.settimeout(self.timeout)
        self.sock.connect((self.host, self.port))


def read_slowly(server: WebServer, path: str) -> tuple[bytes, float]:
    """The body of ``path``, read in paced pieces, and the time it took. A server that drops
    the connection ends the read early."""
    client = SlowReader(server.host, server.port, timeout=60)
    started = time.monotonic()
    pieces = []
    try:
        client.request("GET", path)
        response = client.getresponse()
        assert response.status == 200
        while piece := response.read(SLOW_READ_BYTES):
            pieces.append(piece)
            time.sleep(SLOW_READ_PAUSE)
    except (http.client.IncompleteRead, ConnectionError) as cut:
        if isinstance(cut, http.client.IncompleteRead):
            pieces.append(cut.partial)
    finally:
        client.close()
    return b"".join(pieces), time.monotonic() - started


def read_whole(server: WebServer, path: str) -> bytes:
    client = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        client.request("GET", path)
        response = client.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        client.close()


def test_a_slowly_read_export_outlasts_the_worker_timeout_and_arrives_whole(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    path = whole_range()
    with gunicorn(server_env, tmp_path / "gthread.log", timeout=WORKER_TIMEOUT) as server:
        expected = read_whole(server, path)
        body, seconds = read_slowly(server, path)
        log = server.log.read_text()

    assert expected.count(b"\n") == ROWS + 1
    assert seconds > 2 * WORKER_TIMEOUT, "the read was not slow enough to test the timeout"
    assert body == expected
    assert "WORKER TIMEOUT" not in log


def test_a_sync_worker_would_be_killed_mid_export_by_the_same_slow_client(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    path = whole_range()
    # gunicorn turns a sync worker with threads into a gthread one: one thread, then.
    options = ["--worker-class", "sync", "--threads", "1"]
    with gunicorn(
        server_env, tmp_path / "sync.log", timeout=WORKER_TIMEOUT, options=options
    ) as server:
        body, _ = read_slowly(server, path)
        log = server.log.read_text()

    assert body.count(b"\n") < ROWS + 1
    assert "WORKER TIMEOUT" in log


def test_exporting_four_times_the_rows_takes_no_more_memory(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    with gunicorn(server_env, tmp_path / "gunicorn.log") as server:
        small = export_run(server, whole_range(SMALL_ROWS / ROWS))
        large = export_run(server, whole_range())
    print(  # the figures, for `pytest -s`
        f"\nexport of {small.rows:,} rows: +{small.growth_mb:.1f} MB; "
        f"of {large.rows:,} rows: +{large.growth_mb:.1f} MB "
        f"({large.rows_per_s:,.0f} rows/s)"
    )

    assert large.rows == ROWS
    assert SMALL_ROWS <= small.rows < ROWS / 2
    assert large.growth_mb < GROWTH_BOUND_MB
    assert large.growth_mb - small.growth_mb < EXTRA_GROWTH_BOUND_MB


def open_transactions_of_others() -> int:
    """Backends of the test database, other than this test's, inside a transaction."""
    with connection.cursor() as cursor:
        # The test runs in a transaction, which would otherwise see the activity of its
        # first look at pg_stat_activity every time.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%%'"
        )
        return int(cursor.fetchone()[0])


def test_a_client_leaving_mid_export_leaves_no_transaction_open(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    path = whole_range()
    with gunicorn(server_env, tmp_path / "gunicorn.log") as server:
        client = SlowReader(server.host, server.port, timeout=60)
        client.request("GET", path)
        response = client.getresponse()
        first = response.read(SLOW_READ_BYTES)
        # The server waits on this reader, its device's transaction open.
        wait_for(lambda: open_transactions_of_others() == 1, 30, what="the export's transaction")
        client.close()  # gone, with most of the file unread
        wait_for(lambda: open_transactions_of_others() == 0, 30, what="the export's rollback")
        after = read_whole(server, whole_range(SMALL_ROWS / ROWS))
        log = server.log.read_text()

    assert "Traceback" not in log, log
    assert first.startswith(b'"timestamp","metric_name"')
    assert after.count(b"\n") > SMALL_ROWS, "the worker serves the next export"
