"""GET /api/v1/hosts/{hostname}/aggregate (a GPU's aggregate over all of a host's devices) and
fn=delta|rate on the aggregates (counter increases, resets counted from 0), over samples
committed by the real collector."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from ingest import collector
from tests.support.chunks import chunk_of
from tests.support.dcgm_lines import row_line
from tests.support.reference import REFERENCE_UUID

pytestmark = pytest.mark.django_db(transaction=True)

HOST = "mtv5-dgx1-hgpu-031"
OTHER_UUID = "GPU-bc7a12ab-4998-fdc5-0785-2678a929a142"
ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
START, END = "2026-01-01T12:00:00Z", "2026-01-01T12:59:59Z"
# (seconds after T0, value) of one GPU's energy counter: two samples in each 10-minute bucket,
# the counter reset (the driver restarted) between the second and the third.
ENERGY_SAMPLES = [(0, 100.0), (300, 150.0), (600, 40.0), (900, 70.0)]


def line(uuid: str, gpu: str, metric: str, seconds: int, value: float) -> bytes:
    moment = (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
    return row_line(
        uuid=uuid, gpu_id=gpu, device=f"nvidia{gpu}", metric_name=metric, timestamp=moment,
        value=repr(value),
    )  # fmt: skip


def commit(lines: list[bytes], at: int) -> None:
    result = collector.collect(chunk_of(lines, chunk_id=f"1:0:1:{at}").to_payload())
    assert (result.outcome, result.rejected) == ("committed", 0)


def get(client: Client, url: str) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def test_a_hosts_aggregate_covers_all_its_devices(client: Client) -> None:
    commit(
        [
            line(REFERENCE_UUID, "0", "DCGM_FI_DEV_GPU_TEMP", s, v)
            for s, v in ((0, 30.0), (60, 50.0))
        ]
        + [line(OTHER_UUID, "1", "DCGM_FI_DEV_GPU_TEMP", 30, 70.0)],
        at=0,
    )

    body = get(
        client, f"/api/v1/hosts/{HOST}/aggregate?bucket=1h&start_time={START}&end_time={END}"
    )

    assert (body["hostname"], body["gpu_count"], body["bucket"]) == (HOST, 2, "3600s")
    assert body["buckets"] == [
        {
            "metric": "DCGM_FI_DEV_GPU_TEMP",
            "bucket_start": "2026-01-01T12:00:00Z",
            "count": 3,
            "avg": 50.0,
            "min": 30.0,
            "max": 70.0,
        }
    ]
    # Without a range: the hour up to the host's newest sample.
    assert get(client, f"/api/v1/hosts/{HOST}/aggregate?bucket=1h")["end_time"] == (
        "2026-01-01T12:01:00Z"
    )


def test_an_unknown_host_is_a_404(client: Client) -> None:
    response = client.get("/api/v1/hosts/no-such-host/aggregate?bucket=1h")

    assert response.status_code == 404


@pytest.mark.parametrize(("fn", "per"), [("delta", 1), ("rate", 600)])
def test_a_counters_increase_counts_a_reset_from_zero(client: Client, fn: str, per: int) -> None:
    commit([line(REFERENCE_UUID, "0", ENERGY, s, v) for s, v in ENERGY_SAMPLES], at=0)

    body = get(
        client,
        f"/api/v1/gpus/{REFERENCE_UUID}/telemetry/aggregate?bucket=10m&metric={ENERGY}"
        f"&fn={fn}&start_time={START}&end_time={END}",
    )

    # First bucket: 100 -> 150. Second: 150 -> 40 is a reset (40 counted from 0), then +30.
    assert [(row["bucket_start"], row[fn]) for row in body["buckets"]] == [
        ("2026-01-01T12:00:00Z", 50 / per),
        ("2026-01-01T12:10:00Z", 70 / per),
    ]
    assert [row["count"] for row in body["buckets"]] == [2, 2]


def test_a_hosts_counter_increase_sums_its_devices_each_counted_alone(client: Client) -> None:
    commit(
        [line(REFERENCE_UUID, "0", ENERGY, s, v) for s, v in ENERGY_SAMPLES]
        + [line(OTHER_UUID, "1", ENERGY, s, v) for s, v in ((0, 5000.0), (300, 5010.0))],
        at=0,
    )

    body = get(
        client,
        f"/api/v1/hosts/{HOST}/aggregate?bucket=1h&metric={ENERGY}&fn=delta"
        f"&start_time={START}&end_time={END}",
    )

    # 50 + 40 + 30 on one GPU, 10 on the other: never the jump from one GPU's value to another's.
    assert [row["delta"] for row in body["buckets"]] == [130.0]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("fn=rate", "fn"),
        ("fn=delta&metric=DCGM_FI_DEV_GPU_TEMP", "metric"),
        ("fn=delta&metric=DCGM_FI_DEV_XID_ERRORS", "metric"),
        ("fn=sum&metric=" + ENERGY, "fn"),
    ],
)
def test_fn_without_a_metric_or_on_a_gauge_is_a_400_naming_it(
    client: Client, query: str, named: str
) -> None:
    commit(
        [
            line(REFERENCE_UUID, "0", metric, 0, 1.0)
            for metric in (ENERGY, "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_XID_ERRORS")
        ],
        at=0,
    )

    for url in (
        f"/api/v1/gpus/{REFERENCE_UUID}/telemetry/aggregate?bucket=1m&{query}",
        f"/api/v1/hosts/{HOST}/aggregate?bucket=1m&{query}",
    ):
        response = client.get(url)
        assert response.status_code == 400, url
        assert named in response.json(), response.json()
