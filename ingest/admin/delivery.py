"""The delivery state: outstanding chunks, pushed parts, the ledger, attempts, rejected rows,
dead letters.

All read-only: a hand-edited ledger row would let a redelivered chunk in twice. The one
action is the dead letters' replay (``ingest.dead_letters``). docs/design.md, "Delivery
protocol".
"""

from __future__ import annotations

from typing import TypeVar

import msgpack
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils.text import Truncator

from ingest import dead_letters
from ingest.admin.base import MAX_ID, ReadOnlyAdmin, TypedModelAdmin, count, tell
from ingest.admin.paging import LargeTableAdmin
from ingest.models import (
    ChunkAttempt,
    DeadLetter,
    IngestedChunk,
    OutstandingChunk,
    PushChunk,
    RejectedRow,
    Tally,
    chunk_id_for,
)

_M = TypeVar("_M", bound=Model)


def search_chunk_id(queryset: QuerySet[_M], term: str, *, by_source: bool) -> QuerySet[_M]:
    """Rows of exactly one chunk id, matched as typed (an index can serve it; icontains not).

    A chunk id starts with its source id (``source:shard:pass:offset``); with ``by_source``
    the source is filtered on as well, so an index led by the source narrows the search.
    """
    term = term.strip()
    if not term:
        return queryset
    queryset = queryset.filter(chunk_id=term)
    source_id = term.split(":", 1)[0]
    if by_source and source_id.isdecimal() and int(source_id) <= MAX_ID:
        queryset = queryset.filter(source_id=int(source_id))
    return queryset


class ChunkIdSearch(TypedModelAdmin[_M]):
    """The search box takes an exact chunk id (:func:`search_chunk_id`); with
    ``search_by_source`` the source the id starts with is filtered on too."""

    search_by_source = False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[_M], search_term: str
    ) -> tuple[QuerySet[_M], bool]:
        return search_chunk_id(queryset, search_term, by_source=self.search_by_source), False


@admin.register(OutstandingChunk)
class OutstandingChunkAdmin(ReadOnlyAdmin[OutstandingChunk]):
    """Chunks published (or about to be) and not yet seen in the ledger."""

    list_display = (
        "chunk_id",
        "cursor",
        "first_line",
        "line_count",
        "stamp",
        "published_at",
        "publish_count",
    )
    list_filter = ("cursor__source",)
    list_select_related = ("cursor",)
    exclude = ("payload",)  # a followed file's kept message: compressed bytes

    @admin.display(description="chunk id")
    def chunk_id(self, chunk: OutstandingChunk) -> str:
        cursor = chunk.cursor
        return chunk_id_for(cursor.source_id, cursor.shard, chunk.pass_number, chunk.start_offset)


@admin.register(PushChunk)
class PushChunkAdmin(ChunkIdSearch[PushChunk], ReadOnlyAdmin[PushChunk]):
    """Pushed parts (remote write, imports) stored and not yet committed by a collector."""

    list_display = ("chunk_id", "token_id", "format", "received_at", "last_published_at",
                    "publish_count")  # fmt: skip
    list_filter = ("format",)
    exclude = ("payload",)


@admin.register(IngestedChunk)
class IngestedChunkAdmin(ChunkIdSearch[IngestedChunk], LargeTableAdmin[IngestedChunk]):
    """The ledger. Never edited: a deleted row would let a redelivered chunk in twice."""

    list_display = (
        "chunk_id",
        "source",
        "committed_at",
        "rows_committed",
        "rows_rejected",
        "dead_lettered",
    )
    list_filter = ("dead_lettered", "source")
    ordering = ("-committed_at", "-chunk_id")


@admin.register(ChunkAttempt)
class ChunkAttemptAdmin(ChunkIdSearch[ChunkAttempt], ReadOnlyAdmin[ChunkAttempt]):
    """Deliveries counted per uncommitted chunk; one past the limit is dead-lettered."""

    list_display = ("chunk_id", "attempts", "short_error", "updated_at")
    ordering = ("-updated_at",)

    @admin.display(description="last error")
    def short_error(self, attempt: ChunkAttempt) -> str:
        return Truncator(attempt.last_error).chars(100)


@admin.register(RejectedRow)
class RejectedRowAdmin(ChunkIdSearch[RejectedRow], LargeTableAdmin[RejectedRow]):
    """CSV lines that did not become samples. Kept, never deleted: /stats counts them."""

    list_display = ("created_at", "source", "line_number", "reason", "chunk_id")
    list_filter = ("source",)
    list_select_related = ("source",)
    search_by_source = True  # the (source, line number) index narrows the search


@admin.register(DeadLetter)
class DeadLetterAdmin(ChunkIdSearch[DeadLetter], ReadOnlyAdmin[DeadLetter]):
    """Messages set aside whole; the replay action sends them back to the collectors."""

    list_display = ("created_at", "chunk_id", "source", "short_reason", "attempts", "replayed_at")
    list_filter = (("replayed_at", admin.EmptyFieldListFilter), "source")
    list_select_related = ("source",)
    fields = (
        "chunk_id",
        "source",
        "reason",
        "attempts",
        "created_at",
        "replayed_at",
        "payload_summary",
    )
    readonly_fields = fields
    actions = ("replay",)

    @admin.display(description="reason")
    def short_reason(self, letter: DeadLetter) -> str:
        return Truncator(letter.reason).chars(100)

    @admin.display(description="payload")
    def payload_summary(self, letter: DeadLetter) -> str:
        raw = bytes(letter.payload)
        try:
            payload = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        except (ValueError, TypeError, msgpack.UnpackException):
            return f"{len(raw)} bytes that do not unpack"
        if not isinstance(payload, dict):
            preview = Truncator(repr(payload)).chars(200)
            return f"{len(raw)} bytes: {type(payload).__name__} {preview}"
        parts = [
            f"{key}={len(value)} bytes" if isinstance(value, bytes) else f"{key}={value!r}"
            for key, value in payload.items()
        ]
        return f"{len(raw)} bytes: {Truncator(', '.join(parts)).chars(500)}"

    def has_replay_permission(self, request: HttpRequest) -> bool:
        # The page is read-only for everyone; replaying takes the model's change permission.
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(description="Replay: send back to the collectors", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        letters = list(queryset)
        waiting = [letter for letter in letters if letter.replayed_at is None]
        try:
            replayed = dead_letters.replay(waiting)
        except dead_letters.ReplayError as error:
            self.message_user(
                request,
                f"Replayed {count(error.replayed, 'dead letter')}, then stopped: {error}",
                messages.ERROR,
            )
            return
        skipped = len(letters) - replayed
        tell(
            self,
            request,
            f"Replayed {count(replayed, 'dead letter')} to the collect queue.",
            left=f"Skipped {skipped}: already replayed, or unreadable." if skipped else "",
        )


@admin.register(Tally)
class TallyAdmin(ReadOnlyAdmin[Tally]):
    """The striped counters behind /api/v1/stats (sum the stripes of a name for its total)."""

    list_display = ("name", "stripe", "value")
    search_fields = ("name",)
    ordering = ("name", "stripe")
