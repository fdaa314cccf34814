from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The read-only REST API over the telemetry in the database."""

    name = "api"
    verbose_name = "API"
