"""A series' label set, as dcgm-exporter writes it, mapped to the device and workload it names.

One mapping for every path that receives labels rather than CSV columns (scraped exposition
pages now, Prometheus remote write later), so a series means the same device whichever way it
arrived:

- ``UUID`` is the GPU's uuid, ``gpu`` its index, ``device``, ``modelName`` and ``Hostname`` its
  other fields; ``GPU_I_ID`` and ``GPU_I_PROFILE`` make the series a MIG instance of that GPU
  (dcgm-exporter labels an instance with its parent's uuid);
- ``container``, ``namespace`` and ``pod`` are the workload (empty strings: none);
- per-sample labels (``ingest.dcgm.PER_SAMPLE_LABELS``: ``__name__``, Prometheus's
  ``exported_*`` copies of workload labels) and, when the caller drops them, Prometheus's
  ``job``/``instance`` are no part of the GPU;
- every other label (``pci_bus_id``, ``DCGM_FI_DRIVER_VERSION``, pod labels the exporter adds
  when pod-label export is on, ...) is a GPU label.

A device's API id is its uuid, or ``<uuid>:<GPU instance id>`` for a MIG instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ingest.dcgm import (
    DEVICE_ID_SEPARATOR,
    PER_SAMPLE_LABELS,
    DeviceKey,
    GpuFields,
    RowError,
    gpu_fields,
)

UUID_LABELS: Final = ("UUID", "uuid")  # "uuid" in dcgm-exporter's 1.x-compatible names
# Labels that are a device's or workload's fields rather than GPU labels.
FIELD_LABELS: Final = frozenset(
    {"gpu", "device", "modelName", "Hostname", "container", "namespace", "pod"}
    | {"GPU_I_ID", "GPU_I_PROFILE", *UUID_LABELS}
)
PUSH_LABELS: Final = frozenset({"job", "instance"})


def gpu_from_labels(labels: Mapping[str, str], *, keep_job_and_instance: bool = True) -> GpuFields:
    """The device, GPU fields, GPU labels and workload a series' labels name.

    Raises ``RowError`` (the series' samples are rejected with its message) when the labels
    name no uuid or no index, or a field that is not valid (an index that is not a number, ...).
    """
    uuid = next((labels[name] for name in UUID_LABELS if name in labels), "")
    if not uuid:
        raise RowError("the series has no UUID label")
    if "gpu" not in labels:
        raise RowError("the series has no gpu label")
    dropped = FIELD_LABELS | PER_SAMPLE_LABELS
    if not keep_job_and_instance:
        dropped |= PUSH_LABELS
    return gpu_fields(
        uuid=uuid,
        gpu_index=labels["gpu"],
        device=labels.get("device", ""),
        model=labels.get("modelName", ""),
        hostname=labels.get("Hostname", ""),
        namespace=labels.get("namespace", ""),
        pod=labels.get("pod", ""),
        container=labels.get("container", ""),
        gpu_instance_id=labels.get("GPU_I_ID", ""),
        gpu_instance_profile=labels.get("GPU_I_PROFILE", ""),
        labels=tuple(sorted(item for item in labels.items() if item[0] not in dropped)),
    )


def device_id(key: DeviceKey) -> str:
    """The API id of a device: its uuid, or ``<uuid>:<GPU instance id>``."""
    uuid, instance = key
    return uuid if instance is None else f"{uuid}{DEVICE_ID_SEPARATOR}{instance}"


def device_key(device: str) -> DeviceKey | None:
    """The (uuid, GPU instance id) an API id names, or None if it cannot name a device."""
    uuid, separator, instance = device.partition(DEVICE_ID_SEPARATOR)
    if not separator:
        return (uuid, None)
    if not instance.isascii() or not instance.isdigit() or len(instance) > 5:
        return None
    return (uuid, int(instance))
