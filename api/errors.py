"""The errors Django answers itself, before or after any API view (a Host header it does not
serve, a path no route matches, an exception no view caught), in JSON under ``/api/`` like
every error the API's views answer, so an API client never has to read an HTML page.
Elsewhere (the admin, the dashboard) they stay Django's own pages."""

from __future__ import annotations

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

API_PATH_PREFIX = "/api/"


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not request.path.startswith(API_PATH_PREFIX):
        return defaults.bad_request(request, exception)
    if isinstance(exception, DisallowedHost):
        detail = "the Host header names a host this server does not answer to"
    else:
        detail = "the request is malformed"
    return JsonResponse({"detail": detail}, status=400)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not request.path.startswith(API_PATH_PREFIX):
        return defaults.page_not_found(request, exception)
    return JsonResponse({"detail": f"no API endpoint at {request.path}"}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if not request.path.startswith(API_PATH_PREFIX):
        return defaults.server_error(request)
    return JsonResponse({"detail": "internal server error; the server logged it"}, status=500)
