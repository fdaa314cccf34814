"""The pipeline's sources as operators see them: state, progress, throughput, lag, errors.

A constant handful of queries whatever the number of sources or rows: the sources with their
cursors, the tallies (rows per source, rejections by category, both kept in the collect
transaction), the last five minutes of the ledger, the oldest outstanding chunk per source and
the dead letters waiting; plus the collect queue's depth from the broker. Locations are shown
without credentials: a URL's user and password and any query value whose name looks secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.db.models import Min, Sum
from django.urls import reverse
from django.utils import timezone

from api.serializers import optional_rfc3339, rfc3339
from ingest.models import (
    DeadLetter,
    IngestedChunk,
    OutstandingChunk,
    StreamCursor,
    StreamSource,
    Tally,
)
from ingest.queues import queue_depth
from telemetry_project.routing import COLLECT_QUEUE

RATE_WINDOW: Final = timedelta(minutes=5)
# Query parameters whose values are credentials in the URLs people paste (API keys, signed
# URLs, tokens): shown as REDACTED.
_SECRET_NAME: Final = re.compile(
    r"token|key|secret|passw|pwd|auth|signature|sig$|credential|session", re.IGNORECASE
)
REDACTED: Final = "REDACTED"


def without_credentials(location: str) -> str:
    """``location`` with a URL's user, password, secret query values and fragment removed;
    a file path as it is."""
    parts = urlsplit(location)
    if parts.scheme.lower() not in {"http", "https"}:
        return location
    query = urlencode(
        [
            (name, REDACTED if _SECRET_NAME.search(name) else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
    )
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def source_state(source: StreamSource, cursors: list[StreamCursor]) -> str:
    """paused, error, finished or streaming for a file source; paused, scraping or down for a
    scrape source."""
    if not source.enabled:
        return "paused"
    if source.kind == StreamSource.Kind.SCRAPE:
        return "scraping" if source.last_scrape_at is None or _scrape_up(source) else "down"
    if source.last_error:
        return "error"
    if cursors and all(cursor.finished for cursor in cursors):
        return "finished"
    return "streaming"


def progress(source: StreamSource, cursors: list[StreamCursor]) -> dict[str, Any] | None:
    """The current pass and the fraction of its bytes read, over all shards; the fraction is
    null when a shard reads to the end of a file whose size is not known here (a URL)."""
    if source.kind == StreamSource.Kind.SCRAPE or not cursors:
        return None
    size = None if source.is_url else _file_size(source.location)
    done = total = 0
    for cursor in cursors:
        end = cursor.end_offset if cursor.end_offset is not None else size
        if end is None:
            return {"pass_number": _pass_number(cursors), "fraction": None}
        total += end - cursor.start_offset
        done += (
            end - cursor.start_offset if cursor.finished else cursor.position - cursor.start_offset
        )
    fraction = 1.0 if total <= 0 else min(1.0, max(0.0, done / total))
    return {"pass_number": _pass_number(cursors), "fraction": round(fraction, 4)}


def _pass_number(cursors: Iterable[StreamCursor]) -> int:
    return max(cursor.pass_number for cursor in cursors)


def _file_size(location: str) -> int | None:
    try:
        return Path(location).stat().st_size
    except OSError:  # gone or unreadable here: the streamer reports it on the source
        return None


def pipeline_sources(now: datetime | None = None) -> dict[str, Any]:
    """The body of GET /api/v1/sources."""
    now = now or timezone.now()
    zone = timezone.get_current_timezone()
    totals = Tally.totals()
    recent_rows = dict(
        IngestedChunk.objects.filter(committed_at__gte=now - RATE_WINDOW, source_id__isnull=False)
        .values_list("source_id")
        .annotate(rows=Sum("rows_committed"))
        .order_by()
    )
    oldest_outstanding = dict(
        OutstandingChunk.objects.values_list("cursor__source_id")
        .annotate(oldest=Min("recorded_at"))
        .order_by()
    )
    sources = []
    for source in StreamSource.objects.order_by("name").prefetch_related("cursors"):
        cursors = list(source.cursors.all())
        oldest = oldest_outstanding.get(source.pk)
        sources.append(
            {
                "id": source.pk,
                "name": source.name,
                "kind": source.kind,
                "location": without_credentials(source.location),
                "state": source_state(source, cursors),
                "enabled": source.enabled,
                "interval_seconds": source.interval_seconds,
                "follow": source.follow,
                "loop": source.loop,
                "progress": progress(source, cursors),
                "last_scrape": _last_scrape(source, zone),
                "rows_committed": _source_total(totals, source, Tally.SourceCounter.ROWS_COMMITTED),
                "rows_rejected": _source_total(totals, source, Tally.SourceCounter.ROWS_REJECTED),
                "rows_per_second": round(
                    (recent_rows.get(source.pk) or 0) / RATE_WINDOW.total_seconds(), 3
                ),
                "lag_seconds": None if oldest is None else round((now - oldest).total_seconds(), 3),
                "last_error": source.last_error,
                "last_error_at": optional_rfc3339(source.last_error_at, zone),
                "admin_url": reverse("admin:ingest_streamsource_change", args=[source.pk]),
            }
        )
    return {
        "generated_at": rfc3339(now, zone),
        "collect_queue_depth": _collect_queue_depth(),
        "dead_letters": DeadLetter.objects.filter(replayed_at__isnull=True).count(),
        "rejected_by_reason": rejected_by_reason(totals),
        "sources": sources,
    }


def rejected_by_reason(totals: dict[str, int]) -> list[dict[str, Any]]:
    """Rows rejected per reason category, the most frequent first."""
    counts = [
        (name.removeprefix(Tally.REJECTED_REASON_PREFIX), total)
        for name, total in totals.items()
        if name.startswith(Tally.REJECTED_REASON_PREFIX) and total
    ]
    return [
        {"reason": reason, "rows": rows}
        for reason, rows in sorted(counts, key=lambda item: (-item[1], item[0]))
    ]


def _source_total(
    totals: dict[str, int], source: StreamSource, counter: Tally.SourceCounter
) -> int | None:
    """A scheduled source's own tally; null for a one-off import, whose rows are counted
    with every other import's under one label (``Tally``)."""
    if not source.scheduled:
        return None
    return totals.get(Tally.source_key(str(source.pk), counter), 0)


def _last_scrape(source: StreamSource, zone: Any) -> dict[str, Any] | None:
    if source.kind != StreamSource.Kind.SCRAPE:
        return None
    return {
        "at": optional_rfc3339(source.last_scrape_at, zone),
        "last_success_at": optional_rfc3339(source.last_success_at, zone),
        "duration_seconds": source.last_scrape_duration_seconds,
        "up": source.last_scrape_at is not None and _scrape_up(source),
    }


def _scrape_up(source: StreamSource) -> bool:
    """Whether the source's newest scrape succeeded."""
    return (
        source.last_success_at is not None
        and source.last_scrape_at is not None
        and source.last_success_at >= source.last_scrape_at
    )


def _collect_queue_depth() -> int | None:
    try:
        return queue_depth(COLLECT_QUEUE)
    except Exception:  # noqa: BLE001  (the page stays useful while the broker is down)
        return None
