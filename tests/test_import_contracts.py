"""The boundaries between packages hold: lint-imports fails when one is crossed, and the
image's tree, which leaves the tools out, runs without them.

The contracts live in pyproject.toml and ``make lint`` runs them. Each case below copies the
packages to a scratch folder, adds one import that crosses a boundary, and runs the real
``lint-imports`` there: it must fail and name the contract broken (an import that reaches
further, as one of the routing names' would, may break others with it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.reference import REPO

PACKAGES = ("telemetry_project", "ingest", "api", "dashboard", "bench", "tests")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=root, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_project_keeps_every_import_contract() -> None:
    result = lint_imports(REPO)

    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "crossing", "contract"),
    [
        ("ingest/streamer.py", "import bench.dcgm_generator", "never imports the tools"),
        ("api/views.py", "import bench.sample_database", "never imports the tools"),
        ("ingest/collector.py", "import api.views", "ingest never imports the API"),
        ("ingest/models.py", "import ingest.tasks", "Models never import tasks"),
        ("telemetry_project/settings.py", "import ingest.models", "Settings import no app code"),
        ("telemetry_project/routing.py", "import ingest.queues", "routing names import nothing"),
        ("tests/test_reader.py", "import tests.conftest", "No test module imports from conftest"),
    ],
)
def test_an_import_across_a_boundary_fails_lint_imports(
    tmp_path: Path, module: str, crossing: str, contract: str
) -> None:
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    with (tmp_path / module).open("a") as source:
        source.write(f"\n{crossing}  # noqa\n")

    result = lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout
    broken = [line for line in result.stdout.splitlines() if line.endswith(" BROKEN")]
    assert any(contract in line for line in broken), result.stdout


def test_the_image_tree_runs_without_the_tools(tmp_path: Path) -> None:
    # What .dockerignore lets into the image, and nothing else.
    for rule in (REPO / ".dockerignore").read_text().splitlines():
        if rule.startswith("!"):
            kept = rule[1:].rstrip("/")
            (tmp_path / kept).parent.mkdir(parents=True, exist_ok=True)
            copy = shutil.copytree if (REPO / kept).is_dir() else shutil.copy
            copy(REPO / kept, tmp_path / kept)
    assert not (tmp_path / "bench").exists()

    def manage(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *arguments],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "DJANGO_DEBUG": "1", "TELEMETRY_VAR_DIR": str(tmp_path / "var")},
        )  # fmt: skip

    check = manage("check")
    assert check.returncode == 0, check.stderr
    commands = manage("help", "--commands")
    assert "import_csv" in commands.stdout.split()
    assert "generate_dcgm" not in commands.stdout.split()
    # The API docs page's own template (no CDN fonts), not drf-spectacular's default.
    redoc = manage(
        "shell", "-c",
        "from django.template.loader import get_template;"
        "print(get_template('drf_spectacular/redoc.html').origin.name)",
    )  # fmt: skip
    assert redoc.stdout.splitlines()[-1] == str(tmp_path / "templates/drf_spectacular/redoc.html")
