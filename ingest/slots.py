"""Scrape slots: the interval-aligned times a scrape source's pages stand for, and their
dispatch, once each.

A source scraped every ``interval`` seconds has one slot per interval, starting at
``floor(epoch / interval) * interval``, from the wall clock rather than from beat's drifting
intervals. A beat entry runs ``dispatch`` every second: for each enabled scrape source whose
current slot is newer than the last it was dispatched, the slot is claimed by moving
``StreamSource.last_slot_ms`` on with a conditional UPDATE (only one of any racing
dispatchers, or a redelivered tick, sees its UPDATE match), and only the claimant sends the
scrape task, to the source's site queue, expiring when the slot ends.

Only the current slot is ever dispatched: a slot that passed while nobody dispatched it (beat
or the streamers down, a claimed task lost with the broker) is a gap, never scraped late and
never back-filled, so the time a page stands for is always the time it was fetched in. The
dispatcher that claims a source's next slot counts the slots it passed over on the source's
``missed_slots`` tally (``/metrics``: ``telemetry_scrape_slots_missed_total``), so a gap
shows as a counter an alert can watch. docs/design.md, "Scrape sources".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from ingest import counters
from ingest.models import StreamSource, Tally
from telemetry_project.celery import app
from telemetry_project.routing import SCRAPE_TASK, stream_queue_for_site

logger = logging.getLogger(__name__)


def slot_ms(moment: datetime, interval_seconds: int) -> int:
    """The start (epoch milliseconds) of the slot ``moment`` falls in."""
    interval_ms = interval_seconds * 1000
    return int(moment.timestamp() * 1000) // interval_ms * interval_ms


def slot_start(start_ms: int) -> datetime:
    return datetime.fromtimestamp(start_ms / 1000, tz=UTC)


def slot_end(start_ms: int, interval_seconds: int) -> datetime:
    return slot_start(start_ms) + timedelta(seconds=interval_seconds)


@dataclass(frozen=True, slots=True)
class DispatchReport:
    dispatched: int = 0
    gaps: int = 0  # slots that passed undispatched since each source's previous one

    def __str__(self) -> str:
        return f"dispatched={self.dispatched} gaps={self.gaps}"


def dispatch(now: datetime | None = None) -> DispatchReport:
    """Claim and send the current slot of every enabled scrape source not yet dispatched."""
    now = timezone.now() if now is None else now
    dispatched = 0
    missed: dict[str, int] = {}
    sources = StreamSource.objects.filter(kind=StreamSource.Kind.SCRAPE, enabled=True)
    for source_id, interval, last, site in sources.values_list(
        "pk", "interval_seconds", "last_slot_ms", "site"
    ):
        current = slot_ms(now, interval)
        if last is not None and last >= current:
            continue
        claimed = (
            StreamSource.objects.filter(pk=source_id, enabled=True)
            .filter(Q(last_slot_ms__isnull=True) | Q(last_slot_ms__lt=current))
            .update(last_slot_ms=current)
        )
        if not claimed:  # another dispatcher claimed it first
            continue
        app.send_task(
            SCRAPE_TASK,
            args=[source_id, current],
            queue=stream_queue_for_site(site),
            expires=slot_end(current, interval),
        )
        dispatched += 1
        passed = 0 if last is None else max((current - last) // (interval * 1000) - 1, 0)
        if passed:
            key = Tally.source_key(
                counters.source_label(source_id), Tally.SourceCounter.MISSED_SLOTS
            )
            missed[key] = passed
    gaps = sum(missed.values())
    if gaps:
        logger.warning("scrape slots passed undispatched (gaps): %d", gaps)
        # Counted by the claimant only, so each missed slot once however many dispatchers run.
        counters.add_tallies(missed, stripe=counters.stripe_for(f"slots:{now.isoformat()}"))
    return DispatchReport(dispatched, gaps)
