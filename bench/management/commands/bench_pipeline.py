"""``manage.py bench_pipeline`` (``make bench``): the pipeline against a parallel COPY."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Final

from django.core.management.base import BaseCommand, CommandParser

from bench.pipeline_throughput import ThroughputBenchmark, ThroughputOptions

# A flag per option, named after it (--batch-size for batch_size), defaulting as it does.
HELP: Final = {
    "rows": "rows to generate and import",
    "streamers": "streamer workers",
    "collectors": "collector workers",
    "runs": "runs of the ceiling and the pipeline, whose medians are reported",
    "batch_size": "lines per chunk, for the pipeline and the ceiling",
    "max_outstanding": "MAX_OUTSTANDING_CHUNKS of the workers",
    "queue_depth": "COLLECT_QUEUE_MAX_DEPTH of the workers",
}


class Command(BaseCommand):
    help = (
        "Benchmark the pipeline (streamer + collector workers on PostgreSQL and Redis) "
        "against a parallel COPY of the same rows; prints medians of --runs runs."
    )
    # The benchmark database may not exist yet, and this process never uses its own.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        for option in fields(ThroughputOptions):
            default = option.default
            shown = "the project's" if default is None else f"{default:,}"
            parser.add_argument(
                f"--{option.name.replace('_', '-')}",
                type=int,
                default=default,
                help=f"{HELP[option.name]} (default {shown})",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        chosen = {option.name: options[option.name] for option in fields(ThroughputOptions)}
        ThroughputBenchmark(ThroughputOptions(**chosen), self.stdout).run()
