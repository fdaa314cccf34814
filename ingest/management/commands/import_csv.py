"""``manage.py import_csv PATH``: import a file once through the real queue and wait for it.

The command creates a fast-mode source with no beat schedule and drives its stream ticks
itself, so it needs only running collector workers, and streamer workers for a file they may
read. It returns when every row read is committed or rejected, names the reasons of rejected
rows, and fails if any row is unaccounted for.

A file under ``STREAM_SOURCE_DIRS`` (or a URL) is streamed by streamer workers: the command
sends them the ticks. A file elsewhere was named by the person who typed the command, so it
is imported too, but no worker may read it: the source is marked ``command_line_only`` and
this process is its streamer, running the streamer's own two-phase tick (``ingest.streamer``)
in the foreground, re-publishing what collectors have not confirmed, until the import ends.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections
from django.db.models import Count, Min, Sum

from ingest import sources
from ingest.management.commands.add_source import chunk_rows, positive_int
from ingest.models import (
    IngestedChunk,
    OutstandingChunk,
    RejectedRow,
    StreamCursor,
    StreamSource,
)
from ingest.reader import SourceError, read_header
from ingest.rejections import ReasonTally
from ingest.sample_ids import MAX_CHUNK_ROWS
from ingest.streamer import stream_tick
from ingest.tasks import INFRASTRUCTURE_ERRORS
from telemetry_project.celery import app
from telemetry_project.routing import STREAM_TASK

# Reasons of rejected rows named in the report, the most frequent first.
TOP_REASONS = 5


class Command(BaseCommand):
    help = "Import a DCGM CSV once through streamer and collector workers, and wait for it."
    republished = 0  # chunks this process published again as the file's own streamer

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")
        parser.add_argument("--name", help="Source name (default: import-<file>-<time>).")
        parser.add_argument(
            "--batch-size",
            type=chunk_rows,
            default=10_000,
            help="Lines per chunk (default 10,000: per-chunk costs shrink per row, measured "
            f"with make bench --batch-size; at most {MAX_CHUNK_ROWS:,}).",
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
        self.republished = 0
        # The file named here may be read by this process wherever it is (ingest.sources).
        with sources.reading_named_file(options["path"]):
            source = self._register(options)
            committed, rejected, read, seconds = self._drive(source, options)
        if self.republished:
            self.stdout.write(
                f"published again: {self.republished} chunks not committed within "
                f"REPUBLISH_AFTER_SECONDS={settings.REPUBLISH_AFTER_SECONDS:g}"
            )
        if rejected:
            self._report_reasons(source)
        self.stdout.write(f"committed={committed} rejected={rejected} seconds={seconds:.3f}")
        if committed + rejected != read:
            raise CommandError(
                f"{read - committed - rejected} of {read} rows read are unaccounted for"
            )

    def _register(self, options: dict[str, Any]) -> StreamSource:
        """The import's source, once its location is allowed and a file's header reads."""
        try:
            location = sources.validate_location(options["path"])
        except ValidationError as error:
            raise CommandError(error.messages[0]) from None
        command_line_only = not sources.is_url(location) and not sources.inside_source_dirs(
            location
        )
        if command_line_only and options["shards"] > 1:
            raise CommandError(
                f"--shards {options['shards']}: {location} is outside STREAM_SOURCE_DIRS, so "
                "this command streams it itself, as one shard; to spread it over streamers, "
                "copy it into one of those directories (or add its directory to "
                "STREAM_SOURCE_DIRS)"
            )
        if not sources.is_url(location):
            try:
                read_header(location)  # a file that is no DCGM export fails before any source
            except SourceError as error:
                raise CommandError(str(error)) from None
        name = options["name"] or f"import-{datetime.now():%Y%m%d-%H%M%S-%f}"
        if StreamSource.objects.filter(name=name).exists():
            raise CommandError(f"a source named {name!r} already exists")
        if command_line_only:
            self.stderr.write(
                f"{location} is outside STREAM_SOURCE_DIRS: this command streams it itself "
                "(workers do not read it), so keep it running until it ends"
            )
        return StreamSource.objects.create(
            name=name[:100],
            location=location,
            batch_size=options["batch_size"],
            interval_seconds=1,
            loop=False,
            timestamp_mode=options["timestamp_mode"],
            pace=StreamSource.Pace.FAST,
            shards=options["shards"],
            scheduled=False,
            command_line_only=command_line_only,
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
        """Run or send one stream tick, then read (committed, rejected, read, done)."""
        if source.command_line_only:
            report = stream_tick(source.pk)
            if report.error:
                raise CommandError(f"source {source.name}: {report.error}")
            self.republished += report.republished
        else:
            source.refresh_from_db(fields=["last_error"])
            if source.last_error:
                raise CommandError(f"source {source.name}: {source.last_error}")
            app.send_task(
                STREAM_TASK,
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

    def _report_reasons(self, source: StreamSource) -> None:
        """The import's rejected rows counted by reason, in one GROUP BY over its source."""
        tally = ReasonTally()
        groups = (
            RejectedRow.objects.filter(source=source)
            .values("reason")
            .annotate(count=Count("id"), first_line=Min("line_number"))
            .order_by()
        )
        for group in groups.iterator():
            tally.add(group["reason"], group["first_line"], group["count"])
        self.stdout.write("rejected rows by reason:")
        for line in tally.report_lines(limit=TOP_REASONS):
            self.stdout.write(line)

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
