"""The fleet view's device query: one SQL text for PostgreSQL and SQLite, but for how it reads
a time.

The ORM can only group the join of the devices to their read-model rows, which sorts and
groups one row per value; aggregating the read model first, in a derived table of the
filtered devices, and joining one row per device to it costs about half the SQL time
(docs/measurements.md, "The fleet view"). The values come back pivoted, a value and a time
column per metric asked for (``max(...) FILTER``, over the one read-model row a device has of
each metric): plain columns rather than an array or a JSON document per device, whose
building was most of the query's time on PostgreSQL and whose decoding most of the driver's.
Every filter value and metric id is a bound parameter; only fixed clauses and placeholders
are formatted in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from django.db import connection

# The devices with telemetry, the filters asked for and their newest workload. A filtered
# fleet restricts the read model to its devices ({devices_only}); the whole fleet is all of
# it, and the restriction would be a join for nothing (a fifth of the query's time).
_DEVICES: Final = """
WITH device AS (
    SELECT g.id, g.uuid, g.gpu_instance_id, g.gpu_instance_profile, g.hostname, g.gpu_index,
           g.model_name, g.last_seen, g.workload_id, w.namespace, w.pod, w.container
    FROM ingest_gpu AS g LEFT JOIN ingest_workload AS w ON w.id = g.workload_id
    WHERE g.sample_count > 0 {filters}
)
SELECT d.uuid, d.gpu_instance_id, d.gpu_instance_profile, d.hostname, d.gpu_index,
       d.model_name, d.last_seen, d.workload_id, d.namespace, d.pod, d.container{columns}
FROM device AS d LEFT JOIN (
    SELECT v.gpu_id{pivot}
    FROM ingest_latestvalue AS v
    WHERE v.metric_id IN ({metric_ids}){devices_only}
    GROUP BY v.gpu_id
) AS n ON n.gpu_id = d.id
ORDER BY d.hostname, d.gpu_index, d.gpu_instance_id NULLS FIRST, d.id
"""
# A metric's value and time among a device's read-model rows, of which there is one a metric.
_PIVOT: Final = ", max(v.value) FILTER (WHERE v.metric_id = %s) AS value_{at}, {time} AS time_{at}"
# A value's time as text: psycopg2 makes a datetime of each timestamp it reads, with a call
# into Django for its zone, and most of a fleet's values share a few times; as text each
# is a plain string, parsed once per distinct time by the caller. ``to_json`` writes ISO 8601
# whatever the server's DateStyle (quoted, as a JSON string). SQLite hands an aggregate's
# time back as the text it holds anyway.
_TIME_AS_TEXT: Final = {
    "postgresql": 'to_json(max(v."timestamp") FILTER (WHERE v.metric_id = %s))::text',
    "sqlite": 'max(v."timestamp") FILTER (WHERE v.metric_id = %s)',
}
# The filters the view takes, each an exact match on a column of the device CTE.
_FILTER_COLUMNS: Final = {
    "hostname": "g.hostname",
    "model": "g.model_name",
    "namespace": "w.namespace",
}
_DEVICE_COLUMNS: Final = 11


class DeviceRow(NamedTuple):
    """A device of the fleet with its read-model values of the metrics asked for."""

    uuid: str
    gpu_instance_id: int | None
    gpu_instance_profile: str
    hostname: str
    gpu_index: int
    model_name: str
    last_seen: datetime | None
    workload_id: int | None
    namespace: str | None
    pod: str | None
    container: str | None
    # The newest value and its time of each metric asked for, in the order asked; None in
    # both where the device has none. Times are ISO 8601 text (``_TIME_AS_TEXT``).
    values: tuple[float | None, ...]
    times: tuple[str | None, ...]


def device_rows(params: Mapping[str, Any], metric_ids: Sequence[int]) -> Iterator[DeviceRow]:
    """The fleet's devices in the API's order (hostname, gpu_index, a GPU before its MIG
    instances), filtered by ``params``, each with its newest values of ``metric_ids``."""
    filters = [(column, params[name]) for name, column in _FILTER_COLUMNS.items() if name in params]
    # An empty IN () is not SQL; NULL matches no metric.
    wanted: list[int | None] = list(metric_ids) or [None]
    sql = _DEVICES.format(
        filters="".join(f"AND {column} = %s " for column, _ in filters),
        columns="".join(f", n.value_{at}, n.time_{at}" for at in range(len(metric_ids))),
        pivot="".join(
            _PIVOT.format(at=at, time=_TIME_AS_TEXT[connection.vendor])
            for at in range(len(metric_ids))
        ),
        metric_ids=", ".join(["%s"] * len(wanted)),
        devices_only=" AND v.gpu_id IN (SELECT id FROM device)" if filters else "",
    )
    pivot_ids = [metric_id for metric_id in metric_ids for _ in range(2)]
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for _, value in filters] + pivot_ids + wanted)
        rows = cursor.fetchall()
    sqlite = connection.vendor == "sqlite"
    for row in rows:
        device = row[:_DEVICE_COLUMNS]
        if sqlite:
            device = (*device[:6], _sqlite_time(device[6]), *device[7:])
        # The value and time columns alternate after the device's.
        yield DeviceRow._make((*device, row[_DEVICE_COLUMNS::2], row[_DEVICE_COLUMNS + 1 :: 2]))


def _sqlite_time(moment: datetime | None) -> datetime | None:
    """A datetime column as SQLite's driver reads it back (Django's converter): naive, in UTC."""
    return None if moment is None else moment.replace(tzinfo=UTC)
