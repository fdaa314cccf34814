"""The broker side of the pipeline: queue depth and publishing of chunks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu import Connection

from telemetry_project.celery import app
from telemetry_project.routing import COLLECT_QUEUE, COLLECT_TASK


@contextmanager
def pooled_connection() -> Iterator[Connection]:
    """A broker connection from the app's pool, for work done often: /stats asks for the
    queue depth on every request and a streamer publishes every tick, and a fresh TCP
    connection costs more than either (docs/measurements.md, "Pooled broker connections")."""
    # celery-types calls app.pool a ProducerPool; Celery's app.pool hands out Connections.
    pool: Any = app.pool
    with pool.acquire(block=True) as connection:
        yield connection


def queue_depth(queue: str, connection: Connection | None = None) -> int:
    """Messages waiting in ``queue`` (a passive declare: works on Redis and the filesystem)."""
    if connection is None:
        with pooled_connection() as pooled:
            return queue_depth(queue, pooled)
    channel: Any = connection.default_channel  # kombu's stubs lack queue_declare
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except channel.connection.channel_errors:
        return 0  # never declared yet: nothing was ever published to it


def publish_chunk(payload: object, connection: Connection) -> None:
    """Send a collect message (a chunk payload; a dead letter replays whatever it held)."""
    app.send_task(
        COLLECT_TASK,
        args=[payload],
        queue=COLLECT_QUEUE,
        serializer="msgpack",
        connection=connection,
    )


def check_broker(timeout: int = 2) -> int:
    """The collect queue's depth; raises if the broker cannot be reached within ``timeout``
    seconds (the pooled connection of ``queue_depth`` retries for longer)."""
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=timeout)
        return queue_depth(COLLECT_QUEUE, connection)
