"""Pushed parts that no collector committed are published again: a web process killed between
its commit and its publish, or a broker that lost the message, loses nothing; parts the ledger
already holds are forgotten; and re-publishing stays within the collect queue's bound."""

from __future__ import annotations

import time
import urllib.error
from datetime import datetime, timedelta

import pytest
import redis
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from api.models import ApiToken
from ingest import faults, push
from ingest.models import IngestedChunk, PushChunk, Sample
from telemetry_project.routing import COLLECT_QUEUE
from tests.support.push import (
    collect_stored,
    post_remote_write,
    remote_write,
    start_beat,
    start_web,
    stored_payloads,
    writing_client,
)
from tests.support.remote_write import body_of
from tests.support.servers import free_port
from tests.support.workers import WorkerFactory, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

LABELS = [
    ("__name__", "DCGM_FI_DEV_GPU_TEMP"),
    ("gpu", "0"),
    ("UUID", "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"),
    ("Hostname", "mtv5-dgx1-hgpu-031"),
]


def batch(count: int = 3, value: float = 40.0) -> bytes:
    now = time.time_ns() // 1_000_000
    return body_of((LABELS, [(now - i * 1000, value + i) for i in range(count)]))


@pytest.fixture
def writer() -> tuple[Client, ApiToken]:
    return writing_client()


def later(settings: Settings) -> datetime:
    return timezone.now() + timedelta(seconds=settings.REPUBLISH_AFTER_SECONDS + 1)


def test_a_part_whose_message_the_broker_lost_is_published_again_with_the_same_id(
    writer: tuple[Client, ApiToken], broker: redis.Redis, settings: Settings
) -> None:
    remote_write(writer[0], batch())
    [stored] = stored_payloads()
    broker.delete(COLLECT_QUEUE)  # the broker lost it

    assert push.republish().republished == 0  # too recent: its first publish may be in flight
    report = push.republish(later(settings))

    assert report.republished == 1
    assert broker.llen(COLLECT_QUEUE) == 1
    assert PushChunk.objects.get().publish_count == 2
    [result] = collect_stored()
    assert (result.chunk_id, result.rows) == (stored["id"], 3)
    assert push.republish(later(settings)).republished == 0


def test_parts_the_ledger_holds_are_forgotten_not_published(
    writer: tuple[Client, ApiToken], broker: redis.Redis, settings: Settings
) -> None:
    remote_write(writer[0], batch())
    [stored] = stored_payloads()
    collect_stored()
    # A retry stored the part again while its first copy was being committed.
    PushChunk.objects.create(
        chunk_id=stored["id"], token_id=writer[1].pk, format="remote-write", payload=b"",
        received_at=timezone.now(), last_published_at=timezone.now(),
    )  # fmt: skip
    broker.delete(COLLECT_QUEUE)

    report = push.republish(later(settings))

    assert (report.republished, report.confirmed) == (0, 1)
    assert not PushChunk.objects.exists()
    assert broker.llen(COLLECT_QUEUE) == 0


def test_re_publishing_stops_at_the_collect_queue_bound(
    writer: tuple[Client, ApiToken], broker: redis.Redis, settings: Settings
) -> None:
    for value in range(5):
        remote_write(writer[0], batch(value=float(value)))
    broker.delete(COLLECT_QUEUE)
    settings.COLLECT_QUEUE_MAX_DEPTH = 3
    broker.rpush(COLLECT_QUEUE, b"one waiting message")

    assert push.republish(later(settings)).republished == 2
    assert broker.llen(COLLECT_QUEUE) == 3


@pytest.mark.integration
def test_a_web_process_killed_after_its_commit_loses_nothing_and_its_client_retry_adds_nothing(
    workers: WorkerFactory, pipeline_env: dict[str, str], broker: redis.Redis
) -> None:
    """gunicorn's worker exits abruptly after storing the part, before publishing it and
    answering; the re-publisher (beat, a streamer) sends it, a collector commits it; the
    client's retry of the same body, answered by a server without the fault, stores nothing
    more."""
    key = ApiToken.issue("prometheus", can_write=True).new_key
    port = free_port()
    dying = start_web(workers, port, {"TELEMETRY_FAULT": faults.PUSH_AFTER_RECORD})
    body = batch(count=5)

    with pytest.raises((urllib.error.URLError, ConnectionError)):
        post_remote_write(port, key, body)
    dying.kill()  # its master would start a worker armed with the same fault
    assert PushChunk.objects.count() == 1
    assert broker.llen(COLLECT_QUEUE) == 0  # never published

    collector = workers.collector()
    workers.streamer()
    start_beat(workers)
    wait_for(lambda: Sample.objects.count() == 5, 60, what="the re-published part committed")
    assert not PushChunk.objects.exists()

    collector.terminate()
    start_web(workers, port)
    assert post_remote_write(port, key, body).status == 204
    assert not PushChunk.objects.exists()
    assert broker.llen(COLLECT_QUEUE) == 0  # the ledger holds it: nothing published
    assert (Sample.objects.count(), IngestedChunk.objects.count()) == (5, 1)
