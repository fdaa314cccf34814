"""Keeps each stream source's beat entry (django-celery-beat) in step with the source.

Beat runs with the database scheduler, so a saved change applies without restarting beat.
"""

from __future__ import annotations

import json

from django_celery_beat.models import IntervalSchedule, PeriodicTask

from ingest.models import StreamSource
from telemetry_project.routing import STREAM_TASK


def periodic_task_name(source: StreamSource) -> str:
    return f"stream source {source.name}"


def sync_schedule(source: StreamSource) -> PeriodicTask:
    """Create or update the source's periodic stream tick, routed to its site's queue.

    The tick expires after one interval, so ticks do not pile up while streamers are down.
    """
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
