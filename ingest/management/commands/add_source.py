"""``manage.py add_source NAME LOCATION``: register a CSV file or URL to be streamed, or an
exporter page to be scraped (``--kind scrape``)."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest.models import StreamSource
from ingest.sample_ids import MAX_CHUNK_ROWS
from ingest.sources import validate_location
from telemetry_project.routing import DEFAULT_SITE

# The source's settings that come straight from a flag of the same name.
SOURCE_FIELDS = ("kind", "interval_seconds", "timestamp_mode", "site", "enabled")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def chunk_rows(text: str) -> int:
    """Rows per chunk: a chunk's rows share one id serial, which numbers at most
    ``MAX_CHUNK_ROWS`` of them (``ingest.sample_ids``)."""
    value = positive_int(text)
    if value > MAX_CHUNK_ROWS:
        raise argparse.ArgumentTypeError(f"at most {MAX_CHUNK_ROWS:,} rows per chunk, not {text}")
    return value


class Command(BaseCommand):
    help = (
        "Register a stream source (a DCGM CSV path or http(s) URL) with its beat schedule, or "
        "with --kind scrape an exporter's page, fetched once per interval-aligned slot."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="A unique slug for the source.")
        parser.add_argument("location", help="A file path or an http(s) URL.")
        parser.add_argument(
            "--kind",
            choices=StreamSource.Kind.values,
            default=StreamSource.Kind.FILE,
            help="file: a CSV read in chunks (default); scrape: an exporter page per slot.",
        )
        # The settings of reading a file (StreamSource.FILE_ONLY_FIELDS) default to None: left
        # unset they keep the model's defaults, and a scrape source refuses each one given.
        parser.add_argument(
            "--batch-size",
            type=chunk_rows,
            help=f"Rows per chunk (1000; at most {MAX_CHUNK_ROWS:,}).",
        )
        parser.add_argument(
            "--interval",
            dest="interval_seconds",
            metavar="SECONDS",
            type=positive_int,
            help=f"Seconds per tick ({StreamSource.default_of('interval_seconds')}); per slot "
            f"for a scrape source ({StreamSource.SCRAPE_INTERVAL_SECONDS}).",
        )
        parser.add_argument(
            "--loop", action="store_true", default=None, help="Restart at the end of the file."
        )
        parser.add_argument(
            "--follow",
            action="store_true",
            help="Keep reading rows appended to the file, and the new file when it is rotated "
            "(like tail -F; local files only, not with --loop).",
        )
        parser.add_argument(
            "--timestamp-mode",
            choices=StreamSource.TimestampMode.values,
            default=StreamSource.TimestampMode.PROCESSING,
        )
        parser.add_argument("--pace", choices=StreamSource.Pace.values, help="(paced)")
        parser.add_argument("--shards", type=positive_int, help="(1)")
        parser.add_argument("--site", default=DEFAULT_SITE)
        parser.add_argument(
            "--disabled",
            dest="enabled",
            action="store_false",
            help="Register without a schedule.",
        )
        parser.add_argument(
            "--if-missing", action="store_true", help="Do nothing if the name is taken."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"]
        if StreamSource.objects.filter(name=name).exists():
            if options["if_missing"]:
                self.stdout.write(f"source {name} already exists")
                return
            raise CommandError(f"a source named {name!r} already exists")
        scrape = options["kind"] == StreamSource.Kind.SCRAPE
        given = {
            field: options[field]
            for field in StreamSource.FILE_ONLY_FIELDS
            if options.get(field) not in (None, False)
        }
        if scrape and given:
            field = next(iter(given))
            flag = "--" + field.replace("_", "-")
            raise CommandError(f"{flag}: {StreamSource.file_only_refusal(field)}")
        if options["interval_seconds"] is None:
            options["interval_seconds"] = (
                StreamSource.SCRAPE_INTERVAL_SECONDS
                if scrape
                else StreamSource.default_of("interval_seconds")
            )
        try:
            location = validate_location(options["location"])
        except ValidationError as error:
            raise CommandError(error.messages[0]) from None
        if given.get("shards", 1) > 1 and location.startswith(("http://", "https://")):
            raise CommandError("--shards: an http(s) source is streamed as one shard")
        source = StreamSource(
            name=name,
            location=location,
            **{field: options[field] for field in SOURCE_FIELDS},
            **given,
        )
        try:
            source.full_clean()
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        source.save()
        verb = "scrapes" if scrape else "streams"
        self.stdout.write(
            f"source {name} (id {source.pk}) {verb} {location} to queue {source.stream_queue}"
        )
