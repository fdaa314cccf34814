"""The fleet view: every device with its newest values, read from the read model.

Two queries whatever the fleet's size: the metrics asked for (and the two that decide hot and
idle), then the devices joined to their read-model rows of those metrics and to their newest
workload, never the sample table (docs/design.md, "Read model"). The second gathers each
device's values into one JSON array in the database: a row per device rather than per value
is a sixth of the rows to sort, send and decode, which is most of the view's time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Aggregate, F, FilteredRelation, JSONField, Q, QuerySet
from django.db.models.functions import JSONArray
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone
from rest_framework import serializers

from api.serializers import rfc3339
from ingest.devices import device_id
from ingest.fields import field
from ingest.models import Gpu, Metric

UTILISATION: Final = "DCGM_FI_DEV_GPU_UTIL"
TEMPERATURE: Final = "DCGM_FI_DEV_GPU_TEMP"
DEFAULT_METRICS: Final = (
    UTILISATION,
    TEMPERATURE,
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_FB_USED",
)
DEVICE_ORDER: Final = ("hostname", "gpu_index", F("gpu_instance_id").asc(nulls_first=True), "id")
_DEVICE_COLUMNS: Final = (
    "id", "uuid", "gpu_instance_id", "gpu_instance_profile", "hostname", "gpu_index",
    "model_name", "last_seen", "workload_id", "workload__namespace", "workload__pod",
    "workload__container",
)  # fmt: skip


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


def fleet_latest(params: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The body of GET /api/v1/fleet/latest; raises ``ValidationError`` naming an unknown
    metric."""
    now = now or timezone.now()
    requested = list(dict.fromkeys(params.get("metric") or DEFAULT_METRICS))
    described = metric_descriptions([*requested, UTILISATION, TEMPERATURE])
    unknown = [name for name in requested if name not in described]
    if unknown:
        raise serializers.ValidationError({"metric": [f"unknown metric(s): {', '.join(unknown)}"]})
    names_by_id = {
        entry["id"]: name for name, entry in described.items() if entry["id"] is not None
    }
    devices = _devices(_device_rows(params, list(names_by_id)), names_by_id, requested, now)
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


class JsonArrayAgg(Aggregate):
    """The group's values as one JSON array: PostgreSQL's jsonb_agg, SQLite's json_group_array."""

    function = "JSONB_AGG"
    output_field = JSONField()

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, list[Any]]:
        sql, parameters = self.as_sql(compiler, connection, function="JSON_GROUP_ARRAY", **extra)
        return sql, list(parameters)


def _device_rows(params: dict[str, Any], metric_ids: list[int]) -> QuerySet[Gpu, tuple[Any, ...]]:
    """Query 2: a row per device, in the API's order, ending with its read-model values of
    ``metric_ids`` as a list of [metric id, time, value] (null when it has none)."""
    gpus = Gpu.objects.filter(sample_count__gt=0)
    if "hostname" in params:
        gpus = gpus.filter(hostname=params["hostname"])
    if "model" in params:
        gpus = gpus.filter(model_name=params["model"])
    if "namespace" in params:
        gpus = gpus.filter(workload__namespace=params["namespace"])
    # The metrics go into the join's ON clause: a device lacking them still has its row.
    gpus = gpus.annotate(
        newest=FilteredRelation(
            "latest_values", condition=Q(latest_values__metric_id__in=metric_ids)
        )
    )
    values = JsonArrayAgg(
        JSONArray("newest__metric_id", "newest__timestamp", "newest__value"),
        filter=Q(newest__metric_id__isnull=False),
    )
    return (
        gpus.values_list(*_DEVICE_COLUMNS)
        .annotate(values=values)
        .order_by(*DEVICE_ORDER)
        .values_list(*_DEVICE_COLUMNS, "values")
    )


class _Times(dict[Any, str | None]):
    """Times formatted once each: a chunk stamps all its rows with one time, so a fleet's
    thousands of values share a handful of times. Keys are datetimes (``last_seen``) or the
    text a time has inside a JSON value: ISO 8601 with its offset from PostgreSQL, Django's
    UTC text without one from SQLite."""

    def __init__(self) -> None:
        super().__init__()
        self.zone = timezone.get_current_timezone()

    def __missing__(self, key: datetime | str | None) -> str | None:
        moment = datetime.fromisoformat(key) if isinstance(key, str) else key
        if moment is not None and moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        text = self[key] = None if moment is None else rfc3339(moment, self.zone)
        return text


def _devices(
    rows: Iterable[tuple[Any, ...]],
    names_by_id: dict[int, str],
    requested: list[str],
    now: datetime,
) -> list[dict[str, Any]]:
    times = _Times()
    stale_before = now - timedelta(seconds=settings.STALE_AFTER_SECONDS)
    hot_from = settings.FLEET_HOT_TEMPERATURE_C
    idle_to = settings.FLEET_IDLE_UTILISATION_PERCENT
    devices = []
    for (_, uuid, instance, profile, hostname, index, model, last_seen, workload_id, namespace,
         pod, container, values) in rows:  # fmt: skip
        # float(): a JSON number may read back as an int (0 for 0.0).
        newest = {
            names_by_id[metric_id]: (at, float(value)) for metric_id, at, value in values or ()
        }
        fresh = last_seen is not None and last_seen >= stale_before
        temperature = newest.get(TEMPERATURE)
        utilisation = newest.get(UTILISATION)
        devices.append(
            {
                "id": device_id((uuid, instance)),
                "uuid": uuid,
                # An instance carries its parent's uuid, which is the parent's id.
                "parent": None if instance is None else uuid,
                "gpu_instance_id": instance,
                "gpu_instance_profile": profile,
                "hostname": hostname,
                "gpu_index": index,
                "model_name": model,
                "workload": None
                if workload_id is None
                else {"namespace": namespace, "pod": pod, "container": container},
                "last_seen": times[last_seen],
                "stale": not fresh,
                "hot": fresh and temperature is not None and temperature[1] >= hot_from,
                "idle": fresh and utilisation is not None and utilisation[1] <= idle_to,
                "values": {
                    name: None
                    if name not in newest
                    else {"value": newest[name][1], "timestamp": times[newest[name][0]]}
                    for name in requested
                },
            }
        )
    return devices
