"""Parsing of DCGM CSV lines: the reference export, each kind of malformed line, and fuzzing.

Every test here works on bytes in memory; none needs Django's database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.dcgm import (
    MAX_GPU_INDEX,
    MAX_STORED_LINE_CHARS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    ColumnLayout,
    HeaderError,
    ParsedChunk,
    SampleRow,
    parse_labels,
    parse_lines,
)
from tests.support.dcgm_lines import FIRST_LABELS, GOOD_FIELDS, csv_line, row_line
from tests.support.reference import (
    REFERENCE_COLUMNS,
    REFERENCE_CSV,
    REFERENCE_HEADER,
    REFERENCE_UUID,
)

COLUMNS = REFERENCE_COLUMNS

FIRST_UUID = REFERENCE_UUID


def reference_layout() -> ColumnLayout:
    return ColumnLayout.from_header_line(REFERENCE_HEADER)


def reference_body() -> bytes:
    """The reference export's data lines (everything after the header line)."""
    return REFERENCE_CSV.read_bytes().partition(b"\n")[2]


def parse_between_good_lines(bad: bytes, first_line: int = 10) -> ParsedChunk:
    """Parse ``bad`` as the middle line of three, the other two being valid."""
    data = row_line(gpu_id="1") + b"\n" + bad + b"\n" + row_line(gpu_id="2") + b"\n"
    return parse_lines(data, reference_layout(), first_line)


def assert_only_the_middle_line_rejected(parsed: ParsedChunk, reason_part: str) -> None:
    assert [row.line_number for row in parsed.rows] == [10, 12]
    assert [row.gpu_index for row in parsed.rows] == [1, 2]
    assert len(parsed.rejected) == 1
    rejected = parsed.rejected[0]
    assert rejected.line_number == 11
    assert reason_part in rejected.reason


# --- the reference export ------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference() -> ParsedChunk:
    return parse_lines(reference_body(), reference_layout(), 2)


def test_reference_file_parses_to_2470_rows(reference: ParsedChunk) -> None:
    assert len(reference.rows) == 2470


def test_reference_file_has_no_rejected_line(reference: ParsedChunk) -> None:
    assert reference.rejected == []


def test_reference_file_holds_247_gpus_by_uuid(reference: ParsedChunk) -> None:
    assert len({row.uuid for row in reference.rows}) == 247


def test_reference_file_holds_31_hosts(reference: ParsedChunk) -> None:
    assert len({row.hostname for row in reference.rows}) == 31


def test_reference_file_holds_10_metrics(reference: ParsedChunk) -> None:
    assert len({row.metric for row in reference.rows}) == 10


def test_reference_rows_are_numbered_from_line_2(reference: ParsedChunk) -> None:
    assert [row.line_number for row in reference.rows] == list(range(2, 2472))


def test_reads_the_first_reference_row_field_by_field(reference: ParsedChunk) -> None:
    assert reference.rows[0]._replace(labels_raw="") == SampleRow(
        line_number=2,
        timestamp=datetime(2025, 7, 18, 20, 42, 34, tzinfo=UTC),
        metric="DCGM_FI_DEV_GPU_UTIL",
        uuid=FIRST_UUID,
        gpu_index=0,
        device="nvidia0",
        model="NVIDIA H100 80GB HBM3",
        hostname="mtv5-dgx1-hgpu-031",
        value=0.0,
        namespace="",
        pod="",
        container="",
        labels_raw="",
    )


def test_reference_labels_parse_to_unquoted_values(reference: ParsedChunk) -> None:
    assert parse_labels(reference.rows[0].labels_raw) == FIRST_LABELS


def test_every_reference_row_has_labels_naming_its_own_uuid(reference: ParsedChunk) -> None:
    assert all(parse_labels(row.labels_raw)["UUID"] == row.uuid for row in reference.rows)


def test_labels_keep_a_comma_inside_a_quoted_value() -> None:
    assert parse_labels('a="x,y",b="z"') == {"a": "x,y", "b": "z"}


def test_numbers_rows_from_first_line_onwards() -> None:
    data = b"".join(row_line(gpu_id=str(index)) + b"\n" for index in range(5))
    parsed = parse_lines(data, reference_layout(), 1000)
    assert [row.line_number for row in parsed.rows] == [1000, 1001, 1002, 1003, 1004]


# --- malformed lines: each rejected alone, with its line number and reason ------------------


def test_rejects_a_line_with_too_few_columns() -> None:
    bad = csv_line([GOOD_FIELDS[name] for name in COLUMNS[:-1]])
    assert_only_the_middle_line_rejected(
        parse_between_good_lines(bad), "expected 12 columns, found 11"
    )


def test_rejects_a_line_with_too_many_columns() -> None:
    bad = csv_line([*(GOOD_FIELDS[name] for name in COLUMNS), "extra"])
    assert_only_the_middle_line_rejected(
        parse_between_good_lines(bad), "expected 12 columns, found 13"
    )


def test_rejects_a_value_that_is_not_a_number() -> None:
    parsed = parse_between_good_lines(row_line(value="abc"))
    assert_only_the_middle_line_rejected(parsed, "'abc' is not a number")


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400"])
def test_rejects_a_value_that_is_not_finite(value: str) -> None:
    parsed = parse_between_good_lines(row_line(value=value))
    assert_only_the_middle_line_rejected(parsed, "is not finite")


def test_rejects_an_empty_value() -> None:
    parsed = parse_between_good_lines(row_line(value=""))
    assert_only_the_middle_line_rejected(parsed, "is not a number")


def test_rejects_a_timestamp_that_is_not_a_time() -> None:
    parsed = parse_between_good_lines(row_line(timestamp="2025-13-45T99:00:00Z"))
    assert_only_the_middle_line_rejected(parsed, "is not an RFC 3339 time")


def test_rejects_a_timestamp_without_a_time_zone() -> None:
    parsed = parse_between_good_lines(row_line(timestamp="2025-07-18T20:42:34"))
    assert_only_the_middle_line_rejected(parsed, "has no time zone")


def test_rejects_a_zone_less_timestamp_even_after_a_zoned_one_was_seen() -> None:
    data = row_line() + b"\n" + row_line(timestamp="2025-07-18T20:42:34") + b"\n"
    parsed = parse_lines(data, reference_layout(), 1)
    assert [line.line_number for line in parsed.rejected] == [2]


def test_rejects_an_empty_uuid() -> None:
    parsed = parse_between_good_lines(row_line(uuid=""))
    assert_only_the_middle_line_rejected(parsed, "uuid is empty")


def test_rejects_a_uuid_of_only_spaces() -> None:
    parsed = parse_between_good_lines(row_line(uuid="   "))
    assert_only_the_middle_line_rejected(parsed, "uuid is empty")


def test_rejects_an_empty_metric_name() -> None:
    parsed = parse_between_good_lines(row_line(metric_name=""))
    assert_only_the_middle_line_rejected(parsed, "metric_name is empty")


def test_rejects_a_gpu_id_that_is_not_an_integer() -> None:
    parsed = parse_between_good_lines(row_line(gpu_id="1.5"))
    assert_only_the_middle_line_rejected(parsed, "'1.5' is not an integer")


@pytest.mark.parametrize("gpu_id", ["-1", str(MAX_GPU_INDEX + 1)])
def test_rejects_a_gpu_id_out_of_range(gpu_id: str) -> None:
    parsed = parse_between_good_lines(row_line(gpu_id=gpu_id))
    assert_only_the_middle_line_rejected(parsed, "is out of range")


def test_rejects_a_stray_quote_inside_a_quoted_field() -> None:
    bad = row_line().replace(b'"mtv5-dgx1-hgpu-031"', b'"mtv5-dgx1"-hgpu-031"', 1)
    assert_only_the_middle_line_rejected(parse_between_good_lines(bad), "malformed CSV")


def test_rejects_an_unclosed_quote_without_swallowing_the_next_line() -> None:
    bad = row_line()[:-1]  # the closing quote of labels_raw is gone
    assert_only_the_middle_line_rejected(parse_between_good_lines(bad), "malformed CSV")


def test_rejects_invalid_utf8() -> None:
    bad = row_line().replace(b"nvidia0", b"nvidia\xff", 1)
    assert_only_the_middle_line_rejected(parse_between_good_lines(bad), "not valid UTF-8")


def test_keeps_invalid_utf8_visible_as_an_escape_in_the_rejected_line() -> None:
    bad = row_line().replace(b"nvidia0", b"nvidia\xff", 1)
    assert "nvidia\\xff" in parse_between_good_lines(bad).rejected[0].raw


def test_rejects_an_empty_line() -> None:
    assert_only_the_middle_line_rejected(parse_between_good_lines(b""), "empty line")


def test_rejects_a_line_of_only_whitespace() -> None:
    assert_only_the_middle_line_rejected(parse_between_good_lines(b"  \t "), "empty line")


def test_keeps_the_raw_text_of_a_rejected_line() -> None:
    bad = row_line(value="abc")
    assert parse_between_good_lines(bad).rejected[0].raw == bad.decode()


def test_escapes_a_nul_byte_in_a_rejected_line() -> None:
    bad = row_line(value="a\x00bc")
    assert parse_between_good_lines(bad).rejected[0].raw == bad.decode().replace("\x00", "\\x00")


def test_cuts_a_very_long_rejected_line() -> None:
    bad = row_line(value="x" * 10_000)
    raw = parse_between_good_lines(bad).rejected[0].raw
    assert raw.startswith(bad[:MAX_STORED_LINE_CHARS].decode())
    assert raw.endswith(f"... [{len(bad)} bytes]")


def test_rejects_a_nul_byte_in_a_text_field() -> None:
    bad = row_line(Hostname="mtv5-dgx1\x00-hgpu-031")
    assert_only_the_middle_line_rejected(parse_between_good_lines(bad), "NUL")


@pytest.mark.parametrize(
    "timestamp",
    ["0001-01-01T00:00:00+01:00", "1899-12-31T23:59:59Z", "9001-01-01T00:00:00Z"],
)
def test_rejects_a_time_outside_the_supported_years(timestamp: str) -> None:
    bad = row_line(timestamp=timestamp)
    assert_only_the_middle_line_rejected(parse_between_good_lines(bad), "outside the years")


# --- line endings --------------------------------------------------------------------------


def test_accepts_crlf_line_endings() -> None:
    data = row_line(gpu_id="1") + b"\r\n" + row_line(gpu_id="2") + b"\r\n"
    parsed = parse_lines(data, reference_layout(), 2)
    assert (len(parsed.rows), parsed.rejected) == (2, [])


def test_crlf_leaves_no_carriage_return_in_the_last_field() -> None:
    parsed = parse_lines(row_line() + b"\r\n", reference_layout(), 2)
    assert parsed.rows[0].labels_raw == GOOD_FIELDS["labels_raw"]


def test_parses_a_last_line_without_a_trailing_newline() -> None:
    data = row_line(gpu_id="1") + b"\n" + row_line(gpu_id="2")
    parsed = parse_lines(data, reference_layout(), 2)
    assert [(row.line_number, row.gpu_index) for row in parsed.rows] == [(2, 1), (3, 2)]


def test_parses_no_lines_from_no_bytes() -> None:
    parsed = parse_lines(b"", reference_layout(), 2)
    assert (parsed.rows, parsed.rejected) == ([], [])


def test_counts_a_lone_newline_as_one_empty_line() -> None:
    parsed = parse_lines(b"\n", reference_layout(), 7)
    assert (parsed.rows, [line.line_number for line in parsed.rejected]) == ([], [7])


# --- the header's column layout ------------------------------------------------------------


def test_reads_fields_by_name_when_the_header_orders_columns_differently() -> None:
    shuffled = tuple(reversed(COLUMNS))
    layout = ColumnLayout.from_header_line(",".join(shuffled).encode())
    reordered = parse_lines(row_line(shuffled) + b"\n", layout, 2)
    in_order = parse_lines(row_line() + b"\n", reference_layout(), 2)
    assert reordered == in_order


def test_reads_a_header_without_the_optional_columns() -> None:
    required = REQUIRED_COLUMNS
    layout = ColumnLayout.from_names(required)
    parsed = parse_lines(row_line(required) + b"\n", layout, 2)
    assert (parsed.rows[0].labels_raw, parsed.rows[0].namespace) == ("", "")


@pytest.mark.parametrize("missing", REQUIRED_COLUMNS)
def test_a_header_missing_a_required_column_raises_header_error_naming_it(missing: str) -> None:
    names = [name for name in COLUMNS if name != missing]
    with pytest.raises(HeaderError, match=f"lacks the column\\(s\\) {missing};"):
        ColumnLayout.from_header_line(",".join(names).encode())


OPTIONAL_ATTRIBUTES = {
    "container": "container",
    "pod": "pod",
    "namespace": "namespace",
    "labels_raw": "labels",
    "gpu_instance_id": "instance_id",
    "gpu_instance_profile": "instance_profile",
}


@pytest.mark.parametrize("optional", OPTIONAL_COLUMNS)
def test_a_header_missing_an_optional_column_is_accepted(optional: str) -> None:
    layout = ColumnLayout.from_names([name for name in COLUMNS if name != optional])
    assert getattr(layout, OPTIONAL_ATTRIBUTES[optional]) is None


def test_a_header_repeating_a_column_raises_header_error() -> None:
    with pytest.raises(HeaderError, match="repeats"):
        ColumnLayout.from_names([*COLUMNS, "uuid"])


def test_a_header_that_is_not_utf8_raises_header_error() -> None:
    with pytest.raises(HeaderError, match="not readable"):
        ColumnLayout.from_header_line(REFERENCE_HEADER + b",\xff")


def test_tolerates_a_byte_order_mark_before_the_header() -> None:
    with_bom = ColumnLayout.from_header_line(b"\xef\xbb\xbf" + REFERENCE_HEADER + b"\n")
    assert with_bom == reference_layout()


def test_tolerates_a_crlf_after_the_header() -> None:
    assert ColumnLayout.from_header_line(REFERENCE_HEADER + b"\r\n") == reference_layout()


# --- fuzzing -------------------------------------------------------------------------------

HOSTILE_PIECES = st.sampled_from(
    [b"\n", b"\r", b"\r\n", b'"', b'""', b",", b"\x00", b"\xff", b"\xc3", b"\xef\xbb\xbf", b" "]
)
LONG_FIELDS = st.integers(min_value=1_000, max_value=5_000).map(lambda size: b"x" * size)
LINE_FRAGMENTS = st.sampled_from(
    [row_line(), row_line(value="nan"), row_line()[:40], row_line()[40:], b'"1","2"']
)
ARBITRARY_BYTES = st.lists(
    st.one_of(st.binary(max_size=40), HOSTILE_PIECES, LONG_FIELDS, LINE_FRAGMENTS),
    max_size=30,
).map(b"".join)


def physical_lines(data: bytes) -> int:
    """Lines in ``data``: one per newline, plus an unterminated last line."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


@settings(max_examples=200, deadline=None)
@given(data=ARBITRARY_BYTES, first_line=st.integers(min_value=1, max_value=10**9))
def test_never_raises_and_accounts_for_every_physical_line(data: bytes, first_line: int) -> None:
    parsed = parse_lines(data, reference_layout(), first_line)
    assert len(parsed.rows) + len(parsed.rejected) == physical_lines(data)


@settings(max_examples=200, deadline=None)
@given(data=ARBITRARY_BYTES, first_line=st.integers(min_value=1, max_value=10**9))
def test_gives_each_physical_line_its_own_line_number(data: bytes, first_line: int) -> None:
    parsed = parse_lines(data, reference_layout(), first_line)
    numbers = [row.line_number for row in parsed.rows] + [
        line.line_number for line in parsed.rejected
    ]
    assert sorted(numbers) == list(range(first_line, first_line + physical_lines(data)))


@settings(max_examples=200, deadline=None)
@given(data=ARBITRARY_BYTES)
def test_never_stores_a_nul_or_an_overlong_rejected_line(data: bytes) -> None:
    for line in parse_lines(data, reference_layout(), 1).rejected:
        assert "\x00" not in line.raw
        assert len(line.raw) <= MAX_STORED_LINE_CHARS + len(f"... [{len(data)} bytes]")


# Text a DCGM field may hold: anything but a newline (a record is one physical line), a NUL
# (PostgreSQL text cannot hold it) or a lone surrogate (not encodable as UTF-8).
FIELD_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\n\x00"), max_size=30)
NAME_TEXT = FIELD_TEXT.map(str.strip).filter(bool)
OFFSETS = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
TIMESTAMPS = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=OFFSETS
)
VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(lambda value: (repr(value), value)),
    st.integers(min_value=-(10**15), max_value=10**15).map(lambda value: (str(value), value)),
)


@st.composite
def sample_rows(draw: st.DrawFn) -> SampleRow:
    """A valid row; its value is drawn apart, with the text that writes it."""
    return SampleRow(
        line_number=0,
        timestamp=draw(TIMESTAMPS),
        metric=draw(NAME_TEXT),
        uuid=draw(NAME_TEXT.filter(lambda uuid: ":" not in uuid)),
        gpu_index=draw(st.integers(min_value=0, max_value=MAX_GPU_INDEX)),
        device=draw(FIELD_TEXT),
        model=draw(FIELD_TEXT),
        hostname=draw(FIELD_TEXT),
        value=0.0,
        namespace=draw(FIELD_TEXT),
        pod=draw(FIELD_TEXT),
        container=draw(FIELD_TEXT),
        labels_raw=draw(FIELD_TEXT),
    )


def format_timestamp(timestamp: datetime, zulu: bool) -> str:
    text = timestamp.isoformat()
    return text.replace("+00:00", "Z") if zulu and timestamp.utcoffset() == timedelta(0) else text


def sample_fields(row: SampleRow, value_text: str, zulu: bool) -> dict[str, str]:
    return {
        "timestamp": format_timestamp(row.timestamp, zulu),
        "metric_name": row.metric,
        "gpu_id": str(row.gpu_index),
        "device": row.device,
        "uuid": row.uuid,
        "modelName": row.model,
        "Hostname": row.hostname,
        "container": row.container,
        "pod": row.pod,
        "namespace": row.namespace,
        "value": value_text,
        "labels_raw": row.labels_raw,
    }


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(sample_rows(), VALUES, st.booleans()), min_size=1, max_size=5),
    columns=st.permutations(COLUMNS),
    first_line=st.integers(min_value=2, max_value=10**6),
    crlf=st.booleans(),
)
def test_valid_generated_rows_parse_back_to_the_same_values(
    rows: list[tuple[SampleRow, tuple[str, float], bool]],
    columns: list[str],
    first_line: int,
    crlf: bool,
) -> None:
    expected: list[SampleRow] = []
    lines: list[bytes] = []
    # A GPU's labels describe the GPU: they are read from the first row naming its fields.
    first_labels: dict[tuple[object, ...], str] = {}
    for offset, (row, (value_text, value), zulu) in enumerate(rows):
        fields = sample_fields(row, value_text, zulu)
        lines.append(csv_line([fields[name] for name in columns]))
        gpu = (row.uuid, row.gpu_index, row.device, row.model, row.hostname)
        labels = first_labels.setdefault(
            (*gpu, row.namespace, row.pod, row.container), row.labels_raw
        )
        expected.append(
            row._replace(line_number=first_line + offset, value=float(value), labels_raw=labels)
        )
    newline = b"\r\n" if crlf else b"\n"
    layout = ColumnLayout.from_header_line(",".join(columns).encode())

    parsed = parse_lines(newline.join(lines) + newline, layout, first_line)

    assert parsed.rejected == []
    assert parsed.rows == expected
    assert [row.timestamp.utcoffset() for row in parsed.rows] == [
        row.timestamp.utcoffset() for row in expected
    ]
