"""``POST /api/v1/write``: a remote write batch is recorded before the 204, committed exactly once
at its samples' own times, and every kind of bad input is a 4xx or a rejected row with its
reason, never a 500; a byte-identical retry stores nothing twice; a full collect queue or a
lost database is a 503 with Retry-After."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import pytest
import redis
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.fixtures import Settings

from api.models import ApiToken
from ingest import collector, faults, push
from ingest.models import Gpu, IngestedChunk, PushChunk, RejectedRow, Sample, Tally
from telemetry_project.routing import COLLECT_QUEUE
from tests.support.push import (
    collect_stored,
    post_remote_write,
    remote_write,
    start_web,
    stored_payloads,
    writing_client,
)
from tests.support.remote_write import STALE_MARKER, Labels, body_of, snappy
from tests.support.servers import free_port
from tests.support.workers import WorkerFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("broker")]

UUID = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
# A dcgm-exporter series as Prometheus stores it: empty labels dropped, job and instance added.
SCRAPED = {
    "gpu": "0",
    "UUID": UUID,
    "pci_bus_id": "00000000:07:00.0",
    "device": "nvidia0",
    "modelName": "NVIDIA H100 80GB HBM3",
    "Hostname": "mtv5-dgx1-hgpu-031",
    "DCGM_FI_DRIVER_VERSION": "535.129.03",
    "instance": "10.0.0.31:9400",
    "job": "dcgm",
}


def series(metric: str, **changes: str) -> Labels:
    return [("__name__", metric), *{**SCRAPED, **changes}.items()]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def one_temperature(value: float = 40.0) -> bytes:
    """A body of one sample of one GPU's temperature, taken now."""
    return body_of((series("DCGM_FI_DEV_GPU_TEMP"), [(now_ms(), value)]))


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@pytest.fixture
def writer() -> tuple[Client, ApiToken]:
    return writing_client()


def stored_values() -> list[tuple[str, datetime, float]]:
    return list(
        Sample.objects.order_by("metric__name", "timestamp").values_list(
            "metric__name", "timestamp", "value"
        )
    )


def rejections() -> list[tuple[int, str]]:
    return sorted(RejectedRow.objects.values_list("line_number", "reason"))


# --- Recorded, then committed -------------------------------------------------------------


def test_a_batch_is_stored_at_its_own_times_once_committed(
    writer: tuple[Client, ApiToken], broker: redis.Redis
) -> None:
    client, token = writer
    start = now_ms() - 60_000
    temperatures = [(start + i * 15_000, 40.0 + i) for i in range(4)]
    power = [(start, 301.5), (start + 15_000, 299.25)]
    body = body_of(
        (series("DCGM_FI_DEV_GPU_TEMP"), temperatures), (series("DCGM_FI_DEV_POWER_USAGE"), power)
    )

    response = remote_write(client, body)

    assert response.status_code == 204, response.content
    assert response.content == b""
    [part] = PushChunk.objects.all()
    assert part.chunk_id == push.part_id(token.pk, push.body_digest(body), 0)
    assert (part.token_id, part.format, part.publish_count) == (token.pk, "remote-write", 1)
    assert broker.llen(COLLECT_QUEUE) == 1  # published after the commit
    assert Sample.objects.count() == 0  # nothing is stored before a collector commits it

    [result] = collect_stored()

    assert (result.outcome, result.rows, result.rejected) == ("committed", 6, 0)
    assert stored_values() == [
        ("DCGM_FI_DEV_GPU_TEMP", at(ms), value) for ms, value in temperatures
    ] + [("DCGM_FI_DEV_POWER_USAGE", at(ms), value) for ms, value in power]
    assert not PushChunk.objects.exists()  # deleted in the transaction of the ledger row
    assert IngestedChunk.objects.get().chunk_id == part.chunk_id


def test_the_gpu_is_mapped_from_the_labels_as_for_exporter_pages(
    writer: tuple[Client, ApiToken],
) -> None:
    mig = series("DCGM_FI_PROF_GR_ENGINE_ACTIVE", GPU_I_ID="3", GPU_I_PROFILE="1g.10gb")
    workload = series("DCGM_FI_DEV_GPU_UTIL", namespace="ml", pod="trainer-0", container="main")
    body = body_of((mig, [(now_ms(), 0.5)]), (workload, [(now_ms(), 97.0)]))
    assert remote_write(writer[0], body).status_code == 204
    collect_stored()

    gpu = Gpu.objects.get(gpu_instance_id__isnull=True)
    instance = Gpu.objects.get(gpu_instance_id=3)
    assert (gpu.uuid, gpu.hostname, gpu.model_name, gpu.device) == (
        UUID, "mtv5-dgx1-hgpu-031", "NVIDIA H100 80GB HBM3", "nvidia0",
    )  # fmt: skip
    assert gpu.labels == {"pci_bus_id": "00000000:07:00.0", "DCGM_FI_DRIVER_VERSION": "535.129.03"}
    assert (instance.parent_id, instance.gpu_instance_profile) == (gpu.pk, "1g.10gb")
    sample = Sample.objects.get(gpu=gpu)
    assert sample.workload is not None
    assert (sample.workload.namespace, sample.workload.pod) == ("ml", "trainer-0")


def test_job_and_instance_become_gpu_labels_only_when_the_setting_says_so(
    writer: tuple[Client, ApiToken], settings: Settings
) -> None:
    settings.PUSH_KEEP_JOB_INSTANCE_LABELS = True
    assert remote_write(writer[0], body_of((series("DCGM_FI_DEV_GPU_TEMP"), [(now_ms(), 1.0)])))
    collect_stored()
    labels = Gpu.objects.get().labels
    assert (labels["job"], labels["instance"]) == ("dcgm", "10.0.0.31:9400")


def test_a_large_batch_is_split_into_parts_of_ten_thousand_samples_in_the_order_sent(
    writer: tuple[Client, ApiToken],
) -> None:
    client, token = writer
    start = now_ms() - 3_600_000
    long_series = [(start + i * 100, float(i)) for i in range(14_000)]
    short = [(start, 1.0), (start + 100, 2.0)]
    other = [(start + i * 100, float(i)) for i in range(9_000)]
    body = body_of(
        (series("DCGM_FI_DEV_GPU_TEMP"), long_series),
        (series("DCGM_FI_DEV_POWER_USAGE"), short),
        (series("DCGM_FI_DEV_GPU_UTIL"), other),
    )
    assert remote_write(client, body).status_code == 204

    digest = push.body_digest(body)
    payloads = stored_payloads()
    assert [p["id"] for p in payloads] == [push.part_id(token.pk, digest, n) for n in range(3)]
    assert [(p["line"], p["lines"]) for p in payloads] == [(1, 10_000), (10_001, 10_000),
                                                            (20_001, 3_002)]  # fmt: skip
    results = collect_stored()
    assert sum(result.rows for result in results) == 23_002
    assert Sample.objects.count() == 23_002

    # The same body makes the same parts: a retry of it is recognised part by part.
    assert remote_write(client, body).status_code == 204
    assert not PushChunk.objects.exists()
    assert IngestedChunk.objects.count() == 3


# --- A retry stores nothing twice -----------------------------------------------------------


def test_a_byte_identical_retry_before_the_commit_adds_nothing(
    writer: tuple[Client, ApiToken],
) -> None:
    client, _ = writer
    body = one_temperature()
    for _ in range(3):
        assert remote_write(client, body).status_code == 204
    assert PushChunk.objects.count() == 1
    [result] = collect_stored()
    assert result.rows == 1


def test_a_byte_identical_retry_after_the_commit_stores_nothing(
    writer: tuple[Client, ApiToken], broker: redis.Redis
) -> None:
    client, _ = writer
    body = one_temperature()
    remote_write(client, body)
    collect_stored()
    broker.delete(COLLECT_QUEUE)

    assert remote_write(client, body).status_code == 204

    assert not PushChunk.objects.exists()
    assert broker.llen(COLLECT_QUEUE) == 0  # the ledger holds it: nothing to publish
    assert Sample.objects.count() == 1


def test_a_retry_stored_again_as_the_first_copy_commits_is_deleted_by_its_delivery(
    writer: tuple[Client, ApiToken],
) -> None:
    client, _ = writer
    body = one_temperature()
    remote_write(client, body)
    [payload] = stored_payloads()
    collect_stored()
    # The retry raced the commit: it found no ledger row and stored its part again.
    PushChunk.objects.create(
        chunk_id=payload["id"], token_id=1, format="remote-write", payload=b"",
        received_at=at(now_ms()), last_published_at=at(now_ms()),
    )  # fmt: skip

    assert collector.collect(payload).outcome == "duplicate"
    assert not PushChunk.objects.exists()
    assert Sample.objects.count() == 1


def test_the_same_body_from_another_token_is_another_push(writer: tuple[Client, ApiToken]) -> None:
    body = one_temperature()
    other, _ = writing_client("prometheus-replica")
    remote_write(writer[0], body)
    remote_write(other, body)
    assert PushChunk.objects.count() == 2


# --- Rejected rows, ignored series, staleness markers ----------------------------------------


def test_bad_samples_are_rejected_rows_with_their_reasons_and_good_ones_are_stored(
    writer: tuple[Client, ApiToken], settings: Settings
) -> None:
    settings.RETENTION_DAYS = 30
    now = now_ms()
    old = now - 31 * 86_400_000
    ahead = now + 11 * 60_000
    body = body_of(
        (series("DCGM_FI_DEV_GPU_TEMP"), [(now - 1000, 40.0), (old, 41.0), (ahead, 42.0)]),
        (series("DCGM_FI_DEV_POWER_USAGE"), [(now, math.nan), (now + 1, math.inf),
                                              (now + 2, -math.inf), (now + 3, 250.0)]),
        (series("DCGM_FI_DEV_FB_USED", gpu="not-a-number"), [(now, 1.0)]),
        ([("UUID", UUID), ("gpu", "0")], [(now, 2.0)]),
        (series("DCGM_FI_DEV_XID_ERRORS"), [(now, 9223372036854775794.0)]),
    )  # fmt: skip
    assert remote_write(writer[0], body).status_code == 204
    [result] = collect_stored()

    assert (result.rows, result.rejected) == (2, 8)
    assert [value for _, _, value in stored_values()] == [40.0, 250.0]
    reasons = dict(rejections())
    assert reasons[2] == "timestamp is older than the 30-day retention"
    assert reasons[3].endswith("is more than 10 minutes ahead of the time the request arrived")
    assert (reasons[4], reasons[5], reasons[6]) == (
        "value nan is not finite", "value inf is not finite", "value -inf is not finite",
    )  # fmt: skip
    assert reasons[8].startswith("gpu_id")  # the index names the field
    assert reasons[9] == "no __name__ label: the series has no metric name"
    assert reasons[10].startswith("DCGM blank (int64 blank sentinel rounded to a double")
    text = RejectedRow.objects.get(line_number=4).raw_line
    assert text.startswith('DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-5fd4f087')
    assert text.endswith(f"}} NaN {now}")


def test_labels_with_odd_characters_are_kept_and_shown_escaped(
    writer: tuple[Client, ApiToken],
) -> None:
    odd = {"note": 'say "hi"\\n and a real\nnewline', "team": "\u00e9quipe-\u65e5\u672c-\U0001f680"}
    good = series("DCGM_FI_DEV_GPU_TEMP", **odd)
    bad = series("DCGM_FI_DEV_GPU_TEMP", UUID="", **odd)
    assert remote_write(writer[0], body_of((good, [(now_ms(), 1.0)]), (bad, [(now_ms(), 2.0)])))
    collect_stored()

    assert {k: v for k, v in Gpu.objects.get().labels.items() if k in odd} == odd
    text = RejectedRow.objects.get().raw_line
    assert 'note="say \\"hi\\"\\\\n and a real\\nnewline"' in text
    assert 'team="\u00e9quipe-\u65e5\u672c-\U0001f680"' in text


def test_other_series_and_staleness_markers_are_counted_never_stored_or_rejected(
    writer: tuple[Client, ApiToken],
) -> None:
    client, _ = writer
    now = now_ms()
    body = body_of(
        ([("__name__", "up"), ("job", "dcgm")], [(now, 1.0), (now + 1, 1.0)]),
        (series("DCGM_FI_DEV_GPU_TEMP"), [(now - 1000, 40.0), (now, STALE_MARKER)]),
        (series("DCGM_FI_DEV_GPU_UTIL"), [(now, STALE_MARKER)]),
        ([("__name__", "go_goroutines")], [(now, 12.0)]),
    )
    assert remote_write(client, body).status_code == 204
    [payload] = stored_payloads()
    assert payload["lines"] == 1  # only the DCGM sample is stored for a collector
    collect_stored()
    remote_write(client, body)  # a retry counts nothing again

    assert Sample.objects.count() == 1
    assert not RejectedRow.objects.exists()
    stats = client.get("/api/v1/stats").json()
    assert (stats["push_ignored_samples"], stats["push_stale_markers"]) == (3, 2)
    assert pushed_series_on_metrics(client) == {
        "telemetry_rows_committed": 1.0,
        "telemetry_ignored_samples": 3.0,
        "telemetry_stale_markers": 2.0,
        "telemetry_chunks_committed": 1.0,
        "telemetry_duplicate_deliveries": 0.0,
        "telemetry_rows_rejected": 0.0,
        "telemetry_dead_letters": 0.0,
        "telemetry_scrape_slots_missed": 0.0,  # every source has every counter, at 0 if unused
    }


def pushed_series_on_metrics(client: Client) -> dict[str, float]:
    """The per-source counters /metrics shows under source="push"."""
    page = client.get("/metrics").content.decode()
    return {
        family.name: sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.labels.get("source") == "push" and sample.name.endswith("_total")
    }


def test_a_batch_of_staleness_markers_alone_is_counted_once_and_stores_nothing(
    writer: tuple[Client, ApiToken],
) -> None:
    client, token = writer
    body = body_of((series("DCGM_FI_DEV_GPU_TEMP"), [(now_ms(), STALE_MARKER)]))
    for _ in range(2):
        assert remote_write(client, body).status_code == 204
    assert not PushChunk.objects.exists()
    assert IngestedChunk.objects.get().chunk_id == push.part_id(token.pk, push.body_digest(body), 0)
    assert Tally.totals()[push.STALE_MARKERS] == 1


def test_a_request_of_metadata_alone_is_204_and_records_nothing(
    writer: tuple[Client, ApiToken], broker: redis.Redis
) -> None:
    response = remote_write(writer[0], body_of(metadata=3))
    assert response.status_code == 204
    assert not PushChunk.objects.exists()
    assert not IngestedChunk.objects.exists()
    assert broker.llen(COLLECT_QUEUE) == 0


# --- Refused requests ----------------------------------------------------------------------


def test_without_a_token_it_is_401_and_with_a_read_only_token_403() -> None:
    body = one_temperature()
    anonymous = Client()
    reader = Client(
        HTTP_AUTHORIZATION=f"Token {ApiToken.issue('grafana', can_write=False).new_key}"
    )
    assert remote_write(anonymous, body).status_code == 401
    assert remote_write(reader, body).status_code == 403
    assert not PushChunk.objects.exists()


REFERENCE = body_of(
    (series("DCGM_FI_DEV_GPU_TEMP"), [(1_752_846_154_000 + i, 1.0) for i in range(50)])
)


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (REFERENCE[: len(REFERENCE) // 2], 400, "The snappy block is corrupt"),
        (snappy(b"garbage, not protobuf"), 400, "The body is not a remote write WriteRequest"),
        (bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x07]), 413, "The snappy block declares 2147483647 bytes"),
    ],
    ids=["cut-in-half", "snappy-of-garbage", "two-gigabyte-claim"],
)
def test_a_body_that_is_not_a_write_request_is_refused_and_records_nothing(
    writer: tuple[Client, ApiToken], body: bytes, status: int, detail: str
) -> None:
    response = remote_write(writer[0], body)
    assert response.status_code == status
    assert response.json()["detail"].startswith(detail)
    assert not PushChunk.objects.exists()


def test_a_full_collect_queue_is_a_503_with_retry_after_before_the_body_is_read(
    writer: tuple[Client, ApiToken], broker: redis.Redis, settings: Settings
) -> None:
    settings.COLLECT_QUEUE_MAX_DEPTH = 2
    broker.rpush(COLLECT_QUEUE, b"a waiting chunk", b"another")
    body = one_temperature()

    response = remote_write(writer[0], body)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json() == {
        "detail": "The collect queue holds 2 chunks, its bound is 2: send again later."
    }
    assert not PushChunk.objects.exists()
    broker.lpop(COLLECT_QUEUE)
    assert remote_write(writer[0], body).status_code == 204


def test_a_database_lost_while_recording_is_a_503_and_the_retry_records_it(
    writer: tuple[Client, ApiToken], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faults, "_passes", {})
    monkeypatch.setenv("TELEMETRY_FAULT", faults.PUSH_RECORD)
    body = one_temperature()

    response = remote_write(writer[0], body)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["detail"].startswith(
        "The pipeline cannot record data now (OperationalError)"
    )
    assert not PushChunk.objects.exists()
    assert remote_write(writer[0], body).status_code == 204
    assert PushChunk.objects.count() == 1


@pytest.mark.integration
def test_a_broker_out_of_reach_is_a_503_from_a_real_web_process(
    workers: WorkerFactory, pipeline_env: dict[str, str]
) -> None:
    key = ApiToken.issue("prometheus", can_write=True).new_key
    port = free_port()
    start_web(workers, port, {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})

    answer = post_remote_write(port, key, one_temperature())

    assert (answer.status, answer.headers["Retry-After"]) == (503, "5")
    assert not PushChunk.objects.exists()


@hypothesis_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        st.binary(max_size=512),
        st.binary(max_size=512).map(snappy),
        st.integers(1, len(REFERENCE)).map(lambda cut: REFERENCE[:cut]),
    ),
    encoding=st.sampled_from(["snappy", "gzip", ""]),
)
def test_no_body_is_ever_a_500(writer: tuple[Client, ApiToken], body: bytes, encoding: str) -> None:
    response = remote_write(writer[0], body, **{"content-encoding": encoding})
    assert response.status_code in {204, 400, 413, 415}, response.content
