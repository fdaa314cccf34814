"""Who is calling: an API token, in ``Authorization: Bearer <key>`` or ``Token <key>``.

Prometheus (``remote_write`` with ``authorization: {type: Bearer}``) and most HTTP clients
send Bearer; ``Token`` is the scheme the API has always documented. The same reading serves
DRF views (``ApiTokenAuthentication``) and plain Django views (``api_token_required``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from api.models import ApiToken

SCHEMES = ("bearer", "token")
# Sent with every 401, so a client knows which scheme to answer with.
CHALLENGE = 'Bearer realm="api"'
INVALID_KEY = "Invalid token."


class CredentialsError(ValueError):
    """An Authorization header in a token scheme that names no token: malformed, or unknown."""


def key_of(header: str) -> str | None:
    """The key of an Authorization header in a token scheme; None for none or another scheme.

    Raises ``CredentialsError`` when the scheme is a token scheme but the key is missing or
    has spaces in it.
    """
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() not in SCHEMES:
        return None
    parts = rest.split()
    if len(parts) != 1:
        raise CredentialsError(
            f"Invalid {scheme} header: give exactly one key, as in '{scheme} <key>'."
        )
    return parts[0]


def token_of(authorization: str) -> ApiToken | None:
    """The token an Authorization header presents, or None if it presents none.

    Raises ``CredentialsError`` for a malformed header or a key that matches no token.
    """
    key = key_of(authorization)
    if key is None:
        return None
    token = ApiToken.for_key(key)
    if token is None:
        raise CredentialsError(INVALID_KEY)
    return token


class ApiTokenAuthentication(BaseAuthentication):
    """DRF authentication by API token; the token becomes ``request.user`` and ``request.auth``."""

    def authenticate(self, request: Request) -> tuple[ApiToken, ApiToken] | None:
        try:
            token = token_of(request.headers.get("authorization", ""))
        except CredentialsError as error:
            raise AuthenticationFailed(str(error)) from None
        return None if token is None else (token, token)

    def authenticate_header(self, request: Request) -> str:
        return CHALLENGE


ViewFunction = Callable[..., HttpResponse]


def api_token_required(view: ViewFunction) -> ViewFunction:
    """For a plain Django view: when ``API_REQUIRE_TOKEN`` is on, like every ``/api/v1``
    endpoint, answer 401 unless the request presents a valid token (either scheme)."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if settings.API_REQUIRE_TOKEN:
            try:
                token = token_of(request.headers.get("authorization", ""))
            except CredentialsError as error:
                return _unauthorized(str(error))
            if token is None:
                return _unauthorized("Authentication credentials were not provided.")
        return view(request, *args, **kwargs)

    return guarded


def _unauthorized(detail: str) -> HttpResponse:
    response = JsonResponse({"detail": detail}, status=401)
    response["WWW-Authenticate"] = CHALLENGE
    return response
