"""The one mapping from a series' labels to its device, GPU fields, GPU labels and workload."""

from __future__ import annotations

import pytest

from ingest.dcgm import RowError
from ingest.devices import device_id, device_key, gpu_from_labels

EXPORTER_LABELS = {
    "gpu": "0",
    "UUID": "GPU-3431b6e1-96c2-f8f5-b8a6-24f2a1d9c660",
    "pci_bus_id": "00000000:07:00.0",
    "device": "nvidia0",
    "modelName": "NVIDIA A100-SXM4-40GB",
    "GPU_I_PROFILE": "1g.5gb",
    "GPU_I_ID": "13",
    "Hostname": "dgx-a100-04",
    "DCGM_FI_DRIVER_VERSION": "535.129.03",
    "container": "",
    "namespace": "",
    "pod": "",
}
# What Prometheus adds to every series it stores or forwards.
PROMETHEUS_LABELS = {
    "__name__": "DCGM_FI_DEV_FB_USED",
    "job": "dcgm",
    "instance": "node:9400",
    "exported_pod": "train-0",
}


def test_a_mig_series_names_the_instance_of_its_parents_uuid() -> None:
    gpu = gpu_from_labels(EXPORTER_LABELS)

    assert gpu.device_key == ("GPU-3431b6e1-96c2-f8f5-b8a6-24f2a1d9c660", 13)
    assert (gpu.gpu_index, gpu.device, gpu.model, gpu.hostname, gpu.gpu_instance_profile) == (
        0,
        "nvidia0",
        "NVIDIA A100-SXM4-40GB",
        "dgx-a100-04",
        "1g.5gb",
    )


def test_only_other_labels_become_gpu_labels_and_per_row_ones_never_do() -> None:
    gpu = gpu_from_labels({**EXPORTER_LABELS, **PROMETHEUS_LABELS})

    assert dict(gpu.labels or ()) == {
        "DCGM_FI_DRIVER_VERSION": "535.129.03",
        "pci_bus_id": "00000000:07:00.0",
        "job": "dcgm",
        "instance": "node:9400",
    }


def test_job_and_instance_are_dropped_when_the_caller_asks() -> None:
    gpu = gpu_from_labels({**EXPORTER_LABELS, **PROMETHEUS_LABELS}, keep_job_and_instance=False)

    assert dict(gpu.labels or ()).keys() == {"DCGM_FI_DRIVER_VERSION", "pci_bus_id"}


def test_empty_workload_labels_mean_no_workload_and_set_ones_name_it() -> None:
    idle = gpu_from_labels(EXPORTER_LABELS)
    busy = gpu_from_labels(
        {**EXPORTER_LABELS, "namespace": "ml", "pod": "train-0", "container": "t"}
    )

    assert (idle.namespace, idle.pod, idle.container) == ("", "", "")
    assert (busy.namespace, busy.pod, busy.container) == ("ml", "train-0", "t")


def test_a_whole_gpu_has_no_instance() -> None:
    labels = {k: v for k, v in EXPORTER_LABELS.items() if not k.startswith("GPU_I_")}

    assert gpu_from_labels(labels).device_key == (EXPORTER_LABELS["UUID"], None)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"UUID": ""}, "the series has no UUID label"),
        ({"UUID": "GPU-1:2"}, "separates a GPU from its MIG instance"),
        ({"gpu": "zero"}, "gpu_id 'zero' is not an integer"),
        ({"GPU_I_ID": "x"}, "gpu_instance_id 'x' is not an integer"),
        ({"GPU_I_ID": "99999"}, "gpu_instance_id 99999 is out of range"),
        ({"GPU_I_PROFILE": "p" * 40}, "gpu_instance_profile is longer than 32 characters"),
    ],
)
def test_labels_that_name_no_valid_device_are_refused_with_the_reason(
    change: dict[str, str], reason: str
) -> None:
    with pytest.raises(RowError, match=reason):
        gpu_from_labels({**EXPORTER_LABELS, **change})


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("GPU-5fd4f087", ("GPU-5fd4f087", None)),
        ("GPU-5fd4f087:13", ("GPU-5fd4f087", 13)),
        ("GPU-5fd4f087:x", None),
        ("GPU-5fd4f087:", None),
        ("GPU-5fd4f087:١٣", None),  # digits, but not ASCII ones
    ],
)
def test_an_api_id_names_a_gpu_or_a_mig_instance(
    text: str, key: tuple[str, int | None] | None
) -> None:
    assert device_key(text) == key
    if key is not None:
        assert device_id(key) == text
