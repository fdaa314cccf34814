"""The commands that measure the API on a sample database: their arguments, and the run.

``bench_api`` and ``explain_api`` differ only in their :class:`Measurement`: its defaults
and what it does with the filled :class:`~bench.sample_database.SampleDatabase`; everything
around that, from checking the database name to the exit status, is here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from bench.sample_database import FLEET, SampleDatabase, connected_to

Measure = Callable[[SampleDatabase], tuple[str, list[str]]]
# The project's own and the test suite's databases are never a measurement's to fill or drop.
FORBIDDEN_DATABASES: Final = re.compile(r"^(telemetry|test.*|postgres|template\d)$")
DATABASE_NAME: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Measurement:
    """What a command measures (``measure``: the summary line and what failed) and its
    defaults: how many samples, in which database, how many requests per endpoint."""

    rows: int
    database: str
    requests: int
    measure: Measure


class MeasurementCommand(BaseCommand):
    """A command that measures the API on a large sample table in a database of its own.

    A subclass names its :class:`Measurement`.
    """

    # The database may not exist yet when the command starts: no check may connect first.
    requires_system_checks: list[str] = []
    measurement: ClassVar[Measurement]

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = self.measurement
        parser.add_argument(
            "--rows",
            type=int,
            default=defaults.rows,
            help=f"Fewest samples (default {defaults.rows:,}).",
        )
        parser.add_argument(
            "--database-name",
            default=defaults.database,
            help=f"The PostgreSQL database to work in (default {defaults.database}).",
        )
        parser.add_argument(
            "--keep",
            action="store_true",
            help="Keep the database afterwards; the next run reuses its samples.",
        )
        parser.add_argument(
            "--reload", action="store_true", help="Empty the sample table and load it again."
        )
        parser.add_argument(
            "--vacuum",
            action="store_true",
            help="VACUUM (ANALYZE) instead of ANALYZE, as autovacuum would have done.",
        )
        parser.add_argument(
            "--interval",
            type=int,
            default=FLEET.interval_seconds,
            help=f"Seconds between generated timesteps (default {FLEET.interval_seconds}).",
        )
        parser.add_argument(
            "--requests",
            type=int,
            default=defaults.requests,
            help=f"Timed requests per endpoint (default {defaults.requests}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # This module's command, whatever name it was started by.
        command = type(self).__module__.rpartition(".")[2]
        run_measurement(command, options, self.measurement.measure, self.stdout)


def run_measurement(
    command: str,
    options: dict[str, Any],
    measure: Measure,
    stdout: OutputWrapper,
) -> None:
    """Fill the database ``options`` name (in a child process pointed at it, if need be),
    measure, report; keep or drop the database; exit 1 when the measurement found problems."""
    name: str = options["database_name"]
    if not DATABASE_NAME.match(name) or FORBIDDEN_DATABASES.match(name):
        raise CommandError(f"refusing to work in the database {name!r}: choose another name")
    if options["rows"] < 1 or options["requests"] < 1 or options["interval"] < 1:
        raise CommandError("--rows, --requests and --interval must be at least 1")
    database = SampleDatabase(options, stdout)
    if not connected_to(name):
        database.run_in_child(command)
        return
    database.create()
    try:
        summary, problems = measure(database)
    finally:
        if options["keep"]:
            stdout.write(f"database {name} kept: the next run reuses its samples")
        else:
            database.drop()
    for problem in problems:
        stdout.write(f"FAILED: {problem}")
    # The summary stays the last line, for scripts that read it; the status tells failure.
    database.say(summary)
    if problems:
        raise SystemExit(1)
