from django.apps import AppConfig
from django.core.signals import request_finished, request_started

from api.request_gc import PACED_COLLECTOR


class ApiConfig(AppConfig):
    """The read-only REST API over the telemetry in the database."""

    name = "api"
    verbose_name = "API"

    def ready(self) -> None:
        # Every request the process serves (the admin's and the dashboard's too).
        request_started.connect(PACED_COLLECTOR.collect, dispatch_uid="api.request_gc.collect")
        request_finished.connect(PACED_COLLECTOR.freeze_once, dispatch_uid="api.request_gc.freeze")
