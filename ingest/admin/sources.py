"""The admin site of the pipeline: telemetry (read-only), stream sources and delivery state.

The sample table grows to billions of rows, so no admin page may count it or scan it: its
changelist pages by fetching one row more than a page instead of counting (the ledger and
rejected rows too), offers no facet counts and no date hierarchy, filters by GPU and time
range with typed-in values rather than lists of links, and always sorts the way an index
reads (see :class:`SampleAdmin`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import kombu.exceptions
import msgpack
import redis.exceptions
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR, ChangeList
from django.core.exceptions import ValidationError
from django.core.paginator import InvalidPage, Page, Paginator
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django_celery_beat.models import PeriodicTask

from ingest import dead_letters, sources
from ingest.models import (
    DEFAULT_SITE,
    ChunkAttempt,
    DeadLetter,
    Gpu,
    IngestedChunk,
    Metric,
    OutstandingChunk,
    RejectedRow,
    Sample,
    StreamCursor,
    StreamSource,
    Tally,
    Workload,
    chunk_id_for,
)
from ingest.schedule import STREAM_TASK, periodic_task_name
from telemetry_project.celery import app

if TYPE_CHECKING:
    from django.contrib.admin.filters import _ListFilterChoices  # only in the stubs

_T = TypeVar("_T")
_M = TypeVar("_M", bound=Model)
_P = TypeVar("_P", bound=Model)

# django-stubs declares these classes generic (ModelAdmin[Gpu]); Django itself cannot be
# subscripted at run time, so these thin subclasses add only that.
if TYPE_CHECKING:
    TypedModelAdmin = admin.ModelAdmin
    TypedTabularInline = admin.TabularInline
    TypedModelForm = forms.ModelForm
    TypedPaginator = Paginator
else:

    class TypedModelAdmin(admin.ModelAdmin, Generic[_M]):
        pass

    class TypedTabularInline(admin.TabularInline, Generic[_M, _P]):
        pass

    class TypedModelForm(forms.ModelForm, Generic[_M]):
        pass

    class TypedPaginator(Paginator, Generic[_T]):
        pass


MAX_ID = 2**31 - 1  # the largest id of an integer primary key

# Errors of an unreachable or failing broker, reported to the user instead of a server error.
BROKER_ERRORS = (kombu.exceptions.OperationalError, redis.exceptions.RedisError, OSError)


# -- Paging without counting ---------------------------------------------------------------


class LookaheadPaginator(TypedPaginator[_T]):
    """Pages a query without ever counting it: it fetches one row more than a page.

    That extra row tells whether a next page exists, so ``count`` is a lower bound (exact on
    the last page) and ``num_pages`` reaches one page past the current one. Only the page
    being viewed (``page_number``) can be served, from that single fetch.
    """

    def __init__(self, object_list: Any, per_page: int, page_number: int = 1) -> None:
        super().__init__(object_list, per_page)
        self.page_number = page_number

    @cached_property
    def _offset(self) -> int:
        return (max(self.page_number, 1) - 1) * self.per_page

    @cached_property
    def _window(self) -> list[_T]:
        return list(self.object_list[self._offset : self._offset + self.per_page + 1])

    @cached_property
    def count(self) -> int:
        return self._offset + len(self._window)

    @property
    def has_more(self) -> bool:
        """True when rows exist beyond the current page, so ``count`` is not the total."""
        return len(self._window) > self.per_page

    @property
    def shown_from(self) -> int:
        return self._offset + 1

    @property
    def shown_to(self) -> int:
        return self._offset + min(len(self._window), self.per_page)

    def page(self, number: int | str) -> Page[_T]:
        number = self.validate_number(number)
        if number != max(self.page_number, 1):
            raise InvalidPage(f"only page {self.page_number} was fetched")
        return Page(self._window[: self.per_page], number, self)


class LookaheadChangeList(ChangeList):
    """A changelist that pages with :class:`LookaheadPaginator` and never counts.

    Django's own would count the filtered rows, count the whole table for "N total", and
    fetch the whole filtered queryset when it fits one page or "Show all" is asked for.
    """

    def get_results(self, request: HttpRequest) -> None:
        paginator = self.model_admin.get_paginator(request, self.queryset, self.list_per_page)
        try:
            page = paginator.page(self.page_num)
        except InvalidPage as error:
            raise IncorrectLookupParameters(error) from error
        self.result_count = paginator.count
        self.show_full_result_count = False
        self.show_admin_actions = True
        # The search box prints "N results" whenever this differs from result_count; with
        # no total known, the paginator's "more than N" is the only honest figure.
        self.full_result_count = self.result_count
        self.result_list = page.object_list
        self.can_show_all = False
        self.multi_page = paginator.num_pages > 1
        self.paginator = paginator


# -- Base classes ------------------------------------------------------------------------


class ReadOnlyAdmin(TypedModelAdmin[_M]):
    """Rows written by the pipeline: viewable, never added, changed or deleted by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return False


class LargeTableAdmin(ReadOnlyAdmin[_M]):
    """A read-only table too large to count: no totals, no facet counts, no "Show all"."""

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_max_show_all = 0
    paginator = LookaheadPaginator

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LookaheadChangeList

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> LookaheadPaginator[_M]:
        try:
            page_number = int(request.GET.get(PAGE_VAR, 1))
        except ValueError:
            page_number = 1  # as the changelist reads it
        return LookaheadPaginator(queryset, per_page, page_number)


def search_chunk_id(queryset: QuerySet[_M], term: str, *, by_source: bool = True) -> QuerySet[_M]:
    """Rows of exactly one chunk id, matched as typed (an index can serve it; icontains not).

    A chunk id starts with its source id (``source:shard:pass:offset``); with ``by_source``
    the source is filtered on as well, so an index led by the source narrows the search.
    """
    term = term.strip()
    if not term:
        return queryset
    queryset = queryset.filter(chunk_id=term)
    source_id = term.split(":", 1)[0]
    if by_source and source_id.isdecimal() and int(source_id) <= MAX_ID:
        queryset = queryset.filter(source_id=int(source_id))
    return queryset


# -- Input filters -----------------------------------------------------------------------


@dataclass(frozen=True)
class FilterInput:
    name: str
    label: str
    value: str
    placeholder: str


class InputFilter(admin.ListFilter):
    """A sidebar filter of typed-in values, for choices too many to list as links.

    Subclasses name their query-string parameters in ``inputs`` as
    ``(parameter, label, placeholder)``. Other parameters of the page are carried along as
    hidden inputs, so the filter combines with the others.
    """

    template = "admin/ingest/input_filter.html"
    inputs: tuple[tuple[str, str, str], ...] = ()

    def __init__(
        self,
        request: HttpRequest,
        params: dict[str, Any],
        model: type[Model],
        model_admin: Any,
    ) -> None:
        super().__init__(request, params, model, model_admin)
        self.values: dict[str, str] = {}
        for name, _, _ in self.inputs:
            if name in params:
                given = params.pop(name)
                value = (given[-1] if isinstance(given, list) else str(given)).strip()
                if value:
                    self.values[name] = value
                    self.used_parameters[name] = value
        own = {*self.expected_parameters(), PAGE_VAR, ERROR_FLAG}
        self.hidden = [
            (name, value)
            for name, values in request.GET.lists()
            if name not in own
            for value in values
        ]

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return [name for name, _, _ in self.inputs]

    @property
    def fields(self) -> list[FilterInput]:
        return [
            FilterInput(name, label, self.values.get(name, ""), placeholder)
            for name, label, placeholder in self.inputs
        ]

    def choices(self, changelist: ChangeList) -> Iterator[_ListFilterChoices]:
        yield {
            "selected": not self.values,
            "query_string": changelist.get_query_string(
                remove=[name for name, _, _ in self.inputs]
            ),
            "display": "All",
        }


class GpuFilter(InputFilter):
    """Samples of one GPU, given by its id (as the GPU pages link), its uuid, or uuid:instance."""

    title = "GPU"
    parameter = "gpu"
    inputs = ((parameter, "uuid, uuid:instance or id", "GPU-5fd4f087-..."),)

    @cached_property
    def gpu(self) -> Gpu | None:
        value = self.values.get(self.parameter)
        if value is None:
            return None
        if value.isdecimal():
            if int(value) > MAX_ID:
                return None
            return Gpu.objects.filter(pk=int(value)).first()
        return Gpu.objects.device(value).first()

    @property
    def note(self) -> str:
        if self.parameter not in self.values:
            return ""
        return str(self.gpu) if self.gpu else "no such GPU"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.parameter not in self.values:
            return queryset
        if self.gpu is None:
            return queryset.none()
        return queryset.filter(gpu_id=self.gpu.pk)


def _parse_moment(text: str) -> tuple[datetime, bool]:
    """A time typed by a user: an ISO 8601 date and time, or a date alone (then True).

    A time without a zone is read in the site's time zone.
    """
    day = parse_date(text)  # first: parse_datetime would read a date alone as midnight
    if day is not None:
        return timezone.make_aware(datetime.combine(day, time.min)), True
    moment = parse_datetime(text)
    if moment is None:
        raise ValueError(text)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment, False


class TimeRangeFilter(InputFilter):
    """Samples from ``start`` to ``end``, both inclusive; a date alone means the whole day."""

    title = "time range"
    inputs = (
        ("start", "from", "2025-07-18 13:00"),
        ("end", "to", "2025-07-18 14:00:00+00:00"),
    )
    field = "timestamp"

    def __init__(
        self,
        request: HttpRequest,
        params: dict[str, Any],
        model: type[Model],
        model_admin: Any,
    ) -> None:
        super().__init__(request, params, model, model_admin)
        self.bounds: dict[str, tuple[datetime, bool]] = {}
        for name, label, _ in self.inputs:
            if name not in self.values:
                continue
            try:
                self.bounds[name] = _parse_moment(self.values[name])
            except ValueError:
                messages.error(
                    request,
                    f"Time range {label!r}: {self.values[name]!r} is not a date or a date "
                    "and time (YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS][+HH:MM]); it was ignored.",
                )

    @property
    def note(self) -> str:
        return f"Times without a zone are in {timezone.get_current_timezone_name()}."

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if "start" in self.bounds:
            start, _ = self.bounds["start"]
            queryset = queryset.filter(**{f"{self.field}__gte": start})
        if "end" in self.bounds:
            end, whole_day = self.bounds["end"]
            if whole_day:
                queryset = queryset.filter(**{f"{self.field}__lt": end + timedelta(days=1)})
            else:
                queryset = queryset.filter(**{f"{self.field}__lte": end})
        return queryset


# -- Telemetry -----------------------------------------------------------------------------


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


class SampleChangeList(LookaheadChangeList):
    def get_ordering(self, request: HttpRequest, queryset: QuerySet[Any]) -> list[Any]:
        # Column sorting is off (an order no index serves would sort the whole table), and
        # an ``o`` typed into the address is ignored for the same reason.
        return list(self.model_admin.get_ordering(request))


@admin.register(Sample)
class SampleAdmin(LargeTableAdmin[Sample]):
    """Samples, read-only, newest first, without any query that counts or scans the table.

    The order follows an index: with a GPU chosen, newest sample time first (the
    (gpu, timestamp) index); otherwise newest written first, by id (the primary key index
    of each partition), because no index serves "newest time first" across all GPUs and
    that order would sort the whole table. In processing-time mode the two orders roughly agree.
    """

    list_display = ("sampled_at", "gpu", "metric", "value", "workload")
    list_display_links = ("sampled_at",)
    list_filter = (GpuFilter, TimeRangeFilter, "metric")
    list_select_related = ("gpu", "metric", "workload")
    ordering = ("-timestamp", "-id")
    sortable_by = ()
    date_hierarchy = None

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return SampleChangeList

    @admin.display(description="timestamp")
    def sampled_at(self, sample: Sample) -> str:
        # To the second and below: many samples of a GPU fall within the same minute.
        return timezone.localtime(sample.timestamp).isoformat(sep=" ")

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        if request.GET.get(GpuFilter.parameter, "").strip():
            return ("-timestamp", "-id")
        return ("-id",)


# -- Stream sources --------------------------------------------------------------------------


class StreamCursorInline(TypedTabularInline[StreamCursor, StreamSource]):
    """Where each shard of the source has got to, and how many chunks await a commit."""

    model = StreamCursor
    fields = (
        "shard",
        "position",
        "next_line",
        "pass_number",
        "rows_streamed",
        "finished",
        "outstanding_chunks",
    )
    readonly_fields = fields
    extra = 0
    max_num = 0  # cursors are laid out by the streamer: no "add another"
    can_delete = False
    show_change_link = True

    @admin.display(description="outstanding chunks")
    def outstanding_chunks(self, cursor: StreamCursor) -> int:
        return cursor.outstanding.count()


class StreamSourceForm(TypedModelForm[StreamSource]):
    """Checks a location as ``manage.py add_source`` does.

    Files of the default site are checked on this host (and stored as absolute paths);
    files of another site live on that site's streamers, so only their form is checked.
    """

    class Meta:
        model = StreamSource
        fields = (
            "name",
            "location",
            "site",
            "batch_size",
            "interval_seconds",
            "pace",
            "timestamp_mode",
            "loop",
            "shards",
            "enabled",
            "scheduled",
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        location = cleaned.get("location")
        if location and "location" in self.changed_data:
            try:
                if cleaned.get("site", DEFAULT_SITE) == DEFAULT_SITE:
                    cleaned["location"] = sources.validate_location(location)
                elif "://" in location and not location.startswith(("http://", "https://")):
                    raise ValidationError(
                        f"only files and http(s) URLs can be streamed, not {location!r}"
                    )
            except ValidationError as error:
                self.add_error("location", error)
        shards = cleaned.get("shards") or 1
        location = cleaned.get("location") or ""
        if shards > 1 and location.startswith(("http://", "https://")):
            self.add_error("shards", "an http(s) source is streamed as one shard")
        return cleaned


@admin.register(StreamSource)
class StreamSourceAdmin(TypedModelAdmin[StreamSource]):
    """Stream sources; saving one (or pausing or resuming it) updates its beat entry."""

    form = StreamSourceForm
    list_display = (
        "name",
        "location",
        "site",
        "pace",
        "timestamp_mode",
        "batch_size",
        "interval_seconds",
        "loop",
        "enabled",
        "error",
        "throttled_ticks",
    )
    list_filter = ("enabled", "site", "pace")
    search_fields = ("name", "location")
    readonly_fields = (
        "beat_entry",
        "command_line_only",
        "columns",
        "last_error",
        "last_error_at",
        "throttled_ticks",
        "created_at",
    )
    inlines = (StreamCursorInline,)
    actions = ("pause", "resume", "rewind", "stream_once")

    def get_readonly_fields(
        self, request: HttpRequest, obj: StreamSource | None = None
    ) -> tuple[str, ...]:
        fields = tuple(self.readonly_fields)
        # The shards' byte offsets were laid out in this file: register a new source to
        # stream another one. A command-line-only file was allowed for the import_csv that
        # named it, not for whatever location this form might be given.
        if obj is not None and (obj.command_line_only or obj.cursors.exists()):
            fields = ("location", "shards", *fields)
        return fields

    def save_model(self, request: HttpRequest, obj: StreamSource, form: Any, change: bool) -> None:
        if change:
            # Only the form's own fields: streamers write the columns, errors and throttle
            # counts of the same row meanwhile, and a full save would put old values back.
            obj.save(update_fields=list(form.fields))
        else:
            obj.save()

    @admin.display(description="last error")
    def error(self, source: StreamSource) -> str:
        return Truncator(source.last_error).chars(80)

    @admin.display(description="beat entry")
    def beat_entry(self, source: StreamSource) -> SafeString | str:
        task = PeriodicTask.objects.filter(name=periodic_task_name(source)).first()
        if task is None:
            return "none"
        url = reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])
        state = "enabled" if task.enabled else "disabled"
        return format_html('<a href="{}">{}</a> ({})', url, task.name, state)

    def _set_enabled(
        self, request: HttpRequest, queryset: QuerySet[StreamSource], enabled: bool
    ) -> None:
        changed, unchanged = [], []
        for source in queryset:
            if source.enabled == enabled:
                unchanged.append(source.name)
                continue
            source.enabled = enabled
            # save(), not update(): its post_save signal updates the beat entry.
            source.save(update_fields=["enabled"])
            self.log_change(request, source, "Resumed." if enabled else "Paused.")
            changed.append(source.name)
        verb = "Resumed" if enabled else "Paused"
        state = "running" if enabled else "paused"
        if changed:
            self.message_user(
                request,
                f"{verb} {_count(len(changed), 'source')} ({', '.join(changed)}); "
                f"beat ticks are {'on' if enabled else 'off'}.",
                messages.SUCCESS,
            )
        if unchanged:
            self.message_user(
                request,
                f"Already {state}: {', '.join(unchanged)}.",
                messages.INFO,
            )

    @admin.action(description="Pause: stop the beat ticks", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[StreamSource]) -> None:
        self._set_enabled(request, queryset, enabled=False)

    @admin.action(description="Resume: start the beat ticks again", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[StreamSource]) -> None:
        self._set_enabled(request, queryset, enabled=True)

    @admin.action(
        description="Rewind: stream again from the first line, as a new pass",
        permissions=["change"],
    )
    def rewind(self, request: HttpRequest, queryset: QuerySet[StreamSource]) -> None:
        rewound, fresh = [], []
        for source in queryset:
            if not source.cursors.exists():
                fresh.append(source.name)
                continue
            sources.rewind(source)
            self.log_change(request, source, "Rewound.")
            passes = sorted(set(source.cursors.values_list("pass_number", flat=True)))
            rewound.append(f"{source.name} (pass {', '.join(map(str, passes))})")
        if rewound:
            self.message_user(
                request,
                f"Rewound {_count(len(rewound), 'source')}: {', '.join(rewound)}. "
                "The next ticks stream them from their first line.",
                messages.SUCCESS,
            )
        if fresh:
            self.message_user(
                request,
                f"Not streamed yet, nothing to rewind: {', '.join(fresh)}.",
                messages.INFO,
            )

    @admin.action(description="Stream once: send one tick now", permissions=["change"])
    def stream_once(self, request: HttpRequest, queryset: QuerySet[StreamSource]) -> None:
        sent, paused = [], []
        try:
            for source in queryset:
                if not source.enabled:
                    paused.append(source.name)  # a tick of a paused source does nothing
                    continue
                app.send_task(STREAM_TASK, args=[source.pk], queue=source.stream_queue, expires=60)
                sent.append(f"{source.name} -> {source.stream_queue}")
        except BROKER_ERRORS as error:
            self.message_user(request, f"The broker could not be reached: {error}", messages.ERROR)
        if sent:
            self.message_user(
                request,
                f"Sent a stream tick for {_count(len(sent), 'source')}: {', '.join(sent)}.",
                messages.SUCCESS,
            )
        if paused:
            self.message_user(
                request,
                f"Paused, so no tick was sent: {', '.join(paused)}. Resume them first.",
                messages.WARNING,
            )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


@admin.register(StreamCursor)
class StreamCursorAdmin(ReadOnlyAdmin[StreamCursor]):
    list_display = (
        "source",
        "shard",
        "position",
        "end_offset",
        "next_line",
        "pass_number",
        "rows_streamed",
        "finished",
    )
    list_filter = ("source", "finished")
    list_select_related = ("source",)


@admin.register(OutstandingChunk)
class OutstandingChunkAdmin(ReadOnlyAdmin[OutstandingChunk]):
    """Chunks published (or about to be) and not yet seen in the ledger."""

    list_display = (
        "chunk_id",
        "cursor",
        "first_line",
        "line_count",
        "stamp",
        "published_at",
        "publish_count",
    )
    list_filter = ("cursor__source",)
    list_select_related = ("cursor",)

    @admin.display(description="chunk id")
    def chunk_id(self, chunk: OutstandingChunk) -> str:
        cursor = chunk.cursor
        return chunk_id_for(cursor.source_id, cursor.shard, chunk.pass_number, chunk.start_offset)


# -- Delivery state --------------------------------------------------------------------------


@admin.register(IngestedChunk)
class IngestedChunkAdmin(LargeTableAdmin[IngestedChunk]):
    """The ledger. Never edited: a deleted row would let a redelivered chunk in twice."""

    list_display = (
        "chunk_id",
        "source",
        "committed_at",
        "rows_committed",
        "rows_rejected",
        "dead_lettered",
    )
    list_filter = ("dead_lettered", "source")
    search_fields = ("chunk_id",)
    search_help_text = "An exact chunk id: source:shard:pass:offset."
    ordering = ("-committed_at", "-chunk_id")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[IngestedChunk], search_term: str
    ) -> tuple[QuerySet[IngestedChunk], bool]:
        return search_chunk_id(queryset, search_term, by_source=False), False


@admin.register(ChunkAttempt)
class ChunkAttemptAdmin(ReadOnlyAdmin[ChunkAttempt]):
    """Deliveries counted per uncommitted chunk; one past the limit is dead-lettered."""

    list_display = ("chunk_id", "attempts", "short_error", "updated_at")
    search_fields = ("chunk_id",)
    search_help_text = "An exact chunk id: source:shard:pass:offset."
    ordering = ("-updated_at",)

    @admin.display(description="last error")
    def short_error(self, attempt: ChunkAttempt) -> str:
        return Truncator(attempt.last_error).chars(100)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ChunkAttempt], search_term: str
    ) -> tuple[QuerySet[ChunkAttempt], bool]:
        return search_chunk_id(queryset, search_term, by_source=False), False


@admin.register(RejectedRow)
class RejectedRowAdmin(LargeTableAdmin[RejectedRow]):
    """CSV lines that did not become samples. Kept, never deleted: /stats counts them."""

    list_display = ("created_at", "source", "line_number", "reason", "chunk_id")
    list_filter = ("source",)
    list_select_related = ("source",)
    search_fields = ("chunk_id",)
    search_help_text = "An exact chunk id: source:shard:pass:offset."

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[RejectedRow], search_term: str
    ) -> tuple[QuerySet[RejectedRow], bool]:
        return search_chunk_id(queryset, search_term), False


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin[DeadLetter]):
    """Messages set aside whole; the replay action sends them back to the collectors."""

    list_display = ("created_at", "chunk_id", "source", "short_reason", "attempts", "replayed_at")
    list_filter = (("replayed_at", admin.EmptyFieldListFilter), "source")
    list_select_related = ("source",)
    search_fields = ("chunk_id",)
    search_help_text = "An exact chunk id: source:shard:pass:offset."
    fields = (
        "chunk_id",
        "source",
        "reason",
        "attempts",
        "created_at",
        "replayed_at",
        "payload_summary",
    )
    readonly_fields = fields
    actions = ("replay",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[DeadLetter], search_term: str
    ) -> tuple[QuerySet[DeadLetter], bool]:
        return search_chunk_id(queryset, search_term, by_source=False), False

    @admin.display(description="reason")
    def short_reason(self, letter: DeadLetter) -> str:
        return Truncator(letter.reason).chars(100)

    @admin.display(description="payload")
    def payload_summary(self, letter: DeadLetter) -> str:
        raw = bytes(letter.payload)
        try:
            payload = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        except (ValueError, TypeError, msgpack.UnpackException):
            return f"{len(raw)} bytes that do not unpack"
        if not isinstance(payload, dict):
            preview = Truncator(repr(payload)).chars(200)
            return f"{len(raw)} bytes: {type(payload).__name__} {preview}"
        parts = [
            f"{key}={len(value)} bytes" if isinstance(value, bytes) else f"{key}={value!r}"
            for key, value in payload.items()
        ]
        return f"{len(raw)} bytes: {Truncator(', '.join(parts)).chars(500)}"

    def has_replay_permission(self, request: HttpRequest) -> bool:
        # The page is read-only for everyone; replaying takes the model's change permission.
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(description="Replay: send back to the collectors", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        letters = list(queryset)
        waiting = [letter for letter in letters if letter.replayed_at is None]
        try:
            replayed = dead_letters.replay(waiting)
        except dead_letters.ReplayError as error:
            self.message_user(
                request,
                f"Replayed {_count(error.replayed, 'dead letter')}, then stopped: {error}",
                messages.ERROR,
            )
            return
        self.message_user(
            request,
            f"Replayed {_count(replayed, 'dead letter')} to the collect queue.",
            messages.SUCCESS,
        )
        if replayed < len(letters):
            self.message_user(
                request,
                f"Skipped {len(letters) - replayed}: already replayed, or unreadable.",
                messages.INFO,
            )


@admin.register(Tally)
class TallyAdmin(ReadOnlyAdmin[Tally]):
    """The striped counters behind /api/v1/stats (sum the stripes of a name for its total)."""

    list_display = ("name", "stripe", "value")
    search_fields = ("name",)
    ordering = ("name", "stripe")
