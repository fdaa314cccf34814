"""Paging a table too large to count: the admin's changelist without a COUNT.

The sample table grows to billions of rows, and the ledger and the rejected rows with it,
so their changelists page by fetching one row more than a page instead of counting, offer
no facet counts and no "Show all".
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, TypeVar

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.core.paginator import InvalidPage, Page
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from ingest.admin.base import ReadOnlyAdmin, TypedPaginator

_T = TypeVar("_T")
_M = TypeVar("_M", bound=Model)


class LookaheadPaginator(TypedPaginator[_T]):
    """Pages a query without ever counting it: it fetches one row more than a page.

    That extra row tells whether a next page exists, so ``count`` is a lower bound (exact on
    the last page) and ``num_pages`` reaches one page past the current one. Only the page
    being viewed (``page_number``) can be served, from that single fetch.
    """

    def __init__(self, object_list: Any, per_page: int, page_number: int = 1) -> None:
        super().__init__(object_list, per_page)
        self.page_number = page_number

    @cached_property
    def _offset(self) -> int:
        return (max(self.page_number, 1) - 1) * self.per_page

    @cached_property
    def _window(self) -> list[_T]:
        return list(self.object_list[self._offset : self._offset + self.per_page + 1])

    @cached_property
    def count(self) -> int:
        return self._offset + len(self._window)

    @property
    def has_more(self) -> bool:
        """True when rows exist beyond the current page, so ``count`` is not the total."""
        return len(self._window) > self.per_page

    @property
    def shown_from(self) -> int:
        return self._offset + 1

    @property
    def shown_to(self) -> int:
        return self._offset + min(len(self._window), self.per_page)

    def page(self, number: int | str) -> Page[_T]:
        number = self.validate_number(number)
        if number != max(self.page_number, 1):
            raise InvalidPage(f"only page {self.page_number} was fetched")
        return Page(self._window[: self.per_page], number, self)


class LookaheadChangeList(ChangeList):
    """A changelist that pages with :class:`LookaheadPaginator` and never counts.

    Django's own would count the filtered rows, count the whole table for "N total", and
    fetch the whole filtered queryset when it fits one page or "Show all" is asked for.
    """

    def get_results(self, request: HttpRequest) -> None:
        paginator = self.model_admin.get_paginator(request, self.queryset, self.list_per_page)
        try:
            page = paginator.page(self.page_num)
        except InvalidPage as error:
            raise IncorrectLookupParameters(error) from error
        self.result_count = paginator.count
        self.show_full_result_count = False
        self.show_admin_actions = True
        # The search box prints "N results" whenever this differs from result_count; with
        # no total known, the paginator's "more than N" is the only honest figure.
        self.full_result_count = self.result_count
        self.result_list = page.object_list
        self.can_show_all = False
        self.multi_page = paginator.num_pages > 1
        self.paginator = paginator


class LargeTableAdmin(ReadOnlyAdmin[_M]):
    """A read-only table too large to count: no totals, no facet counts, no "Show all"."""

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_max_show_all = 0
    paginator = LookaheadPaginator

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LookaheadChangeList

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> LookaheadPaginator[_M]:
        try:
            page_number = int(request.GET.get(PAGE_VAR, 1))
        except ValueError:
            page_number = 1  # as the changelist reads it
        return LookaheadPaginator(queryset, per_page, page_number)
