"""``manage.py bench_fleet`` (``make bench-fleet``): p50/p99 of /api/v1/fleet/latest."""

from bench import fleet_latency
from bench.measurement import MeasurementCommand


class Command(MeasurementCommand):
    help = (
        "Fill a separate PostgreSQL database with a fleet of 2,000 GPUs x 10 metrics through "
        "the collector (--rows samples, 60,000 by default), then time /api/v1/fleet/latest "
        "(p50/p99): the default metrics, all ten, and one host."
    )
    measurement = fleet_latency.MEASUREMENT
