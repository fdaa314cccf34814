"""DCGM blank sentinels: the values DCGM reports for a field it could not read.

DCGM (``dcgm_structs.h``) writes an unreadable field as a base value plus a small code: int32
``0x7ffffff0 + k``, int64 ``0x7ffffffffffffff0 + k``, fp64 ``2**47 + k`` (k from 0 to 15,
which 47 bits of a double still count exactly). Codes 0 to 3 are named: blank, not found, not
supported, not permissioned. dcgm-exporter prints them as numbers, e.g. a GPU without a memory
temperature sensor as ``DCGM_FI_DEV_MEMORY_TEMP{...} 9223372036854775794`` (int64, not
supported). Such a value is a refusal, never a measurement.

Sentinels are compared on the number as written: ``float()`` maps every int64 sentinel to
2**63, so the text (or the exact integer a parser kept) decides the code. A value that already
went through a double (any number written that reads as the double 2**63) is still an int64
blank, with its code lost. All
sentinels are at or above ``SMALLEST_SENTINEL``, so a parser checks only such values.

Which rules apply depends on the field's DCGM type (``ingest.fields``): int32 fields get the
int32 and int64 rules (DCGM stores them as int64), int64 fields the int64 rule, double fields
the fp64 rule, and fields the table does not know the int64 and fp64 rules.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Final

from ingest.fields import DcgmType

INT32_BLANK: Final = 0x7FFFFFF0
INT64_BLANK: Final = 0x7FFFFFFFFFFFFFF0
FP64_BLANK: Final = 2**47
CODES: Final = 16  # k = 0..15 above each base
SMALLEST_SENTINEL: Final = float(INT32_BLANK)
# Every int64 sentinel, once it has been a double (as remote write or a float() makes it).
INT64_AS_DOUBLE: Final = 2.0**63

MEANINGS: Final = {0: "blank", 1: "not found", 2: "not supported", 3: "not permissioned"}

_RULES: Final[dict[DcgmType | None, tuple[str, ...]]] = {
    "int32": ("int32", "int64"),
    "int64": ("int64",),
    "double": ("fp64",),
    None: ("int64", "fp64"),
}
_BASES: Final = {"int32": INT32_BLANK, "int64": INT64_BLANK, "fp64": FP64_BLANK}


def blank_reason(written: str | int | float, dcgm_type: DcgmType | None) -> str | None:
    """Why ``written`` is not a measurement of a field of ``dcgm_type``, or None if it is one.

    ``written`` is the value's text, or the number a parser read (an int is exact).
    """
    try:
        number = Decimal(written.strip() if isinstance(written, str) else written)
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite():
        return None
    shown = written.strip()[:40] if isinstance(written, str) else str(written)
    for rule in _RULES[dcgm_type]:
        code = number - _BASES[rule]
        if code == code.to_integral_value() and 0 <= code < CODES:
            meaning = MEANINGS.get(int(code), f"blank code {int(code)}")
            return f"DCGM {meaning} ({rule} blank sentinel {shown})"
        if rule == "int64" and float(number) == INT64_AS_DOUBLE:
            return f"DCGM blank (int64 blank sentinel rounded to a double, code lost: {shown})"
    return None
