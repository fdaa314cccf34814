"""Remove per-sample keys from the labels of GPUs stored before they were left out.

A GPU's labels were parsed whole from the first row seen, so they held that row's metric
name (``__name__``) and, where an export attributes workloads, that row's pod. The keys are
listed here as they stood when this migration was written (``ingest.dcgm.PER_SAMPLE_LABELS``
may grow later without changing what this step did).
"""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

PER_SAMPLE_LABELS = (
    "__name__",
    "container",
    "pod",
    "namespace",
    "exported_container",
    "exported_pod",
    "exported_namespace",
)


def drop_per_sample_labels(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    gpu_model = apps.get_model("ingest", "Gpu")
    affected = gpu_model.objects.filter(labels__has_any_keys=PER_SAMPLE_LABELS).only("labels")
    changed = []
    for gpu in affected.iterator(chunk_size=1000):
        gpu.labels = {k: v for k, v in gpu.labels.items() if k not in PER_SAMPLE_LABELS}
        changed.append(gpu)
    gpu_model.objects.bulk_update(changed, ["labels"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [("ingest", "0004_counter_table_fillfactor")]

    # The removed values were one row's, never the GPU's: there is nothing to restore.
    operations = [migrations.RunPython(drop_per_sample_labels, migrations.RunPython.noop)]
