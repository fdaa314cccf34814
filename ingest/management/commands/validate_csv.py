"""``manage.py validate_csv PATH``: check a DCGM CSV the way the pipeline would, writing nothing.

Before a file is registered as a source (or copied into a source directory), an operator
wants to know what the collectors would make of it: how many rows, how many would be
rejected and why, and which fleet and time span it covers. This command answers that with
the pipeline's own code (``ingest.reader`` finds the header and runs of whole lines by byte
offset, ``ingest.dcgm.parse_lines`` judges each line), so its verdict matches ingest. It
streams the file in bounded runs, keeping only counters and the sets of distinct GPUs, hosts
and metrics, so memory stays flat for any number of rows; it never touches the database.

A local path is read wherever it is (this is the operator's own shell, not a source), but
only if it is a regular file: a FIFO or a device would block or never end. An http(s) URL
is read through the source policy, with its size cap and timeouts.

Exit status: 0 when every row would be accepted, 1 when any would be rejected, or when the
file is missing or its header is not a DCGM header.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ingest import sources
from ingest.dcgm import parse_lines
from ingest.management.commands.add_source import positive_int
from ingest.models import StreamSource
from ingest.reader import Header, SourceError, open_at, parse_header, read_line_runs
from ingest.rejections import ReasonTally, retention_reason


@dataclass
class Tally:
    """Everything the report says, accumulated run by run."""

    rows: int = 0
    good: int = 0
    rejected: int = 0
    reasons: ReasonTally = field(default_factory=ReasonTally)
    gpus: set[str] = field(default_factory=set)
    hosts: set[str] = field(default_factory=set)
    metrics: set[str] = field(default_factory=set)
    first: datetime | None = None
    last: datetime | None = None

    def reject(self, line_number: int, reason: str) -> None:
        self.rejected += 1
        self.reasons.add(reason, line_number)


class Command(BaseCommand):
    help = (
        "Check a DCGM CSV without writing anything: rows, good rows, rejected rows by reason, "
        "GPUs, hosts, metrics and time span. Exits 1 if any row would be rejected."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="A DCGM CSV file (or an http(s) URL).")
        parser.add_argument(
            "--lines-per-run",
            type=positive_int,
            default=10_000,
            help="Lines parsed at a time (memory per run, not a limit on the file).",
        )
        parser.add_argument(
            "--timestamp-mode",
            choices=StreamSource.TimestampMode.values,
            default=StreamSource.TimestampMode.SOURCE,
            help="As import_csv's option of that name, with the same default: with 'source', "
            "rows older than RETENTION_DAYS count as rejected, as the collector would reject "
            "them; with 'processing' rows are stored at the time they are processed.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        location: str = options["path"]
        try:
            with _open(location) as stream:
                header = parse_header(stream, location)
                tally = self._tally(stream, header, options)
        except SourceError as error:
            raise CommandError(str(error)) from None
        self._report(location, header, tally)
        if tally.rejected:
            raise CommandError(f"{tally.rejected} of {tally.rows} rows would be rejected")

    def _tally(self, stream: IO[bytes], header: Header, options: dict[str, Any]) -> Tally:
        tally = Tally()
        cutoff = None
        if (
            options["timestamp_mode"] == StreamSource.TimestampMode.SOURCE
            and settings.RETENTION_DAYS
        ):
            cutoff = timezone.now() - timedelta(days=settings.RETENTION_DAYS)
        past_retention = retention_reason(settings.RETENTION_DAYS)
        line = 2
        runs = read_line_runs(
            stream, header.data_start, None, options["lines_per_run"], max_runs=sys.maxsize
        )
        for run, data in runs:
            parsed = parse_lines(data, header.layout, line)
            line += run.line_count
            tally.rows += run.line_count
            for rejected in parsed.rejected:
                tally.reject(rejected.line_number, rejected.reason)
            for row in parsed.rows:
                if cutoff is not None and row.timestamp < cutoff:
                    tally.reject(row.line_number, past_retention)
                    continue
                tally.good += 1
                tally.gpus.add(row.uuid)
                tally.hosts.add(row.hostname)
                tally.metrics.add(row.metric)
                if tally.first is None or row.timestamp < tally.first:
                    tally.first = row.timestamp
                if tally.last is None or row.timestamp > tally.last:
                    tally.last = row.timestamp
        return tally

    def _report(self, location: str, header: Header, tally: Tally) -> None:
        write = self.stdout.write
        write(f"file:          {location}")
        write(f"columns:       {', '.join(header.layout.names)}")
        write(f"rows:          {tally.rows}")
        write(f"good rows:     {tally.good}")
        write(f"rejected rows: {tally.rejected}")
        for line in tally.reasons.report_lines():
            write(line)
        write(f"gpus:          {len(tally.gpus)}")
        write(f"hosts:         {len(tally.hosts)}")
        write(f"metrics:       {len(tally.metrics)}")
        if tally.first is not None and tally.last is not None:
            span = tally.last - tally.first
            write(f"time span:     {tally.first.isoformat()} .. {tally.last.isoformat()} ({span})")
        else:
            write("time span:     none (no good rows)")
        write(
            f"validate: rows={tally.rows} good={tally.good} rejected={tally.rejected} "
            f"gpus={len(tally.gpus)} hosts={len(tally.hosts)} metrics={len(tally.metrics)}"
        )


@contextmanager
def _open(location: str) -> Iterator[IO[bytes]]:
    """The file (a regular file only) or URL, positioned at byte 0."""
    if sources.is_url(location) or "://" in location:
        with open_at(location, 0) as stream:
            yield stream
        return
    try:
        # Non-blocking, so opening a FIFO returns at once and is refused below.
        descriptor = os.open(location, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise SourceError(f"cannot read {location}: {error.strerror}") from None
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise SourceError(f"{location} is not a regular file")
        os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    with os.fdopen(descriptor, "rb") as stream:
        yield stream
