"""``make explain-api`` (``manage.py explain_api``): every sample query uses an index, at scale.

The design promises that every API query touching the sample table is served by an index
and that ``/api/v1/stats`` answers from counters, fast at any size. Whether the planner
keeps that promise depends on table size and statistics, which a unit-test database never
has, so this command builds a large table of its own and looks at the real plans:

1. It builds and fills its own PostgreSQL database (``telemetry_explain`` by default) through
   the real write path, as ``bench.sample_database`` describes; without
   ``--keep`` the database is dropped at the end (5M rows are ~1 GB).
2. After ``ANALYZE`` (``VACUUM (ANALYZE)`` with ``--vacuum``) it calls each endpoint through
   Django's test client, captures the SQL it ran and shows ``EXPLAIN (ANALYZE, BUFFERS)`` of
   every query that reads samples; a sequential scan of the sample table or of one of its
   partitions fails the run. The endpoints are the API's (telemetry, aggregates of a GPU and
   of a host, latest values, the fleet view), the CSV exports (read to their end) and the
   admin's sample pages (as a staff user): the list with each of its filters and a sample's
   own page.
3. It times every endpoint but the streamed exports over many requests and prints the median
   and the 99th percentile.

The last line is a machine-readable summary. The exit status is non-zero when a plan scans
the sample table sequentially or an endpoint does not answer 200; timings are reported
against their budgets, not enforced, since a shared machine's timings vary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import repeat
from typing import Any, Final
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib.admin.utils import quote as admin_quote
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse

from bench.measurement import Measurement
from bench.request_timing import (
    AGGREGATE_BUDGET_MS,
    PAGE_BUDGET_MS,
    PAGE_SIZE,
    STATS_BUDGET_MS,
    Timing,
    client_get,
)
from bench.sample_database import FLEET, SampleDatabase, minute, rfc3339, without_password
from ingest.models import Gpu, Metric, Sample

DEEP_OFFSET: Final = 5000
# The admin's time range without a GPU: its default width.
ADMIN_WINDOW: Final = timedelta(minutes=15)

SAMPLE_TABLE: Final = re.compile(r'\b"?ingest_sample"?(?![a-z_])')
SAMPLE_RELATION: Final = re.compile(r"^ingest_sample(_p\d{8}(_\d{8})?)?$")


@dataclass(frozen=True)
class Endpoint:
    label: str
    path: str
    params: dict[str, str | list[str]] = field(default_factory=dict)
    budget_ms: float | None = None
    admin: bool = False  # a page of the admin site, asked for by a staff user
    streamed: bool = False  # a streamed body (a CSV export): explained, not timed

    @property
    def url(self) -> str:
        return f"{self.path}?{urlencode(self.params, doseq=True)}" if self.params else self.path


@dataclass
class PlanReport:
    endpoint: str
    sql: str
    text: str
    execution_ms: float
    seq_scans: list[str]
    scans: list[str]
    shape: str


def measure(database: SampleDatabase) -> tuple[str, list[str]]:
    """Fill, analyse, explain and time; return the summary line and what failed."""
    rows = database.prepare()
    endpoints = _endpoints(database)
    # The test client's host; the settings' own hosts are kept.
    hosts = [*settings.ALLOWED_HOSTS, "testserver"]
    clients = {False: Client(), True: Client()}  # by Endpoint.admin
    clients[True].force_login(_staff_user())
    with override_settings(ALLOWED_HOSTS=hosts):
        reports, bad_status = _explain_endpoints(database, clients, endpoints)
        # Timed without DEBUG's query log, as the API runs in production.
        with override_settings(DEBUG=False):
            database.say(
                f"\n=== timing: {database.options['requests']} requests per endpoint "
                "after a warm-up"
            )
            timings = [
                database.time(
                    client_get(clients[endpoint.admin]),
                    endpoint.label,
                    repeat(endpoint.url).__next__,
                    endpoint.budget_ms,
                )
                for endpoint in endpoints
                if not endpoint.streamed  # the test client would time the headers alone
            ]

    failing = [report for report in reports if report.seq_scans]
    _print_summary(database, reports, timings)
    stats = next(timing for timing in timings if timing.label == "stats")
    summary = (
        f"explain-api: rows={rows} queries={len(reports)} seq_scans={len(failing)} "
        f"stats_p50_ms={stats.p50_ms:.3f} stats_p99_ms={stats.p99_ms:.3f}"
    )
    problems = []
    if failing:
        problems.append(f"{len(failing)} of {len(reports)} sample queries scan sequentially")
    if bad_status:
        problems.append(f"endpoints without a 200 answer: {', '.join(bad_status)}")
    return summary, problems


# --- explaining ---------------------------------------------------------------------------


def _endpoints(database: SampleDatabase) -> list[Endpoint]:
    """Requests a client makes, on a GPU from the middle of the fleet and inside its data."""
    gpus = Gpu.objects.filter(sample_count__gt=0).order_by("hostname", "gpu_index", "id")
    gpu = gpus[gpus.count() // 2]
    if gpu.first_seen is None or gpu.last_seen is None:
        raise CommandError(f"GPU {gpu.uuid} has samples but no first/last seen times")
    span = gpu.last_seen - gpu.first_seen
    range_start = minute(gpu.first_seen + span / 4)
    range_end = minute(gpu.first_seen + span * 3 / 4)
    # A deep-ish page: well inside the range (half the GPU's samples fall in it).
    offset = max(0, min(DEEP_OFFSET, gpu.sample_count // 4 // PAGE_SIZE * PAGE_SIZE))
    metric = Metric.objects.order_by("name").values_list("name", flat=True).first() or ""
    metric_offset = max(0, offset // FLEET.metrics // PAGE_SIZE * PAGE_SIZE)
    base = f"/api/v1/gpus/{quote(gpu.uuid)}"
    window: dict[str, str | list[str]] = {
        "start_time": rfc3339(range_start),
        "end_time": rfc3339(range_end),
    }
    database.stdout.write(
        f"GPU {gpu.uuid} ({gpu.hostname}/{gpu.device}): {gpu.sample_count:,} samples "
        f"from {rfc3339(gpu.first_seen)} to {rfc3339(gpu.last_seen)}"
    )
    return [
        Endpoint("gpus", "/api/v1/gpus", budget_ms=PAGE_BUDGET_MS),
        Endpoint("gpu", base, budget_ms=PAGE_BUDGET_MS),
        Endpoint("telemetry first page", f"{base}/telemetry", budget_ms=PAGE_BUDGET_MS),
        Endpoint(
            f"telemetry range offset={offset}",
            f"{base}/telemetry",
            {**window, "limit": str(PAGE_SIZE), "offset": str(offset)},
            budget_ms=PAGE_BUDGET_MS,
        ),
        Endpoint(
            f"telemetry range metric offset={metric_offset}",
            f"{base}/telemetry",
            {**window, "metric": [metric], "limit": str(PAGE_SIZE), "offset": str(metric_offset)},
            budget_ms=PAGE_BUDGET_MS,
        ),
        _aggregate(
            f"{base}/telemetry/aggregate",
            minute(gpu.first_seen + span / 2),
            timedelta(hours=1),
            "1m",
        ),
        _aggregate(
            f"{base}/telemetry/aggregate",
            minute(gpu.first_seen + span / 4),
            timedelta(days=1),
            "1h",
        ),
        Endpoint("latest", f"{base}/latest", budget_ms=PAGE_BUDGET_MS),
        Endpoint("hosts", "/api/v1/hosts"),
        _aggregate(
            f"/api/v1/hosts/{quote(gpu.hostname)}/aggregate",
            minute(gpu.first_seen + span / 2),
            timedelta(hours=1),
            "1m",
            label="host aggregate",
        ),
        Endpoint("metrics", "/api/v1/metrics"),
        Endpoint("stats", "/api/v1/stats", budget_ms=STATS_BUDGET_MS),
        Endpoint("fleet latest", "/api/v1/fleet/latest"),
        Endpoint("export one GPU", f"{base}/telemetry.csv", window, streamed=True),
        Endpoint(
            "export one host",
            "/api/v1/telemetry.csv",
            {
                "hostname": gpu.hostname,
                "start_time": rfc3339(range_start),
                "end_time": rfc3339(range_start + timedelta(hours=1)),
            },
            streamed=True,
        ),
        *_admin_endpoints(gpu, range_start, metric),
    ]


def _admin_endpoints(gpu: Gpu, moment: datetime, metric: str) -> list[Endpoint]:
    """The admin's sample list, as each of its filters reads it, and a sample's own page."""
    samples = "/admin/ingest/sample/"
    window: dict[str, str | list[str]] = {
        "start": moment.isoformat(sep=" "),
        "end": (moment + ADMIN_WINDOW).isoformat(sep=" "),
    }
    metric_id = str(Metric.objects.get(name=metric).pk) if metric else ""
    sample = Sample.objects.filter(gpu_id=gpu.pk, timestamp__gte=moment).order_by(
        "timestamp", "id"
    )[0]
    return [
        Endpoint("admin samples", samples, admin=True),
        Endpoint("admin samples of a GPU", samples, {"gpu": str(gpu.pk)}, admin=True),
        Endpoint(
            "admin samples of a GPU and metric",
            samples,
            {"gpu": str(gpu.pk), "metric__id__exact": metric_id},
            admin=True,
        ),
        Endpoint(
            "admin samples of a metric", samples, {"metric__id__exact": metric_id}, admin=True
        ),
        Endpoint("admin samples in a time range", samples, window, admin=True),
        Endpoint(
            "admin samples of a metric in a time range",
            samples,
            {**window, "metric__id__exact": metric_id},
            admin=True,
        ),
        Endpoint(
            "admin sample page",
            reverse("admin:ingest_sample_change", args=[admin_quote(sample.pk)]),
            admin=True,
        ),
    ]


def _aggregate(
    path: str, start: datetime, span: timedelta, bucket: str, label: str = "aggregate"
) -> Endpoint:
    """The aggregate of ``span`` from ``start`` in ``bucket`` buckets."""
    hours = span // timedelta(hours=1)
    return Endpoint(
        f"{label} {hours}h/{bucket}",
        path,
        {"start_time": rfc3339(start), "end_time": rfc3339(start + span), "bucket": bucket},
        budget_ms=AGGREGATE_BUDGET_MS,
    )


def _explain_endpoints(
    database: SampleDatabase, clients: dict[bool, Client], endpoints: list[Endpoint]
) -> tuple[list[PlanReport], list[str]]:
    out = database.stdout
    reports: list[PlanReport] = []
    bad_status: list[str] = []
    for endpoint in endpoints:
        client = clients[endpoint.admin]
        _read_whole(client.get(endpoint.url))  # warm caches (GPU ids, metric names, buffers)
        with CaptureQueriesContext(connection) as captured:
            response = client.get(endpoint.url)
            _read_whole(response)  # a streamed body runs its queries as it is read
        sample_queries = [q["sql"] for q in captured if SAMPLE_TABLE.search(q["sql"])]
        database.say(
            f"\n=== {endpoint.label}: GET {endpoint.url} -> {response.status_code}, "
            f"{len(captured)} queries, {len(sample_queries)} read samples"
        )
        if response.status_code != 200:
            bad_status.append(endpoint.label)
            out.write(response.content.decode(errors="replace")[:500])
        for number, sql in enumerate(sample_queries, 1):
            label = f"{endpoint.label} #{number}" if len(sample_queries) > 1 else endpoint.label
            report = _explain(label, sql)
            reports.append(report)
            verdict = "FAIL" if report.seq_scans else "PASS"
            out.write(f"--- query {number}: {sql}")
            out.write(report.text)
            out.write(
                f"{verdict} {label}: {report.shape}; "
                f"scans: {', '.join(report.scans) or 'none'}"
                + (f"; SEQ SCAN on {', '.join(report.seq_scans)}" if report.seq_scans else "")
            )
    return reports, bad_status


def _read_whole(response: Any) -> None:
    if response.streaming:
        for _ in response.streaming_content:
            pass


def _staff_user() -> Any:
    user, _ = get_user_model().objects.get_or_create(
        username="explain-api", defaults={"is_staff": True, "is_superuser": True}
    )
    return user


def _print_summary(
    database: SampleDatabase, reports: list[PlanReport], timings: list[Timing]
) -> None:
    out = database.stdout
    broker = without_password(str(settings.CELERY_BROKER_URL))
    out.write(f"\n=== summary (queue depth for /stats from {broker})")
    for report in reports:
        verdict = "FAIL" if report.seq_scans else "PASS"
        out.write(f"{verdict} {report.endpoint:<40} {report.execution_ms:8.3f} ms  {report.shape}")
    for timing in timings:
        out.write(
            f"time {timing.label:<40} p50 {timing.p50_ms:7.2f} ms  "
            f"p99 {timing.p99_ms:7.2f} ms  SQL p50 {timing.sql_p50_ms:6.2f} ms "
            f"({timing.queries} queries){_over_budget(timing)}"
        )


def _explain(endpoint: str, sql: str) -> PlanReport:
    """The query's plan as PostgreSQL prints it, and its scans read from the JSON form."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
        text = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
        document = cursor.fetchone()[0]
    root = document[0]
    nodes = list(_walk(root["Plan"]))
    scans: list[str] = []
    seq_scans: list[str] = []
    for node in nodes:
        kind = node["Node Type"]
        relation = node.get("Relation Name", "")
        if not kind.endswith("Scan"):
            continue
        if SAMPLE_RELATION.match(relation) and "Seq Scan" in kind:
            seq_scans.append(relation)
        if SAMPLE_RELATION.match(relation) or node.get("Index Name", "").startswith(
            "ingest_sample"
        ):
            backward = " Backward" if node.get("Scan Direction") == "Backward" else ""
            scans.append(f"{kind}{backward} {node.get('Index Name', relation)}")
    shape = " > ".join(_distinct(_node_name(node) for node in nodes))
    return PlanReport(
        endpoint=endpoint,
        sql=sql,
        text=text,
        execution_ms=float(root["Execution Time"]),
        seq_scans=seq_scans,
        scans=_counted(scans),
        shape=shape,
    )


def _node_name(node: dict[str, Any]) -> str:
    """The node's type; a scan of a small table also names the table (it may be scanned)."""
    kind = str(node["Node Type"])
    relation = node.get("Relation Name", "")
    if kind == "Seq Scan" and not SAMPLE_RELATION.match(relation):
        return f"{kind} {relation}"
    return kind


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


def _distinct(items: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _counted(items: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return [f"{item} x{count}" if count > 1 else item for item, count in counts.items()]


def _over_budget(timing: Timing) -> str:
    budget = timing.budget_ms
    return f"  SLOW (> {budget:.0f} ms)" if timing.over_budget else ""


MEASUREMENT: Final = Measurement(
    rows=5_000_000, database="telemetry_explain", requests=200, measure=measure
)
