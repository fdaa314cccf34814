"""A message that cannot be decoded, on either transport, is a dead letter, never a dead worker."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from time import monotonic

import msgpack
import pytest
import redis
from kombu import Connection, Exchange, Queue

from ingest.models import DeadLetter, Sample
from telemetry_project.celery import app
from telemetry_project.routing import COLLECT_QUEUE, COLLECT_TASK
from tests.support.chunks import REFERENCE_LINES, chunk_of
from tests.support.embedded import embedded_environment, manage, query
from tests.support.workers import WorkerFactory, wait_for

pytestmark = pytest.mark.integration

GOOD_LINES = REFERENCE_LINES[1:4]


def good_chunk() -> dict[str, object]:
    return chunk_of(GOOD_LINES, chunk_id="1:0:1:77").to_payload()


def with_body(envelope: dict[str, object], body: bytes) -> bytes:
    """The envelope kombu wrote, carrying another (base64) body."""
    return json.dumps({**envelope, "body": base64.b64encode(body).decode()}).encode()


def unpacked(letter: DeadLetter) -> object:
    return msgpack.unpackb(bytes(letter.payload), raw=False)


def test_undecodable_redis_messages_are_dead_letters_and_the_collector_goes_on(
    workers: WorkerFactory, broker: redis.Redis
) -> None:
    app.send_task(COLLECT_TASK, args=[good_chunk()], queue=COLLECT_QUEUE)
    published = broker.rpop(COLLECT_QUEUE)  # a real envelope, as kombu writes it
    assert isinstance(published, bytes)
    envelope = json.loads(published)
    not_msgpack, wrong_shape = b"\xc1\xc1 not msgpack", msgpack.packb(5)
    # Each item pushed as it is, and the bytes the dead letter keeps with its reason.
    garbage = [
        (b"this is not json", b"this is not json", "is not a JSON envelope"),
        (published[:100], published[:100], "is not a JSON envelope"),
        (b'["not", "an envelope"]', b'["not", "an envelope"]', "not a kombu message envelope"),
        (with_body(envelope, not_msgpack), not_msgpack, "does not decode"),
        (with_body(envelope, wrong_shape), wrong_shape, "cannot be run as a task"),
    ]
    collector = workers.collector()

    for item, _, _ in garbage:
        broker.lpush(COLLECT_QUEUE, item)
    app.send_task(COLLECT_TASK, args=[good_chunk()], queue=COLLECT_QUEUE)

    wait_for(lambda: Sample.objects.count() == 3, 60, what="the good chunk behind the garbage")
    letters = {unpacked(letter): letter.reason for letter in DeadLetter.objects.all()}
    assert set(letters) == {kept for _, kept, _ in garbage}
    for _, kept, reason in garbage:
        assert reason in letters[kept]
    assert collector.process.poll() is None, collector.output()
    assert "Unrecoverable error" not in collector.output()
    assert broker.llen(COLLECT_QUEUE) == 0


@pytest.fixture
def embedded_workers(tmp_path: Path) -> Iterator[WorkerFactory]:
    env = embedded_environment(tmp_path / "var")
    manage(env, "migrate", "--noinput")
    factory = WorkerFactory(env, tmp_path)
    yield factory
    factory.stop_all()


def filesystem_connection(var_dir: Path) -> Connection:
    """The embedded broker's folders, through the project's transport."""
    return Connection(
        "filesystem://",
        transport="ingest.filesystem_broker:Transport",
        transport_options={
            "data_folder_in": str(var_dir / "broker" / "queue"),
            "data_folder_out": str(var_dir / "broker" / "queue"),
            "control_folder": str(var_dir / "broker" / "control"),
        },
    )


def test_undecodable_files_in_the_embedded_queue_are_dead_letters_and_the_collector_goes_on(
    embedded_workers: WorkerFactory, tmp_path: Path
) -> None:
    var_dir = tmp_path / "var"
    folder = var_dir / "broker" / "queue"
    with filesystem_connection(var_dir) as connection:
        exchange = Exchange(COLLECT_QUEUE, "direct")
        Queue(COLLECT_QUEUE, exchange, routing_key=COLLECT_QUEUE)(
            connection.default_channel
        ).declare()
        app.send_task(COLLECT_TASK, args=[good_chunk()], queue=COLLECT_QUEUE, connection=connection)
        (published,) = folder.iterdir()  # a real message file, as the transport writes it
        envelope = published.read_bytes()
        published.unlink()
        # What a reader of kombu's own transport could take: a file not yet written (or
        # half written), and what a crash or a hand could leave.
        for content in (b"", envelope[:100], b"this is not json"):
            name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{COLLECT_QUEUE}.msg"
            (folder / name).write_bytes(content)
        app.send_task(COLLECT_TASK, args=[good_chunk()], queue=COLLECT_QUEUE, connection=connection)

    collector = embedded_workers.collector()

    wait_for(
        lambda: query(var_dir, "SELECT COUNT(*) FROM ingest_sample") == [(3,)],
        60,
        what="the good chunk behind the garbage",
    )
    letters = query(var_dir, "SELECT payload, reason FROM ingest_deadletter")
    kept = sorted(msgpack.unpackb(payload) for payload, _ in letters)
    assert kept == sorted([b"", envelope[:100], b"this is not json"])
    assert all("is not a JSON envelope" in str(reason) for _, reason in letters)
    assert collector.process.poll() is None, collector.output()
    assert "Unrecoverable error" not in collector.output()
    assert list(folder.iterdir()) == []
