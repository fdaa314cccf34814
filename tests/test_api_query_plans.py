"""How the API reaches the database: a fixed number of queries, and indexes on the sample table.

Data: a generated export of about 300k rows (``tests.support.api_data.PLANNER_SPEC``) committed
through the real collector and ANALYZEd once for the module, so the planner sees a table
where one GPU's samples are a small fraction and a sequential scan would be a real cost.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from pytest_django import DjangoAssertNumQueries

from api.cursors import Cursor
from api.pagination import SEEK_AFTER_ROWS
from ingest.models import Gpu, Metric, Sample
from tests.support.api_data import PLANNER_SPEC, Loaded

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("generated_data")]

SEQ_SCAN_ON_SAMPLES = re.compile(r"Seq Scan on (ingest_sample\w*)")
COST = re.compile(r"\s+\(cost=[^)]*\)")
METRIC = "DCGM_FI_DEV_GPU_TEMP"
COUNTER = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
HOST = "mtv5-dgx1-hgpu-001"
OTHER_METRIC = "DCGM_FI_DEV_POWER_USAGE"
# Inside the generated file's 48 hours from 2025-07-18T20:42:34Z (three daily partitions).
START = "2025-07-19T06:00:00Z"
END = "2025-07-19T18:00:00Z"


@pytest.fixture
def api() -> Client:
    return Client(raise_request_exception=False)


@pytest.fixture
def uuid(generated_data: Loaded) -> str:
    return generated_data.uuids[len(generated_data.uuids) // 2]


def get_ok(api: Client, url: str) -> None:
    response = api.get(url)
    assert response.status_code == 200, (url, response.status_code, response.content[:500])


def test_the_generated_data_went_through_the_collector(generated_data: Loaded) -> None:
    assert generated_data.rows == PLANNER_SPEC.row_count
    assert generated_data.rejected == 0
    assert len(generated_data.uuids) == PLANNER_SPEC.gpu_count
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ingest_sample")
        assert cursor.fetchone()[0] == PLANNER_SPEC.row_count


# --- query-count budgets -----------------------------------------------------------------


FILTERS = f"metric={METRIC}&metric={OTHER_METRIC}&start_time={START}&end_time={END}"
# Each request with its budget of queries, and what each query is. ``{uuid}`` is a GPU from
# the middle of the fleet; the page sizes 1 and 1000 show that a budget does not grow with
# the page.
QUERY_BUDGETS = [
    pytest.param(
        f"/api/v1/gpus?limit={limit}",
        1,
        id=f"gpu list of {limit}: the page of GPUs with their total (COUNT(*) OVER ())",
    )
    for limit in (1, 1000)
] + [
    pytest.param(
        "/api/v1/gpus?hostname=mtv5-dgx1-hgpu-001&model=NVIDIA+L40S",
        1,
        id="filtered gpu list: the page of the host's GPUs with their total",
    ),
    *(
        pytest.param(
            f"/api/v1/hosts?limit={limit}",
            2,
            id=f"host list of {limit}: COUNT of host groups, the page with GPU counts",
        )
        for limit in (1, 1000)
    ),
    pytest.param("/api/v1/gpus/{uuid}", 1, id="gpu detail: the GPU by uuid"),
    *(
        pytest.param(
            f"/api/v1/gpus/{{uuid}}/telemetry?limit={limit}",
            1,
            id=f"telemetry page of {limit}: the GPU's samples with metric and workload",
        )
        for limit in (1, 1000)
    ),
    pytest.param(
        "/api/v1/gpus/{uuid}/telemetry?limit=10&offset=1150",
        2,
        id="deep telemetry page: the timestamps up to the offset, the page from there",
    ),
    *(
        pytest.param(
            f"/api/v1/gpus/{{uuid}}/telemetry?{FILTERS}&limit={limit}&offset=5",
            2,
            id=f"filtered telemetry page of {limit}: metric names to ids, the page",
        )
        for limit in (1, 1000)
    ),
    pytest.param(
        "/api/v1/gpus/{uuid}/telemetry/aggregate?bucket=1h",
        2,
        id="aggregate: the GPU, the buckets grouped in the database",
    ),
    pytest.param(
        f"/api/v1/gpus/{{uuid}}/telemetry/aggregate?bucket=1h&{FILTERS}",
        3,
        id="filtered aggregate: the GPU, metric names to ids, the buckets",
    ),
    pytest.param(
        "/api/v1/gpus/{uuid}/latest",
        1,
        id="latest: the metrics, each with backwards index probes of the GPU's samples",
    ),
    pytest.param("/api/v1/metrics", 2, id="metric list: the tally totals, the metrics"),
    pytest.param(
        f"/api/v1/hosts/{HOST}/aggregate?bucket=1h&{FILTERS}",
        3,
        id="host aggregate: the host's devices, metric names to ids, the buckets",
    ),
    *(
        pytest.param(
            f"/api/v1/fleet/latest{query}",
            2,
            id=f"fleet{query}: the metrics, the devices with their read-model values",
        )
        for query in ("", f"?metric={METRIC}&hostname=mtv5-dgx1-hgpu-001&namespace=x")
    ),
]


@pytest.mark.parametrize(("url", "queries"), QUERY_BUDGETS)
def test_a_request_keeps_to_its_query_budget(
    api: Client,
    django_assert_num_queries: DjangoAssertNumQueries,
    uuid: str,
    url: str,
    queries: int,
) -> None:
    with django_assert_num_queries(queries):
        get_ok(api, url.format(uuid=uuid))


def test_a_gpu_page_past_the_end_counts_apart(
    api: Client, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    # 1: the (empty) page, which carries no total; 2: COUNT of GPUs with telemetry.
    with django_assert_num_queries(2):
        response = api.get("/api/v1/gpus?offset=100000")
    body = response.json()
    assert (body["count"], body["next"], body["results"]) == (PLANNER_SPEC.gpu_count, None, [])


def test_stats_cost_two_queries_and_no_sample_count(
    api: Client, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    # 1: tally totals and metric names; 2: the GPU/host aggregate and the last minute's rows.
    with django_assert_num_queries(2) as captured:
        get_ok(api, "/api/v1/stats")
    assert not [q["sql"] for q in captured.captured_queries if "ingest_sample" in q["sql"]]


def test_deep_pages_found_by_timestamp_are_the_pages_an_offset_gives(
    api: Client, uuid: str
) -> None:
    # Pages past SEEK_AFTER_ROWS come from the timestamp at the offset; they must be exactly
    # the rows a plain OFFSET would skip to, ties (10 metrics per timestamp) included.
    expected = positions(uuid)
    assert len(expected) > SEEK_AFTER_ROWS + 100
    for offset in (SEEK_AFTER_ROWS + 1, SEEK_AFTER_ROWS + 7, len(expected) - 3, len(expected)):
        response = api.get(f"/api/v1/gpus/{uuid}/telemetry?limit=20&offset={offset}")
        body = response.json()
        assert [(row["timestamp"], row["metric"]) for row in body["results"]] == expected[
            offset : offset + 20
        ]
        assert (body["next"] is None) == (offset + 20 >= len(expected))


def positions(uuid: str) -> list[tuple[str, str]]:
    """(timestamp, metric) of the GPU's samples in page order."""
    return [
        (timestamp.isoformat().replace("+00:00", "Z"), name)
        for timestamp, name in Sample.objects.filter(gpu__uuid=uuid)
        .order_by("timestamp", "id")
        .values_list("timestamp", "metric__name")
    ]


def cursor_at(uuid: str, row: int) -> str:
    """The cursor of a page that ended at ``row`` of the GPU's samples."""
    ordered = Sample.objects.filter(gpu__uuid=uuid).order_by("timestamp", "id")
    return Cursor(*ordered.values_list("timestamp", "id")[row]).encode()


def test_next_links_walk_every_sample_once_in_order(api: Client, uuid: str) -> None:
    # 97 rows a page: page ends fall inside runs of equal timestamps (10 metrics each).
    walked: list[tuple[str, str]] = []
    url: str | None = f"/api/v1/gpus/{uuid}/telemetry?limit=97"
    while url is not None:
        body = api.get(url).json()
        walked += [(row["timestamp"], row["metric"]) for row in body["results"]]
        url = body["next"]
        assert url is None or ("cursor=" in url and "offset=" not in url)

    assert walked == positions(uuid)


def test_a_cursor_page_costs_what_the_first_page_costs(
    api: Client, django_assert_num_queries: DjangoAssertNumQueries, uuid: str
) -> None:
    deep = f"/api/v1/gpus/{uuid}/telemetry?limit=10&cursor={cursor_at(uuid, 1150)}"
    # The page alone: no locating step, however deep the cursor points.
    with django_assert_num_queries(1):
        get_ok(api, deep)


# --- query plans -----------------------------------------------------------------------


def sample_queries(api: Client, uuid: str) -> Iterator[tuple[str, str]]:
    """(request, SQL) of every query the real endpoints run against the sample table."""
    urls = [
        "/api/v1/gpus",
        "/api/v1/hosts",
        "/api/v1/metrics",
        "/api/v1/stats",
        f"/api/v1/gpus/{uuid}",
        f"/api/v1/gpus/{uuid}/telemetry",
        f"/api/v1/gpus/{uuid}/telemetry?limit=1000&offset=900",
        # Deeper than SEEK_AFTER_ROWS: the page is found by its timestamp first (two queries).
        f"/api/v1/gpus/{uuid}/telemetry?limit=10&offset=1150",
        f"/api/v1/gpus/{uuid}/telemetry?start_time={START}&end_time={END}",
        f"/api/v1/gpus/{uuid}/telemetry?start_time={START}",
        f"/api/v1/gpus/{uuid}/telemetry?end_time={END}",
        f"/api/v1/gpus/{uuid}/telemetry?metric={METRIC}",
        f"/api/v1/gpus/{uuid}/telemetry?metric={METRIC}&start_time={START}&end_time={END}",
        f"/api/v1/gpus/{uuid}/telemetry/aggregate?bucket=1m",
        f"/api/v1/gpus/{uuid}/telemetry/aggregate?bucket=1h&start_time={START}&end_time={END}",
        f"/api/v1/gpus/{uuid}/telemetry/aggregate?bucket=1d&start_time=2025-07-18T00:00:00Z"
        "&end_time=2025-07-21T00:00:00Z",
        f"/api/v1/gpus/{uuid}/telemetry/aggregate?bucket=10m&metric={METRIC}&start_time={START}",
        f"/api/v1/gpus/{uuid}/latest",
        # A page far along, reached by the cursor a `next` link carries.
        f"/api/v1/gpus/{uuid}/telemetry?limit=10&cursor={cursor_at(uuid, 1150)}",
        f"/api/v1/hosts/{HOST}/aggregate?bucket=1h",
        f"/api/v1/hosts/{HOST}/aggregate?bucket=10m&metric={METRIC}&start_time={START}",
        f"/api/v1/gpus/{uuid}/telemetry/aggregate?bucket=1h&metric={COUNTER}&fn=rate"
        f"&start_time={START}&end_time={END}",
        f"/api/v1/hosts/{HOST}/aggregate?bucket=1h&metric={COUNTER}&fn=delta",
    ]
    for url in urls:
        with CaptureQueriesContext(connection) as captured:
            get_ok(api, url)
        for query in captured.captured_queries:
            if "ingest_sample" in query["sql"]:
                yield url, query["sql"]


def explain(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}")
        return "\n".join(line for (line,) in cursor.fetchall())


def plan_shape(plan: str) -> str:
    """The plan's nodes without their cost estimates: what a reader compares."""
    return "\n".join(COST.sub("", line) for line in plan.splitlines() if "(cost=" in line)


def test_every_api_query_on_samples_uses_an_index(api: Client, uuid: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'ingest_sample'::regclass"
        )
        assert cursor.fetchone()[0] >= 2, "the generated data should span several partitions"

    # A counter the generated export does not hold: its query's plan is what matters.
    Metric.objects.create(name=COUNTER, kind="counter")
    plans = [(url, sql, explain(sql)) for url, sql in sample_queries(api, uuid)]

    # telemetry x10 (9 requests, one of them seeking), aggregate x4, latest x1, host
    # aggregate x2, counter increases x2: all of them, or the capture missed some.
    assert len(plans) == 10 + 4 + 1 + 2 + 2
    report = "\n\n".join(f"{url}\n{plan_shape(plan)}" for url, _, plan in plans)
    print(report)  # the shapes, for `pytest -s`
    scans = [
        (url, match, sql) for url, sql, plan in plans for match in SEQ_SCAN_ON_SAMPLES.findall(plan)
    ]
    assert not scans, f"sequential scans of the sample table: {scans}\n\n{report}"
    unindexed = [url for url, _, plan in plans if "Index" not in plan]
    assert not unindexed, f"plans without an index: {unindexed}\n\n{report}"


# --- the CSV exports: one cursor per device, each on the (gpu, timestamp) index -------------

DECLARE_CURSOR = re.compile(r"^DECLARE .+? CURSOR (?:WITH|WITHOUT) HOLD FOR ", re.DOTALL)
EXPORT_URLS = [
    "/api/v1/gpus/{uuid}/telemetry.csv",
    f"/api/v1/gpus/{{uuid}}/telemetry.csv?{FILTERS}",
    f"/api/v1/telemetry.csv?start_time={START}&end_time={END}",
    f"/api/v1/telemetry.csv?start_time={START}&end_time={END}&hostname=mtv5-dgx1-hgpu-001"
    f"&metric={METRIC}",
]


def export_sample_queries(api: Client, url: str) -> list[str]:
    """The sample queries of an export, run by reading its whole stream."""
    with CaptureQueriesContext(connection) as captured:
        response = api.get(url)
        assert response.status_code == 200, response.content
        response.getvalue()
    # A server-side cursor is logged as its DECLARE: the query is what it is declared for.
    queries = [DECLARE_CURSOR.sub("", query["sql"]) for query in captured.captured_queries]
    return [sql for sql in queries if "ingest_sample" in sql]


@pytest.mark.parametrize("url", EXPORT_URLS)
def test_every_export_query_on_samples_uses_an_index(api: Client, uuid: str, url: str) -> None:
    queries = export_sample_queries(api, url.format(uuid=uuid))

    assert queries, "the capture missed the export's queries"
    plans = [explain(sql) for sql in queries]
    scans = [match for plan in plans for match in SEQ_SCAN_ON_SAMPLES.findall(plan)]
    assert not scans, f"sequential scans of the sample table: {scans}\n\n{plan_shape(plans[0])}"
    assert all("Index" in plan for plan in plans), plan_shape(plans[0])


def test_a_fleet_export_queries_only_devices_with_samples_in_its_range(api: Client) -> None:
    # Devices first seen after the range ends, or last seen before it starts, are never read.
    devices = Gpu.objects.filter(
        sample_count__gt=0, first_seen__lte=END, last_seen__gte=START
    ).count()
    url = "/api/v1/telemetry.csv?start_time=2025-07-18T00:00:00Z&end_time=2025-07-18T20:42:33Z"

    assert export_sample_queries(api, url) == []
    assert len(export_sample_queries(api, EXPORT_URLS[2])) == devices == PLANNER_SPEC.gpu_count


def test_the_fleet_view_never_reads_the_sample_table(api: Client) -> None:
    with CaptureQueriesContext(connection) as captured:
        get_ok(api, "/api/v1/fleet/latest")
    assert len(captured.captured_queries) == 2
    assert not [q["sql"] for q in captured.captured_queries if "ingest_sample" in q["sql"]]
