"""One scrape: fetch a source's exporter page for its slot, record it, publish it.

The page is fetched (``ingest.fetch``: the address policy, a timeout no longer than the
interval, ``SCRAPE_MAX_BYTES``) and read whole by the exposition parser before anything is
recorded: a target that is down, slow, oversized, answers an error or something that is not an
exposition page, or a page the parser refuses, is a failed scrape of that source
(``last_error``), with nothing written for its slot. A page that parses is recorded, in the
stream tick's transaction (``ingest.streamer.tick_cursor``), as an outstanding chunk on the
source's one cursor holding the collect message itself, and published after the commit as an
exposition chunk with the id ``scrape:<source id>:<slot ms>``. From there it is a chunk like
any other: confirmed by a later tick once the ledger holds it, published again (the stored
message, never a new fetch) while it does not. docs/design.md, "Scrape sources".
"""

from __future__ import annotations

import http.client
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Final

import msgpack
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from ingest import fetch, streamer
from ingest.chunks import Chunk, ChunkFormat
from ingest.exposition import ExpositionError, parse_page
from ingest.models import IngestedChunk, OutstandingChunk, StreamCursor, StreamSource
from ingest.models import scrape_chunk_id as chunk_id_of
from ingest.slots import slot_end, slot_start
from ingest.streamer import Planned, TickReport

logger = logging.getLogger(__name__)

# The text format first, as dcgm-exporter serves it; OpenMetrics is read as well.
ACCEPT: Final = "text/plain;version=0.0.4;q=1.0, application/openmetrics-text;version=1.0.0;q=0.9"
OPENMETRICS_TYPE: Final = "application/openmetrics-text"
PAGE_TYPES: Final = frozenset({"text/plain", OPENMETRICS_TYPE})
READ_BLOCK: Final = 1 << 16


class ScrapeError(Exception):
    """The target gave no page this scrape: down, slow, too large, or not an exposition."""


@dataclass(frozen=True, slots=True)
class ScrapedPage:
    data: bytes
    format: ChunkFormat


def scrape_slot(source_id: int, start_ms: int) -> TickReport:
    """The body of the ``ingest.scrape`` task: scrape the source for the slot at ``start_ms``."""
    report = TickReport()
    source = StreamSource.objects.filter(pk=source_id, kind=StreamSource.Kind.SCRAPE).first()
    if source is None or not source.enabled:
        report.notes.append("source missing, disabled or not scraped")
        return report
    cursor, _ = StreamCursor.objects.get_or_create(
        source=source,
        shard=0,
        defaults={"start_offset": 0, "start_line": 1, "position": 0, "next_line": 1},
    )
    plan = None
    if _recorded(source, cursor, start_ms):
        report.notes.append(f"slot {start_ms} recorded before")  # a redelivered task
    elif timezone.now() >= slot_end(start_ms, source.interval_seconds):
        report.notes.append(f"slot {start_ms} over before its scrape: a gap")
    else:
        chunk = _scrape(source, start_ms, report)
        if chunk is not None:
            plan = partial(_record_page, start_ms=start_ms, chunk=chunk, payload=chunk.to_payload())
    streamer.tick_cursor(source, cursor.pk, report, plan, wait=True)
    return report


def _recorded(source: StreamSource, cursor: StreamCursor, start_ms: int) -> bool:
    return (
        cursor.outstanding.filter(start_offset=start_ms).exists()
        or IngestedChunk.objects.filter(pk=chunk_id_of(source.pk, start_ms)).exists()
    )


def _scrape(source: StreamSource, start_ms: int, report: TickReport) -> Chunk | None:
    """The slot's chunk, with the source's health written; None when the scrape failed."""
    started = time.monotonic()
    scraped_at = timezone.now()
    source_times = source.timestamp_mode == StreamSource.TimestampMode.SOURCE
    try:
        page = fetch_page(
            source.location, timeout=min(settings.SCRAPE_TIMEOUT_SECONDS, source.interval_seconds)
        )
        parsed = parse_page(
            page.data,
            scraped_at=scraped_at,
            openmetrics=page.format is ChunkFormat.OPENMETRICS,
            source_times=source_times,
        )
    except (ScrapeError, ExpositionError) as error:
        streamer.record_source_error(
            source.pk,
            f"scrape failed: {error}",
            report,
            last_scrape_at=scraped_at,
            last_scrape_duration_seconds=time.monotonic() - started,
        )
        return None
    StreamSource.objects.filter(pk=source.pk).update(
        last_scrape_at=scraped_at,
        last_success_at=scraped_at,
        last_scrape_duration_seconds=time.monotonic() - started,
        last_error="",
        last_error_at=None,
    )
    report.notes.append(
        f"scraped {len(parsed)} samples, {len(parsed.rejected)} rejected, "
        f"{parsed.skipped} of other families"
    )
    return Chunk(
        chunk_id=chunk_id_of(source.pk, start_ms),
        source_id=source.pk,
        first_line=1,
        line_count=page.data.count(b"\n"),
        columns=(),
        stamp=None if source_times else slot_start(start_ms),
        data=page.data,
        format=page.format,
        scraped_at=scraped_at,
    )


def _record_page(
    source: StreamSource,
    cursor: StreamCursor,
    _budget: int,
    now: datetime,
    *,
    start_ms: int,
    chunk: Chunk,
    payload: dict[str, Any],
) -> list[Planned]:
    """Record the slot's page as outstanding (a ``streamer.Planner``): one chunk, its slot as
    its offsets; nothing when another delivery of the slot's task recorded it first."""
    try:
        with transaction.atomic():
            outstanding = OutstandingChunk.objects.create(
                cursor=cursor,
                pass_number=cursor.pass_number,
                start_offset=start_ms,
                end_offset=start_ms,
                first_line=chunk.first_line,
                line_count=chunk.line_count,
                stamp=chunk.stamp,
                recorded_at=now,
                published_at=now,
                payload=msgpack.packb(payload, use_bin_type=True),
            )
    except IntegrityError:
        return []
    return [Planned(outstanding, payload)]


def fetch_page(url: str, *, timeout: float) -> ScrapedPage:
    """GET an exporter page, whole within ``timeout`` seconds and at most
    ``SCRAPE_MAX_BYTES``; raises ``ScrapeError`` saying why there is none."""
    deadline = time.monotonic() + timeout
    try:
        with fetch.open_url(
            url, timeout=timeout, headers={"Accept": ACCEPT}, max_bytes=settings.SCRAPE_MAX_BYTES
        ) as response:
            content_type = response.headers.get_content_type()  # text/plain when unsaid
            if content_type not in PAGE_TYPES:
                raise ScrapeError(
                    f"{url} answered {content_type}, not an exposition page "
                    f"({' or '.join(sorted(PAGE_TYPES))})"
                )
            blocks = []
            while block := response.read(READ_BLOCK):
                blocks.append(block)
                if time.monotonic() > deadline:
                    raise ScrapeError(f"{url}: the page took longer than {timeout:g} s")
    except fetch.FetchError as error:
        raise ScrapeError(str(error)) from None
    except (OSError, http.client.HTTPException) as error:  # refused, reset, timed out
        raise ScrapeError(f"{url}: {error or type(error).__name__}") from None
    data = b"".join(blocks)
    openmetrics = content_type == OPENMETRICS_TYPE or data.rstrip().endswith(b"# EOF")
    page_format = ChunkFormat.OPENMETRICS if openmetrics else ChunkFormat.EXPOSITION
    return ScrapedPage(data, page_format)
