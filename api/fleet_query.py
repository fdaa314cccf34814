"""The fleet view's device query, in SQL written per database: PostgreSQL and SQLite.

The ORM can only group the join of the devices to their read-model rows, which sorts and
groups one row per value; aggregating the read model first, in a derived table of the
filtered devices, and joining one row per device to it costs about half the SQL time
(docs/measurements.md, "The fleet view"). On PostgreSQL each device's values come back as
three arrays (metric ids, times, values), which the driver parses natively, rather than one
JSON document per device to decode in Python. SQLite has no arrays, so there they are three
JSON arrays. Every filter value and metric id is a bound parameter; only fixed clauses are
chosen between.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from django.db import connection

# The devices with telemetry, the filters asked for and their newest workload; materialised
# once, then read twice: to restrict the read model to them and to be joined to it.
_DEVICES: Final = """
WITH device AS (
    SELECT g.id, g.uuid, g.gpu_instance_id, g.gpu_instance_profile, g.hostname, g.gpu_index,
           g.model_name, g.last_seen, g.workload_id, w.namespace, w.pod, w.container
    FROM ingest_gpu AS g LEFT JOIN ingest_workload AS w ON w.id = g.workload_id
    WHERE g.sample_count > 0 {filters}
),
newest AS (
    SELECT v.gpu_id, {aggregates}
    FROM ingest_latestvalue AS v
    WHERE v.gpu_id IN (SELECT id FROM device) AND v.metric_id IN ({metric_ids})
    GROUP BY v.gpu_id
)
SELECT d.uuid, d.gpu_instance_id, d.gpu_instance_profile, d.hostname, d.gpu_index,
       d.model_name, d.last_seen, d.workload_id, d.namespace, d.pod, d.container,
       n.metric_ids, n.times, n.metric_values
FROM device AS d LEFT JOIN newest AS n ON n.gpu_id = d.id
ORDER BY d.hostname, d.gpu_index, d.gpu_instance_id NULLS FIRST, d.id
"""
_AGGREGATES: Final = {
    "postgresql": 'array_agg(v.metric_id) AS metric_ids, array_agg(v."timestamp") AS times, '
    "array_agg(v.value) AS metric_values",
    "sqlite": 'json_group_array(v.metric_id) AS metric_ids, json_group_array(v."timestamp") '
    "AS times, json_group_array(v.value) AS metric_values",
}
# The filters the view takes, each an exact match on a column of the device CTE.
_FILTER_COLUMNS: Final = {
    "hostname": "g.hostname",
    "model": "g.model_name",
    "namespace": "w.namespace",
}


class DeviceRow(NamedTuple):
    """A device of the fleet with its read-model values of the metrics asked for: the three
    lists are parallel, empty when it has none."""

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
    metric_ids: list[int]
    # datetimes from PostgreSQL; on SQLite the text the column holds (UTC, no offset).
    times: list[datetime] | list[str]
    values: list[float]


def device_rows(params: Mapping[str, Any], metric_ids: list[int]) -> Iterator[DeviceRow]:
    """The fleet's devices in the API's order (hostname, gpu_index, a GPU before its MIG
    instances), filtered by ``params``, each with its newest values of ``metric_ids``."""
    vendor = connection.vendor
    filters = [(column, params[name]) for name, column in _FILTER_COLUMNS.items() if name in params]
    # An empty IN () is not SQL; NULL matches no metric.
    wanted: list[int | None] = list(metric_ids) or [None]
    # Only fixed column names and placeholders are formatted in; every value is bound.
    sql = _DEVICES.format(
        filters="".join(f"AND {column} = %s " for column, _ in filters),
        aggregates=_AGGREGATES[vendor],
        metric_ids=", ".join(["%s"] * len(wanted)),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for _, value in filters] + wanted)
        rows = cursor.fetchall()
    if vendor == "postgresql":
        for *device, ids, times, values in rows:
            yield DeviceRow._make((*device, ids or [], times or [], values or []))
    else:
        for *device, last_seen, workload_id, namespace, pod, container, ids, times, values in rows:
            yield DeviceRow._make(
                (
                    *device,
                    _sqlite_time(last_seen),
                    workload_id,
                    namespace,
                    pod,
                    container,
                    json.loads(ids) if ids else [],
                    json.loads(times) if times else [],
                    # A JSON number reads back as an int when it has no fraction (0 for 0.0).
                    [float(value) for value in json.loads(values)] if values else [],
                )
            )


def _sqlite_time(moment: datetime | None) -> datetime | None:
    """A datetime column as SQLite's driver reads it back (Django's converter): naive, in UTC."""
    return None if moment is None else moment.replace(tzinfo=UTC)
