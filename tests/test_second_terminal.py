"""After ``make run``, the README's commands typed in a second terminal work as written.

``make run`` runs for real, embedded (SQLite and the filesystem broker), with its var folder
moved to a temp directory (TELEMETRY_VAR_DIR) so the checkout's own var/ is left alone. The
second terminal's environment holds nothing of the project's settings: PATH, HOME and that
TELEMETRY_VAR_DIR only. What makes the commands work there is the var/dev.env ``make run``
wrote. The interactive commands run in a pseudo-terminal and are answered like a person.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shlex
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.dcgm_generator import GeneratorSpec, write_dcgm_csv
from telemetry_project import dev_env
from tests.support.embedded import answers, bare_environment, query, stats
from tests.support.reference import REPO
from tests.support.servers import free_port
from tests.support.workers import wait_for

PASSWORD = "c0rrect-Horse-battery-staple"  # noqa: S105  (a throwaway test login)


@dataclass
class SecondTerminal:
    """A terminal in the checkout while ``make run`` runs in another one."""

    env: dict[str, str]
    var: Path
    port: int

    def run(self, command: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """A command line as a person types it."""
        return subprocess.run(
            shlex.split(command), cwd=REPO, env=self.env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def superusers(self) -> list[str]:
        rows = query(self.var, "SELECT username FROM auth_user WHERE is_superuser = 1")
        return sorted(str(name) for (name,) in rows)


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[SecondTerminal]:
    var = tmp_path / "var"
    env = bare_environment(var)
    port = free_port()
    log = tmp_path / "make-run.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            ["make", "run", f"PORT={port}"], cwd=REPO, env=env, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: answers(port) or process.poll() is not None, 180, what="make run")
        assert process.poll() is None, log.read_text()
        yield SecondTerminal(env, var, port)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in make run's terminal
        process.wait(timeout=60)


def converse(
    command: list[str], env: dict[str, str], replies: list[tuple[str, str]], timeout: float = 120
) -> tuple[str, int]:
    """Run ``command`` in a pseudo-terminal, answering each prompt; (transcript, exit code)."""
    pid, terminal = pty.fork()
    if pid == 0:  # the child: become the command
        try:
            os.chdir(REPO)
            os.execvpe(command[0], command, env)  # noqa: S606  (the project's own commands)
        finally:
            os._exit(127)
    deadline = time.monotonic() + timeout
    transcript = ""
    for prompt, reply in replies:
        while prompt not in transcript:
            chunk = _read(terminal, deadline)
            assert chunk, f"the command ended before asking {prompt!r}:\n{transcript}"
            transcript += chunk
        transcript = transcript.replace(prompt, f"{prompt}<{reply}>", 1)
        os.write(terminal, reply.encode() + b"\n")
    while chunk := _read(terminal, deadline):
        transcript += chunk
    os.close(terminal)
    _, status = os.waitpid(pid, 0)
    return transcript, os.waitstatus_to_exitcode(status)


def _read(terminal: int, deadline: float) -> str:
    """What the terminal shows next; "" once the command has ended."""
    ready, _, _ = select.select([terminal], [], [], max(0.0, deadline - time.monotonic()))
    assert ready, "the command stopped answering"
    try:
        return os.read(terminal, 4096).decode(errors="replace")
    except OSError:  # EIO: the other side of the terminal closed
        return ""


def login_replies(username: str) -> list[tuple[str, str]]:
    return [
        ("Username", username),
        ("Email address: ", f"{username}@example.com"),
        ("Password: ", PASSWORD),
        ("Password (again): ", PASSWORD),
    ]


@pytest.mark.integration
def test_the_readme_commands_work_in_a_second_terminal_with_no_variable_typed(
    make_run: SecondTerminal, tmp_path: Path
) -> None:
    terminal = make_run
    written = dev_env.read_env_file(terminal.var / "dev.env")
    assert (written["DJANGO_DEBUG"], written["RETENTION_DAYS"]) == ("1", "0")
    assert written["SOURCE_URL_ALLOW"] == "127.0.0.0/8"
    assert stat.S_IMODE((terminal.var / "dev.env").stat().st_mode) == 0o600

    checked = terminal.run(".venv/bin/python manage.py validate_csv data/dcgm_metrics_sample.csv")
    assert checked.returncode == 0, checked.stderr
    assert "validate: rows=2470 good=2470 rejected=0" in checked.stdout

    # The bundled July 2025 export, with its own timestamps: kept, since make run keeps data.
    imported = terminal.run(".venv/bin/python manage.py import_csv data/dcgm_metrics_sample.csv")
    assert imported.returncode == 0, imported.stderr
    assert re.fullmatch(r"committed=2470 rejected=0 seconds=[\d.]+", imported.stdout.strip())

    # A file of the user's own, outside data/ and var/.
    elsewhere = tmp_path / "export.csv"
    with elsewhere.open("wb") as out:
        rows = write_dcgm_csv(out, GeneratorSpec(hosts=3, gpus_per_host=4, metrics=5))
    outside = terminal.run(f".venv/bin/python manage.py import_csv {elsewhere}")
    assert outside.returncode == 0, outside.stderr
    assert "this command streams it itself" in outside.stderr
    assert outside.stdout.strip().startswith(f"committed={rows} rejected=0 ")
    total = stats(terminal.port)["total_records"]
    assert isinstance(total, int)
    assert total >= 2470 + rows

    added = terminal.run(
        ".venv/bin/python manage.py add_source nightly data/dcgm_metrics_sample.csv --interval 60"
    )
    assert added.returncode == 0, added.stderr
    assert "source nightly" in added.stdout

    transcript, status = converse(
        [".venv/bin/python", "manage.py", "createsuperuser"], terminal.env, login_replies("ops")
    )
    assert status == 0, transcript
    assert "Superuser created successfully." in transcript

    transcript, status = converse(["make", "superuser"], terminal.env, login_replies("admin"))
    assert status == 0, transcript
    assert "Superuser created successfully." in transcript
    assert terminal.superusers() == ["admin", "ops"]


def dry_run(target: str, env: dict[str, str]) -> str:
    shown = subprocess.run(
        ["make", "-n", target], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    return shown.stdout


def test_make_superuser_asks_for_the_login_unless_the_variables_give_it(tmp_path: Path) -> None:
    bare = bare_environment(tmp_path / "var")
    asked = [line for line in dry_run("superuser", bare).splitlines() if "createsuperuser" in line]
    given = dry_run("superuser", {**bare, "DJANGO_SUPERUSER_USERNAME": "admin"})
    assert len(asked) == 1
    assert "--noinput" not in asked[0]
    assert "manage.py createsuperuser --noinput" in given


def test_make_run_writes_the_development_settings_before_any_other_command(
    tmp_path: Path,
) -> None:
    steps = dry_run("run", bare_environment(tmp_path / "var")).splitlines()
    first = next(n for n, step in enumerate(steps) if "telemetry_project.dev_env" in step)
    recipe = steps[first:]
    assert "-m telemetry_project.dev_env" in recipe[0]
    assert "manage.py migrate" in recipe[1]
    assert "manage.py run_pipeline" in recipe[-1]
