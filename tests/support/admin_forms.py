"""Posting the admin's forms as a logged-in user does."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse


def add_source_in_the_admin(admin_client: Client, location: str, **switches: str) -> str:
    """Post the admin's "add stream source" form for ``location``, with check boxes such as
    ``loop="on"``; the page shown again (a refused source leaves the form on screen with its
    error)."""
    form = {"name": "hostile", "location": location, "site": "default", "batch_size": 500,
            "interval_seconds": 10, "pace": "paced", "timestamp_mode": "processing",
            "shards": 1, "enabled": "on", "scheduled": "on",
            "cursors-TOTAL_FORMS": 0, "cursors-INITIAL_FORMS": 0, **switches}  # fmt: skip
    response = admin_client.post(reverse("admin:ingest_streamsource_add"), form)
    assert response.status_code == 200
    return response.content.decode()
