"""Keyset cursors for sample pages: the position after the last row a page returned.

A cursor names the last ``(timestamp, id)`` a page held, so the next page starts there with
one index range read, whatever its depth; an offset makes the database walk past every
skipped row. It is signed with the project's secret key, so a client cannot hand in a
position of its own making: a cursor edited, cut or signed by another deployment is refused
(400), as is one issued before the key was rotated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from django.core import signing
from django.db.models import Q, QuerySet

SALT: Final = "api.sample-page-cursor"
NOT_ISSUED: Final = "cursor is not one this API issued: follow a `next` link"
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class CursorError(ValueError):
    """The cursor was not issued by this API (edited, truncated or signed elsewhere)."""


@dataclass(frozen=True)
class Cursor:
    timestamp: datetime
    sample_id: int

    def encode(self) -> str:
        microseconds = (self.timestamp - EPOCH) // timedelta(microseconds=1)
        return signing.dumps([microseconds, self.sample_id], salt=SALT, compress=False)

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            position: Any = signing.loads(text, salt=SALT)
        except signing.BadSignature:
            raise CursorError(NOT_ISSUED) from None
        if not (
            isinstance(position, list)
            and len(position) == 2
            and all(type(part) is int for part in position)
        ):
            raise CursorError(NOT_ISSUED)
        microseconds, sample_id = position
        try:
            timestamp = EPOCH + timedelta(microseconds=microseconds)
        except OverflowError:
            raise CursorError(NOT_ISSUED) from None
        return cls(timestamp, sample_id)

    def rows_after(self, samples: QuerySet[Any]) -> QuerySet[Any]:
        """``samples`` (ordered by timestamp, then id) after this position.

        Written as ``timestamp >= t AND (timestamp > t OR id > i)``: the first term is a range
        on the per-GPU index, which then yields rows in page order; a bare OR of the two cases
        would be read as two index scans merged in no order, then sorted whole.
        """
        later = Q(timestamp__gt=self.timestamp) | Q(id__gt=self.sample_id)
        return samples.filter(Q(timestamp__gte=self.timestamp) & later)
