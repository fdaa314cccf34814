"""Request counts and latencies of the web processes, labelled by route template.

A route template (``api/v1/gpus/<str:id>/telemetry``), never the raw path, so the label
has as many values as the project has routes; a path no route matches is ``unmatched``, and
a method outside HTTP's usual ones is ``other``. Static files are served by WhiteNoise ahead
of this middleware and are not counted.

Under gunicorn every worker is a process of its own: prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, which ``telemetry_project.gunicorn_config`` sets before any
worker starts) keeps each worker's values in files in that directory, and a scrape answered
by any worker sums them all. A single process (``runserver``, the tests) keeps them in
memory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.multiprocess import MultiProcessCollector

# Decided once, at import, exactly as prometheus_client chooses where values live.
MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ
UNMATCHED = "unmatched"
OTHER_METHOD = "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# A single process would also print each series' creation time (``_created``), which
# multiprocess mode cannot: the page is the same under runserver and under gunicorn.
# (prometheus_client leaves the function unannotated.)
disable_created_metrics()  # type: ignore[no-untyped-call]

# registry=None: each scrape builds its own registry (api.prometheus).
REQUESTS = Counter(
    "telemetry_http_requests",
    "HTTP requests answered by the web processes, by method, route template and status.",
    ["method", "route", "status"],
    registry=None,
)
DURATION = Histogram(
    "telemetry_http_request_duration_seconds",
    "Time from a request reaching Django's middleware to its response, by route template.",
    ["method", "route"],
    registry=None,
)


def route_of(request: HttpRequest) -> str:
    match = request.resolver_match
    return UNMATCHED if match is None else match.route


class RequestMetricsMiddleware:
    """Counts and times every request that reaches Django's URL resolver."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        method = request.method if request.method in METHODS else OTHER_METHOD
        route = route_of(request)
        REQUESTS.labels(method, route, str(response.status_code)).inc()
        DURATION.labels(method, route).observe(elapsed)
        return response


def register_request_metrics(registry: CollectorRegistry) -> None:
    """Add the web processes' request series to a scrape's registry."""
    if MULTIPROCESS:
        # prometheus_client leaves this class's constructor unannotated.
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(REQUESTS)
        registry.register(DURATION)
