"""The commands that measure the API on a sample database: their arguments, and the run.

``bench_api`` and ``explain_api`` differ only in their :class:`Measurement`: its defaults
and what it does with the filled :class:`~bench.sample_database.SampleDatabase`; everything
around that, from checking the database name to the exit status, is here.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from bench.dcgm_generator import GeneratorSpec
from bench.sample_database import (
    FLEET,
    SampleDatabase,
    connected_to,
    database_url,
    without_password,
)

Measure = Callable[[SampleDatabase], tuple[str, list[str]]]
# The project's own and the test suite's databases are never a measurement's to fill or drop.
FORBIDDEN_DATABASES: Final = re.compile(r"^(telemetry|test.*|postgres|template\d)$")
DATABASE_NAME: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
FLAGS: Final = {
    "keep": "Keep the database afterwards; the next run reuses its samples.",
    "reload": "Empty the sample table and load it again.",
    "vacuum": "VACUUM (ANALYZE) instead of ANALYZE, as autovacuum would have done.",
}


@dataclass(frozen=True)
class Measurement:
    """What a command measures (``measure``: the summary line and what failed) and its
    defaults: how many samples of which fleet, in which database, how many requests per
    endpoint."""

    rows: int
    database: str
    requests: int
    measure: Measure
    fleet: GeneratorSpec = FLEET


class MeasurementCommand(BaseCommand):
    """A command that measures the API on a large sample table in a database of its own.

    A subclass names its :class:`Measurement`.
    """

    # The database may not exist yet when the command starts: no check may connect first.
    requires_system_checks: list[str] = []
    measurement: ClassVar[Measurement]

    def add_arguments(self, parser: CommandParser) -> None:
        measurement = self.measurement
        numbers = {
            "rows": (measurement.rows, "Fewest samples"),
            "interval": (measurement.fleet.interval_seconds, "Seconds between generated timesteps"),
            "hosts": (measurement.fleet.hosts, "Hosts of the generated fleet, 8 GPUs each"),
            "requests": (measurement.requests, "Timed requests per endpoint"),
        }
        for name, (default, text) in numbers.items():
            parser.add_argument(
                f"--{name}", type=int, default=default, help=f"{text} ({default:,})."
            )
        parser.add_argument(
            "--database-name",
            default=measurement.database,
            help=f"The PostgreSQL database to work in ({measurement.database}).",
        )
        for name, text in FLAGS.items():
            parser.add_argument(f"--{name}", action="store_true", help=text)

    def handle(self, *args: Any, **options: Any) -> None:
        # This module's command, whatever name it was started by.
        command = type(self).__module__.rpartition(".")[2]
        run_measurement(command, options, self.measurement, self.stdout)


def run_measurement(
    command: str,
    options: dict[str, Any],
    measurement: Measurement,
    stdout: OutputWrapper,
) -> None:
    """Fill the database ``options`` name (in a child process pointed at it, if need be),
    measure, report; keep or drop the database; exit 1 when the measurement found problems."""
    name: str = options["database_name"]
    if not DATABASE_NAME.match(name) or FORBIDDEN_DATABASES.match(name):
        raise CommandError(f"refusing to work in the database {name!r}: choose another name")
    if min(options[name] for name in ("rows", "requests", "interval", "hosts")) < 1:
        raise CommandError("--rows, --requests, --interval and --hosts must be at least 1")
    if not connected_to(name):
        _run_in_child(command, options, stdout)
        return
    fleet = dataclasses.replace(measurement.fleet, hosts=options["hosts"])
    database = SampleDatabase(options, stdout, fleet)
    database.create()
    try:
        summary, problems = measurement.measure(database)
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


def _run_in_child(command: str, options: dict[str, Any], stdout: OutputWrapper) -> None:
    """Run ``command`` again in a child whose default database is the one it names.

    Settings are read once per process, so pointing Django at another database means a
    new process; everything it prints goes straight to this one's output.
    """
    url = database_url(options["database_name"])
    stdout.write(f"running in a subprocess with DATABASE_URL={without_password(url)}")
    stdout.flush()
    env = {**os.environ, "DATABASE_URL": url}
    env.pop("DATABASE_URL_FILE", None)
    arguments = [
        sys.executable,
        str(Path(settings.BASE_DIR) / "manage.py"),
        command,
        *(f"--{name}={options[name]}" for name in ("rows", "interval", "requests", "hosts")),
        f"--database-name={options['database_name']}",
        *(f"--{flag}" for flag in FLAGS if options[flag]),
    ]
    status = subprocess.call(arguments, env=env)  # noqa: S603  (this very command, re-run)
    if status:
        raise SystemExit(status)  # the child has said why; its summary stays the last line
