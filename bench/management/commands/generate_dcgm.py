"""``manage.py generate_dcgm``: write a synthetic DCGM metrics CSV for load tests and demos.

The generator lives in ``bench.dcgm_generator``; this command only turns flags into a
``GeneratorSpec`` and reports errors against the flag the user typed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from datetime import datetime
from typing import Any, BinaryIO, Final

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bench.dcgm_generator import (
    METRIC_NAMES,
    GeneratorSpec,
    InvalidSpecError,
    write_dcgm_csv,
)

_DEFAULTS: Final = GeneratorSpec()
_STDOUT_PATH: Final = "-"

# The spec fields set by a flag of their own with a default: (flag, field, type, help). The
# same table names the flag in a spec error, so the user reads back what they typed.
_SPEC_FLAGS: Final = (
    ("--hosts", "hosts", int, "number of hosts"),
    ("--gpus-per-host", "gpus_per_host", int, "GPUs on each host"),
    (
        "--metrics",
        "metrics",
        int,
        f"how many metrics, 1 to {len(METRIC_NAMES)}; the reference's ten come first",
    ),
    ("--interval", "interval_seconds", int, "seconds between timesteps"),
    ("--seed", "seed", int, "random seed"),
    (
        "--workload-fraction",
        "workload_fraction",
        float,
        "share of GPUs, 0 to 1, whose rows name a namespace, pod and container",
    ),
)
_FLAG_FOR_FIELD: Final = {
    **{field: flag for flag, field, _, _ in _SPEC_FLAGS},
    "timesteps": "--timesteps",
    "start": "--start",
    "rows": "--rows",
}

_DURATION_SYNTAX: Final = re.compile(r"(?:\d+[dhms])+")
_DURATION_PART: Final = re.compile(r"(\d+)([dhms])")
_SECONDS_PER_UNIT: Final = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


class Command(BaseCommand):
    help = (
        "Write a synthetic NVIDIA DCGM metrics CSV in the layout of the reference export: "
        "one row per (host, GPU, metric) per timestep, deterministic for a given seed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("output", metavar="OUTPUT", help="file to write, or - for stdout")
        for flag, field, kind, text in _SPEC_FLAGS:
            default = getattr(_DEFAULTS, field)
            parser.add_argument(
                flag, type=kind, default=default, help=f"{text} (default {default})"
            )
        span = parser.add_mutually_exclusive_group()
        span.add_argument(
            "--timesteps",
            type=int,
            help="number of sampling instants (default: enough for --rows, else 1)",
        )
        span.add_argument(
            "--duration",
            help="time span to cover instead of --timesteps, e.g. 90s, 30m, 1h, 1h30m",
        )
        parser.add_argument(
            "--start",
            help="first timestamp, RFC 3339 with a zone (default 2025-07-18T20:42:34Z)",
        )
        parser.add_argument("--rows", type=int, help="stop after exactly this many data rows")

    def handle(self, *args: Any, **options: Any) -> None:
        spec = _spec_from_options(options)
        output: str = options["output"]
        if output == _STDOUT_PATH:
            try:
                rows = _write(sys.stdout.buffer, spec)
            except BrokenPipeError:
                # The reader stopped early (``| head``): end quietly, as Unix filters do, and
                # point stdout at /dev/null so the flush at interpreter exit cannot fail again.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return
            destination = "stdout"
        else:
            try:
                with open(output, "wb") as stream:
                    rows = _write(stream, spec)
            except OSError as error:
                raise CommandError(f"cannot write {output}: {error.strerror}") from error
            destination = output
        self.stderr.write(
            f"wrote {rows} rows to {destination} "
            f"({spec.hosts} hosts, {spec.gpu_count} GPUs, {spec.metrics} metrics)",
            # Plain text: stderr's default style would paint this summary as an error.
            style_func=lambda message: message,
        )


def _write(stream: BinaryIO, spec: GeneratorSpec) -> int:
    rows = write_dcgm_csv(stream, spec)
    stream.flush()
    return rows


def _spec_from_options(options: dict[str, Any]) -> GeneratorSpec:
    if options["timesteps"] is not None and options["duration"] is not None:
        raise CommandError("--timesteps and --duration are alternatives; give one of them")
    start = _DEFAULTS.start if options["start"] is None else _parse_start(options["start"])
    try:
        spec = GeneratorSpec(
            **{field: options[flag[2:].replace("-", "_")] for flag, field, _, _ in _SPEC_FLAGS},
            timesteps=options["timesteps"],
            start=start,
            rows=options["rows"],
        )
    except InvalidSpecError as error:
        raise CommandError(f"{_FLAG_FOR_FIELD[error.field_name]} {error.problem}") from error
    if options["duration"] is None:
        return spec
    # Every sample instant strictly inside the span: 90s at a 60 s interval is 2 timesteps.
    duration_seconds = _parse_duration_seconds(options["duration"])
    timesteps = math.ceil(duration_seconds / spec.interval_seconds)
    return dataclasses.replace(spec, timesteps=timesteps)


def _parse_start(text: str) -> datetime:
    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f"--start {text!r} is not an RFC 3339 time such as 2025-07-18T20:42:34Z"
        ) from None
    if start.utcoffset() is None:
        raise CommandError(
            f"--start {text!r} has no time zone; append Z or an offset such as +02:00"
        )
    return start


def _parse_duration_seconds(text: str) -> int:
    if not _DURATION_SYNTAX.fullmatch(text):
        raise CommandError(f"--duration {text!r} is not a duration such as 90s, 30m, 1h or 1h30m")
    seconds = sum(
        int(amount) * _SECONDS_PER_UNIT[unit] for amount, unit in _DURATION_PART.findall(text)
    )
    if seconds == 0:
        raise CommandError("--duration must be longer than zero")
    return seconds
