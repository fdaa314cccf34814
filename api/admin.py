"""The admin's token pages: make a token (its key is shown once), rename it, allow or withdraw
writing or the operators' views, delete it to revoke it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

from api.models import ApiToken

if TYPE_CHECKING:  # django-stubs makes ModelAdmin generic; Django's class is not subscriptable
    TokenModelAdmin = admin.ModelAdmin[ApiToken]
else:
    TokenModelAdmin = admin.ModelAdmin


@admin.register(ApiToken)
class ApiTokenAdmin(TokenModelAdmin):
    """Tokens by name. The key exists only on the page that follows the token's creation."""

    list_display = ("name", "can_write", "is_staff", "created", "last_used")
    list_filter = ("can_write", "is_staff")
    search_fields = ("name",)
    fields = ("name", "can_write", "is_staff", "created", "last_used")
    readonly_fields = ("created", "last_used")

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if not change:
            obj.assign_new_key()
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None
    ) -> HttpResponse:
        # The key is rendered into this response and nowhere else: not into a message, which
        # would carry it in a cookie or the session until the next page is shown.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Token “{obj.name}” created",
            "token": obj,
        }
        response = TemplateResponse(request, "admin/api/apitoken/key_created.html", context)
        add_never_cache_headers(response)
        return response
