"""Counter increases per time bucket (``fn=delta`` and ``fn=rate``), computed in the database.

Each sample in the range is paired with the previous sample of the same device and metric
(``LAG`` over the samples ordered by time); its increment is the difference, or, when the
counter went down, its whole value: a decrease is a reset (a restarted exporter or driver), and
the counter counted up from 0 since. The first sample of a series in the range has nothing
before it in the range and adds nothing. A bucket's delta is the sum of its samples'
increments, its rate that sum per second of the bucket's width; both are never negative.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

from django.db import connection
from django.db.models import F, QuerySet, Window
from django.db.models.functions import Lag

from api.buckets import TimeBucket
from ingest.models import Sample

FUNCTIONS: Final = ("delta", "rate")

# The ORM cannot aggregate over a window, so the windowed samples are a subquery; only its SQL,
# which the ORM compiled with placeholders, is formatted in.
_PER_BUCKET: Final = (
    "SELECT metric_id, bucket_start, COUNT(*), AVG(value), MIN(value), MAX(value), "
    "COALESCE(SUM(CASE WHEN previous IS NULL THEN 0 WHEN value >= previous "
    "THEN value - previous ELSE value END), 0) "
    "FROM ({samples}) AS windowed GROUP BY metric_id, bucket_start"
)


def increase_rows(
    samples: QuerySet[Sample], bucket: timedelta, fn: str
) -> list[tuple[int, Any, int, float, float, float, float]]:
    """(metric id, bucket start, count, avg, min, max, delta or rate) per metric and bucket."""
    windowed = samples.annotate(
        bucket_start=TimeBucket("timestamp", bucket),
        previous=Window(
            Lag("value"),
            partition_by=[F("gpu_id"), F("metric_id")],
            order_by=[F("timestamp").asc(), F("id").asc()],
        ),
    ).values_list("metric_id", "bucket_start", "value", "previous")
    sql, parameters = windowed.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(_PER_BUCKET.format(samples=sql), parameters)
        rows = cursor.fetchall()
    # Bucket starts arrive as the database's values (text on SQLite): converted as the ORM
    # converts them.
    bucket_start = windowed.query.annotations["bucket_start"]
    converters = connection.ops.get_db_converters(bucket_start) + bucket_start.get_db_converters(
        connection
    )
    seconds = bucket.total_seconds()
    result = []
    for metric_id, start, count, avg, low, high, delta in rows:
        for converter in converters:
            start = converter(start, bucket_start, connection)
        result.append(
            (metric_id, start, count, avg, low, high, delta / seconds if fn == "rate" else delta)
        )
    return result
