"""The fleet view: every device with its newest values, read from the read model.

Two queries whatever the fleet's size: the metrics asked for (and the two that decide hot and
idle), then the devices joined to their read-model rows of those metrics and to their newest
workload, never the sample table (docs/design.md, "Read model"). The second
(``api.fleet_query``) gathers each device's values in the database: a row per device rather
than per value is a sixth of the rows to sort, send and decode, which is most of the view's
time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from api.fleet_query import DeviceRow, device_rows
from api.request_gc import collector_paused
from api.serializers import rfc3339
from ingest.devices import device_id
from ingest.fields import field
from ingest.models import Metric

UTILISATION: Final = "DCGM_FI_DEV_GPU_UTIL"
TEMPERATURE: Final = "DCGM_FI_DEV_GPU_TEMP"
DEFAULT_METRICS: Final = (
    UTILISATION,
    TEMPERATURE,
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_FB_USED",
)


def metric_descriptions(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Name -> (id, unit, kind) of each metric named, from the metric table (query 1), else
    the field table for a DCGM field no sample has named yet (id None); unknown names are
    left out."""
    wanted = set(names)
    found: dict[str, dict[str, Any]] = {
        name: {"id": metric_id, "unit": unit, "kind": kind}
        for metric_id, name, unit, kind in Metric.objects.filter(name__in=wanted).values_list(
            "id", "name", "unit", "kind"
        )
    }
    for name in wanted - found.keys():
        known = field(name)
        if known is not None:
            found[name] = {"id": None, "unit": known.unit, "kind": known.kind}
    return found


def encoded_fleet_latest(params: dict[str, Any]) -> orjson.Fragment:
    """The body of GET /api/v1/fleet/latest as JSON, built and encoded with the cycle
    collector paused; a renderer writes the fragment as it is.

    A 2,000-device body is thousands of new containers, none in a cycle: left on, the
    collector runs dozens of times over them, and those still held when it runs are promoted
    until they set off a full pass over the whole process's heap, 30 to 60 ms, every few
    requests: most of the view's p99 (docs/measurements.md, "The fleet view"). Encoded inside
    the pause, the body is freed before the collector is back."""
    with collector_paused():
        return orjson.Fragment(orjson.dumps(fleet_latest(params)))


def fleet_latest(params: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The body of GET /api/v1/fleet/latest; raises ``ValidationError`` naming an unknown
    metric."""
    now = now or timezone.now()
    requested = list(dict.fromkeys(params.get("metric") or DEFAULT_METRICS))
    described = metric_descriptions([*requested, UTILISATION, TEMPERATURE])
    unknown = [name for name in requested if name not in described]
    if unknown:
        raise serializers.ValidationError({"metric": [f"unknown metric(s): {', '.join(unknown)}"]})
    ids_by_name = {
        name: entry["id"] for name, entry in described.items() if entry["id"] is not None
    }
    metric_ids = list(ids_by_name.values())
    devices = _devices(device_rows(params, metric_ids), metric_ids, ids_by_name, requested, now)
    return {
        "generated_at": rfc3339(now),
        "stale_after_seconds": settings.STALE_AFTER_SECONDS,
        "thresholds": {
            "hot_temperature_c": settings.FLEET_HOT_TEMPERATURE_C,
            "idle_utilisation_percent": settings.FLEET_IDLE_UTILISATION_PERCENT,
        },
        "metrics": [
            {"name": name, "unit": described[name]["unit"], "kind": described[name]["kind"]}
            for name in requested
        ],
        "counts": {
            "devices": len(devices),
            "hosts": len({device["hostname"] for device in devices}),
            "hot": sum(device["hot"] for device in devices),
            "idle": sum(device["idle"] for device in devices),
            "stale": sum(device["stale"] for device in devices),
        },
        "devices": devices,
    }


class _Times(dict[Any, str | None]):
    """Times formatted once each: a chunk stamps all its rows with one time, so a fleet's
    thousands of values share a handful of times. Keys are datetimes (``last_seen``) or a
    value's time as ``api.fleet_query`` reads it: ISO 8601 text, quoted as a JSON string
    from PostgreSQL, UTC without an offset from SQLite."""

    def __init__(self) -> None:
        super().__init__()
        self.zone = timezone.get_current_timezone()

    def __missing__(self, key: datetime | str | None) -> str | None:
        moment = datetime.fromisoformat(key.strip('"')) if isinstance(key, str) else key
        if moment is not None and moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        text = self[key] = None if moment is None else rfc3339(moment, self.zone)
        return text


def _devices(
    rows: Iterable[DeviceRow],
    metric_ids: list[int],
    ids_by_name: dict[str, int],
    requested: list[str],
    now: datetime,
) -> list[dict[str, Any]]:
    times = _Times()
    stale_before = now - timedelta(seconds=settings.STALE_AFTER_SECONDS)
    hot_from = settings.FLEET_HOT_TEMPERATURE_C
    idle_to = settings.FLEET_IDLE_UTILISATION_PERCENT
    # Where each metric's value is in a row's ``newest``; None for a known field no sample
    # has named yet, which no device has a value of.
    position = {metric_id: at for at, metric_id in enumerate(metric_ids)}
    requested_at = [(name, position.get(ids_by_name.get(name, -1))) for name in requested]
    temperature_at = position.get(ids_by_name.get(TEMPERATURE, -1))
    utilisation_at = position.get(ids_by_name.get(UTILISATION, -1))
    devices = []
    for row in rows:
        values, value_times = row.values, row.times
        last_seen = row.last_seen
        fresh = last_seen is not None and last_seen >= stale_before
        temperature = None if temperature_at is None else values[temperature_at]
        utilisation = None if utilisation_at is None else values[utilisation_at]
        instance = row.gpu_instance_id
        devices.append(
            {
                "id": device_id((row.uuid, instance)),
                "uuid": row.uuid,
                # An instance carries its parent's uuid, which is the parent's id.
                "parent": None if instance is None else row.uuid,
                "gpu_instance_id": instance,
                "gpu_instance_profile": row.gpu_instance_profile,
                "hostname": row.hostname,
                "gpu_index": row.gpu_index,
                "model_name": row.model_name,
                "workload": None
                if row.workload_id is None
                else {"namespace": row.namespace, "pod": row.pod, "container": row.container},
                "last_seen": times[last_seen],
                "stale": not fresh,
                "hot": fresh and temperature is not None and temperature >= hot_from,
                "idle": fresh and utilisation is not None and utilisation <= idle_to,
                "values": {
                    name: None
                    if at is None or (moment := value_times[at]) is None
                    else {"value": values[at], "timestamp": times[moment]}
                    for name, at in requested_at
                },
            }
        )
    return devices
