"""The development settings file ``make run`` writes (var/dev.env) and how settings read it.

The file is read by settings at start-up, so each check of what settings make of it runs a
real process with an environment as bare as a new terminal's: PATH and HOME, plus
TELEMETRY_VAR_DIR pointing at a temporary folder instead of the checkout's own var/.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from telemetry_project import dev_env
from telemetry_project.env import env_bool, env_int, env_secret, env_str, use_file_values
from tests.support.embedded import bare_environment
from tests.support.reference import REPO

# What settings_of prints: enough to tell which file (if any) the process read.
SETTINGS_PROBE = """
import json
from django.conf import settings
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "SECRET_KEY": settings.SECRET_KEY,
    "RETENTION_DAYS": settings.RETENTION_DAYS,
    "ENGINE": settings.DATABASES["default"]["ENGINE"],
    "DATABASE": str(settings.DATABASES["default"]["NAME"]),
    "BROKER": settings.CELERY_BROKER_URL,
}))
"""


def run_python(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def write_dev_env(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """What ``make run`` runs first."""
    written = run_python(env, "-m", "telemetry_project.dev_env")
    assert written.returncode == 0, written.stderr
    return written


def settings_of(env: dict[str, str]) -> dict[str, object]:
    probe = run_python({**env, "DJANGO_SETTINGS_MODULE": "telemetry_project.settings"},
                       "-c", SETTINGS_PROBE)  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    return dict(json.loads(probe.stdout))


def settings_error(env: dict[str, str]) -> str:
    probe = run_python({**env, "DJANGO_SETTINGS_MODULE": "telemetry_project.settings"},
                       "-c", SETTINGS_PROBE)  # fmt: skip
    assert probe.returncode != 0, probe.stdout
    return probe.stderr


@pytest.fixture
def file_values() -> Iterator[None]:
    """Values handed to env.use_file_values by a test are forgotten after it."""
    yield
    use_file_values({})


# --- Writing the file ---------------------------------------------------------------------


def test_make_runs_first_step_writes_the_development_settings_readable_by_its_owner_only(
    tmp_path: Path,
) -> None:
    var = tmp_path / "var"
    written = write_dev_env(bare_environment(var))

    path = var / "dev.env"
    assert str(path) in written.stdout
    values = dev_env.read_env_file(path)
    assert values["DJANGO_DEBUG"] == "1"
    assert values["RETENTION_DAYS"] == "0"
    assert len(values["DJANGO_SECRET_KEY"]) >= 50
    assert "DATABASE_URL" not in values
    assert "REDIS_URL" not in values
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert values["DJANGO_SECRET_KEY"] not in written.stdout


def test_the_secret_key_is_generated_once_and_kept_by_every_later_run(tmp_path: Path) -> None:
    var = tmp_path / "var"
    write_dev_env(bare_environment(var))
    first = dev_env.read_env_file(var / "dev.env")["DJANGO_SECRET_KEY"]

    again = write_dev_env(bare_environment(var, DATABASE_URL="postgres://u@db:5432/t"))

    assert dev_env.read_env_file(var / "dev.env")["DJANGO_SECRET_KEY"] == first
    assert "DJANGO_SECRET_KEY (kept)" in again.stdout


def test_the_database_and_broker_make_run_was_given_are_recorded_and_dropped_when_unset(
    tmp_path: Path,
) -> None:
    var = tmp_path / "var"
    database = "postgres://alice:p%40ss#1@127.0.0.1:5432/telemetry"
    write_dev_env(
        bare_environment(var, DATABASE_URL=database, REDIS_URL="redis://127.0.0.1:6379/3")
    )
    values = dev_env.read_env_file(var / "dev.env")
    assert values["DATABASE_URL"] == database  # kept as is: no quoting, no comment cut off
    assert values["REDIS_URL"] == "redis://127.0.0.1:6379/3"

    write_dev_env(bare_environment(var))  # the next make run is embedded again
    values = dev_env.read_env_file(var / "dev.env")
    assert "DATABASE_URL" not in values
    assert "REDIS_URL" not in values


def test_a_retention_window_given_to_make_run_is_recorded_instead_of_zero(tmp_path: Path) -> None:
    var = tmp_path / "var"
    write_dev_env(bare_environment(var, RETENTION_DAYS="7"))
    assert dev_env.read_env_file(var / "dev.env")["RETENTION_DAYS"] == "7"


def test_the_source_policy_make_run_was_given_is_recorded(tmp_path: Path) -> None:
    var = tmp_path / "var"
    write_dev_env(bare_environment(var, SOURCE_URL_ALLOW="127.0.0.0/8", STREAM_SOURCE_DIRS="/srv"))
    values = dev_env.read_env_file(var / "dev.env")
    assert values["SOURCE_URL_ALLOW"] == "127.0.0.0/8"
    assert values["STREAM_SOURCE_DIRS"] == "/srv"
    assert "SOURCE_URL_DENY" not in values


def test_an_empty_telemetry_env_file_writes_nothing(tmp_path: Path) -> None:
    var = tmp_path / "var"
    written = write_dev_env(bare_environment(var, TELEMETRY_ENV_FILE=""))
    assert "TELEMETRY_ENV_FILE is empty" in written.stderr
    assert not (var / "dev.env").exists()


def test_a_value_with_a_line_break_cannot_be_written(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL holds a line break"):
        dev_env.write_env_file(tmp_path / "dev.env", {"REDIS_URL": "redis://a\nDJANGO_DEBUG=1"})
    assert not (tmp_path / "dev.env").exists()


# --- Reading the file ---------------------------------------------------------------------


def test_lines_are_name_equals_value_taken_as_is_with_comments_and_blank_lines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dev.env"
    path.write_text(
        "# a comment\n\n   # an indented comment\nA=1\nB=x=y # not a comment $HOME 'q'\nC=\n"
    )
    assert dev_env.read_env_file(path) == {"A": "1", "B": "x=y # not a comment $HOME 'q'", "C": ""}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A=1\nexport B=2\n", "line 2: not NAME=VALUE"),
        ("A=1\n\nsecret-value\n", "line 3: not NAME=VALUE"),
        (" A=1\n", "line 1: not NAME=VALUE"),
        ("1A=1\n", "line 1: not NAME=VALUE"),
        ("A=1\nB=2\nA=3\n", "line 3: A is set again (first on line 1)"),
        ("A=1\r\nB=2\r\n", "line 1: ends with a carriage return"),
    ],
)
def test_a_bad_line_is_an_error_naming_the_line_without_repeating_it(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "dev.env"
    path.write_text(text)
    with pytest.raises(ImproperlyConfigured, match=re.escape(message)) as refused:
        dev_env.read_env_file(path)
    assert "secret-value" not in str(refused.value)


def test_the_environment_wins_over_the_file_for_every_reader(
    monkeypatch: pytest.MonkeyPatch, file_values: None
) -> None:
    monkeypatch.setenv("RETENTION_DAYS", "30")
    monkeypatch.delenv("A_FLAG", raising=False)
    monkeypatch.delenv("A_NAME", raising=False)
    use_file_values({"RETENTION_DAYS": "0", "A_FLAG": "1", "A_NAME": "from-file"})
    assert env_int("RETENTION_DAYS", 30) == 30
    assert env_bool("A_FLAG", False) is True
    assert env_str("A_NAME") == "from-file"


def test_a_secret_given_as_a_file_in_the_environment_wins_over_the_file_value(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, file_values: None
) -> None:
    secret = tmp_path / "url"
    secret.write_text("postgres://from-secret-file/db\n")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL_FILE", str(secret))
    use_file_values({"DATABASE_URL": "postgres://from-dev-env/db"})
    assert env_secret("DATABASE_URL") == "postgres://from-secret-file/db"


# --- Settings, in processes of their own ----------------------------------------------------


def test_a_new_terminal_of_the_checkout_gets_the_development_settings(tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = bare_environment(var)
    write_dev_env(env)

    seen = settings_of(env)

    assert seen["DEBUG"] is True
    assert seen["SECRET_KEY"] == dev_env.read_env_file(var / "dev.env")["DJANGO_SECRET_KEY"]
    assert seen["RETENTION_DAYS"] == 0
    assert seen["ENGINE"] == "django.db.backends.sqlite3"
    assert seen["DATABASE"] == str(var / "telemetry.sqlite3")
    assert seen["BROKER"] == "filesystem://"


def test_the_database_and_broker_of_make_run_are_those_of_a_new_terminal(tmp_path: Path) -> None:
    var = tmp_path / "var"
    write_dev_env(
        bare_environment(
            var,
            DATABASE_URL="postgres://postgres@127.0.0.1:5432/elsewhere",
            REDIS_URL="redis://127.0.0.1:6379/9",
        )
    )
    seen = settings_of(bare_environment(var))
    assert seen["ENGINE"] == "telemetry_project.postgresql"
    assert seen["DATABASE"] == "elsewhere"
    assert seen["BROKER"] == "redis://127.0.0.1:6379/9"


def test_a_variable_set_in_the_environment_is_never_overridden_by_the_file(
    tmp_path: Path,
) -> None:
    var = tmp_path / "var"
    write_dev_env(bare_environment(var))
    seen = settings_of(bare_environment(var, RETENTION_DAYS="30", DJANGO_SECRET_KEY="k" * 60))
    assert seen["RETENTION_DAYS"] == 30
    assert seen["SECRET_KEY"] == "k" * 60
    assert seen["DEBUG"] is True  # still from the file: the environment does not set it


def test_an_empty_telemetry_env_file_reads_no_file_and_production_stays_strict(
    tmp_path: Path,
) -> None:
    var = tmp_path / "var"
    write_dev_env(bare_environment(var))
    error = settings_error(bare_environment(var, TELEMETRY_ENV_FILE=""))
    assert "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is refused: it is missing" in error


def test_without_a_file_and_without_debug_a_secret_key_is_still_required(tmp_path: Path) -> None:
    error = settings_error(bare_environment(tmp_path / "var"))
    assert "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is refused: it is missing" in error


def test_telemetry_env_file_names_another_file_to_read(tmp_path: Path) -> None:
    other = tmp_path / "staging.env"
    other.write_text("DJANGO_DEBUG=1\nRETENTION_DAYS=12\n")
    seen = settings_of(bare_environment(tmp_path / "var", TELEMETRY_ENV_FILE=str(other)))
    assert seen["RETENTION_DAYS"] == 12
    assert seen["DEBUG"] is True


def test_a_missing_file_named_by_telemetry_env_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.env"
    error = settings_error(bare_environment(tmp_path / "var", TELEMETRY_ENV_FILE=str(missing)))
    assert f"{missing} cannot be read" in error


def test_a_bad_line_in_dev_env_stops_settings_with_the_line_named(tmp_path: Path) -> None:
    var = tmp_path / "var"
    write_dev_env(bare_environment(var))
    with (var / "dev.env").open("a") as out:
        out.write("RETENTION DAYS=5\n")
    lines = (var / "dev.env").read_text().count("\n")
    error = settings_error(bare_environment(var))
    assert f"dev.env, line {lines}: not NAME=VALUE" in error
