"""``manage.py bench_export`` (``make bench-export``): rows/s and peak RSS of a CSV export."""

from bench import export_throughput
from bench.measurement import MeasurementCommand


class Command(MeasurementCommand):
    help = (
        "Fill a separate PostgreSQL database with at least --rows samples (10,000,000 by "
        "default), then export them all as CSV from a real gunicorn: rows/s, peak worker RSS."
    )
    measurement = export_throughput.MEASUREMENT
