"""Registering stream sources, and the policy on what a source may read.

A source's location is data: anyone who can use the admin or write the database can change
it. So the streamer does not trust it. Files are read only from the directories listed in
``STREAM_SOURCE_DIRS`` (after resolving symlinks and ``..``, so neither escapes them) and only
if they are regular files (a FIFO or a device would hang or stream forever); URLs only with
http or https. ``check_location`` is that one policy, used when a source is registered (the
admin form, ``add_source``, ``import_csv``) and again by the reader every time it opens a
source, so a location edited in the database or a symlink swapped later is still refused.
Which addresses a URL may reach is ``ingest.fetch``'s policy, applied at every fetch (and, as
a courtesy, at registration).

One exception, confined to one process: a file its user named on the command line
(``manage.py import_csv PATH``) may be read wherever it is, by that process only, while it
runs (``reading_named_file``). Such a source is marked ``command_line_only`` and streamed by
that command itself; workers refuse it (``ingest.streamer``), since nobody named it to them.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import F

from ingest import fetch
from ingest.models import StreamCursor, StreamSource

URL_SCHEMES = ("http", "https")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


# Real paths of the files this process's user named on the command line (reading_named_file).
_named_files: ContextVar[frozenset[Path]] = ContextVar("named_files", default=frozenset())


class LocationRefusedError(ValueError):
    """The location breaks the source policy; the message says why and what setting to change."""


def allowed_directories() -> list[Path]:
    """``STREAM_SOURCE_DIRS`` resolved, so a symlinked directory compares by its real path."""
    return [Path(folder).expanduser().resolve() for folder in settings.STREAM_SOURCE_DIRS]


def _real_path(location: str) -> Path:
    return Path(location.strip()).expanduser().resolve()


def inside_source_dirs(location: str) -> bool:
    """Whether a file location lies under ``STREAM_SOURCE_DIRS`` (after resolving it)."""
    try:
        return _inside(_real_path(location), allowed_directories())
    except (OSError, RuntimeError):  # a symlink loop, an unreadable directory
        return False


@contextmanager
def reading_named_file(location: str) -> Iterator[None]:
    """Let this process read the file its user named, wherever it is, until the block ends.

    Only the file's real path as resolved now is let through, and the rest of the policy is
    still checked at every read: a symlink pointed elsewhere later, or another location
    written into the source, is refused as usual.
    """
    named = _named_files.get()
    # Unresolvable (a symlink loop): nothing is let through, and check_location says why.
    with suppress(OSError, RuntimeError):
        named |= {_real_path(location)}
    token = _named_files.set(named)
    try:
        yield
    finally:
        _named_files.reset(token)


def is_named_file(location: str) -> bool:
    """Whether this process is reading ``location`` because its user named it."""
    if is_url(location) or not _named_files.get():
        return False
    try:
        return _real_path(location) in _named_files.get()
    except (OSError, RuntimeError):  # a symlink loop, an unreadable directory
        return False


def is_url(location: str) -> bool:
    """Whether the location is read over http(s) rather than as a file."""
    return location.startswith(tuple(f"{scheme}://" for scheme in URL_SCHEMES))


def check_location(location: str) -> str:
    """The location to read (a URL, or a file's real path), or ``LocationRefusedError``.

    Only the form of a URL is checked here; the reader applies the size cap and timeouts.
    A file that is allowed but cannot be found raises its ``OSError``.
    """
    location = location.strip()
    if not location:
        raise LocationRefusedError("the location is empty")
    match = _SCHEME.match(location)
    if match:
        scheme = match.group(1).lower()
        if scheme in URL_SCHEMES and location[len(scheme) + 1 :].startswith("//"):
            url = scheme + location[len(scheme) :]  # a lower-case scheme, as is_url expects
            try:
                host = urlsplit(url).hostname
            except ValueError as error:  # e.g. an unclosed IPv6 bracket
                raise LocationRefusedError(f"{location!r} is not a valid URL: {error}") from None
            if not host:
                raise LocationRefusedError(f"{location!r} names no host")
            return url
        if scheme == "file":
            raise LocationRefusedError(
                f"file:// URLs are not read ({location!r}): give the file's path instead; "
                f"files are read only under {_allowed_text()}"
            )
        raise LocationRefusedError(
            f"only http:// and https:// URLs and files can be streamed, not {location!r}"
        )
    return str(resolve_file(location))


def resolve_file(location: str) -> Path:
    """The real path of a regular file inside an allowed directory, or ``LocationRefusedError``.

    Containment is checked before existence, so a refusal says nothing about what exists
    outside the allowed directories. A missing file inside them raises the ``OSError``.
    """
    folders = allowed_directories()
    given = Path(location).expanduser()
    try:
        real = given.resolve()
    except (OSError, RuntimeError) as error:  # a symlink loop, an unreadable directory
        raise LocationRefusedError(f"{location} cannot be resolved: {error}") from None
    if not _permitted(real, folders):
        if not folders:
            raise LocationRefusedError(
                f"{location} is a file, but STREAM_SOURCE_DIRS is empty, so sources may only "
                "be http(s) URLs; list the directories files may be read from in "
                "STREAM_SOURCE_DIRS"
            )
        shown = location if real == given.absolute() else f"{location} (resolves to {real})"
        raise LocationRefusedError(
            f"{shown} is outside the directories sources may read ({_allowed_text(folders)}); "
            "to allow it, add its directory to STREAM_SOURCE_DIRS"
        )
    mode = real.stat().st_mode  # OSError (a missing file) is not a policy matter: it propagates
    if not stat.S_ISREG(mode):
        raise LocationRefusedError(f"{location} is not a regular file ({_kind(mode)})")
    return real


def open_source_file(location: str) -> BinaryIO:
    """Open a file source for reading, with the policy checked on the opened file itself.

    The path is resolved and checked, then opened without following a final symlink and
    without blocking (a FIFO would otherwise wait for a writer), and the descriptor is
    checked again: a regular file, at a path inside the allowed directories (or the file
    named on the command line). That closes the window between the check and the open in
    which a symlink could be swapped.
    """
    real = resolve_file(location)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    descriptor = os.open(real, flags | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise LocationRefusedError(f"{location} is not a regular file ({_kind(mode)})")
        opened = _descriptor_path(descriptor)
        if opened is not None and not _permitted(opened, allowed_directories()):
            raise LocationRefusedError(
                f"{location} changed while it was opened and now points outside the "
                f"directories sources may read ({_allowed_text()})"
            )
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def validate_location(location: str) -> str:
    """``check_location`` for forms and commands: the location to store, or a ValidationError.

    Files are stored by their real path, so what is registered is what was checked.
    """
    try:
        checked = check_location(location)
    except LocationRefusedError as error:
        raise ValidationError(str(error)) from None
    except OSError as error:
        raise ValidationError(f"{location} is not a readable file ({error.strerror})") from None
    if is_url(checked):
        _check_url_addresses(checked)
    return checked


def _check_url_addresses(url: str) -> None:
    """Refuse a URL whose host the fetch policy refuses, as far as it resolves from here.

    Only a courtesy to whoever registers it: the host may resolve elsewhere (an edge site's
    streamers) or differently later, so the check that matters is the one made at every fetch.
    A host that does not resolve here is accepted for that reason.
    """
    try:
        fetch.allowed_addresses(url)
    except fetch.AddressRefusedError as error:
        raise ValidationError(str(error)) from None
    except (OSError, UnicodeError):
        pass  # unresolvable from here: the streamers decide


def _inside(path: Path, folders: list[Path]) -> bool:
    return any(path == folder or path.is_relative_to(folder) for folder in folders)


def _permitted(path: Path, folders: list[Path]) -> bool:
    """A real path this process may read: inside ``folders``, or named by its user."""
    return _inside(path, folders) or path in _named_files.get()


def _allowed_text(folders: list[Path] | None = None) -> str:
    folders = allowed_directories() if folders is None else folders
    if not folders:
        return "no directory: STREAM_SOURCE_DIRS is empty"
    return "STREAM_SOURCE_DIRS = " + ", ".join(str(folder) for folder in folders)


def _descriptor_path(descriptor: int) -> Path | None:
    """The path the kernel has for an open descriptor, where /proc tells (Linux)."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{descriptor}"))
    except OSError:
        return None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def rewind(source: StreamSource) -> None:
    """Stream the source again from its first line, as a new pass of every shard.

    A new pass number gives the replayed chunks new ids, so the ledger does not mistake them
    for the chunks already committed; chunks of the old pass still outstanding stay so, and
    are confirmed or re-published as usual.
    """
    StreamCursor.objects.filter(source=source).update(
        position=F("start_offset"),
        next_line=F("start_line"),
        pass_number=F("pass_number") + 1,
        finished=False,
    )
