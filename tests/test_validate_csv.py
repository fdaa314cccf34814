"""``manage.py validate_csv``: the pipeline's verdict on a file, with nothing written anywhere."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.dcgm_generator import CSV_HEADER
from ingest import rejections
from ingest.models import Gpu, Metric, RejectedRow, Sample, StreamSource
from ingest.rejections import reason_group
from tests.support.reference import REFERENCE_CSV

HEADER = CSV_HEADER + "\n"


def row(
    timestamp: str = "2025-07-18T20:42:34Z",
    metric: str = "DCGM_FI_DEV_GPU_UTIL",
    gpu: str = "0",
    uuid: str = "GPU-a",
    host: str = "host-a",
    value: str = "1",
) -> str:
    fields = [timestamp, metric, gpu, "nvidia0", uuid, "H100", host, "", "", "", value, ""]
    return ",".join(f'"{field}"' for field in fields) + "\n"


def validate(path: Path | str, *args: str) -> tuple[str, CommandError | None]:
    """Run the command; return its output and the error it ended with, if any."""
    out = io.StringIO()
    try:
        call_command("validate_csv", str(path), *args, stdout=out)
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def summary(output: str) -> dict[str, int]:
    last = output.strip().splitlines()[-1]
    assert last.startswith("validate: ")
    return {key: int(value) for key, value in (part.split("=") for part in last.split()[1:])}


def test_the_reference_export_is_all_good_rows() -> None:
    output, error = validate(REFERENCE_CSV)
    assert error is None
    assert summary(output) == {
        "rows": 2470, "good": 2470, "rejected": 0, "gpus": 247, "hosts": 31, "metrics": 10,
    }  # fmt: skip
    assert "time span:" in output
    assert "2025-07-18T20:42:34+00:00" in output


def test_rejected_rows_are_grouped_by_reason_without_their_values_and_exit_non_zero(
    tmp_path: Path,
) -> None:
    csv = tmp_path / "mixed.csv"
    csv.write_text(
        HEADER
        + row()  # line 2
        + row(value="abc")  # line 3
        + row(value="xyz")  # line 4
        + row(timestamp="2025-07-18T20:42:34")  # line 5: no zone
        + '"only","three","fields"\n'  # line 6
        + row(uuid="GPU-b", host="host-b", metric="DCGM_FI_DEV_GPU_TEMP")  # line 7
        + row(gpu="99999")  # line 8
    )
    output, error = validate(csv)
    assert error is not None
    assert "5 of 7 rows would be rejected" in str(error)
    assert summary(output) == {
        "rows": 7, "good": 2, "rejected": 5, "gpus": 2, "hosts": 2, "metrics": 2,
    }  # fmt: skip
    assert "2  value is not a number (e.g. line 3)" in output
    assert "1  timestamp has no time zone (e.g. line 5)" in output
    assert "1  wrong number of columns (expected 12) (e.g. line 6)" in output
    assert "1  gpu_id is out of range (e.g. line 8)" in output
    assert "abc" not in output


def test_counts_and_line_numbers_hold_across_many_small_runs(tmp_path: Path) -> None:
    lines = [row(uuid=f"GPU-{n % 9}", value=str(n)) for n in range(1000)]
    lines[876] = row(value="NaN")  # line 878
    csv = tmp_path / "runs.csv"
    csv.write_text(HEADER + "".join(lines))
    output, error = validate(csv, "--lines-per-run", "7")
    assert error is not None
    assert summary(output)["rows"] == 1000
    assert summary(output)["good"] == 999
    assert summary(output)["gpus"] == 9
    assert "value is not finite (e.g. line 878)" in output


def test_a_last_line_without_a_newline_is_counted(tmp_path: Path) -> None:
    csv = tmp_path / "tail.csv"
    csv.write_text(HEADER + row() + row(uuid="GPU-b").rstrip("\n"))
    output, error = validate(csv)
    assert error is None
    assert summary(output)["rows"] == 2


def test_a_file_with_only_a_header_has_no_rows_and_no_time_span(tmp_path: Path) -> None:
    csv = tmp_path / "empty.csv"
    csv.write_text(HEADER)
    output, error = validate(csv)
    assert error is None
    assert summary(output)["rows"] == 0
    assert "time span:     none" in output


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"cannot read .*absent\.csv"):
        call_command("validate_csv", str(tmp_path / "absent.csv"), stdout=io.StringIO())


def test_a_wrong_header_is_a_clear_error(tmp_path: Path) -> None:
    csv = tmp_path / "wrong.csv"
    csv.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(CommandError, match="header lacks the column"):
        call_command("validate_csv", str(csv), stdout=io.StringIO())


def test_a_fifo_is_refused_rather_than_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(CommandError, match="not a regular file"):
        call_command("validate_csv", str(fifo), stdout=io.StringIO())


def test_a_file_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="file:// URLs are not read"):
        call_command("validate_csv", "file:///etc/passwd", stdout=io.StringIO())


@pytest.mark.django_db
def test_validating_writes_nothing_to_the_database(tmp_path: Path) -> None:
    csv = tmp_path / "mixed.csv"
    csv.write_text(HEADER + row() + row(value="abc"))
    with CaptureQueriesContext(connection) as queries:
        validate(csv)
        validate(REFERENCE_CSV)
    assert len(queries) == 0
    for model in (Sample, Gpu, Metric, RejectedRow, StreamSource):
        assert not model.objects.exists()


@pytest.mark.parametrize(
    ("reason", "group"),
    [
        ("value 'abc' is not a number", "value is not a number"),
        ('value "it\'s" is not a number', "value is not a number"),
        ("value 'inf' is not finite", "value is not finite"),
        ("timestamp 'x' is not an RFC 3339 time", "timestamp is not an RFC 3339 time"),
        ("timestamp '2025-01-01T00:00:00' has no time zone", "timestamp has no time zone"),
        ("gpu_id 'seven' is not an integer", "gpu_id is not an integer"),
        ("gpu_id 99999 is out of range", "gpu_id is out of range"),
        ("expected 12 columns, found 3", "wrong number of columns (expected 12)"),
        ("unparseable line: TypeError: odd 'value'", "unparseable line: TypeError"),
        ("uuid is empty", "uuid is empty"),
        ("line is not valid UTF-8", "line is not valid UTF-8"),
    ],
)
def test_reasons_that_quote_values_are_grouped_without_them(reason: str, group: str) -> None:
    assert reason_group(reason) == group


def test_the_number_of_reason_groups_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rejections, "MAX_REASON_GROUPS", 2)
    csv = tmp_path / "many.csv"
    csv.write_text(HEADER + row(value="abc") + row(gpu="x") + row(uuid="") + row(metric="") + row())
    output, error = validate(csv)
    assert error is not None
    groups = [line for line in output.splitlines() if "(e.g. line" in line]
    assert len(groups) == 3
    assert "2  other reasons" in output
