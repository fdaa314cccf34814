"""The development settings file, ``var/dev.env``: what ``make run`` ran with, for every command.

``make run`` starts this module (``python -m telemetry_project.dev_env``) before anything else.
It writes ``dev.env`` in the var folder: the development flag, a secret key generated the
first time and kept after, the retention window (0, keep forever, unless ``make run`` was
given another), the source policy it ran with (``SOURCE_URL_ALLOW``, which ``make run`` sets
to 127.0.0.0/8, ``SOURCE_URL_DENY``, ``STREAM_SOURCE_DIRS``) and the variables that chose
the database and broker. Settings read the file
when it exists, for every name the environment leaves unset, so ``manage.py import_csv``,
``validate_csv`` or ``createsuperuser`` typed in a second terminal of the same checkout talk
to the same database and broker with the same settings, with no variable typed.

``TELEMETRY_ENV_FILE=path`` reads (and ``make run`` writes) another file instead;
``TELEMETRY_ENV_FILE=`` (empty) reads none: the test suite and the benchmarks' child processes
set that, so a developer's file never leaks into them. Without the file and without
``DJANGO_DEBUG`` (production) nothing changes: a secret key must be given.

The format is the one ``make run`` writes, read strictly: ``NAME=VALUE`` lines, the value
taken as is up to the end of the line (no quotes, no ``$`` expansion), blank lines and
``#`` comments. python-dotenv was not used: it skips a line it cannot parse with a logged
warning rather than failing, and expands ``$`` in values by default; a wrong line here stops
the process with an error naming the line.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from django.core.exceptions import ImproperlyConfigured

from telemetry_project.env import CONNECTION_VARIABLES

ENV_FILE_VARIABLE: Final = "TELEMETRY_ENV_FILE"
DEV_ENV_NAME: Final = "dev.env"
DEFAULT_VAR_DIR: Final = Path(__file__).resolve().parent.parent / "var"
# What decides which sources a command accepts (make run sets SOURCE_URL_ALLOW), so that
# add_source and import_csv in another terminal judge a location as the running pipeline does.
SOURCE_POLICY_VARIABLES: Final = ("SOURCE_URL_ALLOW", "SOURCE_URL_DENY", "STREAM_SOURCE_DIRS")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER = """\
# Development settings of this checkout, written by `make run` (python -m
# telemetry_project.dev_env) at every start: edits are replaced, except the secret key,
# generated once and kept. manage.py commands run here read it for every variable the
# environment does not set; TELEMETRY_ENV_FILE= (empty) ignores it. See README.md,
# "Configuration".
"""


def chosen_file(default_var_dir: Path = DEFAULT_VAR_DIR) -> Path | None:
    """The settings file of this checkout, or None when ``TELEMETRY_ENV_FILE`` is empty."""
    chosen = os.environ.get(ENV_FILE_VARIABLE)
    if chosen is not None:
        return Path(chosen).expanduser() if chosen.strip() else None
    return Path(os.environ.get("TELEMETRY_VAR_DIR", str(default_var_dir))) / DEV_ENV_NAME


def load(default_var_dir: Path = DEFAULT_VAR_DIR) -> dict[str, str]:
    """The values of the settings file; none when there is no file (production, a fresh clone).

    A file named by ``TELEMETRY_ENV_FILE`` must exist: a path given by hand that is wrong is
    an error, not a silent fall back to no settings.
    """
    path = chosen_file(default_var_dir)
    if path is None or (ENV_FILE_VARIABLE not in os.environ and not path.exists()):
        return {}
    return read_env_file(path)


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=VALUE`` lines, blank lines and comments; anything else is refused by line.

    Errors name the line but never repeat its text: it may hold a secret.
    """
    try:
        text = path.read_bytes().decode("utf-8")  # no newline translation: \r stays seen
    except (OSError, UnicodeDecodeError) as error:
        raise ImproperlyConfigured(f"{path} cannot be read: {error}") from None
    values: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if not equals or not _NAME.fullmatch(name):
            raise ImproperlyConfigured(
                f"{path}, line {number}: not NAME=VALUE (a name of letters, digits and _ at "
                "the start of the line, then =, then the value as is)"
            )
        if value.endswith("\r"):
            raise ImproperlyConfigured(
                f"{path}, line {number}: ends with a carriage return; save the file with "
                "Unix line ends"
            )
        if name in first_seen:
            raise ImproperlyConfigured(
                f"{path}, line {number}: {name} is set again (first on line {first_seen[name]})"
            )
        first_seen[name] = number
        values[name] = value
    return values


def development_settings(environ: Mapping[str, str], previous: Mapping[str, str]) -> dict[str, str]:
    """What ``make run`` records: the previous file's key (or a new one), and the settings of
    its environment that the commands of a second terminal must share with its pipeline."""
    values = {
        "DJANGO_DEBUG": "1",
        "DJANGO_SECRET_KEY": previous.get("DJANGO_SECRET_KEY") or secrets.token_hex(32),
        # Exports are replayed with their own timestamps, whatever their age.
        "RETENTION_DAYS": environ.get("RETENTION_DAYS", "0"),
    }
    for name in SOURCE_POLICY_VARIABLES:
        if name in environ:
            values[name] = environ[name]
    for name in CONNECTION_VARIABLES:
        for variant in (name, f"{name}_FILE"):
            if environ.get(variant):
                values[variant] = environ[variant]
    return values


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Replace ``path`` at once with ``values``, readable by its owner only (it holds secrets)."""
    for name, value in values.items():
        if "\n" in value or "\r" in value:
            raise ImproperlyConfigured(f"{name} holds a line break, which {path} cannot hold")
    text = _HEADER + "".join(f"{name}={value}\n" for name, value in values.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.new")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)


def main() -> int:
    path = chosen_file()
    if path is None:
        print(
            f"{ENV_FILE_VARIABLE} is empty: no development settings file is written or read",
            file=sys.stderr,
        )
        return 0
    try:
        previous = read_env_file(path) if path.exists() else {}
        values = development_settings(os.environ, previous)
        write_env_file(path, values)
    except ImproperlyConfigured as error:
        print(error, file=sys.stderr)
        return 1
    key = "kept" if previous.get("DJANGO_SECRET_KEY") == values["DJANGO_SECRET_KEY"] else "new"
    recorded = [name for name in values if name not in {"DJANGO_SECRET_KEY", "RETENTION_DAYS"}]
    print(
        f"development settings in {path}: {', '.join(recorded)}, DJANGO_SECRET_KEY ({key}), "
        f"RETENTION_DAYS={values['RETENTION_DAYS']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
