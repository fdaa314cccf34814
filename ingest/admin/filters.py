"""Sidebar filters of typed-in values, for choices too many to list as links.

A GPU (one of thousands) and a time range filter the sample list; both read values a user
types, so neither lists every choice nor counts rows per choice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final

from django.contrib import admin, messages
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR, ChangeList
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from ingest.admin.base import MAX_ID
from ingest.models import Gpu

if TYPE_CHECKING:
    from django.contrib.admin.filters import _ListFilterChoices  # only in the stubs


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
    """Samples from ``start`` to ``end``, both inclusive; a date alone means the whole day.

    Without a GPU chosen the range is at most ``WINDOW_WITHOUT_GPU`` wide, the last 15 minutes
    when none is given: the BRIN index on time reads that window's pages without a sort of the
    whole table or a scan of a partition (docs/design.md, "The admin's sample list"). A range
    given wider is cut to its last ``WINDOW_WITHOUT_GPU`` (to its first, from a start alone),
    and the page says so.
    """

    title = "time range"
    inputs = (
        ("start", "from", "2025-07-18 13:00"),
        ("end", "to", "2025-07-18 14:00:00+00:00"),
    )
    field = "timestamp"

    @property
    def gpu_chosen(self) -> bool:
        return any(name == GpuFilter.parameter and value.strip() for name, value in self.hidden)

    @property
    def note(self) -> str:
        zone = f"Times without a zone are in {timezone.get_current_timezone_name()}."
        if self.gpu_chosen:
            return zone
        minutes = _minutes(WINDOW_WITHOUT_GPU)
        return (
            f"{zone} Without a GPU, at most {minutes} minutes are listed "
            f"(the last {minutes} when no range is given)."
        )

    def bounds(self, request: HttpRequest) -> dict[str, tuple[datetime, bool]]:
        """The typed-in times that parse, by input name; each one that does not is reported
        to the user and ignored."""
        bounds: dict[str, tuple[datetime, bool]] = {}
        for name, label, _ in self.inputs:
            if name not in self.values:
                continue
            try:
                bounds[name] = _parse_moment(self.values[name])
            except ValueError:
                messages.error(
                    request,
                    f"Time range {label!r}: {self.values[name]!r} is not a date or a date "
                    "and time (YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS][+HH:MM]); it was ignored.",
                )
        return bounds

    def range(self, request: HttpRequest) -> TimeRange:
        """The range to list: the one typed in, narrowed as the class says without a GPU."""
        bounds = self.bounds(request)
        start = bounds["start"][0] if "start" in bounds else None
        end, end_included = None, True
        if "end" in bounds:
            end, whole_day = bounds["end"]
            if whole_day:
                end, end_included = end + timedelta(days=1), False
        asked = TimeRange(start, end, end_included)
        if self.gpu_chosen:
            return asked
        if end is None:
            if start is None:
                now = timezone.now()
                return TimeRange(now - WINDOW_WITHOUT_GPU, now, True)
            return TimeRange(start, start + WINDOW_WITHOUT_GPU, True)
        if start is not None and end - start <= WINDOW_WITHOUT_GPU:
            return asked
        narrowed = TimeRange(end - WINDOW_WITHOUT_GPU, end, end_included)
        if start is not None:
            messages.warning(
                request,
                f"Without a GPU the list covers at most {_minutes(WINDOW_WITHOUT_GPU)} minutes: "
                f"it shows {narrowed}. Choose a GPU to list a longer range.",
            )
        return narrowed

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        window = self.range(request)
        if window.start is not None:
            queryset = queryset.filter(**{f"{self.field}__gte": window.start})
        if window.end is not None:
            lookup = "lte" if window.end_included else "lt"
            queryset = queryset.filter(**{f"{self.field}__{lookup}": window.end})
        return queryset


@dataclass(frozen=True)
class TimeRange:
    start: datetime | None  # included
    end: datetime | None
    end_included: bool

    def __str__(self) -> str:
        shown = [
            "" if moment is None else timezone.localtime(moment).isoformat(sep=" ")
            for moment in (self.start, self.end)
        ]
        return " to ".join(shown)


# The widest range the sample list reads without a GPU, and its default: at 2,000 GPUs
# reporting 10 metrics every 10 s that is 1.8M rows to order (docs/sample-indexes.md).
WINDOW_WITHOUT_GPU: Final = timedelta(minutes=15)


def _minutes(span: timedelta) -> int:
    return span // timedelta(minutes=1)
