"""Run ``docker/entrypoint.sh`` with stand-ins for the programs it starts, recording each start.

The image cannot run here, but its entrypoint is a POSIX shell script: run with a folder of
stand-in ``celery``, ``python`` and ``gunicorn`` programs first on ``PATH``, it goes through
exactly the steps a container does and ends by exec-ing a stand-in, which records its
arguments, its process id and its environment, then exits. The deployment tests feed it the
environment a rendered manifest or the compose file gives a container; tests/test_entrypoint.py
feeds it each role and override.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.reference import REPO

ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
STAND_INS = ("celery", "python", "gunicorn")
# What a shell script needs besides the stand-ins (sh, date, sed, uname, mkdir, rm).
SYSTEM_PATH = "/usr/bin:/bin"

# Appends one JSON line per start; exits with STAND_IN_EXIT_<NAME> (0 unless set).
STAND_IN = """#!{python}
import json, os, sys

name = os.path.basename(sys.argv[0])
with open(os.environ["STAND_IN_LOG"], "a") as log:
    log.write(json.dumps({{"argv": [name, *sys.argv[1:]], "pid": os.getpid(),
                          "env": dict(os.environ)}}) + "\\n")
sys.exit(int(os.environ.get("STAND_IN_EXIT_" + name.upper(), "0")))
"""


@dataclass(frozen=True)
class Start:
    """One start of a stand-in program."""

    argv: list[str]
    pid: int
    env: dict[str, str]


@dataclass(frozen=True)
class EntrypointRun:
    returncode: int
    stdout: str
    stderr: str
    starts: list[Start]
    run_dir: Path

    @property
    def command(self) -> list[str]:
        """The command the entrypoint ended with (the last program it started)."""
        assert self.starts, f"the entrypoint started nothing: {self.stderr}"
        return self.starts[-1].argv

    def recorded(self) -> dict[str, str]:
        """What the entrypoint wrote for the health checks (``process.env``), parsed."""
        text = (self.run_dir / "process.env").read_text()
        return dict(line.split("=", 1) for line in text.splitlines())

    def option(self, name: str) -> str:
        """The value following ``name`` in the command; fails if it is absent or repeated."""
        command = self.command
        assert command.count(name) == 1, command
        return command[command.index(name) + 1]


def run_entrypoint(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> EntrypointRun:
    """Run the entrypoint with ``args`` and only ``env`` (plus the stand-ins) in its environment."""
    stand_ins = tmp_path / "stand-ins"
    stand_ins.mkdir(parents=True, exist_ok=True)
    for name in STAND_INS:
        program = stand_ins / name
        program.write_text(STAND_IN.format(python=sys.executable))
        program.chmod(0o755)
    log = tmp_path / "starts.jsonl"
    log.unlink(missing_ok=True)
    # A container's /tmp is its own; here the run directory is the test's, whatever ``env`` says.
    environment = {**(env or {}), "TELEMETRY_RUN_DIR": str(tmp_path / "run")}
    environment.update(PATH=f"{stand_ins}:{SYSTEM_PATH}", STAND_IN_LOG=str(log))
    result = subprocess.run(
        [str(ENTRYPOINT), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    starts = (
        [Start(**json.loads(line)) for line in log.read_text().splitlines()] if log.exists() else []
    )
    return EntrypointRun(
        result.returncode, result.stdout, result.stderr, starts,
        Path(environment["TELEMETRY_RUN_DIR"]),
    )  # fmt: skip
