"""Server-side latency of API requests: percentiles, and the share spent in the database.

Requests are made in this process, free of a second process competing for the CPU, by
``WsgiCaller``: the project's WSGI application called the way gunicorn's worker calls it,
whole (request signals, middleware, routing, authentication, throttling, the view, JSON
rendering, every database round trip, the body read and closed), without a socket or an HTTP
server in front. That is the server-side latency the budgets are about. Django's test client
is not used for timing: it connects signal receivers on every request (and, with their
finalizers, keeps a few objects of each one for its own lifetime), skips the per-request
connection upkeep a server does, and holds each response; all of which made the process's
garbage collections, and so the tail, unlike a server's.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote_to_bytes
from wsgiref.util import setup_testing_defaults

from django.core.handlers.wsgi import WSGIHandler
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client

WARM_UP_REQUESTS: Final = 10
PAGE_SIZE: Final = 100
# Timing budgets in ms (p99) that the reports flag: server-side latency of one request.
STATS_BUDGET_MS: Final = 20.0
PAGE_BUDGET_MS: Final = 10.0
AGGREGATE_BUDGET_MS: Final = 50.0


@dataclass
class Timing:
    label: str
    budget_ms: float | None
    p50_ms: float
    p99_ms: float
    queries: int  # per request (of the last one)
    sql_p50_ms: float  # time spent in the database per request (median)

    @property
    def over_budget(self) -> bool:
        return self.budget_ms is not None and self.p99_ms > self.budget_ms


# The Host header of every request; the measurements add it to ALLOWED_HOSTS.
TEST_HOST: Final = "testserver"

# GET a URL (path and query), return the response's status code.
Get = Callable[[str], int]


class WsgiCaller:
    """The project's WSGI application, called in this process as a WSGI server calls it."""

    def __init__(self) -> None:
        self.application = WSGIHandler()

    def get(self, url: str) -> int:
        path, _, query = url.partition("?")
        # PATH_INFO is the decoded path, its bytes as latin-1 text (PEP 3333), as gunicorn
        # passes it; the query string stays encoded.
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query,
            "HTTP_HOST": TEST_HOST,
        }
        setup_testing_defaults(environ)
        statuses: list[str] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[..., None]:
            statuses.append(status)
            return lambda _data: None

        body = self.application(environ, start_response)
        try:
            for _ in body:
                pass
        finally:
            body.close()  # request_finished: the connection upkeep, as after a real response
        return int(statuses[0].split()[0])


def client_get(client: Client) -> Get:
    """``get`` through a test client, for requests that need its session (a staff login)."""
    return lambda url: int(client.get(url).status_code)


def time_requests(
    get: Get,
    label: str,
    next_url: Callable[[], str],
    requests: int,
    budget_ms: float | None,
) -> Timing:
    """Median and p99 of whole requests made by ``get``, with the share spent waiting for
    the database, which tells a slow plan from slow Python."""
    for _ in range(WARM_UP_REQUESTS):
        get(next_url())
    totals: list[float] = []
    in_database: list[float] = []
    stopwatch = _QueryStopwatch()
    with connection.execute_wrapper(stopwatch):
        for _ in range(requests):
            url = next_url()
            stopwatch.reset()
            started = time.perf_counter()
            status = get(url)
            totals.append((time.perf_counter() - started) * 1000)
            in_database.append(stopwatch.seconds * 1000)
            if status != 200:
                raise CommandError(f"{label}: GET {url} answered {status}")
    return Timing(
        label,
        budget_ms,
        p50_ms=statistics.median(totals),
        p99_ms=p99(totals),
        queries=stopwatch.queries,
        sql_p50_ms=statistics.median(in_database),
    )


class _QueryStopwatch:
    """A database execute wrapper: queries of the current request and their time."""

    def __init__(self) -> None:
        self.queries = 0
        self.seconds = 0.0

    def reset(self) -> None:
        self.queries = 0
        self.seconds = 0.0

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.queries += 1


def p99(samples: list[float]) -> float:
    """Nearest-rank 99th percentile: with 200 requests the second slowest, with 1000 the
    tenth slowest."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]
