"""``POST /api/v1/import/csv`` and ``/api/v1/import/prometheus``: a DCGM CSV or an exporter page,
gzip or not, recorded in parts of 10,000 rows cut on line boundaries before the 202, whose
answer counts the rows recorded and lists those refused; collectors then commit exactly those
rows, and record each refused one as a rejected row with the same reason and line number."""

from __future__ import annotations

import csv
import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import zstandard
from django.test import Client
from pytest_django.fixtures import Settings

from api.models import ApiToken
from ingest import push
from ingest.models import Metric, PushChunk, RejectedRow, Sample
from tests.support.exporter import FIXTURES, NOT_SUPPORTED
from tests.support.pipeline import generate_csv
from tests.support.push import (
    IMPORT_CSV,
    IMPORT_PAGE,
    collect_stored,
    stored_payloads,
    writing_client,
)
from tests.support.reference import REFERENCE_CSV

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("broker")]

MIG_PAGE = (FIXTURES / "dcgm-exporter-3.3-mig.txt").read_bytes()
HEADER = REFERENCE_CSV.read_text().partition("\n")[0].replace('"', "").split(",")
LABELS = (
    'gpu="{gpu}",UUID="GPU-{gpu:08d}-0000-4000-8000-000000000000",device="nvidia{gpu}",'
    'modelName="NVIDIA H100 80GB HBM3",Hostname="host-{host}"'
)


@pytest.fixture
def writer() -> tuple[Client, ApiToken]:
    return writing_client("nightly-export")


@pytest.fixture(autouse=True)
def _keep_2025_rows(settings: Settings) -> None:
    settings.RETENTION_DAYS = 0  # the reference export and the generator's rows are from 2025


def send(client: Client, path: str, body: bytes, content_type: str, **headers: str) -> Any:
    return client.post(path, body, content_type=content_type, headers=headers)


# --- CSV ---------------------------------------------------------------------------------


def test_the_reference_export_gzipped_is_recorded_then_committed_whole(
    writer: tuple[Client, ApiToken],
) -> None:
    client, token = writer
    body = gzip.compress(REFERENCE_CSV.read_bytes())

    response = send(client, IMPORT_CSV, body, "text/csv", **{"content-encoding": "gzip"})

    assert response.status_code == 202, response.content
    chunk_id = push.part_id(token.pk, push.body_digest(body), 0)
    assert response.json() == {
        "chunks": [chunk_id],
        "rows": 2470,
        "refused": 0,
        "ignored": 0,
        "refusals": [],
        "already_recorded": False,
    }
    [result] = collect_stored()
    assert (result.chunk_id, result.rows, result.rejected) == (chunk_id, 2470, 0)
    first = Sample.objects.order_by("timestamp").first()
    assert first is not None
    assert first.timestamp == datetime(2025, 7, 18, 20, 42, 34, tzinfo=UTC)  # the CSV's own time


def test_bad_rows_are_refused_in_the_answer_and_rejected_alone_by_the_collector(
    writer: tuple[Client, ApiToken],
) -> None:
    lines = REFERENCE_CSV.read_bytes().split(b"\n")
    fields = next(csv.reader([lines[3].decode()]))
    fields[HEADER.index("value")] = "hot"
    lines[3] = ",".join(f'"{field}"' for field in fields).encode()
    lines[6] = b'"too","few","columns"'
    body = b"\n".join(lines[:11]) + b"\n"

    answer = send(writer[0], IMPORT_CSV, body, "text/csv").json()

    assert (answer["rows"], answer["refused"]) == (8, 2)
    assert [refusal["line"] for refusal in answer["refusals"]] == [4, 7]
    assert answer["refusals"][1]["text"] == '"too","few","columns"'
    collect_stored()
    assert Sample.objects.count() == 8
    stored = sorted(RejectedRow.objects.values_list("line_number", "reason"))
    assert stored == [(r["line"], r["reason"]) for r in answer["refusals"]]


def test_a_large_csv_is_split_on_line_boundaries_into_parts_of_ten_thousand_lines(
    writer: tuple[Client, ApiToken], tmp_path: Path
) -> None:
    path = tmp_path / "big.csv"
    rows = generate_csv(path, hosts=10, gpus_per_host=8, metrics=10, timesteps=32)  # 25,600
    lines = path.read_bytes().split(b"\n")
    lines[22_345] = b'"not","a","row"'  # line 22,346 of the file, in the third part
    body = b"\n".join(lines)

    answer = send(writer[0], IMPORT_CSV, body, "text/plain").json()

    assert len(answer["chunks"]) == 3
    assert [(p["line"], p["lines"]) for p in stored_payloads()] == [
        (2, 10_000), (10_002, 10_000), (20_002, rows - 20_000),
    ]  # fmt: skip
    assert (answer["rows"], answer["refused"]) == (rows - 1, 1)
    assert answer["refusals"][0]["line"] == 22_346
    assert sum(result.rows for result in collect_stored()) == rows - 1
    assert RejectedRow.objects.get().line_number == 22_346


def test_a_csv_sent_again_is_recognised_and_adds_nothing(writer: tuple[Client, ApiToken]) -> None:
    body = REFERENCE_CSV.read_bytes()
    first = send(writer[0], IMPORT_CSV, body, "text/csv").json()
    collect_stored()

    again = send(writer[0], IMPORT_CSV, body, "text/csv").json()

    assert again["chunks"] == first["chunks"]
    assert again["already_recorded"] is True
    assert not PushChunk.objects.exists()
    assert Sample.objects.count() == 2470


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"time,value\n1,2\n", "The CSV's first line is not a DCGM header: header lacks"),
        (b'"unclosed\n', "The CSV's first line is not a DCGM header"),
    ],
)
def test_a_body_without_a_dcgm_header_is_a_400_and_records_nothing(
    writer: tuple[Client, ApiToken], body: bytes, detail: str
) -> None:
    response = send(writer[0], IMPORT_CSV, body, "text/csv")
    assert response.status_code == 400
    assert response.json()["detail"].startswith(detail)
    assert not PushChunk.objects.exists()


# --- Exposition pages ---------------------------------------------------------------------


def test_an_exporter_page_is_stored_at_the_time_it_arrived(
    writer: tuple[Client, ApiToken],
) -> None:
    before = datetime.now(UTC)
    answer = send(writer[0], IMPORT_PAGE, MIG_PAGE, "text/plain; version=0.0.4").json()
    after = datetime.now(UTC)

    assert (answer["rows"], answer["refused"], answer["ignored"]) == (26, 1, 6)
    assert answer["refusals"][0]["line"] == 11
    assert answer["refusals"][0]["reason"] == NOT_SUPPORTED
    collect_stored()
    times = set(Sample.objects.values_list("timestamp", flat=True))
    assert len(times) == 1
    assert before <= times.pop() <= after
    assert list(RejectedRow.objects.values_list("line_number", "reason")) == [(11, NOT_SUPPORTED)]


def test_a_page_line_with_its_own_timestamp_keeps_it(writer: tuple[Client, ApiToken]) -> None:
    labels = LABELS.format(gpu=0, host=1)
    page = (
        "# TYPE DCGM_FI_DEV_GPU_TEMP gauge\n"
        f"DCGM_FI_DEV_GPU_TEMP{{{labels}}} 41 1752871354000\n"
        f"DCGM_FI_DEV_GPU_UTIL{{{labels}}} 97\n"
    ).encode()
    send(writer[0], IMPORT_PAGE, gzip.compress(page), "text/plain", **{"content-encoding": "gzip"})
    collect_stored()
    temperature = Sample.objects.get(metric__name="DCGM_FI_DEV_GPU_TEMP")
    assert temperature.timestamp == datetime(2025, 7, 18, 20, 42, 34, tzinfo=UTC)
    assert Sample.objects.get(metric__name="DCGM_FI_DEV_GPU_UTIL").timestamp.year >= 2026


def big_page(samples: int, sentinel_at: int) -> tuple[bytes, int]:
    """A page of one counter family of ``samples`` samples, one of them a blank sentinel;
    returns the page and the line number of that sample."""
    lines = [
        "# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).",
        "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter",
    ]
    for index in range(samples):
        value = 9223372036854775794 if index == sentinel_at else 1000 + index
        labels = LABELS.format(gpu=index % 8 + (index // 8) * 8, host=index // 8)
        lines.append(f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{labels}}} {value}")
    lines += ["# TYPE go_goroutines gauge", "go_goroutines 23"]
    return ("\n".join(lines) + "\n").encode(), sentinel_at + 3


def test_a_large_page_is_split_into_pages_that_each_carry_their_familys_header(
    writer: tuple[Client, ApiToken],
) -> None:
    page, sentinel_line = big_page(25_000, sentinel_at=21_000)

    answer = send(writer[0], IMPORT_PAGE, page, "text/plain").json()

    assert len(answer["chunks"]) == 3
    parts = [zstandard.ZstdDecompressor().decompress(p["data"]) for p in stored_payloads()]
    assert all(part.startswith(b"# HELP DCGM_FI_DEV_TOTAL_ENERGY") for part in parts)
    assert (answer["rows"], answer["refused"], answer["ignored"]) == (24_999, 1, 1)
    assert answer["refusals"][0]["line"] == sentinel_line
    assert sum(result.rows for result in collect_stored()) == 24_999
    assert RejectedRow.objects.get().line_number == sentinel_line
    assert Metric.objects.get().kind == "counter"


def test_a_page_the_parser_refuses_is_a_400_and_records_nothing(
    writer: tuple[Client, ApiToken],
) -> None:
    page = MIG_PAGE + b"DCGM_FI_DEV_GPU_TEMP{gpu=0} not-a-number\n"
    response = send(writer[0], IMPORT_PAGE, page, "text/plain")
    assert response.status_code == 400
    assert response.json()["detail"].startswith(
        "The body cannot be read: not a valid Prometheus text format page"
    )
    assert not PushChunk.objects.exists()


def test_a_page_of_other_families_alone_is_counted_once(writer: tuple[Client, ApiToken]) -> None:
    page = b"# TYPE go_goroutines gauge\ngo_goroutines 23\n"
    answers = [send(writer[0], IMPORT_PAGE, page, "text/plain").json() for _ in range(2)]
    assert [(a["rows"], a["ignored"], a["already_recorded"]) for a in answers] == [
        (0, 1, False), (0, 1, True),
    ]  # fmt: skip
    stats = writer[0].get("/api/v1/stats").json()
    assert stats["push_ignored_samples"] == 1
