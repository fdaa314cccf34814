"""The field table: every field dcgm-exporter ships and the bundled export uses is known,
with a unit, a DCGM type and a kind; units also come from HELP text."""

from __future__ import annotations

import csv

import pytest

from ingest.fields import FIELDS, dcgm_type, field, unit_from_help
from tests.support.reference import REFERENCE_CSV

# The fields of dcgm-exporter's etc/default-counters.csv and etc/dcp-metrics-included.csv,
# those it ships commented out included (the DCGM_FI_DRIVER_VERSION label excepted).
EXPORTER_FIELDS = [
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_DEV_MEM_CLOCK",
    "DCGM_FI_DEV_MEMORY_TEMP",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "DCGM_FI_DEV_PCIE_TX_THROUGHPUT",
    "DCGM_FI_DEV_PCIE_RX_THROUGHPUT",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_MEM_COPY_UTIL",
    "DCGM_FI_DEV_ENC_UTIL",
    "DCGM_FI_DEV_DEC_UTIL",
    "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_DEV_POWER_VIOLATION",
    "DCGM_FI_DEV_THERMAL_VIOLATION",
    "DCGM_FI_DEV_SYNC_BOOST_VIOLATION",
    "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION",
    "DCGM_FI_DEV_LOW_UTIL_VIOLATION",
    "DCGM_FI_DEV_RELIABILITY_VIOLATION",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_RESERVED",
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
    "DCGM_FI_DEV_RETIRED_SBE",
    "DCGM_FI_DEV_RETIRED_DBE",
    "DCGM_FI_DEV_RETIRED_PENDING",
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_L0",
    "DCGM_FI_DEV_VGPU_LICENSE_STATUS",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "DCGM_FI_PROF_SM_ACTIVE",
    "DCGM_FI_PROF_SM_OCCUPANCY",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    "DCGM_FI_PROF_DRAM_ACTIVE",
    "DCGM_FI_PROF_PIPE_FP64_ACTIVE",
    "DCGM_FI_PROF_PIPE_FP32_ACTIVE",
    "DCGM_FI_PROF_PIPE_FP16_ACTIVE",
    "DCGM_FI_PROF_PCIE_TX_BYTES",
    "DCGM_FI_PROF_PCIE_RX_BYTES",
]


def reference_fields() -> set[str]:
    with REFERENCE_CSV.open(newline="") as source:
        return {row["metric_name"] for row in csv.DictReader(source)}


def test_every_shipped_exporter_field_and_every_field_of_the_bundled_export_is_known() -> None:
    assert set(EXPORTER_FIELDS) | reference_fields() <= FIELDS.keys()


@pytest.mark.parametrize(
    ("name", "unit", "kind", "value_type"),
    [
        ("DCGM_FI_DEV_GPU_TEMP", "C", "gauge", "int32"),
        ("DCGM_FI_DEV_POWER_USAGE", "W", "gauge", "double"),
        ("DCGM_FI_DEV_SM_CLOCK", "MHz", "gauge", "int32"),
        ("DCGM_FI_DEV_FB_USED", "MiB", "gauge", "int64"),
        ("DCGM_FI_DEV_GPU_UTIL", "%", "gauge", "int32"),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "mJ", "counter", "int64"),
        ("DCGM_FI_DEV_XID_ERRORS", "", "gauge", "int64"),  # the last XID code, not a count
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "ratio", "gauge", "double"),
    ],
)
def test_a_field_has_its_unit_kind_and_dcgm_type(
    name: str, unit: str, kind: str, value_type: str
) -> None:
    known = field(name)
    assert known is not None
    assert (known.unit, known.kind, known.dcgm_type) == (unit, kind, value_type)


def test_an_unknown_field_has_no_type() -> None:
    assert dcgm_type("DCGM_FI_DEV_SOMETHING_NEW") is None


@pytest.mark.parametrize(
    ("help_text", "unit"),
    [
        ("GPU temperature (in C).", "C"),
        ("Power draw (in W).", "W"),
        ("SM clock frequency (in MHz).", "MHz"),
        ("Framebuffer memory free (in MiB).", "MiB"),
        ("GPU utilization (in %).", "%"),
        ("Total energy consumption since boot (in mJ).", "mJ"),
        ("Throttling duration due to power constraints (in ns).", "ns"),
        ("Total number of bytes transmitted through PCIe TX (in KB) via NVML.", "KB"),
        ("Value of the last XID error encountered.", ""),
    ],
)
def test_the_unit_is_read_from_the_exporters_help_text(help_text: str, unit: str) -> None:
    assert unit_from_help(help_text) == unit
