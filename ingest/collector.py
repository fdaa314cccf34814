"""Commits one chunk: its samples, rejected rows, counters and ledger entry, all or nothing.

The ledger row is inserted first inside the transaction: a second delivery of the same chunk
blocks on its primary key until the first commits, then inserts nothing and writes nothing.
So a collector may be killed at any moment, or a chunk delivered any number of times, and
each row is still committed exactly once. docs/design.md, "The ledger" and "Attempts and
dead letters".

A chunk holds CSV lines, one exposition page or remote-written series (``Chunk.format``); all
parse into the same columns and commit the same way. A page the parser refuses as a whole is
dead-lettered. A pushed chunk's stored copy (``ingest.push``) is deleted in the transaction that
writes its ledger row.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgpack
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ingest import counters, dimensions, faults, partitions, read_model
from ingest.chunks import Chunk, ChunkFormat, PayloadError
from ingest.dcgm import ColumnLayout, DeviceKey, HeaderError, ParsedChunk, parse_lines
from ingest.dimensions import WorkloadKey
from ingest.exposition import ExpositionError, parse_page
from ingest.models import ChunkAttempt, DeadLetter, IngestedChunk, PushChunk, RejectedRow, Tally
from ingest.pushed_series import SeriesError, parse_series
from ingest.rejections import reason_category, retention_reason
from ingest.writer import SampleBatch, write_samples

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CollectResult:
    chunk_id: str
    outcome: str  # "committed", "duplicate" or "dead-letter"
    rows: int = 0
    rejected: int = 0

    def __str__(self) -> str:
        return f"{self.chunk_id}: {self.outcome} rows={self.rows} rejected={self.rejected}"


@dataclass(slots=True)
class Delivery:
    """One delivery of a chunk, as far as its attempt count goes.

    An attempt is counted, and committed, before the chunk is processed, so a worker killed
    by the chunk itself (out of memory, say) still leaves its mark. An outage met after that
    (the database lost mid-COPY) is not the chunk's fault, and its count must be given back.
    Writing the give-back at the moment of the outage would need the very database that is
    down, so it travels instead: the task's retry message carries it as ``owed``, and the
    next delivery settles it in the same statement that counts itself (``count_attempt``).
    It needs no database at failure time and cannot be lost apart from the retry it rides on.
    If that retry message is lost too (a broker losing its data during a database outage),
    the streamer's re-publish comes without it, and that outage counts once: it takes
    ``MAX_CHUNK_ATTEMPTS`` such double failures, not single ones, to dead-letter a chunk.
    """

    owed: int = 0  # counts an earlier delivery took for an outage, to give back
    counted: bool = False  # this delivery's count (and the settling of ``owed``) committed

    def owed_after_outage(self) -> int:
        """What the retry after an outage owes back: this delivery's count, once it committed;
        otherwise the earlier debt, still unsettled (the counting statement did not commit)."""
        return 1 if self.counted else self.owed

    def owed_after_failure(self) -> int:
        """What the retry after a failure of the chunk's own owes: its count stands."""
        return 0 if self.counted else self.owed


class _AlreadyCommittedError(Exception):
    """Raised inside the transaction to roll it back when another delivery won the ledger."""


def collect(payload: object, delivery: Delivery | None = None) -> CollectResult:
    """Commit the chunk in ``payload``, or recognise it as done, or dead-letter it.

    ``delivery`` is updated as the attempt is counted, so that a caller meeting an outage
    knows what its retry owes back (see ``Delivery``).
    """
    delivery = Delivery() if delivery is None else delivery
    try:
        chunk = Chunk.from_payload(payload)
    except PayloadError as error:
        return dead_letter_payload(payload, str(error), chunk_id="", source_id=None)
    if IngestedChunk.objects.filter(pk=chunk.chunk_id).exists():
        return _skip_duplicate(chunk)

    attempt = count_attempt(chunk.chunk_id, settling=delivery.owed)
    delivery.counted = True
    if attempt.attempts > settings.MAX_CHUNK_ATTEMPTS:
        reason = f"failed {attempt.attempts - 1} times; last error: {attempt.last_error}"
        return dead_letter_chunk(chunk, payload, reason, attempt.attempts)
    try:
        parsed = parse_chunk(chunk)
    except UNREADABLE_CHUNK_ERRORS as error:
        return dead_letter_chunk(chunk, payload, str(error), attempt.attempts)
    reject_past_retention(parsed, chunk.stamp)
    return _commit(chunk, parsed)


# What parse_chunk raises for a chunk whose data cannot be read at all.
UNREADABLE_CHUNK_ERRORS = (HeaderError, ExpositionError, SeriesError)


def parse_chunk(chunk: Chunk) -> ParsedChunk:
    """The chunk's rows; raises one of ``UNREADABLE_CHUNK_ERRORS`` for an unreadable one.

    A pushed chunk maps Prometheus's ``job`` and ``instance`` labels to GPU labels only when
    ``PUSH_KEEP_JOB_INSTANCE_LABELS`` says so.
    """
    if chunk.format is ChunkFormat.CSV:
        layout = ColumnLayout.from_names(chunk.columns)
        return parse_lines(chunk.data, layout, chunk.first_line)
    if chunk.scraped_at is None:
        raise ExpositionError(f"a chunk of format {chunk.format} needs its scrape or arrival time")
    keep_job_and_instance = settings.PUSH_KEEP_JOB_INSTANCE_LABELS or not chunk.pushed
    if chunk.format is ChunkFormat.REMOTE_WRITE:
        return parse_series(
            chunk.data, received_at=chunk.scraped_at, keep_job_and_instance=keep_job_and_instance
        )
    return parse_page(
        chunk.data,
        scraped_at=chunk.scraped_at,
        openmetrics=chunk.format is ChunkFormat.OPENMETRICS,
        source_times=chunk.stamp is None,
        keep_job_and_instance=keep_job_and_instance,
        first_line=chunk.first_line,
    )


def reject_past_retention(parsed: ParsedChunk, stamp: datetime | None) -> None:
    """Reject rows whose stored time (the chunk's stamp, or their own) is past retention."""
    retention_days = settings.RETENTION_DAYS
    if not retention_days or not len(parsed):
        return
    cutoff = timezone.now() - timedelta(days=retention_days)
    reason = retention_reason(retention_days)
    if stamp is not None:
        if stamp < cutoff:
            parsed.reject_rows(lambda _row: True, reason)
        return
    expired = {at for at, timestamp in enumerate(parsed.times) if timestamp < cutoff}
    if expired:
        time_of_row = parsed.time_of_row
        parsed.reject_rows(lambda row: time_of_row[row] in expired, reason)


def sample_batch(
    parsed: ParsedChunk,
    gpu_ids: Mapping[DeviceKey, int],
    metric_ids: Mapping[str, int],
    workload_ids: Mapping[WorkloadKey, int],
    stamp: datetime | None,
) -> SampleBatch:
    """The parsed rows with names resolved to ids, stored at ``stamp`` when there is one."""
    series = []
    for gpu in parsed.gpus:
        key = dimensions.workload_key(gpu)
        series.append((gpu_ids[gpu.device_key], None if key is None else workload_ids[key]))
    if stamp is None:
        timestamps, time_of_row = parsed.times, parsed.time_of_row
    else:  # processing-time mode: every row is stored with the chunk's stamp
        timestamps, time_of_row = [stamp], [0] * len(parsed)
    return SampleBatch(
        series,
        [metric_ids[name] for name in parsed.metrics],
        timestamps,
        parsed.gpu_of_row,
        parsed.metric_of_row,
        time_of_row,
        parsed.values,
    )


def _commit(chunk: Chunk, parsed: ParsedChunk) -> CollectResult:
    batch = sample_batch(
        parsed,
        dimensions.gpu_ids(parsed.gpus),
        dimensions.metric_ids(parsed.metrics, parsed.metric_docs),
        dimensions.workload_ids(dimensions.workload_keys(parsed.gpus)),
        chunk.stamp,
    )
    used_times = set(batch.time_of_row)
    partitions.ensure_partitions({batch.timestamps[at].astimezone(UTC).date() for at in used_times})
    rejected = parsed.rejected
    rows = len(batch.values)
    label = counters.source_label(chunk.source_id, pushed=chunk.pushed)
    try:
        with transaction.atomic():
            if not claim_ledger(chunk.chunk_id, chunk.source_id, rows=rows, rejected=len(rejected)):
                raise _AlreadyCommittedError
            _forget_pushed(chunk)
            write_samples(batch)
            faults.failure_point(faults.COLLECTOR_MID_COMMIT)
            RejectedRow.objects.bulk_create(
                [
                    RejectedRow(
                        source_id=chunk.source_id,
                        chunk_id=chunk.chunk_id,
                        line_number=line.line_number,
                        raw_line=line.raw,
                        reason=line.reason,
                    )
                    for line in rejected
                ],
                batch_size=500,
            )
            counters.add_gpu_samples(batch)
            read_model.record_latest(batch)
            additions = Counter(
                {
                    Tally.metric_key(batch.metric_ids[at]): count
                    for at, count in Counter(batch.metric_of_row).items()
                }
            )
            additions[Tally.REJECTED] += len(rejected)
            for line in rejected:
                additions[Tally.rejected_reason_key(reason_category(line.reason))] += 1
            additions[Tally.source_key(label, Tally.SourceCounter.ROWS_COMMITTED)] += rows
            additions[Tally.source_key(label, Tally.SourceCounter.ROWS_REJECTED)] += len(rejected)
            additions[Tally.source_key(label, Tally.SourceCounter.CHUNKS_COMMITTED)] += 1
            if not chunk.pushed:  # a push counts its own once per body, when it is received
                ignored = Tally.source_key(label, Tally.SourceCounter.IGNORED_SAMPLES)
                additions[ignored] += parsed.skipped
            counters.add_tallies(additions, stripe=counters.stripe_for(chunk.chunk_id))
            ChunkAttempt.objects.filter(pk=chunk.chunk_id).delete()
    except _AlreadyCommittedError:
        return _skip_duplicate(chunk)
    return CollectResult(chunk.chunk_id, "committed", rows, len(rejected))


def _skip_duplicate(chunk: Chunk) -> CollectResult:
    """Count a delivery of a chunk the ledger already holds, which writes nothing else but the
    deletion of a pushed chunk's stored copy (a client's retry may store it again after the
    first copy was committed; left, the re-publisher would delete it later).

    The count is its own small statement, committed after the duplicate is recognised and
    without waiting for the disk: a worker killed in between, or a database crash losing the
    unflushed commit, misses one. That is fine for what it is, a diagnostic of redelivery;
    holding the count to the ledger's standard would cost every duplicate a flush.
    """
    with _unflushed_transaction():
        _forget_pushed(chunk)
        label = counters.source_label(chunk.source_id, pushed=chunk.pushed)
        _count_one(label, chunk.chunk_id, Tally.SourceCounter.DUPLICATE_DELIVERIES)
    return CollectResult(chunk.chunk_id, "duplicate")


def _forget_pushed(chunk: Chunk) -> None:
    """Delete a pushed chunk's stored copy: committed, it needs no re-publishing."""
    if chunk.pushed:
        PushChunk.objects.filter(pk=chunk.chunk_id).delete()


def _count_one(source_label: str, chunk_id: str, counter: Tally.SourceCounter) -> None:
    key = Tally.source_key(source_label, counter)
    counters.add_tallies({key: 1}, stripe=counters.stripe_for(chunk_id))


@contextmanager
def _unflushed_transaction() -> Iterator[None]:
    """A transaction whose commit does not wait for the disk, for counts that may lose one."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield


def claim_ledger(
    chunk_id: str, source_id: int | None, *, rows: int, rejected: int, dead_lettered: bool = False
) -> bool:
    """Insert the chunk's ledger row; False when a previous delivery already did."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingest_ingestedchunk "
            "(chunk_id, source_id, committed_at, rows_committed, rows_rejected, dead_lettered) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (chunk_id) DO NOTHING",
            [chunk_id, source_id, timezone.now(), rows, rejected, dead_lettered],
        )
        return bool(cursor.rowcount == 1)


@dataclass(frozen=True, slots=True)
class Attempt:
    attempts: int
    last_error: str


def count_attempt(chunk_id: str, *, settling: int = 0) -> Attempt:
    """Count one more delivery of ``chunk_id`` that started processing, committed at once,
    giving back ``settling`` counts earlier deliveries took for outages (never below one).

    The commit does not wait for the disk: a count lost with a crash of the database server
    only delays a dead letter by one delivery (or, with a settling lost beside it, lets a
    later delivery give back one count too many), and waiting would cost every chunk a flush.
    """
    with _unflushed_transaction(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingest_chunkattempt (chunk_id, attempts, last_error, updated_at) "
            "VALUES (%s, 1, '', %s) ON CONFLICT (chunk_id) DO UPDATE SET attempts = CASE "
            "WHEN ingest_chunkattempt.attempts > %s THEN ingest_chunkattempt.attempts + 1 - %s "
            "ELSE 1 END, updated_at = excluded.updated_at "
            "RETURNING attempts, last_error",
            [chunk_id, timezone.now(), settling, settling],
        )
        attempts, last_error = cursor.fetchone()
    return Attempt(attempts, last_error)


def record_failure(payload: object, error: BaseException) -> None:
    """Keep the reason a chunk failed, for the dead letter it may become."""
    chunk_id = payload.get("id") if isinstance(payload, dict) else None
    if isinstance(chunk_id, str):
        ChunkAttempt.objects.filter(pk=chunk_id).update(
            last_error=f"{type(error).__name__}: {error}"[:2000]
        )


def dead_letter_chunk(chunk: Chunk, payload: object, reason: str, attempts: int) -> CollectResult:
    """Store the chunk whole and mark it done in the ledger, so it is not re-published."""
    label = counters.source_label(chunk.source_id, pushed=chunk.pushed)
    try:
        with transaction.atomic():
            if not claim_ledger(
                chunk.chunk_id, chunk.source_id, rows=0, rejected=0, dead_lettered=True
            ):
                raise _AlreadyCommittedError
            _forget_pushed(chunk)
            DeadLetter.objects.create(
                chunk_id=chunk.chunk_id,
                source_id=chunk.source_id,
                payload=_pack(payload),
                reason=reason,
                attempts=attempts,
            )
            ChunkAttempt.objects.filter(pk=chunk.chunk_id).delete()
            _count_one(label, chunk.chunk_id, Tally.SourceCounter.DEAD_LETTERS)
    except _AlreadyCommittedError:
        return _skip_duplicate(chunk)
    logger.warning("chunk %s dead-lettered: %s", chunk.chunk_id, reason)
    return CollectResult(chunk.chunk_id, "dead-letter")


def dead_letter_payload(
    payload: object, reason: str, *, chunk_id: str, source_id: int | None
) -> CollectResult:
    with transaction.atomic():
        DeadLetter.objects.create(
            chunk_id=chunk_id, source_id=source_id, payload=_pack(payload), reason=reason
        )
        _count_one(counters.source_label(source_id), chunk_id, Tally.SourceCounter.DEAD_LETTERS)
    logger.warning("unreadable collect message dead-lettered: %s", reason)
    return CollectResult(chunk_id or "?", "dead-letter")


def _pack(payload: object) -> bytes:
    return bytes(msgpack.packb(payload, default=repr, use_bin_type=True))
