"""The dashboard's pages. Each is a template and a small script module: the script reads the
public JSON API (docs/design.md, "Dashboard"), so a view here only decides who may see the
page and hands the script what the URL names.

When the API requires a token (``API_REQUIRE_TOKEN``) the scripts authenticate with the
admin's login session instead, so the fleet and GPU pages then require that login; the
pipeline page always does, as a staff member, like the endpoint it reads.
"""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from api.permissions import login_required_when

# The page refreshes its figures this often unless the URL asks for another period (?refresh=).
DEFAULT_REFRESH_SECONDS = 30


def _page(request: HttpRequest, page: str, **context: object) -> HttpResponse:
    return render(
        request,
        f"dashboard/{page}.html",
        {"page": page, "refresh_seconds": DEFAULT_REFRESH_SECONDS, **context},
    )


@login_required_when("API_REQUIRE_TOKEN")
def fleet(request: HttpRequest) -> HttpResponse:
    """Hosts as rows, devices as tiles coloured by a metric's latest value."""
    return _page(request, "fleet")


@login_required_when("API_REQUIRE_TOKEN")
def gpu(request: HttpRequest, device_id: str) -> HttpResponse:
    """One device's metrics over a time range, its workload and its MIG instances."""
    return _page(request, "gpu", device_id=device_id)


@staff_member_required
def pipeline(request: HttpRequest) -> HttpResponse:
    """The sources, their progress, rate and lag, and what the collectors refused."""
    return _page(request, "pipeline")
