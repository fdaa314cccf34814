"""/metrics: every series of the pipeline's state against the database, the request series
by route template, the token check, what a scrape reads, and promtool's check of the page."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from django.db import connection
from django.db.models import Sum
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.fixtures import Settings

from api.models import ApiToken
from ingest import collector
from ingest.models import (
    DeadLetter,
    IngestedChunk,
    OutstandingChunk,
    RejectedRow,
    Sample,
    StreamCursor,
    StreamSource,
)
from telemetry_project.celery import app
from telemetry_project.routing import COLLECT_QUEUE, COLLECT_TASK
from tests.support.api_data import analyze_ingest_tables, load_csv
from tests.support.chunks import REFERENCE_LINES, chunk_of
from tests.support.pipeline import finish_import, generate_csv, sample_count, start_import
from tests.support.reference import REFERENCE_CSV
from tests.support.workers import WorkerFactory, wait_for

pytestmark = pytest.mark.django_db
# For tests that commit chunks: the collector runs its own transactions (and partition DDL).
commits = pytest.mark.django_db(transaction=True)

BAD_LINES = [b'"not","enough","columns"', b"garbage without quotes"]
SOURCE_COUNTERS = (
    "telemetry_rows_committed_total",
    "telemetry_rows_rejected_total",
    "telemetry_chunks_committed_total",
    "telemetry_duplicate_deliveries_total",
    "telemetry_dead_letters_total",
)
# Tables that grow with the data: a scrape must never read them.
BIG_TABLES = ("ingest_sample", "ingest_ingestedchunk", "ingest_rejectedrow", "ingest_deadletter")

Labels = tuple[tuple[str, str], ...]


def scrape(client: Client, headers: dict[str, str] | None = None) -> str:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return response.content.decode()


def samples(page: str) -> dict[str, dict[Labels, float]]:
    """Every sample of an exposition page, read by prometheus_client's own parser."""
    found: dict[str, dict[Labels, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            found[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return found


def per_source(page: str, name: str) -> dict[str, float]:
    return {dict(labels)["source"]: value for labels, value in samples(page)[name].items()}


def value(page: str, name: str, **labels: str) -> float:
    return samples(page)[name].get(tuple(sorted(labels.items())), 0.0)


def source(name: str, *, scheduled: bool = True) -> StreamSource:
    return StreamSource.objects.create(
        name=name, location=str(REFERENCE_CSV), scheduled=scheduled, enabled=False
    )


# --- The pipeline's state ---------------------------------------------------------------


@commits
def test_a_committed_chunk_counts_its_rows_its_rejected_rows_and_itself_under_its_source(
    client: Client,
) -> None:
    fleet = source("fleet")

    collector.collect(
        chunk_of([*REFERENCE_LINES[1:6], *BAD_LINES], source_id=fleet.pk).to_payload()
    )

    page = scrape(client)
    assert per_source(page, "telemetry_rows_committed_total") == {"fleet": 5}
    assert per_source(page, "telemetry_rows_rejected_total") == {"fleet": 2}
    assert per_source(page, "telemetry_chunks_committed_total") == {"fleet": 1}
    assert per_source(page, "telemetry_duplicate_deliveries_total") == {"fleet": 0}
    assert per_source(page, "telemetry_dead_letters_total") == {"fleet": 0}
    assert value(page, "telemetry_samples_stored") == Sample.objects.count() == 5
    assert RejectedRow.objects.count() == 2


@commits
def test_a_second_delivery_counts_a_duplicate_and_nothing_else(client: Client) -> None:
    fleet = source("fleet")
    payload = chunk_of(REFERENCE_LINES[1:11], source_id=fleet.pk).to_payload()

    outcomes = [collector.collect(payload).outcome for _ in range(3)]

    assert outcomes == ["committed", "duplicate", "duplicate"]
    page = scrape(client)
    assert per_source(page, "telemetry_duplicate_deliveries_total") == {"fleet": 2}
    assert per_source(page, "telemetry_chunks_committed_total") == {"fleet": 1}
    assert per_source(page, "telemetry_rows_committed_total") == {"fleet": 10}


@commits
def test_every_one_off_import_shares_the_import_label(client: Client) -> None:
    first, second = source("import-1", scheduled=False), source("import-2", scheduled=False)
    source("fleet")

    collector.collect(chunk_of(REFERENCE_LINES[1:4], source_id=first.pk, chunk_id="a").to_payload())
    collector.collect(
        chunk_of(REFERENCE_LINES[4:11], source_id=second.pk, chunk_id="b").to_payload()
    )

    page = scrape(client)
    assert per_source(page, "telemetry_rows_committed_total") == {"import": 10, "fleet": 0}
    assert per_source(page, "telemetry_chunks_committed_total") == {"import": 2, "fleet": 0}
    assert set(per_source(page, "telemetry_outstanding_chunks")) == {"import", "fleet"}


@commits
def test_messages_of_no_existing_source_count_under_unknown(client: Client) -> None:
    gone = source("gone").pk
    collector.collect(chunk_of(REFERENCE_LINES[1:3], source_id=gone, chunk_id="a").to_payload())
    StreamSource.objects.filter(pk=gone).delete()
    collector.collect(chunk_of(REFERENCE_LINES[3:6], source_id=gone, chunk_id="b").to_payload())
    collector.collect("not a chunk")

    page = scrape(client)
    assert per_source(page, "telemetry_rows_committed_total") == {"unknown": 5}
    assert per_source(page, "telemetry_dead_letters_total") == {"unknown": 1}
    assert DeadLetter.objects.count() == 1


@commits
def test_a_chunk_failing_too_often_counts_a_dead_letter_of_its_source(
    client: Client, settings: Settings
) -> None:
    settings.MAX_CHUNK_ATTEMPTS = 1
    fleet = source("fleet")
    payload = chunk_of(REFERENCE_LINES[1:3], source_id=fleet.pk).to_payload()
    collector.count_attempt(str(payload["id"]))

    assert collector.collect(payload).outcome == "dead-letter"
    assert collector.collect(payload).outcome == "duplicate"

    page = scrape(client)
    assert per_source(page, "telemetry_dead_letters_total") == {"fleet": 1}
    assert per_source(page, "telemetry_duplicate_deliveries_total") == {"fleet": 1}
    assert per_source(page, "telemetry_rows_committed_total") == {"fleet": 0}


def test_a_registered_source_has_every_series_at_zero_before_its_first_chunk(
    client: Client,
) -> None:
    source("fleet")

    page = scrape(client)
    for name in (*SOURCE_COUNTERS, "telemetry_throttled_ticks_total"):
        assert per_source(page, name) == {"fleet": 0}, name
    assert per_source(page, "telemetry_outstanding_chunks") == {"fleet": 0}
    assert per_source(page, "telemetry_oldest_outstanding_chunk_age_seconds") == {"fleet": 0}


def outstanding(cursor: StreamCursor, start: int, recorded_seconds_ago: float) -> None:
    now = timezone.now()
    OutstandingChunk.objects.create(
        cursor=cursor,
        pass_number=1,
        start_offset=start,
        end_offset=start + 10,
        first_line=2,
        line_count=1,
        recorded_at=now - timedelta(seconds=recorded_seconds_ago),
        published_at=now,  # published again just now: the age still counts from recording
    )


def test_outstanding_chunks_and_the_age_of_the_oldest_are_per_source(client: Client) -> None:
    busy = source("busy")
    source("idle")
    for shard in (0, 1):
        cursor = StreamCursor.objects.create(
            source=busy, shard=shard, start_offset=0, start_line=2, position=0, next_line=2
        )
        outstanding(cursor, 100, recorded_seconds_ago=30 + 60 * shard)
        outstanding(cursor, 200, recorded_seconds_ago=5)

    before = timezone.now()
    page = scrape(client)
    elapsed = (timezone.now() - before).total_seconds()

    assert per_source(page, "telemetry_outstanding_chunks") == {"busy": 4, "idle": 0}
    ages = per_source(page, "telemetry_oldest_outstanding_chunk_age_seconds")
    assert 90 <= ages["busy"] <= 90 + elapsed + 1
    assert ages["idle"] == 0


def test_throttled_ticks_are_counted_per_source(client: Client) -> None:
    StreamSource.objects.filter(pk=source("fleet").pk).update(throttled_ticks=7)

    assert per_source(scrape(client), "telemetry_throttled_ticks_total") == {"fleet": 7}


def scrape_source(name: str, **health: object) -> StreamSource:
    return StreamSource.objects.create(
        name=name,
        kind=StreamSource.Kind.SCRAPE,
        location=f"http://exporter-{name}.example:9400/metrics",
        enabled=False,
        **health,
    )


def test_each_scrape_source_has_its_up_last_success_and_duration_from_its_columns(
    client: Client,
) -> None:
    success = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)
    scrape_source(
        "healthy", last_scrape_at=success, last_success_at=success,
        last_scrape_duration_seconds=0.25,
    )  # fmt: skip
    scrape_source(
        "down", last_scrape_at=success + timedelta(seconds=10), last_success_at=success,
        last_scrape_duration_seconds=1.5, last_error="HTTP 500",
    )  # fmt: skip
    scrape_source("new")
    source("fleet")  # a file source has no scrape series

    page = scrape(client)

    assert per_source(page, "telemetry_scrape_up") == {"healthy": 1, "down": 0, "new": 0}
    assert per_source(page, "telemetry_scrape_last_success_timestamp_seconds") == {
        "healthy": success.timestamp(),
        "down": success.timestamp(),
        "new": 0,
    }
    assert per_source(page, "telemetry_scrape_duration_seconds") == {"healthy": 0.25, "down": 1.5}


def test_the_collect_queue_depth_is_the_brokers_count(client: Client, broker: redis.Redis) -> None:
    for _ in range(3):
        app.send_task(COLLECT_TASK, args=["waiting"], queue=COLLECT_QUEUE)

    page = scrape(client)
    assert value(page, "telemetry_collect_queue_depth") == broker.llen(COLLECT_QUEUE) == 3
    assert value(page, "telemetry_broker_up") == 1
    assert value(page, "telemetry_database_up") == 1


def test_a_broker_that_does_not_answer_leaves_the_depth_out_and_says_so(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    source("fleet")
    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")

    page = scrape(client)

    assert value(page, "telemetry_broker_up") == 0
    assert "telemetry_collect_queue_depth" not in samples(page)
    assert per_source(page, "telemetry_rows_committed_total") == {"fleet": 0}


@commits
def test_a_scrape_costs_three_queries_and_reads_no_table_that_grows(client: Client) -> None:
    fleet = source("fleet")
    load_csv(REFERENCE_CSV, source_id=fleet.pk, lines_per_chunk=100)
    analyze_ingest_tables()

    with CaptureQueriesContext(connection) as queries:
        page = scrape(client)

    assert value(page, "telemetry_rows_committed_total", source="fleet") == 2470
    # The per-source tallies, the sources, the outstanding chunks per source.
    assert len(queries) == 3, [query["sql"] for query in queries]
    with connection.cursor() as cursor:
        for query in queries:
            cursor.execute(f"EXPLAIN {query['sql']}")
            plan = "\n".join(line for (line,) in cursor.fetchall())
            assert not any(table in plan for table in BIG_TABLES), plan


@commits
def test_promtool_check_metrics_passes_on_the_page(client: Client, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run `make prometheus-tools`")
    fleet = source("fleet")
    now = datetime.now(UTC)
    scrape_source("exporter", last_scrape_at=now, last_success_at=now)
    load_csv(REFERENCE_CSV, source_id=fleet.pk, lines_per_chunk=1000)
    collector.collect("not a chunk")
    client.get("/api/v1/stats")
    client.get("/no/such/page")
    page = scrape(client)
    assert "telemetry_http_request_duration_seconds_bucket" in page
    assert 'telemetry_scrape_up{source="exporter"} 1.0' in page

    result = subprocess.run(
        [promtool, "check", "metrics"], input=page, capture_output=True, text=True, check=False
    )

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


# --- Requests of the web processes --------------------------------------------------------


def requests_counted(client: Client, **labels: str) -> float:
    return value(scrape(client), "telemetry_http_requests_total", **labels)


TIMED = "telemetry_http_request_duration_seconds_count"


def test_requests_are_counted_by_route_template_never_by_raw_path(client: Client) -> None:
    route = "api/v1/gpus/<str:id>/telemetry"
    labels = {"method": "GET", "route": route, "status": "404"}
    page = scrape(client)
    before = (
        value(page, "telemetry_http_requests_total", **labels),
        value(page, TIMED, method="GET", route=route),
    )

    for uuid in ("GPU-no-such-one", "GPU-nor-this-one"):
        assert client.get(f"/api/v1/gpus/{uuid}/telemetry").status_code == 404

    page = scrape(client)
    after = (
        value(page, "telemetry_http_requests_total", **labels),
        value(page, TIMED, method="GET", route=route),
    )
    assert after == (before[0] + 2, before[1] + 2)
    assert "GPU-no-such-one" not in page


def test_unknown_paths_and_methods_share_one_label_each(client: Client) -> None:
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    other = {"method": "other", "route": "health", "status": "405"}
    before = requests_counted(client, **unmatched), requests_counted(client, **other)

    client.get("/a/path/nobody/routes")
    client.get("/another/one")
    client.generic("BREW", "/health")

    page = scrape(client)
    after = (
        value(page, "telemetry_http_requests_total", **unmatched),
        value(page, "telemetry_http_requests_total", **other),
    )
    assert after == (before[0] + 2, before[1] + 1)
    assert "/a/path/nobody/routes" not in page
    assert "BREW" not in page


# --- Who may read it ----------------------------------------------------------------------


@pytest.fixture
def token_key(settings: Settings) -> str:
    settings.API_REQUIRE_TOKEN = True
    return ApiToken.issue("prometheus", can_write=False).new_key


@pytest.mark.parametrize("scheme", ["Bearer", "Token", "bearer"])
def test_with_tokens_required_a_valid_token_in_either_scheme_reads_the_page(
    client: Client, token_key: str, scheme: str
) -> None:
    page = scrape(client, {"authorization": f"{scheme} {token_key}"})

    assert value(page, "telemetry_database_up") == 1


@pytest.mark.parametrize(
    "authorization", [None, "Bearer not-a-key", "Basic cHJvbWV0aGV1czpzZWNyZXQ=", "Bearer"]
)
def test_with_tokens_required_anything_else_is_a_401_with_a_bearer_challenge(
    client: Client, token_key: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}

    response = client.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert "telemetry_" not in response.content.decode()


def test_without_tokens_required_anyone_reads_the_page(client: Client) -> None:
    assert value(scrape(client), "telemetry_database_up") == 1


def test_metrics_is_served_over_plain_http_even_when_https_is_enforced(
    client: Client, settings: Settings
) -> None:
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/api/v1/stats").status_code == 301
    assert value(scrape(client), "telemetry_database_up") == 1


# --- Through real workers -----------------------------------------------------------------


def ledger_rows(stream_source: StreamSource) -> int:
    chunks = IngestedChunk.objects.filter(source=stream_source)
    return int(chunks.aggregate(rows=Sum("rows_committed"))["rows"] or 0)


@pytest.mark.integration
def test_after_real_imports_every_source_series_equals_the_database(
    workers: WorkerFactory, pipeline_env: dict[str, str], tmp_path: Path, client: Client
) -> None:
    csv_path = tmp_path / "fleet.csv"
    rows = generate_csv(csv_path, hosts=4, gpus_per_host=8, metrics=10, timesteps=10)
    with csv_path.open("ab") as out:
        out.write(b"".join(line + b"\n" for line in BAD_LINES))
    workers.streamer()
    workers.collector()
    # A scheduled source, ticked here as beat would tick it, and a one-off import of the file.
    fleet = StreamSource.objects.create(
        name="fleet", location=str(csv_path), batch_size=500, pace=StreamSource.Pace.FAST
    )

    def fleet_done() -> bool:
        app.send_task("ingest.stream", args=[fleet.pk], queue=fleet.stream_queue, expires=2)
        cursors = StreamCursor.objects.filter(source=fleet)
        waiting = OutstandingChunk.objects.filter(cursor__source=fleet).exists()
        return cursors.exists() and not cursors.filter(finished=False).exists() and not waiting

    wait_for(fleet_done, 120, interval=0.5, what="the scheduled source to be committed")
    log = tmp_path / "import.log"
    finish_import(start_import(csv_path, pipeline_env, log, "--batch-size", "700"), log)

    page = scrape(client)
    imported = StreamSource.objects.get(scheduled=False)
    committed = per_source(page, "telemetry_rows_committed_total")
    assert committed == {"fleet": ledger_rows(fleet), "import": ledger_rows(imported)}
    assert committed == {"fleet": rows, "import": rows}
    assert sum(committed.values()) == sample_count() == value(page, "telemetry_samples_stored")
    assert per_source(page, "telemetry_rows_rejected_total") == {"fleet": 2, "import": 2}
    assert RejectedRow.objects.count() == 4
    chunks = per_source(page, "telemetry_chunks_committed_total")
    assert chunks == {
        "fleet": IngestedChunk.objects.filter(source=fleet).count(),
        "import": IngestedChunk.objects.filter(source=imported).count(),
    }
    assert chunks["fleet"] == -(-(rows + 2) // 500)
    assert per_source(page, "telemetry_dead_letters_total") == {"fleet": 0, "import": 0}
    assert per_source(page, "telemetry_outstanding_chunks") == {"fleet": 0, "import": 0}
    assert value(page, "telemetry_collect_queue_depth") == 0
