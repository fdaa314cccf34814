"""``manage.py bench_scrape`` (``make bench-scrape``): the most exporters scraped with no
missed slot."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Final

from django.core.management.base import BaseCommand, CommandParser

from bench.scrape_throughput import ScrapeBenchmark, ScrapeOptions

HELP: Final = {
    "targets": "exporters per step, comma-separated, in order",
    "slots": "slots watched per step",
    "interval": "seconds per slot",
    "streamers": "streamer workers",
    "collectors": "collector workers",
}


class Command(BaseCommand):
    help = (
        "Benchmark scrape sources: steps of more and more local exporters scraped by real "
        "beat, streamer and collector processes, until a slot is missed."
    )
    # The benchmark database may not exist yet, and this process never uses its own.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        for option in fields(ScrapeOptions):
            parser.add_argument(
                f"--{option.name}",
                type=type(option.default),
                default=option.default,
                help=f"{HELP[option.name]} (default {option.default})",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        chosen = {option.name: options[option.name] for option in fields(ScrapeOptions)}
        ScrapeBenchmark(ScrapeOptions(**chosen), self.stdout).run()
