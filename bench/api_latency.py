"""``make bench-api`` (``manage.py bench_api``): p50/p99 latency of the main API endpoints.

The database is the one ``explain_api`` builds (``bench.sample_database``): its
own PostgreSQL database, ``telemetry_bench_api`` by default, filled through the real write
path from the project's generator, kept with ``--keep`` so that the next run reuses it.

Each endpoint is timed over ``--requests`` requests (1,000 by default) made with varying
arguments, so that a cache warmed by one request does not flatter the next:

- telemetry: a random GPU's first page of 100 samples, or (half the requests) the page a
  ``next`` link's cursor leads to from a random moment of its history;
- telemetry_offset: a page of 100 samples at a random offset up to 10,000 deep;
- aggregate: a random hour of a random GPU, in 1-minute buckets;
- latest: a random GPU;
- gpus: the list (its first page, as a dashboard loads it);
- stats.

Requests are made through the project's WSGI application in this process
(``bench.request_timing`` says what that includes). The run prints a table against the
budgets and, last, a machine-readable line; the exit status is non-zero only when an
endpoint does not answer 200, since timings on a shared machine vary. The figures measured
so far are in the README ("API latency").
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Final
from urllib.parse import quote, urlencode

from django.conf import settings
from django.core.management.base import CommandError
from django.test.utils import override_settings

from api.cursors import Cursor
from bench.measurement import Measurement
from bench.request_timing import PAGE_SIZE, TEST_HOST, Timing, WsgiCaller
from bench.sample_database import SampleDatabase, minute, rfc3339
from ingest.models import Gpu

# A fixed seed: two runs on the same database make the same requests.
REQUEST_SEED: Final = 7
AGGREGATE_SPAN: Final = timedelta(hours=1)
# Offset pages are timed up to this depth; deeper pages are for cursors (next links).
OFFSET_DEPTH: Final = 10_000
# p99 budgets in ms, in the order of the summary line's fields, which scripts may rely on.
BUDGETS_MS: Final = {
    "telemetry": 5.0,
    "telemetry_offset": 15.0,
    "latest": 3.0,
    "gpus": 5.0,
    "stats": 5.0,
    "aggregate": 15.0,
}


def measure(database: SampleDatabase) -> tuple[str, list[str]]:
    """Time each endpoint with varying arguments; return the summary line (never a failure:
    an endpoint that does not answer 200 stops the run)."""
    rows = database.prepare()
    # The GPUs the fill generated: not those a paced source may have added since
    # (``make bench-http`` ingests into this database while it measures).
    generated = Gpu.objects.filter(sample_count__gt=0, first_seen__lte=database.fleet.start)
    gpus = [
        (uuid, count, first, last)
        for uuid, count, first, last in generated.values_list(
            "uuid", "sample_count", "first_seen", "last_seen"
        )
        if first is not None and last is not None
    ]
    if not gpus:
        raise CommandError("no GPU has samples")
    choose = random.Random(REQUEST_SEED)  # noqa: S311  (reproducible requests, no secret)

    def telemetry() -> str:
        """A first page, or as often a cursor page: a cursor names a position (timestamp,
        id), and one just before a random moment costs what a next link's does."""
        uuid, _, first, last = choose.choice(gpus)
        query: dict[str, object] = {"limit": PAGE_SIZE}
        if choose.random() < 0.5:
            moment = first + (last - first) * choose.random()
            query["cursor"] = Cursor(moment, 0).encode()
        return f"/api/v1/gpus/{quote(uuid)}/telemetry?{urlencode(query)}"

    def telemetry_offset() -> str:
        uuid, count, _, _ = choose.choice(gpus)
        offset = choose.randrange(min(OFFSET_DEPTH, max(0, count - PAGE_SIZE)) + 1)
        query = urlencode({"limit": PAGE_SIZE, "offset": offset})
        return f"/api/v1/gpus/{quote(uuid)}/telemetry?{query}"

    def aggregate() -> str:
        uuid, _, first, last = choose.choice(gpus)
        room = max(0.0, (last - first - AGGREGATE_SPAN).total_seconds())
        start = minute(first + timedelta(seconds=choose.uniform(0, room)))
        query = urlencode(
            {
                "start_time": rfc3339(start),
                "end_time": rfc3339(start + AGGREGATE_SPAN),
                "bucket": "1m",
            }
        )
        return f"/api/v1/gpus/{quote(uuid)}/telemetry/aggregate?{query}"

    def latest() -> str:
        return f"/api/v1/gpus/{quote(choose.choice(gpus)[0])}/latest"

    endpoints: list[tuple[str, Callable[[], str]]] = [
        ("telemetry", telemetry),
        ("telemetry_offset", telemetry_offset),
        ("aggregate", aggregate),
        ("latest", latest),
        ("gpus", lambda: "/api/v1/gpus"),
        ("stats", lambda: "/api/v1/stats"),
    ]
    requests: int = database.options["requests"]
    database.say(f"\n=== {requests} requests per endpoint after a warm-up, {len(gpus)} GPUs")
    # The requests' host is added to the settings' own; DEBUG off, as in production
    # (DEBUG keeps a log of every query).
    hosts = [*settings.ALLOWED_HOSTS, TEST_HOST]
    with override_settings(ALLOWED_HOSTS=hosts, DEBUG=False):
        get = WsgiCaller().get
        timings = {
            label: database.time(get, label, next_url, BUDGETS_MS[label])
            for label, next_url in endpoints
        }
    print_table(database, list(timings.values()))
    summary = (
        "bench-api: "
        + " ".join(f"{label}_p99_ms={timings[label].p99_ms:.3f}" for label in BUDGETS_MS)
        + f" rows={rows}"
    )
    return summary, []


def print_table(database: SampleDatabase, timings: list[Timing]) -> None:
    """The timings as a table: p50, p99 and budget, time in the database, queries."""
    width = max(10, *(len(timing.label) for timing in timings))
    database.stdout.write("")
    database.stdout.write(
        f"{'endpoint':<{width}} {'p50 ms':>8} {'p99 ms':>8} {'budget':>7}  "
        f"{'SQL p50 ms':>10} {'queries':>7}"
    )
    for timing in timings:
        verdict = "  OVER" if timing.over_budget else ""
        database.stdout.write(
            f"{timing.label:<{width}} {timing.p50_ms:8.2f} {timing.p99_ms:8.2f} "
            f"{timing.budget_ms or 0:7.0f}  {timing.sql_p50_ms:10.2f} {timing.queries:7}"
            f"{verdict}"
        )


MEASUREMENT: Final = Measurement(
    rows=10_000_000, database="telemetry_bench_api", requests=1000, measure=measure
)
