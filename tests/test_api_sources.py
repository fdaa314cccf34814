"""GET /api/v1/sources: for staff only, credentials never shown, figures from the counters the
collector keeps."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from api.models import ApiToken
from api.sources import without_credentials
from ingest import collector
from ingest.models import OutstandingChunk, RejectedRow, StreamCursor, StreamSource
from ingest.rejections import reason_category
from tests.support.chunks import REFERENCE_LINES, chunk_of
from tests.support.dcgm_lines import row_line

SOURCES = "/api/v1/sources"


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("data/dcgm_metrics_sample.csv", "data/dcgm_metrics_sample.csv"),
        (
            "https://reader:s3cret@exports.example.com:8443/dcgm.csv?x=1",
            "https://exports.example.com:8443/dcgm.csv?x=1",
        ),
        (
            "http://10.0.0.7:9400/metrics?token=abc&gpu=1&X-Amz-Signature=ff#part",
            "http://10.0.0.7:9400/metrics?token=REDACTED&gpu=1&X-Amz-Signature=REDACTED",
        ),
        (
            "https://h/x.csv?api_key=k&password=p",
            "https://h/x.csv?api_key=REDACTED&password=REDACTED",
        ),
    ],
)
def test_a_location_is_shown_without_its_credentials(location: str, shown: str) -> None:
    assert without_credentials(location) == shown


@pytest.fixture
def staff_client(client: Client, django_user_model: type[User]) -> Client:
    user = django_user_model.objects.create_user("operator", is_staff=True)
    client.force_login(user)
    return client


def bearer(token: ApiToken) -> dict[str, str]:
    return {"authorization": f"Bearer {token.new_key}"}


@pytest.mark.django_db
def test_only_staff_sessions_and_staff_tokens_may_read_the_sources(
    client: Client, django_user_model: type[User], staff_client: Client
) -> None:
    reader = ApiToken.issue("reader", can_write=True)
    operator = ApiToken.issue("operator-token", can_write=False, is_staff=True)
    plain = Client()
    plain.force_login(django_user_model.objects.create_user("viewer"))

    assert Client().get(SOURCES).status_code == 401
    assert Client().get(SOURCES, headers=bearer(reader)).status_code == 403
    assert plain.get(SOURCES).status_code == 403
    assert Client().get(SOURCES, headers=bearer(operator)).status_code == 200
    assert staff_client.get(SOURCES).status_code == 200


@pytest.mark.django_db
def test_a_staff_session_reads_the_api_when_tokens_are_required(
    staff_client: Client, settings: Any
) -> None:
    settings.API_REQUIRE_TOKEN = True

    assert staff_client.get("/api/v1/fleet/latest").status_code == 200
    assert Client().get("/api/v1/fleet/latest").status_code == 401


def get_sources(client: Client) -> dict[str, Any]:
    response = client.get(SOURCES)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.django_db(transaction=True)
def test_rows_and_rejections_come_from_the_commits_counters(
    staff_client: Client, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    source = StreamSource.objects.create(
        name="sample", location="https://u:p@example.com/dcgm.csv?token=t", interval_seconds=2
    )
    rows = list(REFERENCE_LINES[1:201])
    rows[3] += b',"extra"'
    rows[7] = row_line(value="not-a-number")
    rows[9] = row_line(value="9223372036854775794")  # an int64 blank: not supported
    rows[11] = row_line(value="also bad")
    result = collector.collect(
        chunk_of(rows, chunk_id=f"{source.pk}:0:1:0", source_id=source.pk).to_payload()
    )
    assert (result.outcome, result.rejected) == ("committed", 4)

    # 1 the session, 2 its user; 3 tallies, 4 ledger rows of the last 5 minutes, 5 outstanding
    # chunks, 6 sources, 7 their cursors, 8 dead letters; the queue depth is the broker's.
    with django_assert_num_queries(8):
        body = get_sources(staff_client)

    expected = Counter(reason_category(row.reason) for row in RejectedRow.objects.all())
    assert expected == Counter(
        {"value is not a number": 2, "wrong number of columns": 1, "DCGM not supported": 1}
    )
    assert body["rejected_by_reason"] == [
        {"reason": reason, "rows": rows}
        for reason, rows in sorted(expected.items(), key=lambda item: (-item[1], item[0]))
    ]
    (shown,) = body["sources"]
    assert shown["location"] == "https://example.com/dcgm.csv?token=REDACTED"
    assert (shown["rows_committed"], shown["rows_rejected"]) == (196, 4)
    assert shown["rows_per_second"] == round(196 / 300, 3)
    assert shown["admin_url"] == f"/admin/ingest/streamsource/{source.pk}/change/"


@pytest.mark.django_db
def test_state_progress_and_lag_follow_the_cursors(staff_client: Client, tmp_path: Any) -> None:
    csv = tmp_path / "x.csv"
    csv.write_bytes(b"h\n" + b"0123456789\n" * 99)  # 1,091 bytes
    source = StreamSource.objects.create(name="file", location=str(csv), loop=True)
    cursor = StreamCursor.objects.create(
        source=source, shard=0, start_offset=2, start_line=2, position=547, next_line=51,
        pass_number=3,
    )  # fmt: skip
    recorded = timezone.now() - timedelta(seconds=30)
    OutstandingChunk.objects.create(
        cursor=cursor, pass_number=3, start_offset=492, end_offset=547, first_line=46,
        line_count=5, recorded_at=recorded, published_at=recorded,
    )  # fmt: skip
    StreamSource.objects.create(name="paused", location=str(csv), enabled=False)
    scrape = StreamSource.objects.create(
        name="scraped", kind=StreamSource.Kind.SCRAPE, location="http://127.0.0.1:9400/metrics",
        last_scrape_at=recorded, last_success_at=recorded - timedelta(seconds=10),
        last_scrape_duration_seconds=0.25,
    )  # fmt: skip

    sources = {entry["name"]: entry for entry in get_sources(staff_client)["sources"]}

    streaming = sources["file"]
    assert streaming["state"] == "streaming"
    assert streaming["progress"] == {"pass_number": 3, "fraction": round(545 / 1089, 4)}
    assert 30 <= streaming["lag_seconds"] < 60
    assert streaming["last_scrape"] is None
    assert sources["paused"]["state"] == "paused"
    assert sources["scraped"]["state"] == "down"
    assert sources["scraped"]["progress"] is None
    assert sources["scraped"]["last_scrape"]["up"] is False
    assert sources["scraped"]["last_scrape"]["duration_seconds"] == 0.25
    assert sources["scraped"]["lag_seconds"] is None
    assert scrape.pk == sources["scraped"]["id"]
