"""Leave room in the counter tables' pages for HOT updates.

Every chunk rewrites the counters of its GPUs and a stripe of tallies. With free space in
the page PostgreSQL updates those rows in place (no index change) and prunes the old
versions as pages are read, so the small tables stay small even where autovacuum lags.
"""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

COUNTER_TABLES = ("ingest_gpu", "ingest_tally")


def set_fillfactor(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for table in COUNTER_TABLES:
            schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = 50)")


def reset_fillfactor(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for table in COUNTER_TABLES:
            schema_editor.execute(f"ALTER TABLE {table} RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("ingest", "0003_verbose_names")]

    operations = [migrations.RunPython(set_fillfactor, reset_fillfactor)]
