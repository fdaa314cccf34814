"""CSV exports on the reference export: the rows a file holds, its filters, its errors."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from typing import Any

import pytest
from django.http.response import HttpResponseBase
from django.test import Client

from ingest.dcgm import ColumnLayout, gpu_labels, parse_lines
from tests.support.reference import REFERENCE_COLUMNS, REFERENCE_CSV, REFERENCE_UUID

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reference_data")]

API = "/api/v1"
DEVICE_CSV = f"{API}/gpus/{REFERENCE_UUID}/telemetry.csv"
FLEET_CSV = f"{API}/telemetry.csv"
# The reference export's rows lie within seconds from 2025-07-18T20:42:34Z.
WHOLE_DAY = {"start_time": "2025-07-18T00:00:00Z", "end_time": "2025-07-18T23:59:59Z"}


def reference_rows() -> list[dict[str, str]]:
    with REFERENCE_CSV.open(newline="") as source:
        return list(csv.DictReader(source))


def exported(client: Client, path: str, **params: Any) -> tuple[HttpResponseBase, bytes]:
    response = client.get(path, params)
    assert response.status_code == 200, response.content
    assert response.streaming, "an export is streamed, never built whole in memory"
    return response, response.getvalue()


def rows_of(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode())))


def test_a_gpu_export_is_its_samples_in_the_exporters_layout(client: Client) -> None:
    response, body = exported(client, DEVICE_CSV)

    expected = [row for row in reference_rows() if row["uuid"] == REFERENCE_UUID]
    rows = rows_of(body)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        response["Content-Disposition"] == f'attachment; filename="telemetry-{REFERENCE_UUID}.csv"'
    )
    assert tuple(rows[0]) == REFERENCE_COLUMNS
    assert sorted(row["metric_name"] for row in rows) == sorted(
        row["metric_name"] for row in expected
    )
    by_metric = {row["metric_name"]: row for row in rows}
    for original in expected:
        row = by_metric[original["metric_name"]]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", row["timestamp"])
        assert datetime.fromisoformat(row["timestamp"]) == datetime.fromisoformat(
            original["timestamp"]
        )
        assert float(row["value"]) == float(original["value"])
        same = ("gpu_id", "device", "uuid", "modelName", "Hostname", "container", "pod")
        assert {key: row[key] for key in same} == {key: original[key] for key in same}


def test_labels_raw_reads_back_as_the_gpus_labels_through_the_parser(client: Client) -> None:
    _, body = exported(client, DEVICE_CSV)
    header, _, data = body.partition(b"\n")

    parsed = parse_lines(data, ColumnLayout.from_header_line(header), first_line=2)

    assert not parsed.rejected
    assert len(parsed.gpus) == 1
    labels = client.get(f"{API}/gpus/{REFERENCE_UUID}").json()["labels"]
    assert labels["DCGM_FI_DRIVER_VERSION"] == "535.129.03"
    assert gpu_labels(parsed.gpus[0].labels_raw) == labels


def test_the_gpu_export_takes_the_telemetry_filters(client: Client) -> None:
    _, one_metric = exported(client, DEVICE_CSV, metric="DCGM_FI_DEV_GPU_TEMP")
    _, before = exported(client, DEVICE_CSV, end_time="2025-07-18T20:42:33.999999Z")

    assert [row["metric_name"] for row in rows_of(one_metric)] == ["DCGM_FI_DEV_GPU_TEMP"]
    assert rows_of(before) == []
    assert before.startswith(b'"timestamp","metric_name",')


def test_the_fleet_export_holds_every_sample_of_the_range(client: Client) -> None:
    response, body = exported(client, FLEET_CSV, **WHOLE_DAY)

    rows = rows_of(body)
    assert len(rows) == len(reference_rows()) == 2470
    assert {row["uuid"] for row in rows} == {row["uuid"] for row in reference_rows()}
    assert response["Content-Disposition"] == (
        'attachment; filename="telemetry-20250718T000000Z-20250718T235959Z.csv"'
    )
    assert "gpu_instance_id" not in rows[0], "no MIG instance, no instance columns"


def test_the_fleet_export_filters_by_host_model_and_metric(client: Client) -> None:
    host = reference_rows()[0]["Hostname"]
    _, by_host = exported(
        client, FLEET_CSV, hostname=host, metric="DCGM_FI_DEV_GPU_UTIL", **WHOLE_DAY
    )
    _, no_model = exported(client, FLEET_CSV, model="no such model", **WHOLE_DAY)

    expected = [
        row["uuid"]
        for row in reference_rows()
        if row["Hostname"] == host and row["metric_name"] == "DCGM_FI_DEV_GPU_UTIL"
    ]
    assert sorted(row["uuid"] for row in rows_of(by_host)) == sorted(expected)
    assert rows_of(no_model) == []


@pytest.mark.parametrize(
    ("query", "missing"),
    [
        ({}, {"start_time", "end_time"}),
        ({"start_time": "2025-07-18T00:00:00Z"}, {"end_time"}),
        ({"end_time": "2025-07-18T00:00:00Z"}, {"start_time"}),
    ],
)
def test_the_fleet_export_names_a_missing_bound(
    client: Client, query: dict[str, str], missing: set[str]
) -> None:
    response = client.get(FLEET_CSV, query)

    assert response.status_code == 400
    assert set(response.json()) == missing


def test_errors_are_json_even_to_a_client_that_accepts_only_csv(client: Client) -> None:
    bad_time = client.get(DEVICE_CSV, {"start_time": "yesterday"}, HTTP_ACCEPT="text/csv")
    unknown = client.get(f"{API}/gpus/GPU-none/telemetry.csv", HTTP_ACCEPT="text/csv")

    assert (bad_time.status_code, list(bad_time.json())) == (400, ["start_time"])
    assert (unknown.status_code, unknown["Content-Type"]) == (404, "application/json")
