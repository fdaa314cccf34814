"""Response shapes of the API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ingest.models import Gpu, Sample


class GpuSerializer(serializers.ModelSerializer[Gpu]):
    model = serializers.CharField(source="model_name")
    # Declared, not derived: a derived field takes its bounds from the database backend,
    # which would make the published schema differ between SQLite and PostgreSQL.
    gpu_index = serializers.IntegerField()
    sample_count = serializers.IntegerField()

    class Meta:
        model = Gpu
        fields = [
            "uuid", "hostname", "gpu_index", "device", "model",
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


class AggregateSerializer(serializers.Serializer[Any]):
    uuid = serializers.CharField()
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
    unit = serializers.CharField()
    sample_count = serializers.IntegerField()


class StatsSerializer(serializers.Serializer[Any]):
    total_records = serializers.IntegerField()
    unique_gpus = serializers.IntegerField()
    unique_hosts = serializers.IntegerField()
    first_timestamp = serializers.DateTimeField(allow_null=True)
    last_timestamp = serializers.DateTimeField(allow_null=True)
    metrics = serializers.DictField(child=serializers.IntegerField())
    rejected_rows = serializers.IntegerField()
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
