"""Every endpoint's answers on the reference export, streamed through the collector."""

from __future__ import annotations

import csv
import re
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from telemetry_project.celery import app
from tests.support.api_data import Loaded
from tests.support.reference import REFERENCE_CSV, REFERENCE_UUID

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reference_data")]

API = "/api/v1"
TELEMETRY = f"{API}/gpus/{REFERENCE_UUID}/telemetry"
AGGREGATE = f"{TELEMETRY}/aggregate"


def reference_rows() -> list[dict[str, str]]:
    with REFERENCE_CSV.open(newline="") as source:
        return list(csv.DictReader(source))


def get(client: Client, path: str, **params: Any) -> Any:
    response = client.get(path, params)
    assert response.status_code == 200, response.content
    return response.json()


def test_gpus_lists_every_gpu_with_telemetry_ordered_by_host_and_index(
    client: Client, reference_data: Loaded
) -> None:
    body = get(client, f"{API}/gpus", limit=1000)

    assert body["count"] == 247
    keys = [(gpu["hostname"], gpu["gpu_index"]) for gpu in body["results"]]
    assert keys == sorted(keys)
    assert {gpu["uuid"] for gpu in body["results"]} == set(reference_data.uuids)
    assert all(gpu["sample_count"] == 10 for gpu in body["results"])


def test_gpus_filter_by_hostname_and_model(client: Client) -> None:
    rows = reference_rows()
    host = rows[0]["Hostname"]
    expected = {row["uuid"] for row in rows if row["Hostname"] == host}

    by_host = get(client, f"{API}/gpus", hostname=host)
    by_model = get(client, f"{API}/gpus", model=rows[0]["modelName"], limit=1000)
    by_other_model = get(client, f"{API}/gpus", model="no such model")

    assert {gpu["uuid"] for gpu in by_host["results"]} == expected
    assert by_model["count"] == len(
        {r["uuid"] for r in rows if r["modelName"] == rows[0]["modelName"]}
    )
    assert by_other_model["count"] == 0


def test_a_gpu_is_found_by_uuid_and_an_unknown_uuid_is_404(client: Client) -> None:
    gpu = get(client, f"{API}/gpus/{REFERENCE_UUID}")

    assert gpu["hostname"] == "mtv5-dgx1-hgpu-031"
    assert gpu["model"] == "NVIDIA H100 80GB HBM3"
    assert gpu["labels"]["DCGM_FI_DRIVER_VERSION"] == "535.129.03"
    for path in ("", "/telemetry", "/telemetry/aggregate?bucket=1m", "/latest"):
        assert client.get(f"{API}/gpus/GPU-unknown{path}").status_code == 404
    # Telemetry and latest find the device inside their sample query: still a 404 for a
    # device that is not there, before a bad parameter is a 400, and an empty page for one
    # that is there.
    for query in ("?limit=0", "?start_time=yesterday", "?cursor=tampered"):
        assert client.get(f"{API}/gpus/GPU-unknown/telemetry{query}").status_code == 404
        assert client.get(f"{API}/gpus/{REFERENCE_UUID}/telemetry{query}").status_code == 400
    empty = get(client, f"{API}/gpus/{REFERENCE_UUID}/telemetry?end_time=2025-07-18T00:00:00Z")
    assert empty["results"] == []
    assert client.get(f"{API}/gpus/{REFERENCE_UUID}:7/latest").status_code == 404


def labels_shared_by_every_row_of_each_gpu() -> dict[str, dict[str, str]]:
    """Per uuid, the labels whose value is the same on all of the GPU's rows in the file."""
    shared: dict[str, dict[str, str]] = {}
    for row in reference_rows():
        labels = dict(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="([^"]*)"', row["labels_raw"]))
        seen = shared.setdefault(row["uuid"], labels)
        for key in [key for key, value in seen.items() if labels.get(key) != value]:
            del seen[key]
    return shared


def test_a_gpus_labels_are_those_every_one_of_its_rows_shares(client: Client) -> None:
    expected = labels_shared_by_every_row_of_each_gpu()

    body = get(client, f"{API}/gpus", limit=1000)

    labels = {gpu["uuid"]: gpu["labels"] for gpu in body["results"]}
    assert labels == expected
    assert not any("__name__" in gpu_labels for gpu_labels in labels.values())
    assert labels[REFERENCE_UUID]["instance"] == "mtv5-dgx1-hgpu-031:9400"


def test_telemetry_returns_the_gpus_samples_in_ascending_time(client: Client) -> None:
    expected = Counter(
        (row["metric_name"], float(row["value"]))
        for row in reference_rows()
        if row["uuid"] == REFERENCE_UUID
    )

    body = get(client, TELEMETRY)

    samples = body["results"]
    assert Counter((s["metric"], s["value"]) for s in samples) == expected
    times = [s["timestamp"] for s in samples]
    assert times == sorted(times)
    assert body["next"] is None


def test_time_bounds_are_inclusive_to_the_second(client: Client) -> None:
    exact = get(
        client, TELEMETRY, start_time="2025-07-18T20:42:35Z", end_time="2025-07-18T20:42:35Z"
    )

    assert exact["results"]
    assert {s["timestamp"] for s in exact["results"]} == {"2025-07-18T20:42:35Z"}


def test_time_bounds_are_exact_to_the_microsecond(client: Client) -> None:
    after = get(client, TELEMETRY, start_time="2025-07-18T20:42:35.000001Z")
    before = get(client, TELEMETRY, end_time="2025-07-18T20:42:34.999999Z")
    shifted_zone = get(client, TELEMETRY, start_time="2025-07-18T22:42:35+02:00")

    assert all(s["timestamp"] > "2025-07-18T20:42:35Z" for s in after["results"])
    assert all(s["timestamp"] < "2025-07-18T20:42:35Z" for s in before["results"])
    assert {s["timestamp"] for s in shifted_zone["results"]} >= {"2025-07-18T20:42:35Z"}


def test_metric_filter_is_repeatable(client: Client) -> None:
    body = get(client, TELEMETRY + "?metric=DCGM_FI_DEV_GPU_TEMP&metric=DCGM_FI_DEV_GPU_UTIL")

    assert {s["metric"] for s in body["results"]} == {
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_GPU_UTIL",
    }
    assert len(body["results"]) == 2


def test_limit_and_offset_pages_never_overlap_or_skip(client: Client) -> None:
    whole = get(client, TELEMETRY, limit=1000)["results"]
    pages: list[dict[str, Any]] = []
    offset = 0
    while True:
        body = get(client, TELEMETRY, limit=3, offset=offset)
        pages += body["results"]
        if body["next"] is None:
            break
        offset += 3

    assert pages == whole
    assert len(whole) == 10


def test_next_links_carry_a_cursor_that_continues_where_the_page_ended(client: Client) -> None:
    whole = get(client, TELEMETRY, limit=1000)["results"]
    first = get(client, TELEMETRY, limit=4)
    second = client.get(first["next"]).json()

    assert first["results"] + second["results"] == whole[:8]
    assert second["previous"] is None  # a cursor goes forwards only


def test_a_cursor_edited_by_hand_or_given_with_an_offset_is_a_400(client: Client) -> None:
    cursor = parse_qs(urlsplit(get(client, TELEMETRY, limit=4)["next"]).query)["cursor"][0]
    position, signature = cursor.rsplit(":", 1)
    edited = f"{position[:-2]}{'A' if position[-2] != 'A' else 'B'}{position[-1]}:{signature}"

    for query in ({"cursor": edited}, {"cursor": "abc"}, {"cursor": cursor, "offset": 4}):
        response = client.get(TELEMETRY, query)
        assert response.status_code == 400, (query, response.content)
        assert "cursor" in response.json(), response.content


def test_aggregate_buckets_count_avg_min_max_per_metric(client: Client) -> None:
    rows = [r for r in reference_rows() if r["uuid"] == REFERENCE_UUID]

    body = get(
        client, AGGREGATE, bucket="1m",
        start_time="2025-07-18T20:00:00Z", end_time="2025-07-18T21:00:00Z",
    )  # fmt: skip

    assert body["bucket"] == "60s"
    by_metric = {b["metric"]: b for b in body["buckets"]}
    assert set(by_metric) == {r["metric_name"] for r in rows}
    for row in rows:
        bucket = by_metric[row["metric_name"]]
        assert bucket["bucket_start"] == "2025-07-18T20:42:00Z"
        assert bucket["count"] == 1
        assert bucket["avg"] == bucket["min"] == bucket["max"] == float(row["value"])


def test_aggregate_without_a_range_covers_the_gpus_last_hour(client: Client) -> None:
    body = get(client, AGGREGATE, bucket="10s")

    assert body["end_time"] == "2025-07-18T20:42:37Z"
    assert body["start_time"] == "2025-07-18T19:42:37Z"
    assert sum(b["count"] for b in body["buckets"]) == 10


def test_latest_gives_every_metric_once_with_its_value(client: Client) -> None:
    rows = {r["metric_name"]: r for r in reference_rows() if r["uuid"] == REFERENCE_UUID}

    latest = get(client, f"{API}/gpus/{REFERENCE_UUID}/latest")

    assert {item["metric"] for item in latest} == set(rows)
    for item in latest:
        assert item["value"] == float(rows[item["metric"]]["value"])
        assert item["timestamp"] == rows[item["metric"]]["timestamp"]


def test_hosts_counts_gpus_per_host(client: Client) -> None:
    body = get(client, f"{API}/hosts", limit=1000)

    assert body["count"] == 31
    assert sum(host["gpu_count"] for host in body["results"]) == 247
    names = [host["hostname"] for host in body["results"]]
    assert names == sorted(names)


def test_metrics_and_stats_report_the_reference_totals(client: Client) -> None:
    metrics = get(client, f"{API}/metrics")
    stats = get(client, f"{API}/stats")

    assert len(metrics) == 10
    assert all(metric["sample_count"] == 247 for metric in metrics)
    assert stats["total_records"] == 2470
    assert stats["unique_gpus"] == 247
    assert stats["unique_hosts"] == 31
    assert stats["rejected_rows"] == 0
    assert stats["first_timestamp"] == "2025-07-18T20:42:34Z"
    assert stats["last_timestamp"] == "2025-07-18T20:42:37Z"
    assert set(stats["metrics"].values()) == {247}


@pytest.mark.parametrize(
    ("endpoint", "query", "parameter"),
    [
        (TELEMETRY, "start_time=yesterday", "start_time"),
        (TELEMETRY, "start_time=2025-07-18T20:42:34", "start_time"),
        (TELEMETRY, "end_time=2025-07-18", "end_time"),
        (TELEMETRY, "start_time=2025-07-18T21:00:00Z&end_time=2025-07-18T20:00:00Z", "start_time"),
        (TELEMETRY, "limit=0", "limit"),
        (TELEMETRY, "limit=1001", "limit"),
        (TELEMETRY, "limit=ten", "limit"),
        (TELEMETRY, "offset=-1", "offset"),
        (TELEMETRY, "metric=DCGM_FI_NOT_A_METRIC", "metric"),
        (AGGREGATE, "bucket=soon", "bucket"),
        (AGGREGATE, "bucket=0s", "bucket"),
        (AGGREGATE, "", "bucket"),
        (
            AGGREGATE,
            "bucket=1s&start_time=2025-01-01T00:00:00Z&end_time=2025-07-01T00:00:00Z",
            "bucket",
        ),
    ],
)
def test_bad_parameters_are_a_400_naming_the_parameter(
    client: Client, endpoint: str, query: str, parameter: str
) -> None:
    response = client.get(f"{endpoint}?{query}")

    assert response.status_code == 400
    assert parameter in response.json()


def test_the_api_is_read_only(client: Client) -> None:
    for method in (client.post, client.put, client.patch, client.delete):
        assert method(f"{API}/gpus/{REFERENCE_UUID}").status_code == 405
    assert client.post(f"{API}/gpus").status_code == 405


def test_health_is_ok_when_database_and_broker_answer(client: Client) -> None:
    assert get(client, "/health") == {"status": "ok", "database": "ok", "broker": "ok"}


def test_health_is_503_naming_the_broker_when_it_is_down(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")

    response = client.get("/health")

    assert response.status_code == 503
    assert response.json()["database"] == "ok"
    assert response.json()["broker"].startswith("down")
