"""Replaying dead letters: a message that was set aside goes back to the collectors.

docs/design.md, "Attempts and dead letters".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial
from typing import Any

import msgpack
from django.db import transaction
from django.utils import timezone

from ingest.models import ChunkAttempt, DeadLetter, IngestedChunk
from ingest.queues import publish_chunk
from telemetry_project.celery import app

logger = logging.getLogger(__name__)


class ReplayError(Exception):
    """Publishing a replay failed; the letter was put back as it was, replayable again."""

    def __init__(self, replayed: int, letter: DeadLetter, cause: Exception) -> None:
        super().__init__(f"{letter} could not be published: {cause}")
        self.replayed = replayed  # letters published before the failure


def replay(dead_letters: Iterable[DeadLetter]) -> int:
    """Publish each dead letter not yet replayed to the collect queue again; return how many.

    A dead-lettered chunk has a ledger row (``dead_lettered=True``) that marks it done, so
    that streamers stop re-publishing it and further deliveries are dropped. Replaying
    deletes that row, in the transaction that marks the letter replayed: left in place, it
    would make the collector treat the replay as a duplicate and drop it unprocessed. Only a
    dead-lettered row is deleted, never a committed one: a chunk whose samples were
    committed stays done. The chunk's attempt counter is deleted too, so the replay gets
    the full number of attempts before it can be dead-lettered again.

    The message is published after that transaction commits; published before, a quick
    collector could still find the ledger row. If publishing fails, the letter and its
    ledger row are restored (so the chunk is neither lost nor left half-replayed) and
    :class:`ReplayError` is raised. A message that is not a chunk (it was unreadable when it
    arrived) is published as it is; it will most likely be dead-lettered again.

    Letters already replayed, here or by a concurrent caller, are skipped. Called inside a
    transaction, the publishing waits for that transaction to commit.
    """
    replayed = 0
    for letter in dead_letters:
        if letter.replayed_at is not None:
            continue
        try:
            payload = msgpack.unpackb(bytes(letter.payload), raw=False, strict_map_key=False)
        except (ValueError, TypeError, msgpack.UnpackException) as error:
            logger.warning("%s not replayed: its payload does not unpack: %s", letter, error)
            continue
        try:
            with transaction.atomic():
                if not _claim(letter):
                    continue
                released = _release_ledger(letter.chunk_id)
                transaction.on_commit(partial(_publish, letter, payload, released))
        except _PublishError as error:
            raise ReplayError(replayed, letter, error.cause) from error.cause
        replayed += 1
    return replayed


class _PublishError(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _claim(letter: DeadLetter) -> bool:
    """Mark the letter replayed; False if another caller got there first."""
    now = timezone.now()
    claimed = DeadLetter.objects.filter(pk=letter.pk, replayed_at__isnull=True).update(
        replayed_at=now
    )
    if claimed:
        letter.replayed_at = now
    return bool(claimed)


def _release_ledger(chunk_id: str) -> list[IngestedChunk]:
    """Delete the chunk's dead-lettered ledger row and attempt counter; return the row."""
    if not chunk_id:  # not a chunk: it never had a ledger row
        return []
    rows = list(IngestedChunk.objects.filter(pk=chunk_id, dead_lettered=True))
    IngestedChunk.objects.filter(pk=chunk_id, dead_lettered=True).delete()
    ChunkAttempt.objects.filter(pk=chunk_id).delete()
    return rows


def _publish(letter: DeadLetter, payload: Any, released: list[IngestedChunk]) -> None:
    try:
        with app.connection_for_write() as connection:
            publish_chunk(payload, connection)  # a non-chunk goes back as it came
    except Exception as error:
        _restore(letter, released)
        raise _PublishError(error) from error
    logger.info("%s replayed", letter)


def _restore(letter: DeadLetter, released: list[IngestedChunk]) -> None:
    with transaction.atomic():
        DeadLetter.objects.filter(pk=letter.pk).update(replayed_at=None)
        IngestedChunk.objects.bulk_create(released, ignore_conflicts=True)
    letter.replayed_at = None
