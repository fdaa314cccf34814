"""Helpers for tests of the embedded default: SQLite and the filesystem transport in a tmp
var directory, the project's commands and scripts run as their own processes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.reference import REPO

# Settings that would point a child process at PostgreSQL rather than the embedded SQLite.
SERVICE_VARIABLES = ("DATABASE_URL", "DATABASE_URL_FILE", "DB_HOST")
BROKER_VARIABLES = ("REDIS_URL", "REDIS_URL_FILE", "CELERY_BROKER_URL", "CELERY_BROKER_URL_FILE")


def embedded_environment(var_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without the services, so settings fall back to embedded."""
    unset = (*SERVICE_VARIABLES, *BROKER_VARIABLES)
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(DJANGO_DEBUG="1", TELEMETRY_VAR_DIR=str(var_dir), LOG_LEVEL="INFO", **extra)
    return env


def bare_environment(var_dir: Path, **extra: str) -> dict[str, str]:
    """A new terminal's environment: nothing of the project's settings, and the var folder
    moved, so the checkout's own var/ and its dev.env stay out of the test."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "TELEMETRY_VAR_DIR": str(var_dir),
        **extra,
    }


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def start_pipeline(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """``manage.py run_pipeline`` (what ``make run`` starts), its output in ``log``."""
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "manage.py", "run_pipeline", "--port", str(port)],
            cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip


def stop_pipeline(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def api_get(port: int, path: str) -> Any:
    """The JSON body of a GET of ``path`` from the web process on ``port``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
        return json.load(reply)


def stats(port: int) -> dict[str, Any]:
    return dict(api_get(port, "/api/v1/stats"))


def answers(port: int) -> bool:
    try:
        stats(port)
    except OSError:
        return False
    return True


def query(var_dir: Path, sql: str) -> list[tuple[object, ...]]:
    """Rows from the embedded SQLite database, read beside the running processes."""
    with sqlite3.connect(var_dir / "telemetry.sqlite3", timeout=30) as database:
        return list(database.execute(sql))


def run_on_embedded_database(script: str, var_dir: Path, *args: str) -> str:
    """Run ``script`` (after ``django.setup()``) in a child process on the embedded settings:
    SQLite under ``var_dir``. Settings, and so the database, are read once per process.

    Returns the last line the script printed; fails the test if it exits non-zero.
    """
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
    env.update(DJANGO_SETTINGS_MODULE="telemetry_project.settings", TELEMETRY_VAR_DIR=str(var_dir))
    code = f"import django\ndjango.setup()\n{script}"
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]
