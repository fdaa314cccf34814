"""``manage.py bench_write`` (``make bench-write``): remote write beside ``import_csv``."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Final

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bench.measurement import DATABASE_NAME, FORBIDDEN_DATABASES
from bench.pipeline_throughput import BenchDatabase
from bench.write_throughput import DATABASE, WriteBenchmark, WriteOptions

HELP: Final = {
    "samples": "samples to generate, write and import",
    "batch": "samples per remote write request (Prometheus sends 500 to 2,000)",
    "senders": "requests in flight at once, like Prometheus's shards",
    "collectors": "collector workers, for the write and the import alike",
    "runs": "runs of the write and the import, whose medians are reported",
}


class Command(BaseCommand):
    help = (
        "Benchmark Prometheus remote write (POST /api/v1/write under gunicorn, real collectors) "
        "against import_csv of the same samples; prints medians of --runs runs."
    )
    # The benchmark database may not exist yet, and this process never uses its own.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        for option in fields(WriteOptions):
            parser.add_argument(
                f"--{option.name}",
                type=int,
                default=option.default,
                help=f"{HELP[option.name]} (default {option.default:,})",
            )
        parser.add_argument(
            "--database-name",
            default=DATABASE.name,
            help=f"The PostgreSQL database to work in ({DATABASE.name}).",
        )
        parser.add_argument(
            "--redis-url", default=DATABASE.redis_url, help=f"({DATABASE.redis_url})."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["database_name"]
        if not DATABASE_NAME.match(name) or FORBIDDEN_DATABASES.match(name):
            raise CommandError(f"refusing to work in the database {name!r}: choose another name")
        chosen = {option.name: options[option.name] for option in fields(WriteOptions)}
        database = BenchDatabase(name, options["redis_url"])
        WriteBenchmark(WriteOptions(**chosen), self.stdout, database).run()
