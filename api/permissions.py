"""Who may read the API, who may write to it, how often, and who may read its documentation.

Each check reads its setting when a request arrives, not when a view class is defined, so a
deployment's environment (and a test's ``settings`` fixture) decides every request.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from api.models import ApiToken

if TYPE_CHECKING:  # rest_framework.views imports this module through DRF's settings
    from rest_framework.views import APIView


def api_access() -> BasePermission:
    """The API's permission: a valid token when ``API_REQUIRE_TOKEN`` is on, else anyone.

    DRF instantiates each entry of ``permission_classes`` per request; this factory stands in
    for a class and returns DRF's own ``IsAuthenticated`` or ``AllowAny``, so the OpenAPI
    schema describes the token as required or optional accordingly.
    """
    return IsAuthenticated() if settings.API_REQUIRE_TOKEN else AllowAny()


class CanWrite(BasePermission):
    """Writing needs a token with ``can_write``, whatever ``API_REQUIRE_TOKEN`` says.

    No token (or an invalid one) is a 401 with the ``WWW-Authenticate`` challenge, DRF's
    answer when no authenticator succeeded; a valid read-only token is a 403.
    """

    message = "This token may only read: writing needs a token made with can_write."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.auth, ApiToken) and request.auth.can_write


def _rate(scope: str | None) -> str | None:
    rates: dict[str, str | None] = settings.API_THROTTLE_RATES
    return rates.get(scope or "")


class AnonThrottle(AnonRateThrottle):
    """Requests without a token, counted per client address (``API_THROTTLE_ANON``)."""

    def get_rate(self) -> str | None:
        return _rate(self.scope)


class UserThrottle(UserRateThrottle):
    """Requests with a token, counted per token (``API_THROTTLE_USER``)."""

    def get_rate(self) -> str | None:
        return _rate(self.scope)

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        # DRF's UserRateThrottle also counts anonymous clients; AnonThrottle does that here.
        if request.user is None or not request.user.is_authenticated:
            return None
        return super().get_cache_key(request, view)


ViewFunction = Callable[..., HttpResponse]


def login_required_when(setting: str) -> Callable[[ViewFunction], ViewFunction]:
    """A view decorator: while the boolean setting ``setting`` is on, an anonymous visitor is
    sent to the admin's login page (and back here after it)."""

    def decorator(view: ViewFunction) -> ViewFunction:
        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if getattr(settings, setting) and not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path(), reverse("admin:login"))
            return view(request, *args, **kwargs)

        return guarded

    return decorator


# The API's documentation pages, behind a login when API_DOCS_REQUIRE_LOGIN is on.
docs_login_required = login_required_when("API_DOCS_REQUIRE_LOGIN")
