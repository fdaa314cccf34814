from django.apps import AppConfig, apps


class IngestConfig(AppConfig):
    """Models, parsing and the stream/collect tasks of the pipeline."""

    name = "ingest"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from ingest import signals, worker_memory  # noqa: F401  (they connect signals)


def ingest_tables() -> list[str]:
    """Every table of the app, for TRUNCATE (the sample table's partitions go with it)."""
    return [model._meta.db_table for model in apps.get_app_config("ingest").get_models()]
