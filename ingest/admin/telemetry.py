"""The telemetry admins: GPUs, metrics and workloads, the read model of newest values, and
samples without a count or scan.

Samples are read-only, listed in an order an index reads (see :class:`SampleAdmin`), and
filtered by GPU and time range with typed-in values (``ingest.admin.filters``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ingest.admin.base import ReadOnlyAdmin, TypedModelAdmin
from ingest.admin.filters import GpuFilter, TimeRangeFilter
from ingest.admin.paging import LargeTableAdmin, LookaheadChangeList
from ingest.models import Gpu, LatestValue, Metric, Sample, Workload


def sample_changelist_url(gpu: Gpu) -> str:
    return f"{reverse('admin:ingest_sample_changelist')}?{GpuFilter.parameter}={gpu.pk}"


@admin.register(Gpu)
class GpuAdmin(ReadOnlyAdmin[Gpu]):
    """GPUs are created by collectors and only viewed here.

    They are never deleted from the admin: collectors cache GPU ids (uuid -> id), so a
    deleted GPU would leave running collectors writing samples for an id that no longer
    exists, and its samples (which carry no foreign-key constraint) would be orphaned.
    """

    list_display = (
        "uuid",
        "hostname",
        "gpu_index",
        "device",
        "model_name",
        "sample_count",
        "first_seen",
        "last_seen",
        "samples",
    )
    list_filter = ("hostname", "model_name")
    search_fields = ("uuid", "hostname")
    readonly_fields = ("samples",)

    @admin.display(description="samples")
    def samples(self, gpu: Gpu) -> SafeString:
        return format_html('<a href="{}">samples</a>', sample_changelist_url(gpu))


@admin.register(Metric)
class MetricAdmin(TypedModelAdmin[Metric]):
    """Metric units and help are editable; names are not (collectors cache name -> id)."""

    list_display = ("name", "unit", "kind", "help")
    search_fields = ("name",)

    def get_readonly_fields(self, request: HttpRequest, obj: Metric | None = None) -> list[str]:
        return ["name"] if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: Metric | None = None) -> bool:
        return False  # samples refer to metrics by id, and collectors cache the ids


@admin.register(Workload)
class WorkloadAdmin(ReadOnlyAdmin[Workload]):
    list_display = ("namespace", "pod", "container")
    search_fields = ("namespace", "pod", "container")


@admin.register(LatestValue)
class LatestValueAdmin(ReadOnlyAdmin[LatestValue]):
    """Each device's newest value per metric, as the collector keeps it for the fleet view.

    A row per device and metric, so the table stays the fleet's size; filtering by metric
    shows one metric across the fleet.
    """

    list_display = ("gpu", "metric", "timestamp", "value")
    list_filter = ("metric",)
    list_select_related = ("gpu", "metric")
    search_fields = ("gpu__uuid", "gpu__hostname")


class SampleChangeList(LookaheadChangeList):
    def get_ordering(self, request: HttpRequest, queryset: QuerySet[Any]) -> list[Any]:
        # Column sorting is off (an order no index serves would sort the whole table), and
        # an ``o`` typed into the address is ignored for the same reason.
        return list(self.model_admin.get_ordering(request))


@admin.register(Sample)
class SampleAdmin(LargeTableAdmin[Sample]):
    """Samples, read-only, newest first, without any query that counts or scans the table.

    The sample table has one B-tree, ``(gpu_id, timestamp, id)``, and a BRIN index on
    ``(timestamp, id)``. With a GPU chosen the list walks that GPU's part of the B-tree
    backwards, newest time first, over any range; without one it lists a time range of at most
    15 minutes (the last 15 by default, ``TimeRangeFilter``) that the BRIN index finds, sorted
    newest first. A sample's own page is found by its id through the BRIN index.
    """

    list_display = ("sampled_at", "gpu", "metric", "value", "workload")
    list_display_links = ("sampled_at",)
    list_filter = (GpuFilter, TimeRangeFilter, "metric")
    # Fetched after the page rather than joined to it: without a GPU the page is the newest
    # 100 of a window's rows, which PostgreSQL sorts after any join, so a join would be made
    # for every row of the window (docs/sample-indexes.md).
    list_select_related = ()
    ordering = ("-timestamp", "-id")
    sortable_by = ()
    date_hierarchy = None

    def get_queryset(self, request: HttpRequest) -> QuerySet[Sample]:
        return super().get_queryset(request).prefetch_related("gpu", "metric", "workload")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return SampleChangeList

    @admin.display(description="timestamp")
    def sampled_at(self, sample: Sample) -> str:
        # To the second and below: many samples of a GPU fall within the same minute.
        return timezone.localtime(sample.timestamp).isoformat(sep=" ")
