"""The sample table keeps one B-tree, a BRIN index on time, and ids taken a chunk at a time.

On PostgreSQL:

- the primary key becomes ``(gpu_id, timestamp, id)``, the one B-tree every query that names a
  GPU reads, and the index ``(gpu_id, timestamp)`` and the key ``(id, timestamp)`` go: one
  B-tree insert per row written instead of two (docs/sample-indexes.md);
- a BRIN index on ``(timestamp, id)`` serves what needs no GPU: the admin's list of a time
  range and a sample's page found by its id. It summarises each new range of pages as the next
  one starts (``autosummarize``), so the summaries keep up between vacuums;
- ids come from ``ingest_sample_chunk_seq``, one value per chunk written (``ingest.sample_ids``):
  it starts above every id the table holds, and the column's default takes a whole serial.

Every statement on the partitioned parent applies to each of its partitions. Building the new
key reads the whole table under an exclusive lock (the old key goes first, so the new one is
not built beside it): on a large database, plan the migration for a quiet time. On SQLite the
index ``(gpu_id, timestamp)`` is replaced by ``(gpu_id, timestamp, id)``, the same entries
(SQLite keeps the row id in every index) under the name the model gives it; its ids stay the
database's own.
"""

from django.core.validators import MaxValueValidator
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

# ingest.sample_ids.MAX_CHUNK_ROWS when this was written, as the SQL below spells it too.
ROWS_PER_SERIAL = 65_536

FORWARD_POSTGRESQL = """
CREATE SEQUENCE ingest_sample_chunk_seq AS bigint OWNED BY ingest_sample.id;
SELECT setval('ingest_sample_chunk_seq', COALESCE(max(id), 0) / 65536 + 1, false)
FROM ingest_sample;
ALTER TABLE ingest_sample
    ALTER COLUMN id SET DEFAULT nextval('ingest_sample_chunk_seq') * 65536;
DROP SEQUENCE ingest_sample_id_seq CASCADE;
DROP INDEX ingest_sample_gpu_time;
ALTER TABLE ingest_sample DROP CONSTRAINT ingest_sample_pkey;
ALTER TABLE ingest_sample
    ADD CONSTRAINT ingest_sample_gpu_time_id PRIMARY KEY (gpu_id, "timestamp", id);
CREATE INDEX ingest_sample_time_id_brin ON ingest_sample USING brin ("timestamp", id)
    WITH (autosummarize = on);
"""
BACKWARD_POSTGRESQL = """
DROP INDEX ingest_sample_time_id_brin;
ALTER TABLE ingest_sample DROP CONSTRAINT ingest_sample_gpu_time_id;
ALTER TABLE ingest_sample ADD CONSTRAINT ingest_sample_pkey PRIMARY KEY (id, "timestamp");
CREATE INDEX ingest_sample_gpu_time ON ingest_sample (gpu_id, "timestamp");
CREATE SEQUENCE ingest_sample_id_seq AS bigint OWNED BY ingest_sample.id;
SELECT setval('ingest_sample_id_seq', COALESCE(max(id), 0) + 1, false) FROM ingest_sample;
ALTER TABLE ingest_sample ALTER COLUMN id SET DEFAULT nextval('ingest_sample_id_seq');
DROP SEQUENCE ingest_sample_chunk_seq;
"""
FORWARD_SQLITE = """
DROP INDEX ingest_sample_gpu_time;
CREATE INDEX ingest_sample_gpu_time_id ON ingest_sample (gpu_id, "timestamp", id);
"""
BACKWARD_SQLITE = """
DROP INDEX ingest_sample_gpu_time_id;
CREATE INDEX ingest_sample_gpu_time ON ingest_sample (gpu_id, "timestamp");
"""


def forward(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    postgresql = schema_editor.connection.vendor == "postgresql"
    _execute(schema_editor, FORWARD_POSTGRESQL if postgresql else FORWARD_SQLITE)


def backward(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    postgresql = schema_editor.connection.vendor == "postgresql"
    _execute(schema_editor, BACKWARD_POSTGRESQL if postgresql else BACKWARD_SQLITE)


def _execute(schema_editor: BaseDatabaseSchemaEditor, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0013_latest_values_read_model"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="sample", name="ingest_sample_gpu_time"),
                migrations.AddIndex(
                    model_name="sample",
                    index=models.Index(
                        fields=["gpu", "timestamp", "id"], name="ingest_sample_gpu_time_id"
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forward, backward)],
        ),
        migrations.AlterField(
            model_name="streamsource",
            name="batch_size",
            field=models.PositiveIntegerField(
                default=1000,
                help_text="Rows per chunk, at most 65,536.",
                validators=[MaxValueValidator(ROWS_PER_SERIAL)],
            ),
        ),
    ]
