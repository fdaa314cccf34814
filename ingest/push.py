"""Pushed data: recorded durably before the client hears 2xx, then published, and published
again until a collector commits it.

A push (a Prometheus remote write, or a CSV or exposition page sent to an import endpoint) is
split into parts of at most ``PART_ROWS`` rows, each a collect chunk whose id is
``push:<token id>:<sha256 of the body as sent>:<part>``. In one transaction every part not
already in the ledger is inserted as a ``PushChunk`` row (``ON CONFLICT DO NOTHING``, so a retry
racing its original waits for it and then adds nothing); after the commit the parts are
published. So a 2xx means the payload is in the database, and a client's byte-identical retry
finds its parts here or in the ledger and stores nothing twice, for as long as the ledger keeps
their ids.

The collector deletes a part's row in the transaction that writes its ledger row. A web process
killed between its commit and its publish, or a broker that loses the message, leaves the row
behind: ``republish``, a beat task every few seconds, publishes again (same id, same message)
every row older than ``REPUBLISH_AFTER_SECONDS`` and deletes rows the ledger already holds.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgpack
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from ingest import counters, faults
from ingest.chunks import PUSH_PREFIX, Chunk
from ingest.collector import claim_ledger
from ingest.models import IngestedChunk, PushChunk, Tally
from ingest.queues import pooled_connection, publish_chunk, queue_depth
from telemetry_project.routing import COLLECT_QUEUE

logger = logging.getLogger(__name__)

# Rows (CSV lines, page samples, remote-written samples) per part: the chunk size imports use.
PART_ROWS = 10_000
# Parts one re-publishing task looks at; the rest wait for the next one, seconds later.
REPUBLISH_BATCH = 500
# What a push held that is neither stored nor rejected (per-source tallies of "push").
IGNORED_SAMPLES = Tally.source_key(Tally.PUSHES, Tally.SourceCounter.IGNORED_SAMPLES)
STALE_MARKERS = Tally.source_key(Tally.PUSHES, Tally.SourceCounter.STALE_MARKERS)


def body_digest(body: bytes) -> str:
    """What names a body in its parts' ids: the SHA-256 of the bytes as sent, hex."""
    return hashlib.sha256(body).hexdigest()


def part_id(token_id: int, digest: str, part: int) -> str:
    """The chunk id of a push's part: the same body from the same token, the same ids."""
    return f"{PUSH_PREFIX}{token_id}:{digest}:{part}"


@dataclass(frozen=True, slots=True)
class Recorded:
    """What recording a push did: its parts' ids, and how many of them were new."""

    chunk_ids: list[str]
    new: int


def record(
    token_id: int, digest: str, parts: Sequence[Chunk], tallies: Mapping[str, int] | None = None
) -> Recorded:
    """Store the parts of the body named ``digest`` durably, then publish those the ledger
    does not hold yet (the parts' ids must be ``part_id(token_id, digest, n)``).

    ``tallies`` (counts of what the push held but does not store, e.g. staleness markers) are
    added in the same transaction, only when the push is new, so a retry counts nothing. A push
    with no part but such counts is recorded in the ledger at once under the id of its part 0,
    which is what recognises its retry. Raises the database's error when it cannot be reached;
    a broker that cannot be reached is logged, and the re-publisher publishes later.
    """
    now = timezone.now()
    ids = [part.chunk_id for part in parts]
    # Compressed before the transaction, which then holds its locks only for the inserts.
    payloads = [(part, part.to_payload()) for part in parts]
    with transaction.atomic():
        faults.failure_point(faults.PUSH_RECORD)
        done = set(IngestedChunk.objects.filter(pk__in=ids).values_list("pk", flat=True))
        pending = [(part, payload) for part, payload in payloads if part.chunk_id not in done]
        new = sum(_insert(token_id, part, payload, now) for part, payload in pending)
        if not parts:
            new = int(claim_ledger(part_id(token_id, digest, 0), None, rows=0, rejected=0))
        if tallies and new:
            counters.add_tallies(tallies, stripe=counters.stripe_for(digest))
    faults.fault_point(faults.PUSH_AFTER_RECORD)
    _publish([payload for _, payload in pending])
    return Recorded(ids, new)


def _insert(token_id: int, part: Chunk, payload: dict[str, Any], now: datetime) -> bool:
    """Insert the part's row; False when a row with its id is there already."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingest_pushchunk (chunk_id, token_id, format, payload, received_at, "
            "last_published_at, publish_count) VALUES (%s, %s, %s, %s, %s, %s, 1) "
            "ON CONFLICT (chunk_id) DO NOTHING",
            [
                part.chunk_id, token_id, part.format.value,
                msgpack.packb(payload, use_bin_type=True), now, now,
            ],
        )  # fmt: skip
        return bool(cursor.rowcount == 1)


def _publish(payloads: list[dict[str, Any]]) -> None:
    if not payloads:
        return
    try:
        with pooled_connection() as broker:
            for payload in payloads:
                publish_chunk(payload, broker)
    except Exception as error:  # noqa: BLE001  (the rows are stored: the re-publisher sends them)
        logger.warning(
            "push: %d part(s) not published, left to the re-publisher: %s", len(payloads), error
        )


@dataclass(frozen=True, slots=True)
class RepublishReport:
    republished: int = 0
    confirmed: int = 0

    def __str__(self) -> str:
        return f"republished={self.republished} confirmed={self.confirmed}"


def republish(now: datetime | None = None) -> RepublishReport:
    """Publish again the push parts no collector has committed after
    ``REPUBLISH_AFTER_SECONDS``, as many as the collect queue has room for; forget those the
    ledger holds. Rows are claimed with ``SKIP LOCKED``, so several streamers share the work."""
    now = timezone.now() if now is None else now
    stale_before = now - timedelta(seconds=settings.REPUBLISH_AFTER_SECONDS)
    with pooled_connection() as broker:
        room = settings.COLLECT_QUEUE_MAX_DEPTH - queue_depth(COLLECT_QUEUE, broker)
        with transaction.atomic():
            stale = list(
                PushChunk.objects.select_for_update(skip_locked=True)
                .filter(last_published_at__lt=stale_before)
                .values_list("chunk_id", flat=True)[:REPUBLISH_BATCH]
            )
            done = set(IngestedChunk.objects.filter(pk__in=stale).values_list("pk", flat=True))
            PushChunk.objects.filter(pk__in=done).delete()
            again = [chunk_id for chunk_id in stale if chunk_id not in done][: max(room, 0)]
            payloads = [
                msgpack.unpackb(bytes(payload), raw=False)
                for payload in PushChunk.objects.filter(pk__in=again).values_list(
                    "payload", flat=True
                )
            ]
            PushChunk.objects.filter(pk__in=again).update(
                last_published_at=now, publish_count=F("publish_count") + 1
            )
        for payload in payloads:
            publish_chunk(payload, broker)
    return RepublishReport(republished=len(payloads), confirmed=len(done))
