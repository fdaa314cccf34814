"""Exporter pages committed through the collector, and MIG instances as devices of their own:
stored apart from their parent, addressed as <uuid>:<instance> everywhere the API takes a
uuid, counted as part of one physical GPU."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from ingest import collector
from ingest.chunks import Chunk, ChunkFormat
from ingest.dcgm import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from ingest.models import DeadLetter, Gpu, IngestedChunk, Metric, RejectedRow, Sample
from tests.support.dcgm_lines import csv_line
from tests.support.exporter import FIXTURES, MIG_PARENT, NOT_SUPPORTED, OTHER_GPU

pytestmark = pytest.mark.django_db(transaction=True)

INSTANCE = f"{MIG_PARENT}:13"


def page_chunk(
    data: bytes,
    *,
    chunk_id: str = "scrape:1:1",
    scraped_at: datetime | None = None,
    source_times: bool = False,
    chunk_format: ChunkFormat = ChunkFormat.EXPOSITION,
) -> Chunk:
    scraped_at = scraped_at or timezone.now().replace(microsecond=0)
    return Chunk(
        chunk_id=chunk_id,
        source_id=1,
        first_line=1,
        line_count=data.count(b"\n"),
        columns=(),
        stamp=None if source_times else scraped_at,
        data=data,
        format=chunk_format,
        scraped_at=scraped_at,
    )


def commit_fixture(
    name: str = "dcgm-exporter-3.3-mig.txt", **options: object
) -> collector.CollectResult:
    chunk_format = (
        ChunkFormat.OPENMETRICS if name.endswith("openmetrics.txt") else ChunkFormat.EXPOSITION
    )
    chunk = page_chunk((FIXTURES / name).read_bytes(), chunk_format=chunk_format, **options)  # type: ignore[arg-type]
    return collector.collect(chunk.to_payload())


# --- the collector's commit path ------------------------------------------------------------


def test_a_page_commits_its_samples_once_and_rejects_the_blank_with_its_reason() -> None:
    first = commit_fixture()
    again = commit_fixture()

    assert (first.outcome, first.rows, first.rejected) == ("committed", 26, 1)
    assert again.outcome == "duplicate"
    assert Sample.objects.count() == 26
    rejected = RejectedRow.objects.get()
    assert (rejected.line_number, rejected.reason, rejected.chunk_id) == (
        11,
        NOT_SUPPORTED,
        "scrape:1:1",
    )
    assert "9223372036854775794" in rejected.raw_line
    assert IngestedChunk.objects.get().rows_committed == 26


def test_the_mig_instance_is_stored_apart_from_its_parent() -> None:
    commit_fixture()

    parent = Gpu.objects.get(uuid=MIG_PARENT, gpu_instance_id=None)
    instance = Gpu.objects.get(uuid=MIG_PARENT, gpu_instance_id=13)
    assert (instance.parent_id, instance.gpu_instance_profile, instance.device_id) == (
        parent.pk,
        "1g.5gb",
        INSTANCE,
    )
    fb_used = dict(
        Sample.objects.filter(metric__name="DCGM_FI_DEV_FB_USED").values_list("gpu_id", "value")
    )
    assert (fb_used[parent.pk], fb_used[instance.pk]) == (19624.0, 576.0)
    assert (parent.sample_count, instance.sample_count) == (11, 3)
    assert parent.labels == {
        "DCGM_FI_DRIVER_VERSION": "535.129.03",
        "pci_bus_id": "00000000:07:00.0",
    }


def test_an_instance_seen_before_its_gpu_creates_the_parent() -> None:
    line = (
        f'DCGM_FI_DEV_FB_USED{{gpu="0",UUID="{MIG_PARENT}",device="nvidia0",'
        'modelName="NVIDIA A100-SXM4-40GB",GPU_I_PROFILE="3g.20gb",GPU_I_ID="2",'
        'Hostname="dgx-a100-04"} 1024\n'
    )

    collector.collect(page_chunk(line.encode()).to_payload())

    instance = Gpu.objects.get(gpu_instance_id=2)
    assert instance.parent is not None
    assert (
        instance.parent.uuid,
        instance.parent.gpu_instance_id,
        instance.parent.sample_count,
    ) == (
        MIG_PARENT,
        None,
        0,
    )


def test_metrics_are_created_with_the_field_tables_unit_and_kind_and_the_pages_help() -> None:
    page = (
        (FIXTURES / "dcgm-exporter-3.3-mig.txt").read_bytes()
        + b"# HELP DCGM_FI_DEV_NEW_FIELD Time spent waiting (in ns).\n"
        + b"# TYPE DCGM_FI_DEV_NEW_FIELD counter\n"
        + f'DCGM_FI_DEV_NEW_FIELD{{gpu="1",UUID="{OTHER_GPU}"}} 12\n'.encode()
    )

    collector.collect(page_chunk(page).to_payload())

    metrics = {m.name: (m.unit, m.kind, m.help) for m in Metric.objects.all()}
    assert metrics["DCGM_FI_DEV_POWER_USAGE"] == ("W", "gauge", "Power draw (in W).")
    assert metrics["DCGM_FI_DEV_XID_ERRORS"][:2] == ("", "gauge")
    assert metrics["DCGM_FI_DEV_NEW_FIELD"] == ("ns", "counter", "Time spent waiting (in ns).")


def test_an_openmetrics_page_in_source_mode_keeps_its_own_times(settings: Settings) -> None:
    settings.RETENTION_DAYS = 0  # the page's own times are from 2025
    scraped_at = datetime(2026, 3, 2, 10, 0, 10, tzinfo=UTC)

    result = commit_fixture(
        "dcgm-exporter-openmetrics.txt", scraped_at=scraped_at, source_times=True
    )

    assert (result.rows, result.rejected) == (3, 1)
    times = dict(Sample.objects.values_list("metric__name", "timestamp"))
    assert times["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] == datetime(
        2025, 7, 18, 20, 42, 34, 250000, tzinfo=UTC
    )
    assert times["DCGM_FI_DEV_PCIE_REPLAY_COUNTER"] == scraped_at


def test_a_page_the_parser_refuses_becomes_a_dead_letter_and_writes_nothing() -> None:
    chunk = page_chunk(
        b'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-1"} 40\n', chunk_format=ChunkFormat.OPENMETRICS
    )

    result = collector.collect(chunk.to_payload())

    assert result.outcome == "dead-letter"
    assert "Missing # EOF" in DeadLetter.objects.get().reason
    assert not Sample.objects.exists()


# --- CSV exports naming instances -----------------------------------------------------------


def csv_chunk(header: tuple[str, ...], rows: list[dict[str, str]]) -> Chunk:
    data = b"".join(csv_line([row.get(name, "") for name in header]) + b"\n" for row in rows)
    return Chunk("csv:1", 1, 2, len(rows), header, timezone.now(), data)


def csv_row(value: str, **fields: str) -> dict[str, str]:
    base = {
        "timestamp": "2026-01-01T00:00:00Z",
        "metric_name": "DCGM_FI_DEV_FB_USED",
        "gpu_id": "0",
        "device": "nvidia0",
        "uuid": MIG_PARENT,
        "modelName": "NVIDIA A100-SXM4-40GB",
        "Hostname": "dgx-a100-04",
        "value": value,
    }
    return {**base, **fields}


def test_csv_instance_columns_name_instances_beside_the_whole_gpu() -> None:
    header = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    rows = [
        csv_row("19624"),
        csv_row("576", gpu_instance_id="13", gpu_instance_profile="1g.5gb"),
        csv_row("1200", gpu_instance_id="14", gpu_instance_profile="2g.10gb"),
    ]

    collector.collect(csv_chunk(header, rows).to_payload())

    values = dict(Sample.objects.values_list("gpu__gpu_instance_id", "value"))
    assert values == {None: 19624.0, 13: 576.0, 14: 1200.0}
    assert Gpu.objects.get(gpu_instance_id=14).gpu_instance_profile == "2g.10gb"


def test_csv_labels_raw_naming_an_instance_makes_it_a_device_of_its_own() -> None:
    header = (*REQUIRED_COLUMNS, "labels_raw")
    labels = f'UUID="{MIG_PARENT}",gpu="0",__name__="DCGM_FI_DEV_FB_USED",job="dcgm"'
    rows = [
        csv_row("19624", labels_raw=labels),
        csv_row("576", labels_raw=labels + ',GPU_I_ID="13",GPU_I_PROFILE="1g.5gb"'),
    ]

    collector.collect(csv_chunk(header, rows).to_payload())

    instance = Gpu.objects.get(gpu_instance_id=13)
    assert instance.gpu_instance_profile == "1g.5gb"
    assert "__name__" not in instance.labels
    assert instance.labels["job"] == Gpu.objects.get(gpu_instance_id=None).labels["job"] == "dcgm"
    assert Sample.objects.get(gpu=instance).value == 576.0


def test_a_uuid_is_unique_among_whole_gpus_and_an_instance_id_within_a_gpu() -> None:
    fields = {"gpu_index": 0, "device": "nvidia0", "model_name": "A100", "hostname": "h"}
    whole = Gpu.objects.create(uuid="GPU-1", **fields)
    Gpu.objects.create(uuid="GPU-1", gpu_instance_id=1, parent=whole, **fields)
    Gpu.objects.create(uuid="GPU-1", gpu_instance_id=2, parent=whole, **fields)

    for duplicate in ({}, {"gpu_instance_id": 1}):
        with pytest.raises(IntegrityError), transaction.atomic():
            Gpu.objects.create(uuid="GPU-1", **fields, **duplicate)


# --- the API ----------------------------------------------------------------------------------


@pytest.fixture
def api() -> Client:
    commit_fixture()
    return Client(raise_request_exception=False)


def get(api: Client, url: str) -> object:
    response = api.get(url)
    assert response.status_code == 200, (url, response.content[:300])
    return response.json()


def test_the_gpu_list_shows_an_instance_after_its_parent_with_parent_and_profile(
    api: Client,
) -> None:
    body = get(api, "/api/v1/gpus")

    devices = [
        (gpu["id"], gpu["uuid"], gpu["parent"], gpu["gpu_instance_id"], gpu["gpu_instance_profile"])
        for gpu in body["results"]  # type: ignore[index]
    ]
    assert devices == [
        (MIG_PARENT, MIG_PARENT, None, None, ""),
        (INSTANCE, MIG_PARENT, MIG_PARENT, 13, "1g.5gb"),
        (OTHER_GPU, OTHER_GPU, None, None, ""),
    ]
    assert get(api, f"/api/v1/gpus/{INSTANCE}")["gpu_instance_profile"] == "1g.5gb"  # type: ignore[index]


def test_an_instance_id_works_wherever_a_uuid_does(api: Client) -> None:
    telemetry = get(api, f"/api/v1/gpus/{INSTANCE}/telemetry")
    latest = get(api, f"/api/v1/gpus/{INSTANCE}/latest")
    aggregate = get(api, f"/api/v1/gpus/{INSTANCE}/telemetry/aggregate?bucket=1h")

    instance_values = {
        "DCGM_FI_DEV_FB_FREE": 4287.0,
        "DCGM_FI_DEV_FB_USED": 576.0,
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE": 0.999882,
    }
    assert {s["metric"]: s["value"] for s in telemetry["results"]} == instance_values  # type: ignore[index]
    assert {s["metric"]: s["value"] for s in latest} == instance_values  # type: ignore[attr-defined]
    assert (aggregate["id"], aggregate["uuid"]) == (INSTANCE, MIG_PARENT)  # type: ignore[index]
    assert {b["metric"] for b in aggregate["buckets"]} == set(instance_values)  # type: ignore[index]
    parent_used = get(api, f"/api/v1/gpus/{MIG_PARENT}/telemetry?metric=DCGM_FI_DEV_FB_USED")
    assert [s["value"] for s in parent_used["results"]] == [19624.0]  # type: ignore[index]


@pytest.mark.parametrize("device", [f"{MIG_PARENT}:14", f"{MIG_PARENT}:x", f"{OTHER_GPU}:13"])
def test_an_instance_that_does_not_exist_is_404(api: Client, device: str) -> None:
    for suffix in ("", "/telemetry", "/latest", "/telemetry/aggregate?bucket=1h"):
        assert api.get(f"/api/v1/gpus/{device}{suffix}").status_code == 404


def test_stats_count_physical_gpus_and_hosts_count_them_too(api: Client) -> None:
    stats = get(api, "/api/v1/stats")
    hosts = get(api, "/api/v1/hosts")

    assert (stats["unique_gpus"], stats["unique_hosts"]) == (2, 1)  # type: ignore[index]
    assert hosts["results"][0]["gpu_count"] == 2  # type: ignore[index]


def test_the_metric_list_reports_units_and_kinds(api: Client) -> None:
    metrics = {m["name"]: m for m in get(api, "/api/v1/metrics")}  # type: ignore[attr-defined]

    assert (metrics["DCGM_FI_DEV_GPU_TEMP"]["unit"], metrics["DCGM_FI_DEV_GPU_TEMP"]["kind"]) == (
        "C",
        "gauge",
    )
    assert metrics["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"]["kind"] == "counter"
    assert metrics["DCGM_FI_DEV_FB_USED"]["sample_count"] == 3
