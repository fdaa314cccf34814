"""Limit/offset pagination that refuses bad values and documents its parameters.

``CountedPagination`` serves the small tables (GPUs, hosts); ``UncountedPagination`` serves
samples, where a total would mean counting millions of rows: it fetches one row more than
the page to know whether a next page exists. Its ``next`` links carry a keyset cursor
(``api.cursors``), so following them costs what the first page costs; a deep page asked for
by offset is found by its timestamp.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from django.db.models import Count, QuerySet, Window
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from api.compiled import QUERIES
from api.cursors import Cursor, CursorError
from api.params import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, flat_errors, reject_empty

# Offsets up to this many rows are skipped by the database as it reads them: no more rows
# than the largest page. Deeper pages are first located by their timestamp (see ``seek``),
# which is far cheaper at depth (docs/measurements.md, "Deep telemetry pages").
SEEK_AFTER_ROWS: Final = MAX_PAGE_SIZE
# Timestamps read just before a deep page's first one, to count the rows that share it; a
# longer run of equal timestamps costs one more (index-only) count.
TIE_WINDOW: Final = 100


class WholeNumberField(serializers.IntegerField):
    """An integer written as one: DRF's own field also takes "1.0", which the schema (an
    integer) does not allow, so a client sending it would learn nothing of its mistake."""

    re_decimal = re.compile(r"(?!)")  # DRF strips a match of this before int(): never match


class PageParams(serializers.Serializer[dict[str, int]]):
    limit = WholeNumberField(
        min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE,
        help_text=f"Rows per page, 1 to {MAX_PAGE_SIZE}.",
    )  # fmt: skip
    offset = WholeNumberField(min_value=0, max_value=2**53, default=0, help_text="Rows to skip.")


class SamplePageParams(PageParams):
    cursor = serializers.CharField(
        required=False, max_length=200,
        help_text="Where the previous page ended, as its `next` link gives it (opaque). "
        "Not together with offset.",
    )  # fmt: skip

    def validate_cursor(self, text: str) -> Cursor:
        try:
            return Cursor.decode(text)
        except CursorError as error:
            raise serializers.ValidationError(str(error)) from None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "cursor" in attrs and attrs["offset"]:
            raise serializers.ValidationError({"cursor": "give cursor or offset, not both."})
        return attrs


class CountedPagination(LimitOffsetPagination):
    default_limit = DEFAULT_PAGE_SIZE
    max_limit = MAX_PAGE_SIZE
    params_class: type[PageParams] = PageParams

    def read_page(self, request: Request, queryset: QuerySet[Any] | None) -> tuple[int, int]:
        """Validate ``limit`` and ``offset``, remember them for the links, return them
        (``queryset``, the rows to be paged, is checked when given)."""
        if queryset is not None:
            check_ordered(queryset)
        params = self.params_class(data=request.query_params)
        reject_empty(request.query_params, params.fields)
        if not params.is_valid():
            raise ValidationError(flat_errors(params.errors))
        self.validated = params.validated_data
        limit: int = params.validated_data["limit"]
        offset: int = params.validated_data["offset"]
        self.limit, self.offset, self.request = limit, offset, request
        return limit, offset

    def paginate_queryset(
        self, queryset: QuerySet[Any], request: Request, view: APIView | None = None
    ) -> list[Any]:
        limit, offset = self.read_page(request, queryset)
        self.count = self.get_count(queryset)
        return list(queryset[offset : offset + limit])

    def paginate_with_total(self, rows: QuerySet[Any], request: Request) -> list[tuple[Any, ...]]:
        """A page of ``values_list`` tuples, the total counted by the same query.

        ``COUNT(*) OVER ()`` rides along with the page: one scan instead of a COUNT and a
        page, and the planner can walk an index in page order rather than read the whole
        table twice (the GPU table's counter rows are rewritten by every chunk, so between
        vacuums most of its pages hold dead versions). A page past the end carries no
        total, so only then is it counted apart.
        """
        limit, offset = self.read_page(request, rows)
        page = list(rows.annotate(total=Window(Count("*")))[offset : offset + limit])
        if page:
            self.count = page[0][-1]
        else:
            self.count = self.get_count(rows) if offset else 0
        return [row[:-1] for row in page]

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        described = super().get_paginated_response_schema(schema)
        described["required"] = ["count", "results"]
        return described


class UncountedPagination(CountedPagination):
    """Pages of samples without a total: ``next`` is set when another page exists, and
    carries a cursor; ``previous`` is given for offset pages only (cursors go forwards)."""

    params_class = SamplePageParams

    def paginate_queryset(
        self,
        queryset: QuerySet[Any],
        request: Request,
        view: APIView | None = None,
        *,
        columns: Sequence[str] = (),
    ) -> list[Any]:
        """``queryset`` must be ordered by ``timestamp`` and then ``id``; the page holds
        ``values_list(*columns)`` tuples."""
        return self.paginate_selection(Selection.of(queryset), request, columns=columns)

    def paginate_selection(
        self, selection: Selection, request: Request, *, columns: Sequence[str]
    ) -> list[Any]:
        """A page of ``selection``'s rows (ordered by ``timestamp``, then ``id``) as
        ``values_list(*columns)`` tuples.

        The columns are applied here, not by the caller: the joins they need would stay in
        the index-only step of ``seek`` and make it read every row after all. A page that
        starts where the selection or a cursor does (the first page, every next link) is
        compiled once per shape (``api.compiled``).
        """
        # The selection's queryset is built only where it is needed, and checked there.
        limit, offset = self.read_page(request, None)
        self.cursor: Cursor | None = self.validated.get("cursor")
        if offset == 0:
            rows = self._first_rows(selection, limit, columns)
        else:
            queryset = check_ordered(selection.queryset())
            start = offset
            if offset > SEEK_AFTER_ROWS:
                queryset, start = seek(queryset, offset)
            # The position of each row rides along for the next page's cursor.
            page_rows = queryset.values_list(*columns, "timestamp", "id")
            rows = list(page_rows[start : start + limit + 1])
        self.has_next = len(rows) > limit
        page = rows[:limit]
        self.next_cursor = Cursor(*page[-1][-2:]) if self.has_next else None
        # The parent builds the previous link from a count: "one more than this page" will do.
        self.count = offset + len(rows)
        return [row[:-2] for row in page]

    def _first_rows(
        self, selection: Selection, limit: int, columns: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        """``limit + 1`` rows from the selection's start, or after the cursor."""
        cursor = self.cursor
        values = list(selection.values)
        if cursor is not None:
            values += [cursor.timestamp, cursor.sample_id]
        size = len(selection.values)

        def build(given: Sequence[Any]) -> QuerySet[Any]:
            rows = check_ordered(selection.build(given[:size]))
            if cursor is not None:
                rows = Cursor(*given[size:]).rows_after(rows)
            return rows.values_list(*columns, "timestamp", "id")[: limit + 1]

        if selection.key is None:
            return list(build(values))
        key = ("sample page", selection.key, tuple(columns), cursor is not None, limit)
        return QUERIES.rows(key, build, values)

    def get_next_link(self) -> str | None:
        if self.next_cursor is None or self.request is None:  # the request: set by read_page
            return None
        url = remove_query_param(self.request.build_absolute_uri(), self.offset_query_param)
        return replace_query_param(url, "cursor", self.next_cursor.encode())

    def get_previous_link(self) -> str | None:
        return None if self.cursor is not None else super().get_previous_link()

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {"next": self.get_next_link(), "previous": self.get_previous_link(), "results": data}
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        described = super().get_paginated_response_schema(schema)
        del described["properties"]["count"]
        described["required"] = ["results"]
        return described


def check_ordered(queryset: QuerySet[Any]) -> QuerySet[Any]:
    if not queryset.ordered:
        raise TypeError("paginating an unordered queryset would make pages overlap")
    return queryset


def seek(queryset: QuerySet[Any], offset: int) -> tuple[QuerySet[Any], int]:
    """``(rows, skip)`` such that ``rows[skip:]`` is ``queryset[offset:]``, with ``skip``
    small and found without reading the skipped rows.

    A GPU's samples lie about one to a heap page (exports list the whole fleet metric by
    metric), and ordering ties by id needs each row, so a plain OFFSET of 30,000 reads 30,000
    pages. Here the timestamps at positions ``offset - TIE_WINDOW`` to ``offset`` come from
    the (gpu, timestamp) index alone (an index-only scan, once vacuum has marked the pages
    all-visible); the last one starts the answer, and the rows before it that share it are
    the only ones the page query skips. Each step is exact in its own snapshot, as any
    offset is.
    """
    times = list(
        queryset.order_by("timestamp").values_list("timestamp", flat=True)[
            offset - TIE_WINDOW : offset + 1
        ]
    )
    if len(times) <= TIE_WINDOW:
        return queryset.none(), 0  # no row at ``offset``
    first = times[-1]
    ties = len(times) - 1 - next(i for i, t in enumerate(times) if t == first)
    if ties == TIE_WINDOW:  # the run of equal timestamps may start further back
        ties = offset - queryset.filter(timestamp__lt=first).count()
    return queryset.filter(timestamp__gte=first), ties


@dataclass(frozen=True)
class Selection:
    """Rows a page is cut from, as a shape (``key``) and ``values`` that ``build`` makes the
    queryset of: a page query can then be compiled once per shape (``api.compiled``). A
    selection ``of`` a ready queryset has no values and is never compiled."""

    key: Hashable
    values: tuple[Any, ...]
    build: Callable[[Sequence[Any]], QuerySet[Any]]

    @classmethod
    def of(cls, queryset: QuerySet[Any]) -> Selection:
        return cls(None, (), lambda values: queryset)

    def queryset(self) -> QuerySet[Any]:
        return self.build(self.values)
