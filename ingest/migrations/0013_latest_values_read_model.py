"""The read model of the fleet view: each device's newest value per metric, and its newest
workload (docs/design.md, "Read model").

An existing database gets both from its samples: one pass over the sample table, sorted per
(device, metric), which on a large database takes as long as reading the table once. The
collector keeps them from then on. The table is rewritten by every chunk, so its pages keep
room for in-place (HOT) updates, like the counter tables.
"""

import django.db.models.deletion
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

# ROW_NUMBER rather than DISTINCT ON: the same statements serve PostgreSQL and SQLite.
BACKFILL_LATEST_VALUES = """
INSERT INTO ingest_latestvalue (gpu_id, metric_id, "timestamp", value)
SELECT gpu_id, metric_id, "timestamp", value FROM (
    SELECT gpu_id, metric_id, "timestamp", value, ROW_NUMBER() OVER (
        PARTITION BY gpu_id, metric_id ORDER BY "timestamp" DESC, id DESC
    ) AS newest
    FROM ingest_sample
) AS ranked
WHERE newest = 1
"""
BACKFILL_WORKLOADS = """
UPDATE ingest_gpu SET workload_id = ranked.workload_id, workload_seen_at = ranked."timestamp"
FROM (
    SELECT gpu_id, workload_id, "timestamp", ROW_NUMBER() OVER (
        PARTITION BY gpu_id ORDER BY "timestamp" DESC, id DESC
    ) AS newest
    FROM ingest_sample WHERE workload_id IS NOT NULL
) AS ranked
WHERE ranked.gpu_id = ingest_gpu.id AND ranked.newest = 1
"""


def backfill(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE ingest_latestvalue SET (fillfactor = 50)")
    schema_editor.execute(BACKFILL_LATEST_VALUES)
    schema_editor.execute(BACKFILL_WORKLOADS)


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0012_scrape_slots"),
    ]

    operations = [
        migrations.AddField(
            model_name="gpu",
            name="workload",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="ingest.workload",
            ),
        ),
        migrations.AddField(
            model_name="gpu",
            name="workload_seen_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name="LatestValue",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("timestamp", models.DateTimeField()),
                ("value", models.FloatField()),
                (
                    "gpu",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="latest_values",
                        to="ingest.gpu",
                    ),
                ),
                (
                    "metric",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="ingest.metric",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("gpu", "metric"), name="ingest_latest_gpu_metric"
                    )
                ],
            },
        ),
        # Reversing drops the table and the columns; the backfill has nothing to undo.
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
