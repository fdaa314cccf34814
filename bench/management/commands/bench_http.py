"""``manage.py bench_http`` (``make bench-http``): the read API's requests per second behind
gunicorn, beside the same page without HTTP or a framework."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Final

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bench.http_capacity import DATABASE, HttpBenchmark, HttpOptions
from bench.measurement import DATABASE_NAME, FORBIDDEN_DATABASES
from bench.pipeline_throughput import BenchDatabase
from bench.sample_database import connected_to, database_url, without_password

NUMBERS: Final = {
    "seconds": "seconds of wrk per endpoint, and of the reference",
    "connections": "wrk's connections per endpoint",
    "crowd_seconds": "seconds of the crowd under ingest",
    "crowd_connections": "wrk's connections under ingest",
    "workers": "gunicorn workers (0: one per core)",
}


class Command(BaseCommand):
    help = (
        "Requests per second of the hot API endpoints behind gunicorn (wrk) on make bench-api's "
        "database, beside psycopg2 + json alone, then 1,000 connections while ingest runs."
    )
    # The benchmark database is reached by a child process; this one never uses its own.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = HttpOptions()
        for name, text in NUMBERS.items():
            default = getattr(defaults, name)
            parser.add_argument(
                f"--{name.replace('_', '-')}", type=int, default=default,
                help=f"{text} (default {default:,})",
            )  # fmt: skip
        parser.add_argument(
            "--worker-class",
            help="gunicorn's worker class, instead of the web role's (e.g. sync, gthread)",
        )
        parser.add_argument("--threads", type=int, help="threads per gthread worker")
        parser.add_argument("--database-name", default=DATABASE.name, help=f"({DATABASE.name})")
        parser.add_argument(
            "--redis-url", default=DATABASE.redis_url, help=f"({DATABASE.redis_url})"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["database_name"]
        if not DATABASE_NAME.match(name) or FORBIDDEN_DATABASES.match(name):
            raise CommandError(f"refusing to work in the database {name!r}: choose another name")
        if not connected_to(name):
            # Settings are read once per process: this command again, pointed at the database.
            url = database_url(name)
            self.stdout.write(f"running in a subprocess with DATABASE_URL={without_password(url)}")
            self.stdout.flush()
            env = {**os.environ, "DATABASE_URL": url}
            env.pop("DATABASE_URL_FILE", None)
            status = subprocess.call([sys.executable, *sys.argv], env=env)  # noqa: S603
            if status:
                raise SystemExit(status)
            return
        worker_options = [
            *(["--worker-class", options["worker_class"]] if options["worker_class"] else []),
            *(["--threads", str(options["threads"])] if options["threads"] else []),
        ]
        chosen = HttpOptions(
            **{name: options[name] for name in NUMBERS}, worker_options=tuple(worker_options)
        )
        database = BenchDatabase(name, options["redis_url"])
        HttpBenchmark(chosen, self.stdout, database).run()
