"""``manage.py add_source NAME LOCATION``: register a CSV file or URL to be streamed."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest.models import StreamSource
from ingest.sources import validate_location
from telemetry_project.routing import DEFAULT_SITE

# The source's settings that come straight from a flag of the same name.
SOURCE_FIELDS = (
    "batch_size",
    "interval_seconds",
    "loop",
    "follow",
    "timestamp_mode",
    "pace",
    "shards",
    "site",
    "enabled",
)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


class Command(BaseCommand):
    help = "Register a stream source (a DCGM CSV path or http(s) URL) with its beat schedule."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="A unique slug for the source.")
        parser.add_argument("location", help="A file path or an http(s) URL.")
        parser.add_argument("--batch-size", type=positive_int, default=1000)
        parser.add_argument(
            "--interval",
            dest="interval_seconds",
            metavar="SECONDS",
            type=positive_int,
            default=5,
            help="Seconds per tick.",
        )
        parser.add_argument("--loop", action="store_true", help="Restart at the end of the file.")
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
        parser.add_argument(
            "--pace", choices=StreamSource.Pace.values, default=StreamSource.Pace.PACED
        )
        parser.add_argument("--shards", type=positive_int, default=1)
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
        try:
            location = validate_location(options["location"])
        except ValidationError as error:
            raise CommandError(error.messages[0]) from None
        if options["shards"] > 1 and location.startswith(("http://", "https://")):
            raise CommandError("--shards: an http(s) source is streamed as one shard")
        source = StreamSource(
            name=name, location=location, **{field: options[field] for field in SOURCE_FIELDS}
        )
        try:
            source.full_clean()
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        source.save()
        self.stdout.write(
            f"source {name} (id {source.pk}) streams {location} to queue {source.stream_queue}"
        )
