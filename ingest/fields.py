"""The DCGM fields the project knows: each one's unit, DCGM value type and Prometheus kind.

Sources: every field of dcgm-exporter's shipped counter lists (``default-counters.csv`` and
``dcp-metrics-included.csv``, the lines it ships commented out included) and of the bundled
export, plus a few fields operators commonly add. Units and kinds are the exporter's (its HELP
text says ``(in MHz)``, its list says gauge or counter); ``DCGM_FI_DEV_XID_ERRORS`` holds the
code of the last XID error, so it is a gauge.

The type decides which DCGM blank sentinels a value is checked against (``ingest.blanks``).
DCGM's own field definitions store every integer field as int64 and the rest as double; the
table calls ``int32`` the integer fields whose value DCGM reads from a 32-bit NVML quantity
(clocks, temperatures, utilisation, remapped rows, retired pages). Such a value can only be
in the int32 sentinel range if it is a sentinel that went through 32 bits (dcgm-exporter checks
int32 sentinels on integer fields for that reason), while a 64-bit counter such as the energy
in mJ may really read 2,147,483,632, so int32 sentinels are applied to int32 fields only.

A field missing from the table still ingests: its unit comes from the exporter's HELP text
when there is one, its kind from the page's TYPE line, and its value is checked against the
int64 and fp64 sentinels.
"""

from __future__ import annotations

import re
from typing import Final, Literal, NamedTuple, cast, get_args

DcgmType = Literal["int32", "int64", "double"]
Kind = Literal["gauge", "counter"]


class Field(NamedTuple):
    name: str
    dcgm_type: DcgmType
    kind: Kind
    unit: str


# field                                          type    kind     unit
_TABLE: Final = """
DCGM_FI_DEV_SM_CLOCK                             int32   gauge    MHz
DCGM_FI_DEV_MEM_CLOCK                            int32   gauge    MHz
DCGM_FI_DEV_VIDEO_CLOCK                          int32   gauge    MHz
DCGM_FI_DEV_MEMORY_TEMP                          int32   gauge    C
DCGM_FI_DEV_GPU_TEMP                             int32   gauge    C
DCGM_FI_DEV_POWER_USAGE                          double  gauge    W
DCGM_FI_DEV_POWER_MGMT_LIMIT                     double  gauge    W
DCGM_FI_DEV_ENFORCED_POWER_LIMIT                 double  gauge    W
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION             int64   counter  mJ
DCGM_FI_DEV_PCIE_TX_THROUGHPUT                   int64   counter  KB
DCGM_FI_DEV_PCIE_RX_THROUGHPUT                   int64   counter  KB
DCGM_FI_DEV_PCIE_REPLAY_COUNTER                  int32   counter  -
DCGM_FI_DEV_GPU_UTIL                             int32   gauge    %
DCGM_FI_DEV_MEM_COPY_UTIL                        int32   gauge    %
DCGM_FI_DEV_ENC_UTIL                             int32   gauge    %
DCGM_FI_DEV_DEC_UTIL                             int32   gauge    %
DCGM_FI_DEV_FAN_SPEED                            int32   gauge    %
DCGM_FI_DEV_PSTATE                               int32   gauge    -
DCGM_FI_DEV_XID_ERRORS                           int64   gauge    -
DCGM_FI_DEV_POWER_VIOLATION                      int64   counter  us
DCGM_FI_DEV_THERMAL_VIOLATION                    int64   counter  us
DCGM_FI_DEV_SYNC_BOOST_VIOLATION                 int64   counter  us
DCGM_FI_DEV_BOARD_LIMIT_VIOLATION                int64   counter  us
DCGM_FI_DEV_LOW_UTIL_VIOLATION                   int64   counter  us
DCGM_FI_DEV_RELIABILITY_VIOLATION                int64   counter  us
DCGM_FI_DEV_FB_TOTAL                             int64   gauge    MiB
DCGM_FI_DEV_FB_FREE                              int64   gauge    MiB
DCGM_FI_DEV_FB_USED                              int64   gauge    MiB
DCGM_FI_DEV_FB_RESERVED                          int64   gauge    MiB
DCGM_FI_DEV_ECC_SBE_VOL_TOTAL                    int64   counter  -
DCGM_FI_DEV_ECC_DBE_VOL_TOTAL                    int64   counter  -
DCGM_FI_DEV_ECC_SBE_AGG_TOTAL                    int64   counter  -
DCGM_FI_DEV_ECC_DBE_AGG_TOTAL                    int64   counter  -
DCGM_FI_DEV_RETIRED_SBE                          int32   counter  -
DCGM_FI_DEV_RETIRED_DBE                          int32   counter  -
DCGM_FI_DEV_RETIRED_PENDING                      int32   counter  -
DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL    int64   counter  -
DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL    int64   counter  -
DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL      int64   counter  -
DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL    int64   counter  -
DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL               int64   counter  -
DCGM_FI_DEV_NVLINK_BANDWIDTH_L0                  int64   counter  B
DCGM_FI_DEV_VGPU_LICENSE_STATUS                  int64   gauge    -
DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS          int32   counter  -
DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS            int32   counter  -
DCGM_FI_DEV_ROW_REMAP_FAILURE                    int32   gauge    -
DCGM_FI_PROF_GR_ENGINE_ACTIVE                    double  gauge    ratio
DCGM_FI_PROF_SM_ACTIVE                           double  gauge    ratio
DCGM_FI_PROF_SM_OCCUPANCY                        double  gauge    ratio
DCGM_FI_PROF_PIPE_TENSOR_ACTIVE                  double  gauge    ratio
DCGM_FI_PROF_DRAM_ACTIVE                         double  gauge    ratio
DCGM_FI_PROF_PIPE_FP64_ACTIVE                    double  gauge    ratio
DCGM_FI_PROF_PIPE_FP32_ACTIVE                    double  gauge    ratio
DCGM_FI_PROF_PIPE_FP16_ACTIVE                    double  gauge    ratio
DCGM_FI_PROF_PCIE_TX_BYTES                       int64   gauge    B/s
DCGM_FI_PROF_PCIE_RX_BYTES                       int64   gauge    B/s
DCGM_FI_PROF_NVLINK_TX_BYTES                     int64   gauge    B/s
DCGM_FI_PROF_NVLINK_RX_BYTES                     int64   gauge    B/s
"""


def _read_table(text: str) -> dict[str, Field]:
    fields = {}
    for line in text.strip().splitlines():
        name, value_type, kind, unit = line.split()
        if value_type not in get_args(DcgmType) or kind not in get_args(Kind):
            raise ValueError(f"field table: {line!r} has an unknown type or kind")
        fields[name] = Field(
            name, cast(DcgmType, value_type), cast(Kind, kind), "" if unit == "-" else unit
        )
    return fields


FIELDS: Final = _read_table(_TABLE)

# dcgm-exporter's HELP text ends in the unit: "GPU temperature (in C)."
_UNIT_IN_HELP: Final = re.compile(r"\(in ([^()\s][^()]*)\)")


def field(name: str) -> Field | None:
    return FIELDS.get(name)


def dcgm_type(name: str) -> DcgmType | None:
    """The field's DCGM value type, or None for a field the table does not know."""
    known = FIELDS.get(name)
    return None if known is None else known.dcgm_type


def unit_from_help(help_text: str) -> str:
    """The unit an exporter's HELP text names (``(in MHz)``), or ``""``."""
    found = _UNIT_IN_HELP.search(help_text)
    return found.group(1).strip() if found else ""
