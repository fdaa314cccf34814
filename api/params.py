"""Query parameters of the API, validated strictly: a bad value is a 400 naming it.

DRF's own DateTimeField would quietly attach the server's zone to a zone-less time and its
paginator would quietly clamp a bad limit; here both are the client's error to hear about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.fleet import DEFAULT_METRICS
from ingest.fields import field
from ingest.models import Metric

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
# Enough buckets for a day at 10 s, a year at 1 h; more would be a huge answer, not a chart.
MAX_BUCKETS = 10_000
_BUCKET = re.compile(r"^(\d{1,6})(s|m|h|d)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


# RFC 3339 section 5.6 ``date-time``: full-date "T" full-time, the fraction optional, the
# offset "Z" or +hh:mm / -hh:mm. ABNF strings are case-insensitive, so "t" and "z" are the
# grammar too (the RFC's note says so). The space the note lets applications use instead of
# "T" is not taken: in a query string a space is most often an offset's "+" sent unencoded.
# ASCII digits only: Python's \d would also match other scripts' digits.
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt]"
    r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})(?:\.(?P<fraction>\d+))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})?",
    re.ASCII,
)
_UNENCODED_PLUS = re.compile(r"\d{4}-\d{2}-\d{2}[Tt][\d:.]+ \d{2}:\d{2}", re.ASCII)
_SPACE_SEPARATED = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:", re.ASCII)
MICROSECOND = timedelta(microseconds=1)
TIME_FORMAT = (
    "An RFC 3339 date-time (section 5.6) with its zone: 2025-07-18T20:42:34Z, "
    "2025-07-18T22:42:34.25+02:00 (send + as %2B). T and Z may be lower case; a space "
    "instead of T, a missing zone or any other form is a 400. Times are stored to the "
    "microsecond: a finer fraction, or a leap second (:60), is rounded into the range."
)


@extend_schema_field(OpenApiTypes.DATETIME)
class AwareDateTimeField(serializers.Field[datetime, datetime, str, Any]):
    """An RFC 3339 ``date-time`` exactly as the grammar has it; anything else is refused.

    A time without a zone is refused, not guessed. Samples are stored to the microsecond, so
    a bound with a finer fraction is rounded inwards (``lower``: up, ``upper``: down) and a
    leap second (``:60``), which lies between ``:59.999999`` and the next minute, is read as
    the first instant after it or the last before it: both keep "inclusive" exact.
    """

    default_error_messages = {
        "invalid": "Enter an RFC 3339 time such as 2025-07-18T20:42:34Z.",
        "naive": "The time has no zone: add Z or an offset such as +02:00.",
        "space": "Separate the date and the time with T, not a space: 2025-07-18T20:42:34Z.",
        "plus": "The offset's + arrived as a space: send it as %2B (2025-07-18T20:42:34%2B02:00).",
        "range": (
            "This time is not on the calendar: the year (0001-9999), month, day, hour, minute "
            "or offset is out of range."
        ),
        "leap": "A leap second (:60) can only end a day in UTC: 23:59:60Z or its offset form.",
        "overflow": "This time is outside the years 0001 to 9999 once converted to UTC.",
    }

    def __init__(self, *, bound: str, **kwargs: Any) -> None:
        if bound not in {"lower", "upper"}:
            raise ValueError(f"bound must be 'lower' or 'upper', not {bound!r}")
        self.round_up = bound == "lower"
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> datetime:
        if not isinstance(data, str):
            self.fail("invalid")
        match = _RFC3339.fullmatch(data)
        if match is None:
            if _UNENCODED_PLUS.fullmatch(data):
                self.fail("plus")
            if _SPACE_SEPARATED.match(data):
                self.fail("space")
            self.fail("invalid")
        if match["offset"] is None:
            self.fail("naive")
        try:
            return self._instant(match)
        except OverflowError:
            self.fail("overflow")

    def _instant(self, match: re.Match[str]) -> datetime:
        """The matched time in UTC, rounded inwards to the microsecond."""
        offset = match["offset"].upper()
        fraction = match["fraction"] or ""
        leap = match["second"] == "60"
        try:
            zone = UTC if offset == "Z" else _fixed_offset(offset)
            value = datetime.fromisoformat(
                f"{match['date']}T{match['hour']}:{match['minute']}:"
                f"{'59' if leap else match['second']}"
            ).replace(microsecond=int(fraction[:6].ljust(6, "0")), tzinfo=zone)
        except ValueError:
            self.fail("range")
        if leap:  # past every microsecond of :59, before the next minute
            value = value.replace(microsecond=999_999).astimezone(UTC)
            if (value.hour, value.minute) != (23, 59):
                self.fail("leap")
            return value + MICROSECOND if self.round_up else value
        if self.round_up and fraction[6:].strip("0"):
            value += MICROSECOND
        # In UTC: PostgreSQL refuses offsets beyond 15:59 that RFC 3339 allows.
        return value.astimezone(UTC)

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


def _fixed_offset(offset: str) -> timezone:
    """``+hh:mm`` / ``-hh:mm`` as a zone; hours 00-23 and minutes 00-59, as the grammar has."""
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    if hours > 23 or minutes > 59:
        raise ValueError(offset)
    sign = -1 if offset[0] == "-" else 1
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


@extend_schema_field({"type": "string", "pattern": _BUCKET.pattern, "example": "1m"})
class BucketField(serializers.Field[timedelta, timedelta, str, Any]):
    """A bucket width: a whole number of seconds, minutes, hours or days (``10s``, ``1h``)."""

    default_error_messages = {"invalid": "Use a width like 10s, 1m, 1h or 1d (at least 1s)."}

    def to_internal_value(self, data: Any) -> timedelta:
        match = _BUCKET.match(data) if isinstance(data, str) else None
        if match is None or int(match.group(1)) == 0:
            self.fail("invalid")
        return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])

    def to_representation(self, value: timedelta) -> str:
        return f"{int(value.total_seconds())}s"


class TimeRangeParams(serializers.Serializer[dict[str, Any]]):
    start_time = AwareDateTimeField(
        bound="lower", required=False, help_text=f"Inclusive lower bound. {TIME_FORMAT}"
    )
    end_time = AwareDateTimeField(
        bound="upper", required=False, help_text=f"Inclusive upper bound. {TIME_FORMAT}"
    )
    metric = serializers.ListField(
        child=serializers.CharField(max_length=128),
        required=False,
        help_text="Only these metrics (repeat the parameter for several).",
    )

    def validate_metric(self, names: list[str]) -> list[int]:
        """Metric names become ids here; an unknown name is an error, not an empty answer."""
        known = dict(Metric.objects.filter(name__in=names).values_list("name", "id"))
        unknown = sorted(set(names) - known.keys())
        if unknown:
            raise serializers.ValidationError(f"unknown metric(s): {', '.join(unknown)}")
        return [known[name] for name in names]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("start_time"), attrs.get("end_time")
        if start is not None and end is not None and start > end:
            raise serializers.ValidationError({"start_time": "start_time is after end_time."})
        return attrs


class FleetParams(serializers.Serializer[dict[str, Any]]):
    metric = serializers.ListField(
        child=serializers.CharField(max_length=128),
        required=False,
        help_text="A metric whose newest value each device shows; repeat for several. "
        f"Default: {', '.join(DEFAULT_METRICS)}.",
    )
    hostname = serializers.CharField(required=False, max_length=255, help_text="Exact host name.")
    model = serializers.CharField(required=False, max_length=128, help_text="Exact model name.")
    namespace = serializers.CharField(
        required=False,
        max_length=255,
        help_text="Only devices whose newest workload is in this Kubernetes namespace.",
    )


# The counter the 400 for fn without a metric suggests.
EXAMPLE_COUNTER = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"


class AggregateParams(TimeRangeParams):
    bucket = BucketField(help_text="Bucket width: 10s, 1m, 1h, 1d, ...")
    fn = serializers.ChoiceField(
        choices=["delta", "rate"],
        required=False,
        help_text="For counters (metric required, every one a counter in the DCGM field "
        "table): each bucket also gets its increase (delta) or its increase per second of the "
        "bucket's width (rate). A decrease counts as a reset: the new value is the increase.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        fn = attrs.get("fn")
        if fn is None:
            return attrs
        names = self.initial_data.getlist("metric") if "metric" in self.initial_data else []
        if not names:
            raise serializers.ValidationError(
                {"fn": f"fn={fn} needs metric: one or more counters, e.g. {EXAMPLE_COUNTER}."}
            )
        not_counters = [name for name in names if _kind(name) != "counter"]
        if not_counters:
            raise serializers.ValidationError(
                {
                    "metric": f"fn={fn} needs counters; not a counter: "
                    f"{', '.join(sorted(set(not_counters)))}."
                }
            )
        attrs["metric_names"] = dict(zip(attrs["metric"], names, strict=True))
        return attrs


def _kind(name: str) -> str | None:
    known = field(name)
    return None if known is None else known.kind


class FleetExportParams(TimeRangeParams):
    """An export of every device: the range is required, so no request reads all history."""

    start_time = AwareDateTimeField(
        bound="lower", help_text=f"Inclusive lower bound. {TIME_FORMAT}"
    )
    end_time = AwareDateTimeField(bound="upper", help_text=f"Inclusive upper bound. {TIME_FORMAT}")
    hostname = serializers.CharField(
        max_length=255, required=False, help_text="Only the devices of this host (exact name)."
    )
    model = serializers.CharField(
        max_length=128, required=False, help_text="Only devices of this GPU model (exact name)."
    )


def check_bucket_count(start: datetime, end: datetime, bucket: timedelta) -> None:
    if (end - start) / bucket > MAX_BUCKETS:
        raise serializers.ValidationError(
            {"bucket": [f"bucket is too small for the range: more than {MAX_BUCKETS} buckets."]}
        )


def reject_empty(query: QueryDict, names: Iterable[str]) -> None:
    """``limit=`` is a malformed limit, not an absent one: say so instead of defaulting."""
    empty = {name: ["This parameter is empty."] for name in names if query.get(name, None) == ""}
    if empty:
        raise serializers.ValidationError(empty)


def flat_errors(errors: Any) -> dict[str, list[str]]:
    """Errors as ``{parameter: [messages]}``, also for list parameters (``metric``), whose
    messages DRF nests by position."""
    flat: dict[str, list[str]] = {}
    for name, detail in dict(errors).items():
        if isinstance(detail, dict):
            flat[name] = [str(m) for messages in detail.values() for m in messages]
        elif isinstance(detail, list):
            flat[name] = [str(m) for m in detail]
        else:
            flat[name] = [str(detail)]
    return flat
