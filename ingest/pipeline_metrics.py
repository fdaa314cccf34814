"""The pipeline's state as Prometheus series, read from the database when /metrics is scraped.

Every number is exact and comes from counters written in the collect transaction (``Tally``)
or from small tables (sources, outstanding chunks): never a count of the sample table, the
ledger or the rejected rows, so a scrape costs the same at any size (three queries, and the
broker's queue depth). Per-source series carry the source's name; every one-off import (a
source nobody schedules, such as ``import_csv``'s) shares ``source="import"``, everything
pushed over the API (remote write, CSV and page imports) ``source="push"``, and a message
that names no existing source is counted under ``source="unknown"``, so there are never more
labels than the sources an admin registers, plus those three.

Each group of series is one function in ``FAMILIES``: a new kind of source with state of its
own (scrape sources: up, last success, duration) adds a function there.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db import Error as DatabaseError
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ingest.models import OutstandingChunk, StreamSource, Tally
from ingest.queues import check_broker

logger = logging.getLogger(__name__)

PREFIX = "telemetry_"
SOURCE = "source"

# Per-source tallies as counter series: the series name (without _total) and its help.
COUNTER_SERIES: dict[Tally.SourceCounter, tuple[str, str]] = {
    Tally.SourceCounter.ROWS_COMMITTED: (
        "rows_committed",
        "Rows committed as samples (retention later drops old samples; this never decreases).",
    ),
    Tally.SourceCounter.ROWS_REJECTED: (
        "rows_rejected",
        "Rows rejected with a reason (kept in the rejected rows).",
    ),
    Tally.SourceCounter.CHUNKS_COMMITTED: ("chunks_committed", "Chunks committed."),
    Tally.SourceCounter.DUPLICATE_DELIVERIES: (
        "duplicate_deliveries",
        "Deliveries of a chunk already committed or dead-lettered, skipped without writing.",
    ),
    Tally.SourceCounter.DEAD_LETTERS: (
        "dead_letters",
        "Collect messages set aside as dead letters (unreadable, or failing too often).",
    ),
    Tally.SourceCounter.IGNORED_SAMPLES: (
        "ignored_samples",
        "Pushed or scraped samples of series that are not DCGM fields: neither stored nor "
        "rejected.",
    ),
    Tally.SourceCounter.STALE_MARKERS: (
        "stale_markers",
        "Prometheus staleness markers received by remote write: skipped, never stored.",
    ),
    Tally.SourceCounter.MISSED_SLOTS: (
        "scrape_slots_missed",
        "Scrape slots that passed with no scrape dispatched (beat, the database or the "
        "dispatcher down or late): gaps in the source's data, never filled in later.",
    ),
}


SCRAPE_COLUMNS = ("last_scrape_at", "last_success_at", "last_scrape_duration_seconds")


@dataclass(frozen=True, slots=True)
class ScrapeHealth:
    """A scrape source's last scrape, as the scrapes wrote it on the source."""

    last_scrape_at: datetime | None
    last_success_at: datetime | None
    duration_seconds: float | None

    @property
    def up(self) -> bool:
        """Whether the last scrape succeeded (a failed one moves only ``last_scrape_at``)."""
        return self.last_success_at is not None and self.last_success_at == self.last_scrape_at


@dataclass(frozen=True, slots=True)
class Source:
    """A source as its series need it: the label it is exposed under, and its own state."""

    label: str
    throttled_ticks: int
    scrape: ScrapeHealth | None = None  # scrape sources only


@dataclass(frozen=True, slots=True)
class Outstanding:
    count: int
    oldest_recorded_at: datetime


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one scrape read from the database."""

    tallies: dict[str, int]
    sources: dict[int, Source]
    outstanding: dict[int, Outstanding]
    taken_at: datetime

    @classmethod
    def read(cls) -> Snapshot:
        columns = ("id", "name", "scheduled", "throttled_ticks", "kind", *SCRAPE_COLUMNS)
        sources = {
            source_id: Source(
                name if scheduled else Tally.IMPORTS,
                throttled,
                ScrapeHealth(*health) if kind == StreamSource.Kind.SCRAPE else None,
            )
            for source_id, name, scheduled, throttled, kind, *health in (
                StreamSource.objects.values_list(*columns)
            )
        }
        # Outstanding chunks are bounded by MAX_OUTSTANDING_CHUNKS per cursor: a small table.
        outstanding = {
            row["cursor__source_id"]: Outstanding(row["count"], row["oldest"])
            for row in OutstandingChunk.objects.values("cursor__source_id")
            .annotate(count=Count("id"), oldest=Min("recorded_at"))
            .order_by()
        }
        return cls(Tally.totals(), sources, outstanding, timezone.now())

    def label_of(self, tally_label: str) -> str:
        """The exposed source label of a tally's label (a source id, import or unknown)."""
        if not tally_label.isdigit():
            return tally_label
        source = self.sources.get(int(tally_label))
        return Tally.UNKNOWN_SOURCE if source is None else source.label

    def source_tallies(self) -> Iterator[tuple[str, Tally.SourceCounter, int]]:
        """(exposed source label, counter, total) of every per-source tally."""
        for name, total in self.tallies.items():
            split = Tally.split_source_key(name)
            if split is not None:
                tally_label, counter = split
                yield self.label_of(tally_label), counter, total

    def labels(self) -> set[str]:
        """Every source label with a series: registered sources (at zero until they count),
        and whatever the tallies name."""
        labels = {source.label for source in self.sources.values()}
        labels.update(label for label, _, _ in self.source_tallies())
        return labels


def _source_counters(snapshot: Snapshot) -> Iterator[Metric]:
    totals: dict[Tally.SourceCounter, Counter[str]] = {kind: Counter() for kind in COUNTER_SERIES}
    for label, counter, total in snapshot.source_tallies():
        totals[counter][label] += total
    labels = sorted(snapshot.labels())
    for kind, (name, documentation) in COUNTER_SERIES.items():
        family = CounterMetricFamily(PREFIX + name, documentation, labels=[SOURCE])
        for label in labels:
            family.add_metric([label], totals[kind][label])
        yield family


def _samples_stored(snapshot: Snapshot) -> Iterator[Metric]:
    tallies = snapshot.tallies.items()
    stored = sum(value for name, value in tallies if name.startswith(Tally.METRIC_PREFIX))
    yield GaugeMetricFamily(
        PREFIX + "samples_stored",
        "Samples in the database now: committed rows less those dropped by retention.",
        value=stored,
    )


def _delivery_state(snapshot: Snapshot) -> Iterator[Metric]:
    throttled: Counter[str] = Counter()
    waiting: Counter[str] = Counter()
    oldest: dict[str, datetime] = {}
    for source_id, source in snapshot.sources.items():
        label = source.label
        throttled[label] += source.throttled_ticks
        chunks = snapshot.outstanding.get(source_id)
        if chunks is not None:
            waiting[label] += chunks.count
            if label not in oldest or chunks.oldest_recorded_at < oldest[label]:
                oldest[label] = chunks.oldest_recorded_at
    labels = sorted({source.label for source in snapshot.sources.values()})
    ticks_family = CounterMetricFamily(
        PREFIX + "throttled_ticks",
        "Stream ticks that published nothing: the collect queue or the outstanding chunks "
        "were at their bound (backpressure).",
        labels=[SOURCE],
    )
    outstanding_family = _source_gauge(
        "outstanding_chunks",
        "Chunks published and not yet committed (confirmed by the next stream tick).",
    )
    age_family = _source_gauge(
        "oldest_outstanding_chunk_age_seconds",
        "Seconds since the oldest outstanding chunk was recorded; 0 when none is outstanding.",
    )
    for label in labels:
        ticks_family.add_metric([label], throttled[label])
        outstanding_family.add_metric([label], waiting[label])
        age = (snapshot.taken_at - oldest[label]).total_seconds() if label in oldest else 0.0
        age_family.add_metric([label], max(age, 0.0))
    yield from (ticks_family, outstanding_family, age_family)


def _scrape_health(snapshot: Snapshot) -> Iterator[Metric]:
    up = _source_gauge(
        "scrape_up",
        "Whether the scrape source's last scrape got a page the parser read (1) or failed (0); "
        "0 before its first scrape.",
    )
    last_success = _source_gauge(
        "scrape_last_success_timestamp_seconds",
        "When the scrape source's last successful scrape began, Unix time; 0 before any.",
    )
    duration = _source_gauge(
        "scrape_duration_seconds",
        "How long the scrape source's last scrape (successful or not) took to fetch and parse.",
    )
    scraped = sorted(
        ((source.label, source.scrape) for source in snapshot.sources.values() if source.scrape),
        key=lambda pair: pair[0],
    )
    for label, health in scraped:
        up.add_metric([label], 1 if health.up else 0)
        success = health.last_success_at
        last_success.add_metric([label], success.timestamp() if success else 0.0)
        if health.duration_seconds is not None:
            duration.add_metric([label], health.duration_seconds)
    yield from (up, last_success, duration)


FAMILIES: tuple[Callable[[Snapshot], Iterable[Metric]], ...] = (
    _source_counters,
    _samples_stored,
    _delivery_state,
    _scrape_health,
)


class PipelineCollector(Collector):
    """A prometheus_client collector that reads the pipeline's state at every scrape.

    A database or broker that does not answer leaves its series out and sets its ``_up``
    gauge to 0, so the scrape itself (and the web processes' request series) still succeeds.
    """

    def collect(self) -> Iterable[Metric]:
        try:
            snapshot: Snapshot | None = Snapshot.read()
        except DatabaseError as error:
            logger.warning("/metrics: database unreachable: %s", error)
            snapshot = None
        yield _up("database", snapshot is not None)
        if snapshot is not None:
            for family in FAMILIES:
                yield from family(snapshot)
        try:
            depth: int | None = check_broker()
        except Exception as error:  # noqa: BLE001  (any failure means "down", with its reason)
            logger.warning("/metrics: broker unreachable: %s", error)
            depth = None
        yield _up("broker", depth is not None)
        if depth is not None:
            yield GaugeMetricFamily(
                PREFIX + "collect_queue_depth",
                "Chunks waiting in the collect queue.",
                value=depth,
            )


def _source_gauge(name: str, documentation: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, labels=[SOURCE])


def _up(part: str, answers: bool) -> Metric:
    return GaugeMetricFamily(
        f"{PREFIX}{part}_up",
        f"Whether the {part} answered this scrape (1) or not (0).",
        value=1 if answers else 0,
    )
