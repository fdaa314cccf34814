"""``manage.py import_csv PATH``: import a file once through the real queue and wait for it.

The command creates a fast-mode source with no beat schedule and publishes its stream ticks
itself, so it needs only running streamer and collector workers. It returns when every row
read is committed or rejected, and fails if any row is unaccounted for.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections
from django.db.models import Sum

from ingest.management.commands.add_source import positive_int
from ingest.models import IngestedChunk, OutstandingChunk, StreamCursor, StreamSource
from ingest.sources import validate_location
from ingest.tasks import INFRASTRUCTURE_ERRORS
from telemetry_project.celery import app


class Command(BaseCommand):
    help = "Import a DCGM CSV once through streamer and collector workers, and wait for it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")
        parser.add_argument("--name", help="Source name (default: import-<file>-<time>).")
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=10_000,
            help="Lines per chunk (default 10,000: per-chunk costs shrink per row, measured "
            "with make bench --batch-size).",
        )
        parser.add_argument("--shards", type=positive_int, default=1)
        parser.add_argument(
            "--timestamp-mode",
            choices=StreamSource.TimestampMode.values,
            default=StreamSource.TimestampMode.SOURCE,
        )
        parser.add_argument("--tick", type=float, default=0.5, help="Seconds between stream ticks.")
        parser.add_argument(
            "--stall-timeout",
            type=float,
            default=120.0,
            help="Fail when nothing is committed for this many seconds.",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            location = validate_location(options["path"])
        except ValidationError as error:
            raise CommandError(error.messages[0]) from None
        name = options["name"] or f"import-{datetime.now():%Y%m%d-%H%M%S-%f}"
        if StreamSource.objects.filter(name=name).exists():
            raise CommandError(f"a source named {name!r} already exists")
        source = StreamSource.objects.create(
            name=name[:100],
            location=location,
            batch_size=options["batch_size"],
            interval_seconds=1,
            loop=False,
            timestamp_mode=options["timestamp_mode"],
            pace=StreamSource.Pace.FAST,
            shards=options["shards"],
            scheduled=False,
        )
        committed, rejected, read, seconds = self._drive(source, options)
        self.stdout.write(f"committed={committed} rejected={rejected} seconds={seconds:.3f}")
        if committed + rejected != read:
            raise CommandError(
                f"{read - committed - rejected} of {read} rows read are unaccounted for"
            )

    def _drive(self, source: StreamSource, options: dict[str, Any]) -> tuple[int, int, int, float]:
        started = time.monotonic()
        last_progress = started
        last_total = -1
        show_progress = not options["no_progress"]
        while True:
            try:
                state = self._tick_and_look(source, options)
            except INFRASTRUCTURE_ERRORS as error:
                # The workers wait out an outage of the database or broker; so does the
                # import, and the stall timeout below still ends a wait that never ends.
                close_old_connections()
                self.stderr.write(f"waiting for the database and broker: {error}".strip())
                time.sleep(options["tick"])
                state = None
            elapsed = time.monotonic() - started
            if state is not None:
                committed, rejected, read, done = state
                if show_progress:
                    self._progress(committed + rejected, read, elapsed)
                if done:
                    if show_progress:
                        sys.stderr.write("\n")
                    return committed, rejected, read, elapsed
                if committed + rejected != last_total:
                    last_total = committed + rejected
                    last_progress = time.monotonic()
            if time.monotonic() - last_progress > options["stall_timeout"]:
                raise CommandError(
                    f"no progress for {options['stall_timeout']:.0f}s "
                    f"({max(last_total, 0)} rows committed or rejected): are the database, "
                    "the broker, and streamer and collector workers running?"
                )

    def _tick_and_look(
        self, source: StreamSource, options: dict[str, Any]
    ) -> tuple[int, int, int, bool]:
        """Send one stream tick, then read (committed, rejected, read, done)."""
        source.refresh_from_db(fields=["last_error"])
        if source.last_error:
            raise CommandError(f"source {source.name}: {source.last_error}")
        app.send_task(
            "ingest.stream",
            args=[source.pk],
            queue=source.stream_queue,
            expires=max(options["tick"] * 4, 2.0),
        )
        time.sleep(options["tick"])
        committed, rejected = self._ledger_totals(source)
        cursors = StreamCursor.objects.filter(source=source)
        read = cursors.aggregate(total=Sum("rows_streamed"))["total"] or 0
        done = (
            cursors.exists()
            and not cursors.filter(finished=False).exists()
            and not OutstandingChunk.objects.filter(cursor__source=source).exists()
        )
        return committed, rejected, read, done

    @staticmethod
    def _ledger_totals(source: StreamSource) -> tuple[int, int]:
        totals = IngestedChunk.objects.filter(source=source).aggregate(
            committed=Sum("rows_committed"), rejected=Sum("rows_rejected")
        )
        return totals["committed"] or 0, totals["rejected"] or 0

    @staticmethod
    def _progress(done: int, read: int, elapsed: float) -> None:
        width = 30
        filled = width if read == 0 else min(width, width * done // max(read, 1))
        rate = done / elapsed if elapsed > 0 else 0.0
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{read:,} rows "
            f"committed/read, {rate:,.0f} rows/s"
        )
        sys.stderr.flush()
