"""Write the dashboard's charting library into its static folder from the pinned npm release
(``make vendor-charts``); the pin is ``UPLOT`` in dashboard/vendored.py.

    .venv/bin/python -m bench.vendor_charts                   # the pinned release, again
    .venv/bin/python -m bench.vendor_charts --version 1.6.33  # moving to another release

Without ``--version``, the tarball must match the pinned integrity and every file its pinned
sha256 before anything is written, so the result is byte for byte what the pin describes.
With ``--version``, the files of that release are written and the pin to put in
dashboard/vendored.py is printed (npm checks that tarball against the registry's own
integrity); ``tests/test_vendored_charts.py`` fails until the pin is updated.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

from bench.npm_release import (
    ReleaseMismatchError,
    fetch,
    fetch_unpinned,
    read_member,
    subresource_integrity,
)
from dashboard.vendored import UPLOT, NpmRelease, VendoredFile, VendoredLibrary


def pinned_files(tarball: Path) -> dict[VendoredFile, bytes]:
    """The pinned files' bytes from the pinned tarball, each checked against its sha256."""
    contents = {file: read_member(tarball, file.path) for file in UPLOT.files}
    for file, content in contents.items():
        found = hashlib.sha256(content).hexdigest()
        if found != file.sha256:
            raise ReleaseMismatchError(f"{file.path}: sha256 {found}, the pin says {file.sha256}")
    return contents


def repinned(version: str, folder: Path) -> tuple[VendoredLibrary, dict[VendoredFile, bytes]]:
    """Another release of the same package: its files and the pin that describes them."""
    tarball = fetch_unpinned(f"{UPLOT.release.name}@{version}", folder)
    contents = {file.path: read_member(tarball, file.path) for file in UPLOT.files}
    files = {
        VendoredFile(path, hashlib.sha256(content).hexdigest()): content
        for path, content in contents.items()
    }
    release = NpmRelease(UPLOT.release.name, version, subresource_integrity(tarball.read_bytes()))
    return VendoredLibrary(release, tuple(files), UPLOT.licence), files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", help="another release of the package to vendor")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vendor-charts-") as tmp:
        if args.version is None:
            library, contents = UPLOT, pinned_files(fetch(UPLOT.release, Path(tmp)))
        else:
            library, contents = repinned(args.version, Path(tmp))
    library.folder.mkdir(parents=True, exist_ok=True)
    for file, content in contents.items():
        library.committed(file).write_bytes(content)
    if args.version is not None:
        print(f"put this pin in dashboard/vendored.py as UPLOT:\n{library!r}")
    print(f"vendor-charts: {library.release.spec} files={len(contents)} into {library.folder}")


if __name__ == "__main__":
    main()
