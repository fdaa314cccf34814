"""The tools app: its only Django parts are its management commands."""

from django.apps import AppConfig


class BenchConfig(AppConfig):
    """Generator, benchmarks and sample databases; no models."""

    name = "bench"
