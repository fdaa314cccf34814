"""DCGM blank sentinels are refusals with a meaning, never samples: the rules by field type,
the CSV path (collector and validate_csv alike)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from ingest.blanks import blank_reason
from ingest.dcgm import ColumnLayout, parse_lines
from tests.support.dcgm_lines import row_line
from tests.support.reference import REFERENCE_COLUMNS

INT64 = 0x7FFFFFFFFFFFFFF0
INT32 = 0x7FFFFFF0


@pytest.mark.parametrize(
    ("written", "kind", "reason"),
    [
        (str(INT64), "int64", "DCGM blank (int64 blank sentinel 9223372036854775792)"),
        (str(INT64 + 1), "int64", "DCGM not found (int64 blank sentinel 9223372036854775793)"),
        (str(INT64 + 2), "int64", "DCGM not supported (int64 blank sentinel 9223372036854775794)"),
        (
            str(INT64 + 3),
            "int64",
            "DCGM not permissioned (int64 blank sentinel 9223372036854775795)",
        ),
        (str(INT64 + 9), "int64", "DCGM blank code 9 (int64 blank sentinel 9223372036854775801)"),
        (
            "140737488355330.000000",
            "double",
            "DCGM not supported (fp64 blank sentinel 140737488355330.000000)",
        ),
        (str(INT32 + 2), "int32", "DCGM not supported (int32 blank sentinel 2147483634)"),
        (INT64 + 2, "int64", "DCGM not supported (int64 blank sentinel 9223372036854775794)"),
        (2.0**47 + 1, "double", "DCGM not found (fp64 blank sentinel 140737488355329.0)"),
    ],
)
def test_each_sentinel_is_named_by_its_code(
    written: str | int | float, kind: str, reason: str
) -> None:
    assert blank_reason(written, kind) == reason  # type: ignore[arg-type]


def test_a_sentinel_that_went_through_a_double_is_still_an_int64_blank() -> None:
    # float() maps every int64 sentinel to 2**63: the code is gone, the refusal is not.
    for written in ("9.223372036854776e+18", str(2**63), 2.0**63):
        assert "int64 blank sentinel rounded to a double" in (blank_reason(written, "int64") or "")
    assert float(str(INT64 + 2)) == float(INT64) == 2.0**63


@pytest.mark.parametrize(
    ("written", "kind"),
    [
        (str(INT32 + 2), "int64"),  # a counter may really read 2,147,483,634
        (str(INT32 + 2), "double"),
        (str(INT32 + 2), None),  # unknown fields get the int64 and fp64 rules only
        ("140737488355330", "int64"),  # an fp64 sentinel's number is a count for an int64
        (str(INT64 + 2), "double"),
        ("140737488355344", "double"),  # 2**47 + 16: past the codes
        ("409.692000", "double"),
        ("nan", None),
    ],
)
def test_a_value_is_a_sentinel_only_under_its_fields_type(written: str, kind: str | None) -> None:
    assert blank_reason(written, kind) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("written", [str(INT64 + 2), "140737488355330"])
def test_unknown_fields_get_the_int64_and_fp64_rules(written: str) -> None:
    assert blank_reason(written, None) is not None


def test_the_csv_parser_rejects_a_sentinel_row_with_its_meaning_and_keeps_the_rest() -> None:
    layout = ColumnLayout.from_names(REFERENCE_COLUMNS)
    data = b"\n".join(
        [
            row_line(metric_name="DCGM_FI_DEV_MEMORY_TEMP", value=str(INT64 + 2)),
            row_line(metric_name="DCGM_FI_DEV_GPU_TEMP", value=str(INT32 + 3)),
            row_line(metric_name="DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", value=str(INT32 + 3)),
            row_line(metric_name="DCGM_FI_DEV_POWER_USAGE", value="140737488355328.000000"),
            row_line(metric_name="DCGM_FI_DEV_GPU_TEMP", value="38"),
        ]
    )

    parsed = parse_lines(data + b"\n", layout, 2)

    assert [(row.metric, row.value) for row in parsed.rows] == [
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", float(INT32 + 3)),
        ("DCGM_FI_DEV_GPU_TEMP", 38.0),
    ]
    assert [(line.line_number, line.reason) for line in parsed.rejected] == [
        (2, "DCGM not supported (int64 blank sentinel 9223372036854775794)"),
        (3, "DCGM not permissioned (int32 blank sentinel 2147483635)"),
        (5, "DCGM blank (fp64 blank sentinel 140737488355328.000000)"),
    ]


def test_validate_csv_predicts_the_sentinel_rejection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "blank.csv"
    header = ",".join(REFERENCE_COLUMNS).encode()
    sentinel = row_line(metric_name="DCGM_FI_DEV_MEMORY_TEMP", value=str(INT64 + 2))
    path.write_bytes(b"\n".join([header, sentinel, row_line()]) + b"\n")

    with pytest.raises(CommandError, match="1 of 2 rows would be rejected"):
        call_command("validate_csv", str(path))

    out = capsys.readouterr().out
    assert "DCGM not supported (int64 blank sentinel 9223372036854775794) (e.g. line 2)" in out
