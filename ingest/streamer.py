"""One stream tick: decide which chunks of a source to publish, record them, publish them.

The two-phase cursor: in one transaction, holding the cursor row (skip-locked, so any number
of streamers are safe), the tick confirms chunks the ledger now holds, picks stale ones to
publish again, records the new chunks as outstanding and advances the cursor. Publishing
happens after that commit and never under the lock. A streamer killed at any point between
leaves outstanding chunks that a later tick publishes again with the same id and stamp, and
the ledger makes any copy harmless. docs/design.md, "The two-phase cursor".
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgpack
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from kombu import Connection

from ingest import faults, follow, reader, sources
from ingest.chunks import Chunk
from ingest.models import (
    IngestedChunk,
    OutstandingChunk,
    StreamCursor,
    StreamSource,
    outstanding_chunk_id,
)
from ingest.queues import pooled_connection, publish_chunk, queue_depth
from ingest.reader import SourceError
from telemetry_project.celery import app
from telemetry_project.routing import COLLECT_QUEUE, STREAM_TASK

logger = logging.getLogger(__name__)


@dataclass
class TickReport:
    """What one tick did, for logs and tests."""

    published: int = 0
    republished: int = 0
    confirmed: int = 0
    throttled: bool = False
    finished: bool = False
    error: str = ""  # the source error recorded on the source, if the tick failed with one
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        flags = " throttled" if self.throttled else ""
        flags += " finished" if self.finished else ""
        return (
            f"published={self.published} republished={self.republished} "
            f"confirmed={self.confirmed}{flags} {' '.join(self.notes)}".strip()
        )


def record_source_error(source_id: int, message: str, report: TickReport, **also: object) -> None:
    """Show ``message`` on the source; ``also``: more of its columns, set in the same
    statement (a scrape's health)."""
    # update(), not save(): the beat schedule does not depend on these fields.
    StreamSource.objects.filter(pk=source_id).update(
        last_error=message[:2000], last_error_at=timezone.now(), **also
    )
    logger.error("source %s: %s", source_id, message)
    report.error = message
    report.notes.append("source error")


def _command_line_only_refusal(source: StreamSource) -> str:
    """Why a worker does not stream a file that only its import_csv was allowed to read."""
    return (
        f"{source.location} is outside STREAM_SOURCE_DIRS and was named to import_csv, "
        "which streams it itself; workers do not read it (copy the file under "
        "STREAM_SOURCE_DIRS and register it again to stream it from workers)"
    )


def prepare_source(source: StreamSource) -> list[StreamCursor]:
    """Read the header and lay out the shards the first time a source is streamed."""
    cursors = list(source.cursors.all())
    if cursors:
        return cursors
    header = reader.read_header(source.location)
    shards = 1 if source.is_url else source.shards
    bounds = reader.shard_bounds(source.location, header.data_start, shards)
    with transaction.atomic():
        locked = StreamSource.objects.select_for_update().get(pk=source.pk)
        cursors = list(locked.cursors.all())
        if cursors:  # another streamer prepared it while we read the file
            source.columns = locked.columns  # the chunks carry the header it recorded
            return cursors
        StreamSource.objects.filter(pk=source.pk).update(columns=list(header.layout.names))
        source.columns = list(header.layout.names)
        # A shard starts at its first line: its bounds are the cursor's start and position.
        return [
            StreamCursor.objects.create(
                source=source,
                shard=shard,
                position=bound.start_offset,
                next_line=bound.start_line,
                **dataclasses.asdict(bound),
            )
            for shard, bound in enumerate(bounds)
        ]


def stream_tick(source_id: int, shard: int | None = None) -> TickReport:
    """The body of the ``ingest.stream`` task."""
    report = TickReport()
    source = StreamSource.objects.filter(pk=source_id).first()
    if source is None or not source.enabled:
        report.notes.append("source missing or disabled")
        return report
    if source.kind == StreamSource.Kind.SCRAPE:
        report.notes.append("a scrape source is served by its slots (ingest.scraper)")
        return report
    if source.command_line_only and not sources.is_named_file(source.location):
        record_source_error(source.pk, _command_line_only_refusal(source), report)
        return report
    try:
        cursors = prepare_source(source)
    except SourceError as error:
        record_source_error(source.pk, str(error), report)
        return report
    if shard is None and len(cursors) > 1:
        # Fan the shards out, so every idle streamer can take one.
        for cursor in cursors:
            app.send_task(
                STREAM_TASK,
                args=[source.pk, cursor.shard],
                queue=source.stream_queue,
                expires=source.interval_seconds,
            )
        report.notes.append(f"fanned out {len(cursors)} shards")
        return report
    target = next((c for c in cursors if shard is None or c.shard == shard), None)
    if target is None:
        report.notes.append(f"no shard {shard}")
        return report
    try:
        tick_cursor(source, target.pk, report, _read_chunks)
    except SourceError as error:
        record_source_error(source.pk, str(error), report)
        return report
    if source.last_error:
        StreamSource.objects.filter(pk=source.pk).update(last_error="", last_error_at=None)
    return report


@dataclass(frozen=True, slots=True)
class Planned:
    outstanding: OutstandingChunk
    # The compressed message, made while planning from the bytes just read (the raw run is
    # dropped at once: a fast tick plans up to MAX_OUTSTANDING_CHUNKS of them); None for a
    # chunk published again, which is read anew from the source, or for a followed file or
    # a scraped page taken from the message the outstanding chunk keeps.
    payload: dict[str, Any] | None


# What a tick adds once stale chunks are re-published: given the locked cursor, how many
# chunks it may record and the tick's time, the chunks it recorded as outstanding.
Planner = Callable[[StreamSource, StreamCursor, int, datetime], list[Planned]]


def tick_cursor(
    source: StreamSource,
    cursor_id: int,
    report: TickReport,
    plan: Planner | None,
    *,
    wait: bool = False,
) -> None:
    """Confirm, re-publish and, with ``plan`` (None: nothing new this tick), record and
    publish new chunks of one cursor. ``wait``: wait for the cursor's lock instead of leaving
    the tick to whichever streamer holds it (a scrape must record its own slot)."""
    now = timezone.now()
    with pooled_connection() as broker:
        with transaction.atomic():
            cursor = (
                StreamCursor.objects.select_for_update(skip_locked=not wait)
                .filter(pk=cursor_id)
                .first()
            )
            if cursor is None:
                report.notes.append("cursor busy")
                return
            remaining = _confirm(source, cursor, report)
            depth_room = settings.COLLECT_QUEUE_MAX_DEPTH - queue_depth(COLLECT_QUEUE, broker)
            stale_before = now - timedelta(seconds=settings.REPUBLISH_AFTER_SECONDS)
            stale = [chunk for chunk in remaining if chunk.published_at < stale_before]
            again = stale[: max(depth_room, 0)]
            for chunk in again:
                chunk.published_at = now
                chunk.publish_count += 1
            OutstandingChunk.objects.bulk_update(again, ["published_at", "publish_count"])
            depth_room -= len(again)

            budget = min(settings.MAX_OUTSTANDING_CHUNKS - len(remaining), depth_room)
            if source.pace == StreamSource.Pace.PACED:
                budget = min(budget, 1)
            planned = [Planned(chunk, None) for chunk in again]
            # A followed file is never finished: there may be rows appended since.
            if plan is not None and (source.follow or not cursor.finished):
                if budget <= 0:
                    report.throttled = True
                    StreamSource.objects.filter(pk=source.pk).update(
                        throttled_ticks=F("throttled_ticks") + 1
                    )
                else:
                    planned += plan(source, cursor, budget, now)
            report.finished = cursor.finished
        faults.fault_point(faults.STREAMER_AFTER_RECORD)
        for item in planned:
            _publish(source, cursor, item, broker)
        report.republished = len(again)
        report.published = len(planned) - len(again)
        faults.fault_point(faults.STREAMER_AFTER_PUBLISH)


def _confirm(
    source: StreamSource, cursor: StreamCursor, report: TickReport
) -> list[OutstandingChunk]:
    """Forget outstanding chunks the ledger holds; return those still unconfirmed."""
    outstanding = list(cursor.outstanding.all())
    if not outstanding:
        return []
    ids = {_chunk_id(source, cursor, chunk): chunk for chunk in outstanding}
    done = set(IngestedChunk.objects.filter(pk__in=ids).values_list("pk", flat=True))
    if done:
        OutstandingChunk.objects.filter(pk__in=[ids[chunk_id].pk for chunk_id in done]).delete()
    report.confirmed = len(done)
    return [chunk for chunk_id, chunk in ids.items() if chunk_id not in done]


# What a tick may change on its cursor.
_CURSOR_PROGRESS = [
    "position",
    "next_line",
    "rows_streamed",
    "pass_number",
    "finished",
    "start_offset",
    "file_device",
    "file_inode",
]


def _read_chunks(
    source: StreamSource, cursor: StreamCursor, budget: int, now: datetime
) -> list[Planned]:
    """Read up to ``budget`` chunks from the cursor, record them and move the cursor on."""
    stamp = now if source.timestamp_mode == source.TimestampMode.PROCESSING else None
    planned: list[Planned] = []
    opened = (
        follow.open_followed(source, cursor)
        if source.follow
        else reader.open_at(source.location, cursor.position)
    )
    with opened as stream:
        if stream is None:
            return planned  # a rotated file whose header is not written yet
        for run, data in reader.read_line_runs(
            stream,
            cursor.position,
            cursor.end_offset,
            source.batch_size,
            budget,
            growing=source.follow,
        ):
            chunk = OutstandingChunk(
                cursor=cursor,
                pass_number=cursor.pass_number,
                start_offset=run.start,
                end_offset=run.end,
                first_line=cursor.next_line,
                line_count=run.line_count,
                stamp=stamp,
                recorded_at=now,
                published_at=now,
            )
            message = _message(source, cursor, chunk, data)
            if source.follow:  # kept: the file may be rotated before the chunk is committed
                chunk.payload = msgpack.packb(message, use_bin_type=True)
            chunk.save(force_insert=True)
            planned.append(Planned(chunk, message))
            cursor.position = run.end
            cursor.next_line += run.line_count
            cursor.rows_streamed += run.line_count
    if source.follow:
        cursor.finished = False  # never, even if it was before follow was switched on
    elif len(planned) < budget:  # the shard is exhausted
        if source.loop:
            cursor.pass_number += 1
            cursor.position = cursor.start_offset
            cursor.next_line = cursor.start_line
        else:
            cursor.finished = True
    cursor.save(update_fields=_CURSOR_PROGRESS)
    return planned


def _chunk_id(source: StreamSource, cursor: StreamCursor, chunk: OutstandingChunk) -> str:
    return outstanding_chunk_id(
        source.kind, source.pk, cursor.shard, chunk.pass_number, chunk.start_offset
    )


def _publish(source: StreamSource, cursor: StreamCursor, item: Planned, broker: Connection) -> None:
    payload = item.payload
    chunk = item.outstanding
    if payload is None and chunk.payload is not None:
        # A followed file's chunk or a scraped page, as it was recorded: the file may have
        # been rotated since, and fetching the page again would store another page.
        payload = msgpack.unpackb(bytes(chunk.payload), raw=False)
    elif payload is None:
        data = reader.read_range(source.location, chunk.start_offset, chunk.end_offset)
        payload = _message(source, cursor, chunk, data)
    publish_chunk(payload, broker)


def _message(
    source: StreamSource, cursor: StreamCursor, chunk: OutstandingChunk, data: bytes
) -> dict[str, Any]:
    return Chunk(
        chunk_id=_chunk_id(source, cursor, chunk),
        source_id=source.pk,
        first_line=chunk.first_line,
        line_count=chunk.line_count,
        columns=tuple(source.columns),
        stamp=chunk.stamp,
        data=data,
    ).to_payload()
