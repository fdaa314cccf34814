"""DCGM CSV lines for parser tests: the reference export's first row, quoted as exports quote
every field, with any field replaced."""

from __future__ import annotations

import csv
import io

from tests.support.reference import REFERENCE_COLUMNS, REFERENCE_UUID

# The labels_raw pairs of the reference export's first row.
FIRST_LABELS = {
    "DCGM_FI_DRIVER_VERSION": "535.129.03",
    "Hostname": "mtv5-dgx1-hgpu-031",
    "UUID": REFERENCE_UUID,
    "__name__": "DCGM_FI_DEV_GPU_UTIL",
    "device": "nvidia0",
    "gpu": "0",
    "instance": "mtv5-dgx1-hgpu-031:9400",
    "job": "dgx_dcgm_exporter",
    "modelName": "NVIDIA H100 80GB HBM3",
}
GOOD_FIELDS = {
    "timestamp": "2025-07-18T20:42:34Z",
    "metric_name": "DCGM_FI_DEV_GPU_UTIL",
    "gpu_id": "0",
    "device": "nvidia0",
    "uuid": REFERENCE_UUID,
    "modelName": "NVIDIA H100 80GB HBM3",
    "Hostname": "mtv5-dgx1-hgpu-031",
    "container": "",
    "pod": "",
    "namespace": "",
    "value": "42",
    "labels_raw": ",".join(f'{key}="{value}"' for key, value in FIRST_LABELS.items()),
}


def csv_line(fields: list[str] | tuple[str, ...]) -> bytes:
    """One line quoted the way DCGM exports quote every field, without its newline."""
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="").writerow(fields)
    return buffer.getvalue().encode("utf-8")


def row_line(columns: tuple[str, ...] = REFERENCE_COLUMNS, **overrides: str) -> bytes:
    """A valid data line in ``columns`` order, with some fields replaced."""
    fields = {**GOOD_FIELDS, **overrides}
    return csv_line([fields[name] for name in columns])
