"""Server-side latency of API requests: percentiles, and the share spent in the database."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

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


def time_requests(
    client: Client,
    label: str,
    next_url: Callable[[], str],
    requests: int,
    budget_ms: float | None,
) -> Timing:
    """Median and p99 of whole requests, with the share spent waiting for the database.

    Requests go through Django's test client in this process: the full request and
    response (middleware, routing, authentication, throttling, the view, JSON rendering,
    every database round trip), without a socket or an HTTP server in front. That is the
    server-side latency the budgets are about, free of a second process competing for the
    CPU. The database split tells a slow plan from slow Python.
    """
    for _ in range(WARM_UP_REQUESTS):
        client.get(next_url())
    totals: list[float] = []
    in_database: list[float] = []
    stopwatch = _QueryStopwatch()
    with connection.execute_wrapper(stopwatch):
        for _ in range(requests):
            url = next_url()
            stopwatch.reset()
            started = time.perf_counter()
            response = client.get(url)
            totals.append((time.perf_counter() - started) * 1000)
            in_database.append(stopwatch.seconds * 1000)
            if response.status_code != 200:
                raise CommandError(f"{label}: GET {url} answered {response.status_code}")
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
