"""Model signals: a stream source's beat entry follows every save and delete."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from ingest.models import StreamSource
from ingest.schedule import remove_schedule, sync_schedule


@receiver(post_save, sender=StreamSource)
def _source_saved(sender: type[StreamSource], instance: StreamSource, **kwargs: Any) -> None:
    sync_schedule(instance)


@receiver(post_delete, sender=StreamSource)
def _source_deleted(sender: type[StreamSource], instance: StreamSource, **kwargs: Any) -> None:
    remove_schedule(instance)
