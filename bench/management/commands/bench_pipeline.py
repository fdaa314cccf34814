"""``manage.py bench_pipeline`` (``make bench``): the pipeline against a parallel COPY."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from bench.pipeline_throughput import ThroughputBenchmark, ThroughputOptions

DEFAULTS = ThroughputOptions()


class Command(BaseCommand):
    help = (
        "Benchmark the pipeline (streamer + collector workers on PostgreSQL and Redis) "
        "against a parallel COPY of the same rows; prints medians of --runs runs."
    )
    # The benchmark database may not exist yet, and this process never uses its own.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rows", type=int, default=DEFAULTS.rows)
        parser.add_argument("--streamers", type=int, default=DEFAULTS.streamers)
        parser.add_argument("--collectors", type=int, default=DEFAULTS.collectors)
        parser.add_argument("--runs", type=int, default=DEFAULTS.runs)
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULTS.batch_size,
            help=f"Lines per chunk, for pipeline and ceiling (default {DEFAULTS.batch_size}).",
        )
        parser.add_argument(
            "--max-outstanding",
            type=int,
            help="MAX_OUTSTANDING_CHUNKS for the workers (default: the project's).",
        )
        parser.add_argument(
            "--queue-depth",
            type=int,
            help="COLLECT_QUEUE_MAX_DEPTH for the workers (default: the project's).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        benchmark = ThroughputOptions(
            rows=options["rows"],
            streamers=options["streamers"],
            collectors=options["collectors"],
            runs=options["runs"],
            batch_size=options["batch_size"],
            max_outstanding=options["max_outstanding"],
            queue_depth=options["queue_depth"],
        )
        ThroughputBenchmark(benchmark, self.stdout).run()
