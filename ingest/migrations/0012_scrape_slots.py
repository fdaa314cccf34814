"""Scrape sources: each one's newest dispatched slot (``ingest.slots``); the page a slot
recorded is kept in the outstanding chunk's ``payload`` (migration 0011)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0011_follow_file_identity_and_kept_messages"),
    ]

    operations = [
        migrations.AddField(
            model_name="streamsource",
            name="last_slot_ms",
            field=models.BigIntegerField(blank=True, editable=False, null=True),
        ),
    ]
