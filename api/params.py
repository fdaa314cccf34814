"""Query parameters of the API, validated strictly: a bad value is a 400 naming it.

DRF's own DateTimeField would quietly attach the server's zone to a zone-less time and its
paginator would quietly clamp a bad limit; here both are the client's error to hear about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ingest.models import Metric

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
# Enough buckets for a day at 10 s, a year at 1 h; more would be a huge answer, not a chart.
MAX_BUCKETS = 10_000
_BUCKET = re.compile(r"^(\d{1,6})(s|m|h|d)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@extend_schema_field(OpenApiTypes.DATETIME)
class AwareDateTimeField(serializers.Field[datetime, datetime, str, Any]):
    """An RFC 3339 time; a time without a zone (or offset) is refused, not guessed."""

    default_error_messages = {
        "invalid": "Enter an RFC 3339 time such as 2025-07-18T20:42:34Z.",
        "naive": "The time has no zone: add Z or an offset such as +02:00.",
    }

    def to_internal_value(self, data: Any) -> datetime:
        if not isinstance(data, str) or "T" not in data.upper():
            self.fail("invalid")
        try:
            value = datetime.fromisoformat(data.strip())
        except ValueError:
            self.fail("invalid")
        if value.tzinfo is None:
            self.fail("naive")
        try:
            # In UTC: PostgreSQL refuses offsets beyond 15:59 that RFC 3339 allows.
            return value.astimezone(UTC)
        except OverflowError:
            self.fail("invalid")

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


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
        required=False, help_text="Inclusive lower bound (RFC 3339, with a zone)."
    )
    end_time = AwareDateTimeField(
        required=False, help_text="Inclusive upper bound (RFC 3339, with a zone)."
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


class AggregateParams(TimeRangeParams):
    bucket = BucketField(help_text="Bucket width: 10s, 1m, 1h, 1d, ...")


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
