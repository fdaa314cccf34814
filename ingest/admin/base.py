"""What every admin of the pipeline shares: typed base classes, read-only rows, messages.

docs/design.md, "Packages" (the admin).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from django import forms
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import Model
from django.http import HttpRequest

_T = TypeVar("_T")
_M = TypeVar("_M", bound=Model)
_P = TypeVar("_P", bound=Model)

# django-stubs declares these classes generic (ModelAdmin[Gpu]); Django itself cannot be
# subscripted at run time, so these thin subclasses add only that.
if TYPE_CHECKING:
    TypedModelAdmin = admin.ModelAdmin
    TypedTabularInline = admin.TabularInline
    TypedModelForm = forms.ModelForm
    TypedPaginator = Paginator
else:

    class TypedModelAdmin(admin.ModelAdmin, Generic[_M]):
        pass

    class TypedTabularInline(admin.TabularInline, Generic[_M, _P]):
        pass

    class TypedModelForm(forms.ModelForm, Generic[_M]):
        pass

    class TypedPaginator(Paginator, Generic[_T]):
        pass


MAX_ID = 2**31 - 1  # the largest id of an integer primary key


class ReadOnlyAdmin(TypedModelAdmin[_M]):
    """Rows written by the pipeline: viewable, never added, changed or deleted by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return False


def tell(
    model_admin: admin.ModelAdmin[_M],
    request: HttpRequest,
    done: str = "",
    *,
    left: str = "",
    left_level: int = messages.INFO,
) -> None:
    """What an action did, as a success message, and what it left alone (information, by
    default): the two messages every action ends with. An empty one is not shown."""
    if done:
        model_admin.message_user(request, done, messages.SUCCESS)
    if left:
        model_admin.message_user(request, left, left_level)


def count(number: int, noun: str) -> str:
    """``number`` ``noun``s, in the singular for one."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
