"""The read-only REST API. Every query that touches samples is bounded by a GPU and an index.

Viewsets stay thin: querysets, serializers, filtersets; parameter validation lives in
``api.params``, the documentation (parameters, errors, examples) in ``api.schema``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Avg, Count, F, Max, Min, OuterRef, QuerySet, Subquery
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import get_object_or_404
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from api import schema
from api.buckets import TimeBucket
from api.compiled import QUERIES
from api.filters import GpuFilter, HostFilter, NamedFiltersBackend
from api.fleet import encoded_fleet_latest
from api.increments import increase_rows
from api.pagination import CountedPagination, Selection, UncountedPagination
from api.params import (
    AggregateParams,
    FleetParams,
    TimeRangeParams,
    check_bucket_count,
    flat_errors,
    reject_empty,
)
from api.renderers import FastJSONRenderer
from api.serializers import (
    GPU_COLUMNS,
    SAMPLE_COLUMNS,
    GpuSerializer,
    HealthSerializer,
    HostSerializer,
    MetricSerializer,
    StatsSerializer,
    bucket_rows,
    gpu_rows,
    latest_rows,
    rfc3339,
    sample_rows,
    stats_body,
)
from api.sources import pipeline_sources
from ingest.devices import device_key
from ingest.models import Gpu, Metric, Sample, Tally
from ingest.queues import check_broker
from ingest.stats import pipeline_stats

logger = logging.getLogger(__name__)

DEFAULT_AGGREGATE_SPAN = timedelta(hours=1)


def validated(params_class: type[Serializer[Any]], request: Request) -> dict[str, Any]:
    params = params_class(data=request.query_params)
    reject_empty(request.query_params, params.fields)
    if not params.is_valid():
        raise ValidationError(flat_errors(params.errors))
    return dict(params.validated_data)


def device_with_telemetry(device_id: str) -> QuerySet[Gpu]:
    """The GPU or MIG instance ``device_id`` names, if it has telemetry.

    DRF's get_object_or_404 turns an id the database cannot hold (a NUL) into a 404 too.
    """
    return Gpu.objects.filter(sample_count__gt=0).device(device_id)


def samples_of(gpu: Gpu, params: dict[str, Any]) -> QuerySet[Sample]:
    """The GPU's samples within the (inclusive) time range and metrics asked for."""
    return in_range(Sample.objects.filter(gpu_id=gpu.pk), params)


def sample_selection(device: Sequence[Any], params: dict[str, Any]) -> Selection:
    """The samples of the device with telemetry that ``device`` names (``_devices_named``)
    within the (inclusive) time range and metrics asked for, in page order, as a shape and
    its values (the page query is compiled once per shape).

    The device is found inside the page's query, not by a query of its own: one round trip
    instead of two (docs/measurements.md, "The device lookup inside the query"). A device
    without telemetry matches no sample, so the caller tells it from an empty range only
    when the page is empty.
    """
    bounds = [params.get(name) for name in ("start_time", "end_time")]
    metrics = list(params.get("metric") or ())
    present = tuple(bound is not None for bound in bounds)

    def build(values: Sequence[Any]) -> QuerySet[Sample]:
        given = iter(values)
        gpu = Subquery(_devices_named([next(given) for _ in device]).values("id")[:1])
        start, end = (next(given) if there else None for there in present)
        chosen = {"start_time": start, "end_time": end, "metric": list(given)}
        samples = in_range(Sample.objects.filter(gpu_id=gpu), chosen)
        return samples.order_by("timestamp", "id")

    values = (*device, *(bound for bound in bounds if bound is not None), *metrics)
    return Selection((len(device), present, len(metrics)), values, build)


def in_range(samples: QuerySet[Sample], params: dict[str, Any]) -> QuerySet[Sample]:
    """``samples`` within the (inclusive) time range and metrics asked for."""
    if params.get("start_time") is not None:
        samples = samples.filter(timestamp__gte=params["start_time"])
    if params.get("end_time") is not None:
        samples = samples.filter(timestamp__lte=params["end_time"])
    if params.get("metric"):
        samples = samples.filter(metric_id__in=params["metric"])
    return samples


def default_range(params: dict[str, Any], last_seen: datetime) -> tuple[datetime, datetime]:
    """Fill a missing bound: an hour either side of the given one, or the GPU's last hour."""
    start: datetime | None = params.get("start_time")
    end: datetime | None = params.get("end_time")
    if start is not None and end is not None:
        return start, end
    try:
        if start is not None:
            return start, start + DEFAULT_AGGREGATE_SPAN
        end = end or last_seen
        return end - DEFAULT_AGGREGATE_SPAN, end
    except OverflowError:
        given = "start_time" if start is not None else "end_time"
        raise ValidationError(
            {given: ["An hour from this time is outside the calendar."]}
        ) from None


@extend_schema_view(
    list=extend_schema(responses=schema.responses(GpuSerializer(many=True))),
    retrieve=extend_schema(responses=schema.responses(GpuSerializer, 404)),
)
class GpuViewSet(viewsets.ReadOnlyModelViewSet[Gpu]):
    """GPUs and MIG instances that have telemetry, ordered by host and index, each GPU's
    instances after it. A device's id is its uuid, or <uuid>:<GPU instance id>."""

    queryset = Gpu.objects.filter(sample_count__gt=0).order_by(
        "hostname", "gpu_index", F("gpu_instance_id").asc(nulls_first=True), "id"
    )
    serializer_class = GpuSerializer
    filter_backends = [NamedFiltersBackend]
    filterset_class = GpuFilter
    pagination_class = CountedPagination
    lookup_url_kwarg = "id"
    lookup_value_converter = "str"

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        gpus = self.filter_queryset(self.get_queryset()).values_list(*GPU_COLUMNS)
        # The class's pagination_class, instantiated here with its own type for the checker.
        paginator = CountedPagination()
        page = paginator.paginate_with_total(gpus, request)
        return paginator.get_paginated_response(gpu_rows(page))

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        row = get_object_or_404(device_with_telemetry(kwargs["id"]).values_list(*GPU_COLUMNS))
        return Response(gpu_rows([row])[0])

    def device(self) -> tuple[Any, ...]:
        """The URL's device as the values ``_devices_named`` takes; a 404 for an id that no
        device can have."""
        key = device_key(self.kwargs["id"])
        # PostgreSQL text cannot hold a NUL, so no device's uuid has one.
        if key is None or "\x00" in key[0]:
            raise Http404(NO_DEVICE)
        uuid, instance = key
        return (uuid,) if instance is None else (uuid, instance)

    def gpu(self) -> Gpu:
        """The device of the URL, with only what the sample endpoints use (not the labels,
        whose JSON would be decoded); its query is compiled once (``api.compiled``)."""
        values = self.device()
        rows = QUERIES.rows(("device", len(values)), _device_row, values)
        if not rows:
            raise Http404(NO_DEVICE)
        pk, uuid, instance, last_seen = rows[0]
        return Gpu(pk=pk, uuid=uuid, gpu_instance_id=instance, last_seen=last_seen)

    @contextmanager
    def device_checked_before_parameters(self) -> Iterator[None]:
        """For an endpoint that finds its device inside its own query: a bad parameter met
        in the block is a 400 only when the device exists, and a 404 otherwise, as on the
        endpoints that look the device up first."""
        try:
            yield
        except ValidationError:
            self.gpu()
            raise

    @schema.telemetry
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def telemetry(self, request: Request, id: str) -> Response:
        device = self.device()
        paginator = UncountedPagination()
        with self.device_checked_before_parameters():
            params = validated(TimeRangeParams, request)
            selection = sample_selection(device, params)
            page = paginator.paginate_selection(selection, request, columns=SAMPLE_COLUMNS)
        if not page:
            self.gpu()  # an empty page: a 404 when there is no such device
        return paginator.get_paginated_response(sample_rows(page))

    @schema.aggregate
    @action(
        detail=True,
        methods=["get"],
        url_path="telemetry/aggregate",
        filter_backends=[],
        pagination_class=None,
    )
    def aggregate(self, request: Request, id: str) -> Response:
        gpu = self.gpu()
        params = validated(AggregateParams, request)
        buckets = aggregate_body(Sample.objects.filter(gpu_id=gpu.pk), params, gpu.last_seen)
        return Response({"id": gpu.device_id, "uuid": gpu.uuid, **buckets})

    @schema.latest
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def latest(self, request: Request, id: str) -> Response:
        device = self.device()
        rows = QUERIES.rows(("latest", len(device)), _newest_of_each_metric, device)
        # A device with telemetry has a newest sample of some metric.
        if all(timestamp is None for _, timestamp, _ in rows):
            self.gpu()  # a 404 when there is no such device
        return Response(latest_rows(rows))


# The answer of DRF's get_object_or_404, which the other device endpoints give.
NO_DEVICE = f"No {Gpu._meta.object_name} matches the given query."


def _devices_named(values: Sequence[Any]) -> QuerySet[Gpu]:
    """The device with telemetry ``values`` name (none or one): its uuid, and its GPU
    instance id when it is a MIG instance."""
    uuid, instance = (*values, None)[:2]
    gpus = Gpu.objects.filter(sample_count__gt=0, uuid=uuid, gpu_instance_id=instance)
    return gpus.order_by()


def _device_row(values: Sequence[Any]) -> QuerySet[Gpu, tuple[Any, ...]]:
    """(id, uuid, instance, last_seen) of the device ``values`` name (``_devices_named``)."""
    return _devices_named(values).values_list("id", "uuid", "gpu_instance_id", "last_seen")[:1]


def _newest_of_each_metric(values: Sequence[Any]) -> QuerySet[Metric, tuple[Any, ...]]:
    """(metric, timestamp, value) of the newest sample of each metric of the device
    ``values`` name (``_devices_named``, found inside this query); timestamp and value are
    null for a metric it has no sample of, and for every metric when there is no device.

    One query over the metric list with a backwards index probe per metric (on (gpu,
    timestamp), stopping at the metric's newest sample): a handful of rows read per metric,
    where DISTINCT ON would read all of the GPU's history.
    """
    gpu = Subquery(_devices_named(values).values("id")[:1])
    newest = Sample.objects.filter(gpu_id=gpu, metric_id=OuterRef("pk")).order_by(
        "-timestamp", "-id"
    )
    rows = Metric.objects.annotate(
        newest_timestamp=Subquery(newest.values("timestamp")[:1]),
        newest_value=Subquery(newest.values("value")[:1]),
    ).values_list("name", "newest_timestamp", "newest_value")
    return rows.order_by("name")


def aggregate_body(
    samples: QuerySet[Sample], params: dict[str, Any], last_seen: datetime | None
) -> dict[str, Any]:
    """The bucket rows of ``samples`` over the range asked for (by default the hour up to
    ``last_seen``), with the range and the width; with ``fn``, each row's counter increase."""
    start, end = default_range(params, last_seen or timezone.now())
    check_bucket_count(start, end, params["bucket"])
    params.update(start_time=start, end_time=end)
    samples = in_range(samples, params)
    fn = params.get("fn")
    if fn is None:
        rows = list(
            samples.annotate(bucket_start=TimeBucket("timestamp", params["bucket"]))
            .values_list("metric__name", "bucket_start")
            .annotate(count=Count("id"), avg=Avg("value"), min=Min("value"), max=Max("value"))
            .order_by()
        )
        buckets = bucket_rows(sorted(rows))
    else:
        names = params["metric_names"]
        increases = [
            (names[metric_id], *rest)
            for metric_id, *rest in increase_rows(samples, params["bucket"], fn)
        ]
        buckets = bucket_rows(sorted(increases), fn)
    return {
        "bucket": f"{int(params['bucket'].total_seconds())}s",
        "start_time": rfc3339(start),
        "end_time": rfc3339(end),
        # Sorted here, not by the database, whose collation may order names differently
        # from the code-point order the API has always used.
        "buckets": buckets,
    }


@extend_schema_view(list=extend_schema(responses=schema.responses(HostSerializer(many=True))))
class HostViewSet(mixins.ListModelMixin, viewsets.GenericViewSet[Any]):
    """Hosts with telemetry: how many GPUs each has and when one was last seen."""

    queryset = Gpu.objects.filter(sample_count__gt=0)
    serializer_class = HostSerializer
    filter_backends = [NamedFiltersBackend]
    filterset_class = HostFilter
    pagination_class = CountedPagination
    lookup_field = "hostname"
    lookup_value_converter = "str"

    @schema.host_aggregate
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def aggregate(self, request: Request, hostname: str) -> Response:
        # Query 1: the host's devices. The samples are then read with their ids
        # (gpu_id IN (...)), each served by the (gpu, timestamp) index.
        devices = list(
            Gpu.objects.filter(hostname=hostname, sample_count__gt=0).values_list(
                "id", "uuid", "last_seen"
            )
        )
        if not devices:
            raise NotFound("No host with this name has telemetry.")
        params = validated(AggregateParams, request)
        samples = Sample.objects.filter(gpu_id__in=[gpu_id for gpu_id, _, _ in devices])
        last_seen = max((seen for _, _, seen in devices if seen is not None), default=None)
        body = {
            "hostname": hostname,
            # Physical GPUs: a GPU's MIG instances share its uuid.
            "gpu_count": len({uuid for _, uuid, _ in devices}),
            **aggregate_body(samples, params, last_seen),
        }
        return Response(body)

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        # Filter GPUs first (by model), then group what is left by host.
        gpus: QuerySet[Gpu] = super().filter_queryset(queryset)
        return (
            gpus.values("hostname")
            # Physical GPUs: a GPU's MIG instances share its uuid.
            .annotate(gpu_count=Count("uuid", distinct=True), last_seen=Max("last_seen"))
            .order_by("hostname")
        )


class MetricListView(APIView):
    """Metric names with their sample counts (from ingest counters)."""

    @extend_schema(responses=schema.responses(MetricSerializer(many=True)))
    def get(self, request: Request) -> Response:
        totals = Tally.totals()
        metrics = [
            {
                "name": metric.name,
                "unit": metric.unit,
                "kind": metric.kind,
                "help": metric.help,
                "sample_count": totals.get(Tally.metric_key(metric.pk), 0),
            }
            for metric in Metric.objects.order_by("name")
        ]
        return Response(MetricSerializer(metrics, many=True).data)


class FleetLatestView(APIView):
    """Every device with its newest values, from the read model."""

    # The body is a megabyte at 2,000 GPUs, encoded by orjson (the standard encoder took a
    # fifth of the request); the renderer writes the encoded body, or an error, as it is.
    renderer_classes = [FastJSONRenderer]

    @schema.fleet_latest
    def get(self, request: Request) -> Response:
        return Response(encoded_fleet_latest(validated(FleetParams, request)))


class SourceListView(APIView):
    """The pipeline's sources, for staff: a staff user's session or a staff token."""

    permission_classes = [IsAdminUser]

    @schema.sources
    def get(self, request: Request) -> Response:
        return Response(pipeline_sources())


class StatsView(APIView):
    """Totals of what has been ingested, read from counters kept at ingest time."""

    @extend_schema(responses=schema.responses(StatsSerializer))
    def get(self, request: Request) -> Response:
        return Response(stats_body(pipeline_stats()))


class HealthView(APIView):
    """Whether the database and the broker answer; 503 names the part that does not."""

    # Probes carry no token and must never be throttled, whatever the API requires.
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []

    @extend_schema(
        responses={
            200: HealthSerializer,
            503: schema.described(HealthSerializer, "The database or the broker is down."),
        }
    )
    def get(self, request: Request) -> Response:
        parts = {"database": _probe_database(), "broker": _probe_broker()}
        healthy = all(state == "ok" for state in parts.values())
        body = {"status": "ok" if healthy else "degraded", **parts}
        return Response(body, status=200 if healthy else 503)


def _probe_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:  # noqa: BLE001  (any failure means "down", with its reason)
        logger.warning("health: database down: %s", error)
        return f"down: {type(error).__name__}"
    return "ok"


def _probe_broker() -> str:
    try:
        check_broker()
    except Exception as error:  # noqa: BLE001  (any failure means "down", with its reason)
        logger.warning("health: broker down: %s", error)
        return f"down: {type(error).__name__}"
    return "ok"
