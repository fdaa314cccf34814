"""``manage.py explain_api`` (``make explain-api``): every API query's plan on millions of rows."""

from bench import query_plans
from bench.measurement import MeasurementCommand


class Command(MeasurementCommand):
    help = (
        "Fill a separate PostgreSQL database with at least --rows samples, then EXPLAIN ANALYZE "
        "every API query that reads samples (fails on a sequential scan) and time each endpoint."
    )
    measurement = query_plans.MEASUREMENT
