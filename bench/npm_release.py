"""A pinned release of an npm package, fetched with the ordinary ``npm pack`` client.

The registry's tarball is checked against the pinned Subresource Integrity string before
any file is read from it, so a re-fetch either yields the pinned bytes or stops.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import tarfile
from pathlib import Path

from dashboard.vendored import NpmRelease

# Every file of an npm tarball sits under this folder.
TARBALL_ROOT = "package/"


class ReleaseMismatchError(Exception):
    """The registry served something other than the pinned release."""


def subresource_integrity(data: bytes) -> str:
    """The ``sha512-<base64>`` form npm records for a tarball."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def fetch_unpinned(spec: str, into: Path) -> Path:
    """Download ``name@version``'s tarball into ``into`` (npm checks it against the registry)."""
    into.mkdir(parents=True, exist_ok=True)
    # --ignore-scripts: packing a registry spec runs none today; this keeps it so.
    packed = subprocess.run(  # noqa: S603  (a package spec as an argument, no shell)
        ["npm", "pack", spec, "--json", "--ignore-scripts"],  # noqa: S607  (npm from PATH)
        cwd=into,
        check=True,
        capture_output=True,
        text=True,
    )
    (entry,) = json.loads(packed.stdout)
    filename: str = entry["filename"]
    return into / filename


def fetch(release: NpmRelease, into: Path) -> Path:
    """Download the release's tarball into ``into`` and check it against the pin."""
    tarball = fetch_unpinned(release.spec, into)
    found = subresource_integrity(tarball.read_bytes())
    if found != release.integrity:
        raise ReleaseMismatchError(
            f"{release.spec}: the tarball's integrity is {found}, the pin says {release.integrity}"
        )
    return tarball


def read_member(tarball: Path, path: str) -> bytes:
    """The bytes of ``path`` (relative to the package root) inside an npm tarball."""
    with tarfile.open(tarball, "r:gz") as archive:
        try:
            member = archive.extractfile(TARBALL_ROOT + path)
        except KeyError:
            member = None
        if member is None:
            raise ReleaseMismatchError(f"{tarball.name} holds no regular file {path}")
        return member.read()
