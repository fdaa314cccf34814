from django.apps import AppConfig


class IngestConfig(AppConfig):
    """Models, parsing and the stream/collect tasks of the pipeline."""

    name = "ingest"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from ingest import signals  # noqa: F401  (connects the schedule sync)
