"""Scrape sources: registering one, its slots dispatched once, a page recorded once per slot and
published again from its stored copy, and the ways a target fails, against a real local HTTP
server, PostgreSQL and Redis."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import msgpack
import pytest
import redis
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import PeriodicTask
from pytest_django.fixtures import Settings

from ingest import collector, scraper, slots, streamer
from ingest.chunks import Chunk, ChunkFormat
from ingest.models import OutstandingChunk, Sample, StreamSource
from ingest.schedule import SLOT_DISPATCH_ENTRY, periodic_task_name
from telemetry_project.routing import COLLECT_QUEUE, STREAM_QUEUE
from tests.support.exporter_server import Exporter, exporter_page, running_exporter
from tests.support.servers import free_port

pytestmark = pytest.mark.django_db(transaction=True)

INTERVAL = 10


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    with running_exporter() as running:
        yield running


def add_scrape_source(name: str, url: str, *flags: str) -> str:
    out = io.StringIO()
    call_command("add_source", name, url, "--kind", "scrape", *flags, stdout=out)
    return out.getvalue()


# A scrape finding its slot over skips it (a gap, by design): on a loaded machine a slot
# taken in its last moments could end before the scrape looks, so the tests take a fresh one.
SLOT_MARGIN_SECONDS = 3


def current_slot(interval: int = INTERVAL) -> int:
    """The slot now, once at least ``SLOT_MARGIN_SECONDS`` of it are left."""
    now = datetime.now(UTC)
    left = slots.slot_ms(now, interval) / 1000 + interval - now.timestamp()
    if left < SLOT_MARGIN_SECONDS:
        time.sleep(left + 0.01)
        now = datetime.now(UTC)
    return slots.slot_ms(now, interval)


def queued_chunks(broker: redis.Redis) -> list[Chunk]:
    """The chunks waiting in the collect queue, oldest first (kombu's Redis envelope: JSON
    around the base64 of the msgpack task body, whose first argument is the chunk)."""
    chunks = []
    for raw in reversed(broker.lrange(COLLECT_QUEUE, 0, -1)):
        body = msgpack.unpackb(base64.b64decode(json.loads(raw)["body"]), raw=False)
        chunks.append(Chunk.from_payload(body[0][0]))
    return chunks


# --- Registering ----------------------------------------------------------------------------


def test_a_scrape_source_defaults_to_ten_second_slots_and_has_no_tick_of_its_own(
    exporter: Exporter,
) -> None:
    output = add_scrape_source("exporter-a", f"{exporter.url}/metrics")

    source = StreamSource.objects.get(name="exporter-a")
    assert (source.kind, source.interval_seconds) == (StreamSource.Kind.SCRAPE, 10)
    assert f"scrapes {exporter.url}/metrics" in output
    assert not PeriodicTask.objects.filter(name=periodic_task_name(source)).exists()
    dispatch = PeriodicTask.objects.get(name=SLOT_DISPATCH_ENTRY)
    assert (dispatch.interval.every, dispatch.queue) == (1, STREAM_QUEUE)


def test_a_file_source_keeps_its_five_second_default() -> None:
    call_command("add_source", "sample", "data/dcgm_metrics_sample.csv", stdout=io.StringIO())
    assert StreamSource.objects.get(name="sample").interval_seconds == 5


@pytest.mark.parametrize(
    ("flags", "refused"),
    [
        (["--batch-size", "1000"], "--batch-size: batch_size does not apply to a scrape source"),
        (["--pace", "fast"], "--pace: pace does not apply"),
        (["--shards", "2"], "--shards: shards does not apply"),
        (["--loop"], "--loop: loop does not apply"),
    ],
)
def test_file_reading_flags_are_refused_for_a_scrape_source(
    exporter: Exporter, flags: list[str], refused: str
) -> None:
    with pytest.raises(CommandError, match=refused):
        add_scrape_source("exporter-a", f"{exporter.url}/metrics", *flags)
    assert not StreamSource.objects.exists()


def test_a_scrape_source_must_be_an_http_url() -> None:
    with pytest.raises(CommandError, match="a scrape source fetches an http"):
        add_scrape_source("exporter-a", "data/dcgm_metrics_sample.csv")


def post_scrape_source(admin_client: Client, url: str, **fields: object) -> str:
    form = {"name": "exporter-a", "kind": "scrape", "location": url, "site": "default",
            "batch_size": 1000, "interval_seconds": 5, "pace": "paced",
            "timestamp_mode": "processing", "shards": 1, "enabled": "on", "scheduled": "on",
            "cursors-TOTAL_FORMS": 0, "cursors-INITIAL_FORMS": 0, **fields}  # fmt: skip
    response = admin_client.post(reverse("admin:ingest_streamsource_add"), form)
    assert response.status_code in (200, 302)
    return response.content.decode()


def test_the_admin_form_refuses_what_the_command_refuses(
    admin_client: Client, exporter: Exporter
) -> None:
    page = post_scrape_source(admin_client, f"{exporter.url}/metrics", loop="on")
    assert "loop does not apply to a scrape source" in page
    assert not StreamSource.objects.exists()

    post_scrape_source(admin_client, f"{exporter.url}/metrics")
    assert StreamSource.objects.get(name="exporter-a").interval_seconds == 10


# --- Slots ----------------------------------------------------------------------------------


def test_a_slot_is_dispatched_once_however_often_and_by_whomever_dispatch_runs(
    exporter: Exporter, broker: redis.Redis, client: Client
) -> None:
    add_scrape_source("exporter-a", f"{exporter.url}/metrics")
    add_scrape_source("exporter-b", f"{exporter.url}/metrics", "--interval", "30")
    start = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)

    first = slots.dispatch(start)
    again = slots.dispatch(start + timedelta(seconds=9.9))
    next_slot = slots.dispatch(start + timedelta(seconds=10))
    after_a_gap = slots.dispatch(start + timedelta(seconds=45))

    assert (first.dispatched, again.dispatched, next_slot.dispatched) == (2, 0, 1)
    # exporter-a skipped the slots at 20 s and 30 s; exporter-b's next slot is at 30 s.
    assert (after_a_gap.dispatched, after_a_gap.gaps) == (2, 2)
    assert broker.llen(STREAM_QUEUE) == 5
    last = dict(StreamSource.objects.values_list("name", "last_slot_ms"))
    assert last == {
        "exporter-a": int((start + timedelta(seconds=40)).timestamp() * 1000),
        "exporter-b": int((start + timedelta(seconds=30)).timestamp() * 1000),
    }
    # The gap is a counter of exporter-a's on /metrics, for an alert to watch.
    exposition = client.get("/metrics").content.decode()
    assert 'telemetry_scrape_slots_missed_total{source="exporter-a"} 2.0' in exposition
    assert 'telemetry_scrape_slots_missed_total{source="exporter-b"} 0.0' in exposition


# --- One scrape, in this process ------------------------------------------------------------


def scrape_source(url: str, *flags: str) -> StreamSource:
    add_scrape_source("exporter-a", url, *flags)
    return StreamSource.objects.get(name="exporter-a")


def test_a_scrape_stores_the_page_with_its_slot_and_publishes_it_as_an_exposition_chunk(
    exporter: Exporter, broker: redis.Redis
) -> None:
    source = scrape_source(f"{exporter.url}/metrics")
    slot = current_slot()

    report = scraper.scrape_slot(source.pk, slot)

    assert report.published == 1, report
    [chunk] = queued_chunks(broker)
    assert chunk.chunk_id == f"scrape:{source.pk}:{slot}"
    assert (chunk.format, chunk.first_line, chunk.data) == (
        ChunkFormat.EXPOSITION,
        1,
        exporter_page(1),
    )
    assert chunk.stamp == slots.slot_start(slot)  # processing time: the slot's
    [accept] = exporter.accepted
    assert accept.startswith("text/plain;version=0.0.4")
    assert "application/openmetrics-text" in accept
    stored = OutstandingChunk.objects.get()
    assert (stored.start_offset, stored.stamp) == (slot, chunk.stamp)
    assert stored.payload is not None
    assert Chunk.from_payload(msgpack.unpackb(bytes(stored.payload), raw=False)) == chunk
    source.refresh_from_db()
    assert source.last_success_at == source.last_scrape_at is not None
    assert source.last_scrape_duration_seconds is not None
    assert source.last_error == ""


def test_in_source_time_mode_the_chunk_keeps_the_lines_own_timestamps(
    exporter: Exporter, broker: redis.Redis
) -> None:
    source = scrape_source(f"{exporter.url}/openmetrics", "--timestamp-mode", "source")

    scraper.scrape_slot(source.pk, current_slot())

    [chunk] = queued_chunks(broker)
    assert (chunk.format, chunk.stamp) == (ChunkFormat.OPENMETRICS, None)
    assert chunk.scraped_at is not None


def test_in_source_time_mode_a_line_with_a_timestamp_is_stored_at_it_and_others_at_the_scrape(
    exporter: Exporter, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = scrape_source(f"{exporter.url}/metrics", "--timestamp-mode", "source")
    stamped_ms = (current_slot() // 1000 - 3600) * 1000  # an hour ago: inside retention
    labels = '{gpu="0", UUID="GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52", device="nvidia0", ' \
        'modelName="NVIDIA A100-SXM4-40GB", Hostname="scrape-host-a", container="", ' \
        'namespace="", pod=""}'  # fmt: skip
    page = (
        "# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n"
        f"DCGM_FI_DEV_GPU_UTIL{labels} 87 {stamped_ms}\n"
        "# TYPE DCGM_FI_DEV_GPU_TEMP gauge\n"
        f"DCGM_FI_DEV_GPU_TEMP{labels} 41\n"
    ).encode()
    monkeypatch.setattr(
        scraper,
        "fetch_page",
        lambda url, timeout: scraper.ScrapedPage(page, ChunkFormat.EXPOSITION),
    )
    scraper.scrape_slot(source.pk, current_slot())
    [chunk] = queued_chunks(broker)

    collector.collect(chunk.to_payload())

    stored = dict(Sample.objects.values_list("metric__name", "timestamp"))
    assert stored == {
        "DCGM_FI_DEV_GPU_UTIL": datetime.fromtimestamp(stamped_ms / 1000, tz=UTC),
        "DCGM_FI_DEV_GPU_TEMP": chunk.scraped_at,
    }


def test_a_redelivered_scrape_of_a_slot_fetches_and_records_nothing_more(
    exporter: Exporter, broker: redis.Redis
) -> None:
    source = scrape_source(f"{exporter.url}/metrics")
    slot = current_slot()
    scraper.scrape_slot(source.pk, slot)

    again = scraper.scrape_slot(source.pk, slot)

    assert again.published == 0
    assert "recorded before" in str(again)
    assert exporter.requests["/metrics"] == 1
    assert OutstandingChunk.objects.count() == 1
    assert broker.llen(COLLECT_QUEUE) == 1


def test_a_slot_whose_time_is_over_is_a_gap_and_is_not_scraped(
    exporter: Exporter, broker: redis.Redis
) -> None:
    source = scrape_source(f"{exporter.url}/metrics")

    report = scraper.scrape_slot(source.pk, current_slot() - 2 * INTERVAL * 1000)

    assert "a gap" in str(report)
    assert exporter.requests["/metrics"] == 0
    assert not OutstandingChunk.objects.exists()


def test_publishing_a_slot_again_sends_the_stored_page_and_never_fetches_again(
    exporter: Exporter, broker: redis.Redis, settings: Settings
) -> None:
    source = scrape_source(f"{exporter.url}/metrics")
    slot = current_slot()
    scraper.scrape_slot(source.pk, slot)
    [first] = queued_chunks(broker)
    broker.delete(COLLECT_QUEUE)  # the broker lost it
    settings.REPUBLISH_AFTER_SECONDS = 0.1
    OutstandingChunk.objects.update(published_at=datetime.now(UTC) - timedelta(seconds=1))

    report = streamer.TickReport()
    streamer.tick_cursor(source, source.cursors.get().pk, report, None)

    assert report.republished == 1
    assert queued_chunks(broker) == [first]
    assert exporter.requests["/metrics"] == 1


# --- Targets down ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/broken", "HTTP 500"),
        ("/slow", "timed out"),
        ("/huge", "more than 16777216 bytes"),
        ("/nothing-here", "HTTP 404"),
    ],
)
def test_a_target_that_fails_is_a_failed_scrape_of_its_source_with_nothing_written(
    exporter: Exporter,
    broker: redis.Redis,
    settings: Settings,
    path: str,
    error: str,
) -> None:
    settings.SCRAPE_TIMEOUT_SECONDS = 1.0
    source = scrape_source(f"{exporter.url}{path}")

    report = scraper.scrape_slot(source.pk, current_slot())

    source.refresh_from_db()
    assert error in source.last_error, source.last_error
    assert source.last_error_at is not None
    assert source.last_scrape_at is not None
    assert source.last_success_at is None
    assert report.published == 0
    assert not OutstandingChunk.objects.exists()
    assert broker.llen(COLLECT_QUEUE) == 0


def test_a_target_that_refuses_connections_is_a_failed_scrape(broker: redis.Redis) -> None:
    source = scrape_source(f"http://127.0.0.1:{free_port()}/metrics")

    scraper.scrape_slot(source.pk, current_slot())

    source.refresh_from_db()
    assert "refused" in source.last_error.lower(), source.last_error
    assert source.last_success_at is None
    assert not OutstandingChunk.objects.exists()


def test_a_page_the_parser_refuses_is_a_failed_scrape_not_a_half_written_slot(
    exporter: Exporter, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = scrape_source(f"{exporter.url}/metrics")
    page = exporter_page(1) + b'DCGM_FI_DEV_GPU_UTIL{gpu="0" broken\n'
    monkeypatch.setattr(
        scraper,
        "fetch_page",
        lambda url, timeout: scraper.ScrapedPage(page, ChunkFormat.EXPOSITION),
    )

    scraper.scrape_slot(source.pk, current_slot())

    source.refresh_from_db()
    assert "not a valid Prometheus text format page" in source.last_error
    assert source.last_success_at is None
    assert not OutstandingChunk.objects.exists()


# --- The admin, once a source is scraped ----------------------------------------------------


def test_once_scraped_a_source_keeps_its_kind_and_is_not_ticked_by_stream_once(
    admin_client: Client, exporter: Exporter, broker: redis.Redis
) -> None:
    source = scrape_source(f"{exporter.url}/metrics")
    scraper.scrape_slot(source.pk, current_slot())
    change = reverse("admin:ingest_streamsource_change", args=[source.pk])

    form = admin_client.get(change).content.decode()
    response = admin_client.post(
        reverse("admin:ingest_streamsource_changelist"),
        {"action": "stream_once", "_selected_action": [source.pk]},
        follow=True,
    )

    assert 'name="kind"' not in form  # read-only: its cursor holds the source's slots
    assert "Scrape sources are scraped once per slot, not by ticks: exporter-a." in (
        response.content.decode()
    )
    assert broker.llen(STREAM_QUEUE) == 0
