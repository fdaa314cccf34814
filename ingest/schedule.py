"""Keeps each stream source's beat entry (django-celery-beat) in step with the source.

Beat runs with the database scheduler, so a saved change applies without restarting beat.
"""

from __future__ import annotations

import json

from django_celery_beat.models import IntervalSchedule, PeriodicTask

from ingest.models import StreamSource
from telemetry_project.routing import DISPATCH_SCRAPES_TASK, STREAM_QUEUE, STREAM_TASK

SLOT_DISPATCH_ENTRY = "dispatch scrape slots"


def periodic_task_name(source: StreamSource) -> str:
    return f"stream source {source.name}"


def sync_schedule(source: StreamSource) -> PeriodicTask | None:
    """Create or update the source's periodic stream tick, routed to its site's queue.

    The tick expires after one interval, so ticks do not pile up while streamers are down.
    A scrape source has none: the one entry that dispatches slots serves it (``ingest.slots``).
    """
    if source.kind == StreamSource.Kind.SCRAPE:
        remove_schedule(source)
        ensure_slot_dispatch()
        return None
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=source.interval_seconds, period=IntervalSchedule.SECONDS
    )
    task, _ = PeriodicTask.objects.update_or_create(
        name=periodic_task_name(source),
        defaults={
            "task": STREAM_TASK,
            "interval": interval,
            "args": json.dumps([source.pk]),
            "queue": source.stream_queue,
            "routing_key": source.stream_queue,
            "exchange": "",
            "expire_seconds": source.interval_seconds,
            "enabled": source.enabled and source.scheduled,
        },
    )
    return task


def remove_schedule(source: StreamSource) -> None:
    PeriodicTask.objects.filter(name=periodic_task_name(source)).delete()


def ensure_slot_dispatch() -> PeriodicTask:
    """The one beat entry that dispatches every scrape source's due slots, every second (a
    slot is then sent at most about a second after it starts), made with the first scrape
    source. Left as it is when it exists, so beat does not reload its schedule at every save,
    and an admin may pause it."""
    interval, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    task, _ = PeriodicTask.objects.get_or_create(
        name=SLOT_DISPATCH_ENTRY,
        defaults={
            "task": DISPATCH_SCRAPES_TASK,
            "interval": interval,
            "queue": STREAM_QUEUE,
            "routing_key": STREAM_QUEUE,
            "exchange": "",
            "expire_seconds": 1,
        },
    )
    return task
