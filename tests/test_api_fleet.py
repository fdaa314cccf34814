"""GET /api/v1/fleet/latest over the reference export, streamed through the collector: the
read model the collector keeps gives what the sample table holds."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from ingest.models import Gpu, LatestValue, Metric, Sample, Workload
from tests.support.reference import REFERENCE_UUID

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reference_data")]

FLEET = "/api/v1/fleet/latest"
DEFAULT_METRICS = [
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_FB_USED",
]
# The reference export was taken in 2025: a day in seconds is far from enough to keep it fresh.
CENTURY_SECONDS = 100 * 365 * 86400


def fleet(client: Client, query: str = "") -> dict[str, Any]:
    response = client.get(f"{FLEET}?{query}")
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def newest_sample(gpu: Gpu, metric: str) -> tuple[str, float] | None:
    """The device's newest sample of ``metric``, read from the sample table itself."""
    sample = (
        Sample.objects.filter(gpu=gpu, metric__name=metric).order_by("-timestamp", "-id").first()
    )
    if sample is None:
        return None
    return sample.timestamp.isoformat().replace("+00:00", "Z"), sample.value


def test_the_fleet_lists_every_device_once_in_host_and_index_order(client: Client) -> None:
    body = fleet(client)

    devices = body["devices"]
    assert [device["id"] for device in devices] == [
        gpu.device_id
        for gpu in Gpu.objects.filter(sample_count__gt=0).order_by(
            "hostname", "gpu_index", "gpu_instance_id", "id"
        )
    ]
    assert (body["counts"]["devices"], body["counts"]["hosts"]) == (247, 31)
    assert [metric["name"] for metric in body["metrics"]] == DEFAULT_METRICS
    assert body["metrics"][1] == {"name": "DCGM_FI_DEV_GPU_TEMP", "unit": "C", "kind": "gauge"}
    assert all(list(device["values"]) == DEFAULT_METRICS for device in devices)


def test_each_value_is_the_devices_newest_sample_of_the_metric(client: Client) -> None:
    body = fleet(client, "metric=DCGM_FI_DEV_GPU_TEMP&metric=DCGM_FI_DEV_SM_CLOCK")
    gpus = {gpu.device_id: gpu for gpu in Gpu.objects.all()}

    for device in body["devices"]:
        for metric, shown in device["values"].items():
            newest = newest_sample(gpus[device["id"]], metric)
            expected = None if newest is None else {"timestamp": newest[0], "value": newest[1]}
            assert shown == expected, (device["id"], metric)
    assert LatestValue.objects.count() == 2470  # 247 GPUs x 10 metrics, one row each


def test_an_unknown_metric_is_a_400_naming_it(client: Client) -> None:
    response = client.get(f"{FLEET}?metric=DCGM_FI_DEV_GPU_TEMP&metric=NO_SUCH_METRIC")

    assert response.status_code == 400
    assert "NO_SUCH_METRIC" in response.json()["metric"][0]


def test_a_known_field_without_samples_is_null_on_every_device(client: Client) -> None:
    body = fleet(client, "metric=DCGM_FI_DEV_PCIE_REPLAY_COUNTER")

    assert body["metrics"] == [
        {"name": "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "unit": "", "kind": "counter"}
    ]
    assert {
        device["values"]["DCGM_FI_DEV_PCIE_REPLAY_COUNTER"] is None for device in body["devices"]
    } == {True}


def test_hostname_and_model_filter_by_exact_match(client: Client) -> None:
    gpu = Gpu.objects.get(uuid=REFERENCE_UUID)

    by_host = fleet(client, f"hostname={gpu.hostname}")["devices"]
    by_model = fleet(client, f"model={gpu.model_name}")["devices"]

    assert {device["hostname"] for device in by_host} == {gpu.hostname}
    assert len(by_host) == Gpu.objects.filter(hostname=gpu.hostname).count()
    assert {device["model_name"] for device in by_model} == {gpu.model_name}
    assert fleet(client, "hostname=no-such-host")["devices"] == []


def test_the_namespace_filter_reads_the_devices_newest_workload(client: Client) -> None:
    gpu = Gpu.objects.get(uuid=REFERENCE_UUID)
    workload = Workload.objects.create(namespace="training", pod="llm-0", container="main")
    Gpu.objects.filter(pk=gpu.pk).update(workload=workload)

    devices = fleet(client, "namespace=training")["devices"]

    assert [device["id"] for device in devices] == [REFERENCE_UUID]
    assert devices[0]["workload"] == {"namespace": "training", "pod": "llm-0", "container": "main"}
    assert fleet(client, "namespace=nobody")["devices"] == []


def test_old_devices_are_stale_and_neither_hot_nor_idle(client: Client) -> None:
    body = fleet(client)

    assert body["stale_after_seconds"] == 180
    assert body["counts"] == {"devices": 247, "hosts": 31, "hot": 0, "idle": 0, "stale": 247}


def test_fresh_devices_are_hot_or_idle_by_their_newest_temperature_and_utilisation(
    client: Client, settings: Settings
) -> None:
    settings.STALE_AFTER_SECONDS = CENTURY_SECONDS
    settings.FLEET_HOT_TEMPERATURE_C = 40
    settings.FLEET_IDLE_UTILISATION_PERCENT = 0
    temperature = Metric.objects.get(name="DCGM_FI_DEV_GPU_TEMP")
    utilisation = Metric.objects.get(name="DCGM_FI_DEV_GPU_UTIL")
    hot = set(
        LatestValue.objects.filter(metric=temperature, value__gte=40).values_list(
            "gpu_id", flat=True
        )
    )
    idle = set(
        LatestValue.objects.filter(metric=utilisation, value__lte=0).values_list(
            "gpu_id", flat=True
        )
    )

    # Hot and idle are decided even when neither metric is asked for.
    body = fleet(client, "metric=DCGM_FI_DEV_POWER_USAGE")

    assert 0 < len(hot) < 247
    assert 0 < len(idle) < 247
    ids = dict(Gpu.objects.values_list("uuid", "id"))
    assert {ids[device["uuid"]] for device in body["devices"] if device["hot"]} == hot
    assert {ids[device["uuid"]] for device in body["devices"] if device["idle"]} == idle
    assert body["counts"]["stale"] == 0
    assert body["thresholds"] == {"hot_temperature_c": 40, "idle_utilisation_percent": 0}
