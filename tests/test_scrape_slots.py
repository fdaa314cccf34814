"""Scrape slots and pages without the pipeline: where a slot starts and ends, and what a
fetched page is taken for (a local exporter stand-in; no database or broker)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ingest.chunks import ChunkFormat
from ingest.scraper import ScrapeError, fetch_page
from ingest.slots import slot_end, slot_ms, slot_start
from tests.support.exporter_server import Exporter, exporter_page, running_exporter


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    with running_exporter() as running:
        yield running


@pytest.mark.parametrize(
    ("moment", "interval", "start"),
    [
        (datetime(2026, 3, 2, 10, 0, 17, 500_000, tzinfo=UTC), 10, datetime(2026, 3, 2, 10, 0, 10)),
        (datetime(2026, 3, 2, 10, 0, 10, tzinfo=UTC), 10, datetime(2026, 3, 2, 10, 0, 10)),
        (datetime(2026, 3, 2, 10, 0, 9, 999_000, tzinfo=UTC), 10, datetime(2026, 3, 2, 10, 0, 0)),
        (datetime(2026, 3, 2, 10, 7, 59, tzinfo=UTC), 60, datetime(2026, 3, 2, 10, 7, 0)),
    ],
)
def test_a_slot_starts_at_the_last_multiple_of_its_interval_since_the_epoch(
    moment: datetime, interval: int, start: datetime
) -> None:
    begins = slot_ms(moment, interval)

    assert slot_start(begins) == start.replace(tzinfo=UTC)
    assert slot_end(begins, interval) == start.replace(tzinfo=UTC) + timedelta(seconds=interval)
    assert begins % (interval * 1000) == 0


def test_a_page_labelled_as_text_is_read_as_the_text_format(exporter: Exporter) -> None:
    page = fetch_page(f"{exporter.url}/metrics", timeout=5)
    assert (page.format, page.data) == (ChunkFormat.EXPOSITION, exporter_page(1))


@pytest.mark.parametrize("path", ["/openmetrics", "/openmetrics-as-text"])
def test_an_openmetrics_page_is_known_by_its_content_type_or_its_eof(
    exporter: Exporter, path: str
) -> None:
    assert fetch_page(f"{exporter.url}{path}", timeout=5).format is ChunkFormat.OPENMETRICS


def test_a_page_that_is_not_an_exposition_is_refused_before_it_is_read(
    exporter: Exporter,
) -> None:
    with pytest.raises(ScrapeError, match="answered text/html, not an exposition page"):
        fetch_page(f"{exporter.url}/status", timeout=5)
