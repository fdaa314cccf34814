"""``manage.py bench_api`` (``make bench-api``): p50/p99 of the main API endpoints."""

from bench import api_latency
from bench.measurement import MeasurementCommand


class Command(MeasurementCommand):
    help = (
        "Fill a separate PostgreSQL database with at least --rows samples (10,000,000 by "
        "default), then time telemetry, aggregate, latest, gpus and stats (p50/p99)."
    )
    measurement = api_latency.MEASUREMENT
