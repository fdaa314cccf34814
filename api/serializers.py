"""Response shapes of the API.

The serializer classes are the documentation: drf-spectacular builds the published schema
from them. The hot endpoints do not run them per object, though: DRF's field machinery costs
tens of microseconds per field, which on a page of 100 samples or 300 buckets is most of the
request. Those endpoints read plain tuples from the database and build the same dictionaries
with the functions below, which format values exactly as the serializer fields would.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import Any

import orjson
from django.db.models import ExpressionWrapper, F, TextField
from django.utils import timezone
from rest_framework import serializers

from ingest.devices import device_id
from ingest.models import Gpu, Sample


class GpuSerializer(serializers.ModelSerializer[Gpu]):
    """A GPU, or a MIG instance of one: an instance carries its parent's uuid."""

    id = serializers.CharField(
        source="device_id",
        help_text="The device's id in URLs: the uuid, or <uuid>:<GPU instance id> (MIG).",
    )
    model = serializers.CharField(source="model_name")
    # Declared, not derived: a derived field takes its bounds from the database backend,
    # which would make the published schema differ between SQLite and PostgreSQL.
    gpu_index = serializers.IntegerField()
    sample_count = serializers.IntegerField()
    gpu_instance_id = serializers.IntegerField(
        allow_null=True, help_text="The MIG GPU instance id (GPU_I_ID); null for a whole GPU."
    )
    gpu_instance_profile = serializers.CharField(
        help_text='The MIG profile (GPU_I_PROFILE), e.g. "1g.5gb"; empty for a whole GPU.'
    )
    # DRF's metaclass takes declared fields off the class: this does not replace Field.parent.
    parent = serializers.CharField(  # type: ignore[assignment]
        source="parent.uuid",
        allow_null=True,
        help_text="A MIG instance's GPU, by id; null for a whole GPU.",
    )

    class Meta:
        model = Gpu
        fields = [
            "id", "uuid", "hostname", "gpu_index", "device", "model",
            "gpu_instance_id", "gpu_instance_profile", "parent",
            "first_seen", "last_seen", "sample_count", "labels",
        ]  # fmt: skip


class SampleSerializer(serializers.ModelSerializer[Sample]):
    """A sample with its metric by name; workload fields are empty when none was recorded."""

    metric = serializers.CharField(source="metric.name")
    namespace = serializers.SerializerMethodField()
    pod = serializers.SerializerMethodField()
    container = serializers.SerializerMethodField()

    class Meta:
        model = Sample
        fields = ["timestamp", "metric", "value", "namespace", "pod", "container"]

    def get_namespace(self, sample: Sample) -> str:
        return sample.workload.namespace if sample.workload else ""

    def get_pod(self, sample: Sample) -> str:
        return sample.workload.pod if sample.workload else ""

    def get_container(self, sample: Sample) -> str:
        return sample.workload.container if sample.workload else ""


class SamplePageSerializer(serializers.Serializer[Any]):
    next = serializers.URLField(allow_null=True, help_text="The next page; null on the last.")
    previous = serializers.URLField(allow_null=True)
    results = SampleSerializer(many=True)


class BucketSerializer(serializers.Serializer[Any]):
    metric = serializers.CharField()
    bucket_start = serializers.DateTimeField()
    count = serializers.IntegerField()
    avg = serializers.FloatField()
    min = serializers.FloatField()
    max = serializers.FloatField()
    delta = serializers.FloatField(
        required=False, help_text="With fn=delta: the counter's increase in the bucket."
    )
    rate = serializers.FloatField(
        required=False, help_text="With fn=rate: the increase per second of the bucket's width."
    )


class AggregateSerializer(serializers.Serializer[Any]):
    id = serializers.CharField(help_text="The device's id: its uuid, or <uuid>:<instance>.")
    uuid = serializers.CharField()
    bucket = serializers.CharField(help_text="The bucket width, in seconds (e.g. 60s).")
    start_time = serializers.DateTimeField()
    end_time = serializers.DateTimeField()
    buckets = BucketSerializer(many=True)


class HostAggregateSerializer(serializers.Serializer[Any]):
    hostname = serializers.CharField()
    gpu_count = serializers.IntegerField(help_text="Physical GPUs: MIG instances count with it.")
    bucket = serializers.CharField(help_text="The bucket width, in seconds (e.g. 60s).")
    start_time = serializers.DateTimeField()
    end_time = serializers.DateTimeField()
    buckets = BucketSerializer(many=True)


class LatestSerializer(serializers.Serializer[Any]):
    metric = serializers.CharField()
    timestamp = serializers.DateTimeField()
    value = serializers.FloatField()


class HostSerializer(serializers.Serializer[Any]):
    hostname = serializers.CharField()
    gpu_count = serializers.IntegerField()
    last_seen = serializers.DateTimeField()


class MetricSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    unit = serializers.CharField(help_text='e.g. "C", "W", "MHz", "MiB", "%"; empty if unknown.')
    kind = serializers.CharField(help_text='"gauge" or "counter"; empty if unknown.')
    help = serializers.CharField(help_text="The exporter's description, when a page gave one.")
    sample_count = serializers.IntegerField()


class StatsSerializer(serializers.Serializer[Any]):
    total_records = serializers.IntegerField()
    unique_gpus = serializers.IntegerField()
    unique_hosts = serializers.IntegerField()
    first_timestamp = serializers.DateTimeField(allow_null=True)
    last_timestamp = serializers.DateTimeField(allow_null=True)
    metrics = serializers.DictField(child=serializers.IntegerField())
    rejected_rows = serializers.IntegerField()
    push_ignored_samples = serializers.IntegerField(
        help_text="Pushed samples of series that are not DCGM fields: ignored, not stored."
    )
    push_stale_markers = serializers.IntegerField(
        help_text="Prometheus staleness markers received by remote write: skipped, not stored."
    )
    collect_queue_depth = serializers.IntegerField(
        allow_null=True, help_text="Null while the broker cannot be reached."
    )
    ingest_rate_per_s = serializers.FloatField(help_text="Rows committed per second, last minute.")


class HealthSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=["ok", "degraded"])
    database = serializers.CharField(help_text='"ok", or "down: <reason>"')
    broker = serializers.CharField(help_text='"ok", or "down: <reason>"')


class ErrorSerializer(serializers.Serializer[Any]):
    """A 400: each offending parameter with its messages; a 404: ``detail``."""

    detail = serializers.CharField(required=False)


# --- plain representations of the hot endpoints ------------------------------------------


def rfc3339(moment: datetime, zone: tzinfo | None = None) -> str:
    """A time as ``serializers.DateTimeField`` writes it: in the current zone, UTC as ``Z``.

    Looking the current zone up costs more than formatting, so a caller formatting many
    times passes it in.
    """
    text = moment.astimezone(zone or timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def optional_rfc3339(moment: datetime | None, zone: tzinfo) -> str | None:
    return None if moment is None else rfc3339(moment, zone)


STATS_TIMES = ("first_timestamp", "last_timestamp")


def stats_body(stats: dict[str, Any]) -> dict[str, Any]:
    """``StatsSerializer`` output from ``ingest.stats.pipeline_stats()``: its numbers are
    already what the fields write, so only the times need formatting."""
    zone = timezone.get_current_timezone()
    times = {name: optional_rfc3339(stats[name], zone) for name in STATS_TIMES}
    return {**stats, **times}


# The columns ``gpu_rows`` reads, in the order of ``GpuSerializer``'s fields (an instance's
# parent has the instance's uuid, so neither the id nor the parent needs a join). The labels
# are read as the JSON text the database holds and written into the body as they are (an
# orjson fragment): decoding a hundred GPUs' labels only to encode them again cost about
# 0.4 ms of CPU a page (docs/measurements.md, "The GPU list"). The column is read as text
# without a cast, which the server would apply to every GPU before sorting them: Django has
# psycopg2 hand jsonb over as its text, and SQLite stores it as text.
GPU_COLUMNS = (
    "uuid", "hostname", "gpu_index", "device", "model_name",
    "gpu_instance_id", "gpu_instance_profile",
    "first_seen", "last_seen", "sample_count",
    ExpressionWrapper(F("labels"), output_field=TextField()),
)  # fmt: skip


class _TimeTexts(dict[datetime | None, str | None]):
    """Times formatted once each, where a body repeats a few times many times over."""

    def __init__(self) -> None:
        super().__init__({None: None})
        self.zone = timezone.get_current_timezone()

    def __missing__(self, moment: datetime) -> str:
        text = self[moment] = rfc3339(moment, self.zone)
        return text


def gpu_rows(rows: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """``GpuSerializer`` output from ``values_list(*GPU_COLUMNS)`` rows, for the API's
    renderer (``api.renderers``), which writes the labels' JSON text as it is."""
    times = _TimeTexts()  # a host's GPUs are scraped together: a few first and last times
    return [
        {
            "id": device_id((uuid, instance)),
            "uuid": uuid,
            "hostname": hostname,
            "gpu_index": gpu_index,
            "device": device,
            "model": model,
            "gpu_instance_id": instance,
            "gpu_instance_profile": profile,
            "parent": None if instance is None else uuid,
            "first_seen": times[first_seen],
            "last_seen": times[last_seen],
            "sample_count": sample_count,
            "labels": orjson.Fragment(labels),
        }
        for (
            uuid,
            hostname,
            gpu_index,
            device,
            model,
            instance,
            profile,
            first_seen,
            last_seen,
            sample_count,
            labels,
        ) in rows
    ]


# The columns ``sample_rows`` reads; no workload reads as three nulls.
SAMPLE_COLUMNS = (
    "timestamp", "metric__name", "value",
    "workload__namespace", "workload__pod", "workload__container",
)  # fmt: skip


def sample_rows(rows: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """``SampleSerializer`` output from ``values_list(*SAMPLE_COLUMNS)`` rows."""
    times = _TimeTexts()  # a GPU's metrics are sampled together: one time per few rows
    return [
        {
            "timestamp": times[timestamp],
            "metric": metric,
            "value": value,
            "namespace": namespace or "",
            "pod": pod or "",
            "container": container or "",
        }
        for timestamp, metric, value, namespace, pod, container in rows
    ]


def bucket_rows(rows: Iterable[tuple[Any, ...]], fn: str | None = None) -> list[dict[str, Any]]:
    """``BucketSerializer`` output from (metric, bucket_start, count, avg, min, max) rows, or
    with ``fn`` (``delta`` or ``rate``) from rows that end with that figure."""
    zone = timezone.get_current_timezone()
    return [
        {
            "metric": metric,
            "bucket_start": rfc3339(start, zone),
            "count": count,
            "avg": avg,
            "min": low,
            "max": high,
            **({} if fn is None else {fn: increase[0]}),
        }
        for metric, start, count, avg, low, high, *increase in rows
    ]


def latest_rows(rows: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """``LatestSerializer`` output from (metric, timestamp, value) rows; a metric the GPU has
    no sample of (a null timestamp) is left out."""
    zone = timezone.get_current_timezone()
    return [
        {"metric": metric, "timestamp": rfc3339(timestamp, zone), "value": value}
        for metric, timestamp, value in rows
        if timestamp is not None
    ]


# --- the fleet view and the pipeline's sources (documentation of api.fleet, api.sources) ---


class FleetMetricSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    unit = serializers.CharField(help_text='e.g. "C", "W", "MiB", "%"; empty if unknown.')
    kind = serializers.CharField(help_text='"gauge" or "counter"; empty if unknown.')


class FleetThresholdsSerializer(serializers.Serializer[Any]):
    hot_temperature_c = serializers.FloatField(help_text="FLEET_HOT_TEMPERATURE_C")
    idle_utilisation_percent = serializers.FloatField(help_text="FLEET_IDLE_UTILISATION_PERCENT")


class FleetCountsSerializer(serializers.Serializer[Any]):
    devices = serializers.IntegerField()
    hosts = serializers.IntegerField()
    hot = serializers.IntegerField()
    idle = serializers.IntegerField()
    stale = serializers.IntegerField()


class WorkloadSerializer(serializers.Serializer[Any]):
    namespace = serializers.CharField()
    pod = serializers.CharField()
    container = serializers.CharField()


class NewestValueSerializer(serializers.Serializer[Any]):
    value = serializers.FloatField()
    timestamp = serializers.DateTimeField()


class FleetDeviceSerializer(serializers.Serializer[Any]):
    id = serializers.CharField(help_text="The device's id: its uuid, or <uuid>:<instance>.")
    uuid = serializers.CharField()
    # DRF's metaclass takes declared fields off the class: this does not replace Field.parent.
    parent = serializers.CharField(  # type: ignore[assignment]
        allow_null=True, help_text="A MIG instance's GPU, by id; null for a whole GPU."
    )
    gpu_instance_id = serializers.IntegerField(allow_null=True)
    gpu_instance_profile = serializers.CharField()
    hostname = serializers.CharField()
    gpu_index = serializers.IntegerField()
    model_name = serializers.CharField()
    workload = WorkloadSerializer(
        allow_null=True, help_text="The newest workload seen on the device; null if none ever."
    )
    last_seen = serializers.DateTimeField(allow_null=True)
    stale = serializers.BooleanField(help_text="last_seen is older than STALE_AFTER_SECONDS.")
    hot = serializers.BooleanField()
    idle = serializers.BooleanField()
    values = serializers.DictField(
        child=NewestValueSerializer(allow_null=True),
        help_text="Each metric asked for: its newest value, or null without a sample of it.",
    )


class FleetSerializer(serializers.Serializer[Any]):
    generated_at = serializers.DateTimeField()
    stale_after_seconds = serializers.IntegerField()
    thresholds = FleetThresholdsSerializer()
    metrics = FleetMetricSerializer(many=True)
    counts = FleetCountsSerializer()
    devices = FleetDeviceSerializer(many=True)


class RejectedReasonSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(help_text="The reason's category, without row details.")
    rows = serializers.IntegerField()


class SourceProgressSerializer(serializers.Serializer[Any]):
    pass_number = serializers.IntegerField()
    fraction = serializers.FloatField(
        allow_null=True, help_text="Of the pass's bytes read; null for a URL of unknown size."
    )


class LastScrapeSerializer(serializers.Serializer[Any]):
    at = serializers.DateTimeField(allow_null=True)
    last_success_at = serializers.DateTimeField(allow_null=True)
    duration_seconds = serializers.FloatField(allow_null=True)
    up = serializers.BooleanField(help_text="The newest scrape succeeded.")


class SourceSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=["file", "scrape"])
    location = serializers.CharField(
        help_text="The path or URL, a URL without its user, password, secret query values "
        "(REDACTED) and fragment."
    )
    state = serializers.ChoiceField(
        choices=["streaming", "finished", "paused", "error", "scraping", "down"]
    )
    enabled = serializers.BooleanField()
    interval_seconds = serializers.IntegerField()
    follow = serializers.BooleanField()
    loop = serializers.BooleanField()
    progress = SourceProgressSerializer(allow_null=True, help_text="File sources; else null.")
    last_scrape = LastScrapeSerializer(allow_null=True, help_text="Scrape sources; else null.")
    rows_committed = serializers.IntegerField(
        allow_null=True,
        help_text="Null for a one-off import (import_csv), counted with all imports together.",
    )
    rows_rejected = serializers.IntegerField(allow_null=True)
    rows_per_second = serializers.FloatField(help_text="Rows committed, last 5 minutes.")
    lag_seconds = serializers.FloatField(
        allow_null=True, help_text="Age of the oldest chunk published and not yet committed."
    )
    last_error = serializers.CharField()
    last_error_at = serializers.DateTimeField(allow_null=True)
    admin_url = serializers.CharField()


class SourcesSerializer(serializers.Serializer[Any]):
    generated_at = serializers.DateTimeField()
    collect_queue_depth = serializers.IntegerField(
        allow_null=True, help_text="Null while the broker cannot be reached."
    )
    dead_letters = serializers.IntegerField(help_text="Dead letters not replayed.")
    rejected_by_reason = RejectedReasonSerializer(many=True)
    sources = SourceSerializer(many=True)
