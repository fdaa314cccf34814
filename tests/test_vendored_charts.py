"""The charting library the dashboard serves is the pinned release, byte for byte, with its
licence beside it, and Django's static files find it (pin: ``dashboard/vendored.py``)."""

from __future__ import annotations

import hashlib

import pytest
from django.contrib.staticfiles import finders

from dashboard.vendored import UPLOT, VENDOR_DIR, VendoredFile


@pytest.mark.parametrize("file", UPLOT.files, ids=lambda file: file.name)
def test_committed_file_has_its_pinned_sha256(file: VendoredFile) -> None:
    committed = UPLOT.committed(file)
    assert committed.is_file(), f"{committed} is missing: run `make vendor-charts`"
    found = hashlib.sha256(committed.read_bytes()).hexdigest()
    assert found == file.sha256, f"{committed} is not {UPLOT.release.spec}'s {file.path}"


def test_vendor_folder_holds_only_pinned_files() -> None:
    committed = {path.relative_to(VENDOR_DIR).as_posix() for path in VENDOR_DIR.rglob("*")}
    pinned = {f"{UPLOT.release.name}/{file.name}" for file in UPLOT.files}
    assert committed == pinned | {UPLOT.release.name}


def test_licence_is_committed_beside_the_library() -> None:
    (licence,) = (file for file in UPLOT.files if file.name.startswith("LICENSE"))
    text = UPLOT.committed(licence).read_text()
    assert f"{UPLOT.licence} License" in text
    assert "Copyright" in text


def test_library_file_names_the_pinned_version() -> None:
    (script,) = (file for file in UPLOT.files if file.name.endswith(".js"))
    banner = UPLOT.committed(script).read_text().splitlines()[0]
    assert f"(v{UPLOT.release.version})" in banner


@pytest.mark.parametrize(
    "path",
    [
        *(f"dashboard/vendor/{UPLOT.release.name}/{file.name}" for file in UPLOT.files),
        "dashboard/aggregate-chart.js",
    ],
)
def test_static_files_find_the_dashboards_assets(path: str) -> None:
    found = finders.find(path)
    assert found is not None, f"{path} is not among the static files"
