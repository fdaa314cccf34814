"""Limit/offset pagination that refuses bad values and documents its parameters.

``CountedPagination`` serves the small tables (GPUs, hosts); ``UncountedPagination`` serves
samples, where a total would mean counting millions of rows: it fetches one row more than
the page to know whether a next page exists.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.params import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, flat_errors, reject_empty


class PageParams(serializers.Serializer[dict[str, int]]):
    limit = serializers.IntegerField(
        min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE,
        help_text=f"Rows per page, 1 to {MAX_PAGE_SIZE}.",
    )  # fmt: skip
    offset = serializers.IntegerField(
        min_value=0, max_value=2**53, default=0, help_text="Rows to skip."
    )


class CountedPagination(LimitOffsetPagination):
    default_limit = DEFAULT_PAGE_SIZE
    max_limit = MAX_PAGE_SIZE

    def read_page(self, request: Request, queryset: QuerySet[Any]) -> tuple[int, int]:
        """Validate ``limit`` and ``offset``, remember them for the links, return them."""
        if not queryset.ordered:
            raise TypeError("paginating an unordered queryset would make pages overlap")
        params = PageParams(data=request.query_params)
        reject_empty(request.query_params, params.fields)
        if not params.is_valid():
            raise ValidationError(flat_errors(params.errors))
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

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        described = super().get_paginated_response_schema(schema)
        described["required"] = ["count", "results"]
        return described


class UncountedPagination(CountedPagination):
    """Pages of samples without a total: ``next`` is set when another page exists."""

    def paginate_queryset(
        self, queryset: QuerySet[Any], request: Request, view: APIView | None = None
    ) -> list[Any]:
        limit, offset = self.read_page(request, queryset)
        rows = list(queryset[offset : offset + limit + 1])
        self.has_next = len(rows) > limit
        # The parent builds the links from a count: "one more than this page" is enough.
        self.count = offset + len(rows)
        return rows[:limit]

    def get_next_link(self) -> str | None:
        return super().get_next_link() if self.has_next else None

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {"next": self.get_next_link(), "previous": self.get_previous_link(), "results": data}
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        described = super().get_paginated_response_schema(schema)
        del described["properties"]["count"]
        described["required"] = ["results"]
        return described
