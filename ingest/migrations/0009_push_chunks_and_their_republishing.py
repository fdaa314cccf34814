"""Stored parts of pushes (remote write, imports over the API) until a collector commits them,
and the beat task that publishes again those it has not committed after a while."""

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

TASK_NAME = "re-publish pushed parts"
# Often, so a part lost between the web's commit and its publish waits little more than
# REPUBLISH_AFTER_SECONDS; a run that finds nothing to do is one indexed query.
EVERY_SECONDS = 5


def schedule(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = interval_model.objects.get_or_create(every=EVERY_SECONDS, period="seconds")
    task_model.objects.update_or_create(
        name=TASK_NAME,
        defaults={
            "task": "ingest.republish_pushes",
            "interval": interval,
            "queue": "stream",
            "routing_key": "stream",
            "exchange": "",
            "expire_seconds": EVERY_SECONDS,
        },
    )


def unschedule(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0008_outstanding_chunk_recorded_at"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.CreateModel(
            name="PushChunk",
            fields=[
                ("chunk_id", models.CharField(max_length=100, primary_key=True, serialize=False)),
                ("token_id", models.BigIntegerField()),
                ("format", models.CharField(max_length=16)),
                ("payload", models.BinaryField()),
                ("received_at", models.DateTimeField()),
                ("last_published_at", models.DateTimeField(db_index=True)),
                ("publish_count", models.PositiveIntegerField(default=0)),
            ],
            options={
                "ordering": ["last_published_at"],
            },
        ),
        migrations.RunPython(schedule, unschedule),
    ]
