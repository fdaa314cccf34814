"""A message that cannot be decoded becomes a dead letter; the worker that met it goes on.

A message is decoded in three steps before it is a task, and out of the box a failure in
most of them stops the worker ("Unrecoverable error") or drops the message with a log line:

1. the transport turns what it stored (a Redis list item, a file of the filesystem
   transport) into a JSON envelope: anything that is not JSON stopped the worker;
2. kombu turns the envelope into a message (properties, a base64 body): an envelope of
   another shape, or a body that is not base64, stopped the worker;
3. Celery turns the body into the task's arguments: a body that does not deserialize, a
   refused content type, a message that is not a task or names no task of ours was logged
   and dropped; a body of the wrong shape stopped the worker.

Here each failure ends as a ``DeadLetter`` holding the message's bytes and the reason (the
collector's path for unreadable payloads, replayable from the admin), and the worker takes
the next message. Step 1 is guarded where the transports read (the message is already off
the queue then, so there is nothing to acknowledge); step 2 by a message class that records
the error where kombu keeps decode errors, which makes kombu hand the message to the
consumer's ``on_decode_error``; step 3 by the worker's consumer (``worker_consumer`` in
settings). The transports are kombu's, subclassed: this module's Redis transport and
``ingest.filesystem_broker`` (``broker_transport`` in settings).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from queue import Empty
from typing import Any

from celery.worker.consumer import Consumer
from django.db import DatabaseError, InterfaceError, close_old_connections
from kombu.exceptions import DecodeError
from kombu.message import Message as KombuMessage
from kombu.transport import redis, virtual
from kombu.utils.json import dumps
from vine import promise

logger = logging.getLogger(__name__)


def set_aside(raw: bytes, reason: str) -> None:
    """Store an undecodable message as a dead letter; if the database refuses, log it whole."""
    # Imported here: kombu loads this module (as the transport) before Django's apps are ready.
    from ingest.collector import dead_letter_payload

    try:
        dead_letter_payload(raw, reason, chunk_id="", source_id=None)
    except (DatabaseError, InterfaceError):
        close_old_connections()  # a broken connection must not be reused by the next task
        logger.exception("undecodable message not stored (%s); its bytes: %r", reason, raw)


def _as_bytes(data: bytes | bytearray | memoryview | str | None) -> bytes:
    if isinstance(data, str):
        return data.encode()
    return b"" if data is None else bytes(data)


def set_aside_unreadable(error: Exception, where: str) -> None:
    """Dead-letter a message whose stored form did not decode as JSON.

    The transports hand the decoder text (bytes that are not UTF-8 become U+FFFD), which a
    JSON syntax error keeps as ``doc``; an envelope kombu's type hooks refuse is valid JSON
    that they do not keep, so only the reason is stored for it.
    """
    text = getattr(error, "doc", "")
    set_aside(_as_bytes(text), f"a message on {where} is not a JSON envelope: {error!r}")


class FlaggedMessage(virtual.Message):
    """A message of a virtual transport that records a malformed envelope instead of raising.

    kombu builds the message inside its delivery callback, where an exception stops the
    worker. An envelope it cannot read becomes an empty message whose body is the envelope
    and whose ``errors`` hold the failure, which is how kombu marks a message that failed to
    decode: its consumer passes such a message to ``on_decode_error``.
    """

    def __init__(self, payload: Any, channel: Any = None, **kwargs: Any) -> None:
        try:
            super().__init__(payload, channel=channel, **kwargs)
        except Exception as error:  # noqa: BLE001  (whatever an envelope holds, the worker goes on)
            refusal = DecodeError(f"not a kombu message envelope: {error!r}")
            KombuMessage.__init__(
                self,
                body=dumps(payload),
                channel=channel,
                delivery_tag=uuid.uuid4().hex,  # acknowledging it must not touch another
                delivery_info={"exchange": "", "routing_key": ""},
                postencode="utf-8",
            )
            if self.errors is not None:  # always: the base class makes the list
                self.errors.append((DecodeError, refusal, error.__traceback__))


class DeadLetteringChannel(virtual.Channel):
    """A virtual channel whose reads turn a message that is not JSON into a dead letter."""

    Message = FlaggedMessage

    @property
    def _broker_errors(self) -> tuple[type[BaseException], ...]:
        """What a read raises that is not the message's fault: passed on untouched."""
        transport = self.connection
        return (Empty, *transport.connection_errors, *transport.channel_errors)

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        while True:  # the next message, past any that cannot be decoded
            try:
                return super()._get(queue)
            except self._broker_errors:
                raise
            except Exception as error:  # noqa: BLE001  (a decoder's error: set the message aside)
                set_aside_unreadable(error, f"queue {queue!r}")


class RedisChannel(DeadLetteringChannel, redis.Channel):
    """kombu's Redis channel, with the guarded reads."""

    def _brpop_read(self, **options: Any) -> Any:
        """The worker's read of a Redis list (the event loop's path, not ``_get``)."""
        try:
            return super()._brpop_read(**options)  # type: ignore[misc]
        except self._broker_errors:
            raise
        except Exception as error:  # noqa: BLE001  (a decoder's error: set the message aside)
            set_aside_unreadable(error, "Redis")
            raise Empty() from None


class RedisTransport(redis.Transport):
    """kombu's Redis transport (``redis://`` and ``rediss://``), with the guarded channel."""

    Channel = RedisChannel


class DeadLetteringConsumer(Consumer):
    """The worker's consumer: a message it cannot turn into a task becomes a dead letter."""

    connection_errors: tuple[type[BaseException], ...]  # set by Celery on connecting
    channel_errors: tuple[type[BaseException], ...]

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        set_aside(_as_bytes(message.body), f"{_where(message)} does not decode: {exc!r}")
        message.ack()

    def on_unknown_message(self, body: Any, message: Any) -> None:
        set_aside(_as_bytes(message.body), f"{_where(message)} is not a task message")
        super().on_unknown_message(body, message)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        set_aside(_as_bytes(message.body), f"{_where(message)} is not a valid task: {exc!r}")
        super().on_invalid_task(body, message, exc)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        set_aside(_as_bytes(message.body), f"{_where(message)} names an unknown task: {exc!r}")
        super().on_unknown_task(body, message, exc)

    def create_task_handler(self, promise: type[promise] = promise) -> Callable[..., Any]:
        """Celery's handler, with a message that breaks it dead-lettered (a body of the
        wrong shape raises out of it; the task's own errors never do, Celery traces them)."""
        on_task_received = super().create_task_handler(promise)
        broker_errors = (*self.connection_errors, *self.channel_errors)

        def on_task_received_or_set_aside(message: Any) -> None:
            try:
                on_task_received(message)
            except broker_errors:
                raise
            except Exception as error:  # no message may stop the worker
                if message.acknowledged:  # it was handled; what failed came after
                    logger.exception("error after handling a message")
                    return
                set_aside(
                    _as_bytes(message.body), f"{_where(message)} cannot be run as a task: {error!r}"
                )
                message.ack()

        return on_task_received_or_set_aside


def _where(message: Any) -> str:
    queue = (message.delivery_info or {}).get("routing_key")
    return f"a message on queue {queue!r}" if queue else "a message"
