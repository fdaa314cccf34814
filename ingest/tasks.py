"""The pipeline's Celery tasks: stream ticks (streamers) and chunk commits (collectors).

Both are idempotent, which is what makes ``acks_late`` safe: a stream tick works from the
cursor in the database, and a collect task from the ledger. Arguments are plain data. Names
and queues come from ``telemetry_project.routing``; each task bounds its own database work
(``ingest.bounds``), since Celery's time limits do not apply in the solo pool. docs/design.md,
"Tasks and queues" and "Bounds on every task".
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import Any

import kombu.exceptions
import redis.exceptions
from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections
from django.utils import timezone

from ingest import collector, partitions, push, retention, scraper, slots, streamer
from ingest.bounds import bounded_database_work
from telemetry_project.routing import (
    COLLECT_TASK,
    DISPATCH_SCRAPES_TASK,
    MAINTAIN_PARTITIONS_TASK,
    REPUBLISH_PUSHES_TASK,
    SCRAPE_TASK,
    STREAM_TASK,
)

logger = logging.getLogger(__name__)

# Failures of the infrastructure, not of the chunk: retried without limit (with backoff), and
# never counted towards dead-lettering (a count taken before the outage is given back, see
# ``collector.Delivery``). The streamer re-publishing is the last line behind.
INFRASTRUCTURE_ERRORS = (
    OperationalError,
    InterfaceError,
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


def backoff_seconds(retries: int) -> float:
    """Capped exponential backoff with jitter, so recovering collectors do not stampede."""
    cap = settings.RETRY_BACKOFF_MAX_SECONDS
    return float(min(cap, 0.5 * 2**retries) * random.uniform(0.5, 1.0))  # noqa: S311 (jitter only)


@shared_task(name=STREAM_TASK, bind=True, acks_late=True, ignore_result=True)
def stream(self: Task[Any, str], source_id: int, shard: int | None = None) -> str:
    """Publish the next chunks of a source (or fan its shards out to other streamers)."""
    try:
        with bounded_database_work(settings.TASK_STATEMENT_TIMEOUT_SECONDS):
            report = streamer.stream_tick(source_id, shard)
    except INFRASTRUCTURE_ERRORS as error:
        close_old_connections()  # a broken connection must not be reused by the next task
        # The next beat tick is the retry: ticks are periodic and expire, so none is kept.
        logger.warning("stream tick for source %s skipped: %s", source_id, error)
        return f"skipped: {error}"
    logger.info("stream source=%s shard=%s %s", source_id, shard, report)
    return str(report)


@shared_task(
    name=COLLECT_TASK,
    bind=True,
    acks_late=True,
    ignore_result=True,
    max_retries=None,
)
def collect(self: Task[Any, str], payload: object, attempts_owed: int = 0) -> str:
    """Commit one chunk exactly once; retry outages, dead-letter what keeps failing.

    ``attempts_owed`` is set only on retries: attempt counts an earlier delivery took for an
    outage, given back when this delivery counts itself (``collector.Delivery``).
    """
    delivery = collector.Delivery(owed=attempts_owed)
    try:
        with bounded_database_work(settings.TASK_STATEMENT_TIMEOUT_SECONDS):
            result = collector.collect(payload, delivery)
    except INFRASTRUCTURE_ERRORS as error:
        close_old_connections()  # a broken connection must not be reused by the retry
        countdown = backoff_seconds(self.request.retries)
        logger.warning("collect: infrastructure error, retry in %.1fs: %s", countdown, error)
        owed = {"attempts_owed": delivery.owed_after_outage()}
        raise self.retry(exc=error, countdown=countdown, kwargs=owed) from error
    except Exception as error:
        # A failure of this chunk's own making: counted (count_attempt) and retried, until
        # the attempt limit turns the next delivery into a dead letter.
        logger.exception("collect: chunk failed")
        _note_failure(payload, error)
        countdown = backoff_seconds(self.request.retries)
        owed = {"attempts_owed": delivery.owed_after_failure()}
        raise self.retry(exc=error, countdown=countdown, kwargs=owed) from error
    logger.info("collect %s", result)
    return str(result)


def _note_failure(payload: object, error: BaseException) -> None:
    try:
        collector.record_failure(payload, error)
    except INFRASTRUCTURE_ERRORS:
        logger.warning("could not record the failure of a chunk: database unreachable")


@shared_task(name=MAINTAIN_PARTITIONS_TASK, ignore_result=True)
def maintain_partitions() -> str:
    """Make sure partitions cover the coming days; apply retention to samples and to the
    ledger (``ingest.retention``)."""
    with bounded_database_work(settings.TASK_STATEMENT_TIMEOUT_SECONDS):
        return _maintain_partitions()


def _maintain_partitions() -> str:
    now = timezone.now()
    ahead = settings.PARTITIONS_AHEAD_DAYS
    partitions.ensure_partitions(now.date() + timedelta(days=offset) for offset in range(ahead + 1))
    return (
        f"partitions ensured through +{ahead} days; {retention.enforce(now)}; "
        f"{retention.prune_ledger(now)}"
    )


@shared_task(name=REPUBLISH_PUSHES_TASK, ignore_result=True)
def republish_pushes() -> str:
    """Publish again pushed parts no collector has committed (``ingest.push.republish``)."""
    try:
        with bounded_database_work(settings.TASK_STATEMENT_TIMEOUT_SECONDS):
            report = push.republish()
    except INFRASTRUCTURE_ERRORS as error:
        close_old_connections()
        # The next beat tick, seconds away, tries again.
        logger.warning("re-publishing pushed parts skipped: %s", error)
        return f"skipped: {error}"
    if report.republished or report.confirmed:
        logger.info("republish_pushes %s", report)
    return str(report)


@shared_task(name=DISPATCH_SCRAPES_TASK, ignore_result=True)
def dispatch_scrapes() -> str:
    """Send each scrape source's current slot, once (``ingest.slots``); beat, every second."""
    try:
        with bounded_database_work(settings.TASK_STATEMENT_TIMEOUT_SECONDS):
            report = slots.dispatch()
    except INFRASTRUCTURE_ERRORS as error:
        close_old_connections()
        # The next tick, a second away, dispatches the slot then current.
        logger.warning("dispatching scrape slots skipped: %s", error)
        return f"skipped: {error}"
    return str(report)


@shared_task(name=SCRAPE_TASK, acks_late=True, ignore_result=True)
def scrape(source_id: int, slot_ms: int) -> str:
    """Scrape a source for one slot (``ingest.scraper``); idempotent per slot."""
    try:
        with bounded_database_work(settings.TASK_STATEMENT_TIMEOUT_SECONDS):
            report = scraper.scrape_slot(source_id, slot_ms)
    except INFRASTRUCTURE_ERRORS as error:
        close_old_connections()
        # Not retried: a slot is served in its time or is a gap; its page, if recorded, is
        # published again by a later tick.
        logger.warning("scrape of source %s for slot %s skipped: %s", source_id, slot_ms, error)
        return f"skipped: {error}"
    logger.info("scrape source=%s slot=%s %s", source_id, slot_ms, report)
    return str(report)
