"""Registering stream sources: validation shared by the admin and the management commands."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.db.models import F

from ingest.models import StreamCursor, StreamSource


def validate_location(location: str) -> str:
    """A readable file (returned absolute) or an http(s) URL; anything else is refused."""
    if location.startswith(("http://", "https://")):
        return location
    if "://" in location:
        raise ValidationError(f"only files and http(s) URLs can be streamed, not {location!r}")
    path = Path(location).expanduser().resolve()
    if not path.is_file():
        raise ValidationError(f"{location} is not a readable file")
    return str(path)


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
