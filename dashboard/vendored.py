"""The third-party files the dashboard serves as its own static files, pinned in one place:
the npm release each comes from and the sha256 of every committed file.

``make vendor-charts`` fetches the release again and rewrites the files from it;
``tests/test_vendored_charts.py`` checks the committed files against these hashes. Why uPlot:
docs/charts.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

VENDOR_DIR: Final = Path(__file__).resolve().parent / "static" / "dashboard" / "vendor"


@dataclass(frozen=True)
class NpmRelease:
    """One version of one npm package; ``integrity`` is the registry's ``dist.integrity``."""

    name: str
    version: str
    integrity: str

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class VendoredFile:
    """A file of the release's package (``path`` from the package root) and its sha256."""

    path: str
    sha256: str

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True)
class VendoredLibrary:
    """A release whose files are committed under ``VENDOR_DIR/<package name>/``."""

    release: NpmRelease
    files: tuple[VendoredFile, ...]
    licence: str

    @property
    def folder(self) -> Path:
        return VENDOR_DIR / self.release.name

    def committed(self, file: VendoredFile) -> Path:
        return self.folder / file.name


UPLOT: Final = VendoredLibrary(
    NpmRelease(
        name="uplot",
        version="1.6.32",
        integrity="sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==",
    ),
    files=(
        VendoredFile(
            "dist/uPlot.iife.min.js",
            "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f",
        ),
        VendoredFile(
            "dist/uPlot.min.css",
            "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
        ),
        VendoredFile("LICENSE", "8f989229699b4fe2f1a0432d0e9edc338a8a911e250e2d1b01ecd770a5f5b1bd"),
    ),
    licence="MIT",
)
