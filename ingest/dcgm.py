"""Parsing of DCGM CSV exports: the header's column layout, rows, and per-row validation.

A record is one physical line (DCGM never puts a newline inside a field), so each line is
parsed on its own with the real CSV dialect: a stray quote or a wrong column count rejects
that line alone instead of swallowing its neighbours. ``labels_raw`` holds ``key="value"``
pairs with commas and doubled quotes inside one quoted field, which only a CSV parser reads.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

REQUIRED_COLUMNS = (
    "timestamp",
    "metric_name",
    "gpu_id",
    "device",
    "uuid",
    "modelName",
    "Hostname",
    "value",
)
OPTIONAL_COLUMNS = ("container", "pod", "namespace", "labels_raw")

# A raw line is stored with its rejection; beyond this it is cut, so a hostile 10 MB line
# cannot bloat the rejected-rows table.
MAX_STORED_LINE_CHARS = 2000
MAX_GPU_INDEX = 32767
# The widths of the columns these fields are stored in (ingest.models); a longer value is
# the row's fault and rejects that row, rather than failing its whole chunk at commit.
MAX_FIELD_CHARS = {
    "uuid": 64,
    "metric_name": 128,
    "device": 32,
    "modelName": 128,
    "Hostname": 255,
    "namespace": 255,
    "pod": 255,
    "container": 255,
}


class HeaderError(ValueError):
    """The first line is not a DCGM header this parser can read."""


@dataclass(frozen=True, slots=True)
class ColumnLayout:
    """Where each field sits in a row, taken from the file's header line."""

    names: tuple[str, ...]
    timestamp: int
    metric: int
    gpu_index: int
    device: int
    uuid: int
    model: int
    hostname: int
    value: int
    container: int | None
    pod: int | None
    namespace: int | None
    labels: int | None
    limited_fields: tuple[tuple[str, int, int], ...]  # (name, position, width) to check

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...]) -> ColumnLayout:
        names = tuple(names)
        missing = [column for column in REQUIRED_COLUMNS if column not in names]
        if missing:
            raise HeaderError(
                f"header lacks the column(s) {', '.join(missing)}; expected a DCGM export "
                f"with {', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}"
            )
        if len(set(names)) != len(names):
            raise HeaderError("header repeats a column name")
        position = {name: index for index, name in enumerate(names)}
        return cls(
            names=names,
            timestamp=position["timestamp"],
            metric=position["metric_name"],
            gpu_index=position["gpu_id"],
            device=position["device"],
            uuid=position["uuid"],
            model=position["modelName"],
            hostname=position["Hostname"],
            value=position["value"],
            container=position.get("container"),
            pod=position.get("pod"),
            namespace=position.get("namespace"),
            labels=position.get("labels_raw"),
            limited_fields=tuple(
                (name, position[name], width)
                for name, width in MAX_FIELD_CHARS.items()
                if name in position
            ),
        )

    @classmethod
    def from_header_line(cls, line: bytes) -> ColumnLayout:
        try:
            text = line.decode("utf-8-sig").rstrip("\r\n")
            names = next(csv.reader([text], strict=True))
        except (UnicodeDecodeError, csv.Error, StopIteration) as error:
            raise HeaderError(f"header line is not readable CSV: {error}") from None
        return cls.from_names([name.strip() for name in names])


class SampleRow(NamedTuple):
    """One valid data line, typed."""

    line_number: int
    timestamp: datetime
    metric: str
    uuid: str
    gpu_index: int
    device: str
    model: str
    hostname: str
    value: float
    namespace: str
    pod: str
    container: str
    labels_raw: str


class RejectedLine(NamedTuple):
    line_number: int
    raw: str
    reason: str


class ParsedChunk(NamedTuple):
    rows: list[SampleRow]
    rejected: list[RejectedLine]


class _RowError(ValueError):
    """A line is invalid; the message is the reason recorded with it."""


def parse_lines(data: bytes, layout: ColumnLayout, first_line: int) -> ParsedChunk:
    """Parse a run of whole lines; every line ends as a row or as a rejection, none raises."""
    parsed_times: dict[str, datetime] = {}
    clean = _parse_clean_chunk(data, layout, first_line, parsed_times)
    if clean is not None:
        return clean
    rows: list[SampleRow] = []
    rejected: list[RejectedLine] = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line, not an empty line
    for offset, raw in enumerate(lines):
        line_number = first_line + offset
        try:
            fields = _line_fields(raw)
            rows.append(_row_from_fields(fields, layout, line_number, parsed_times))
        except _RowError as error:
            rejected.append(RejectedLine(line_number, _printable(raw), str(error)))
        except Exception as error:  # noqa: BLE001  (hostile input must never stop a chunk)
            reason = f"unparseable line: {type(error).__name__}: {error}"[:255]
            rejected.append(RejectedLine(line_number, _printable(raw), reason))
    return ParsedChunk(rows, rejected)


def _parse_clean_chunk(
    data: bytes, layout: ColumnLayout, first_line: int, parsed_times: dict[str, datetime]
) -> ParsedChunk | None:
    """Parse a well-formed chunk with one CSV reader over all its lines.

    A reader per line costs about as much as the rest of the parsing together. One reader is
    exact only while every record is one line, so anything that needs a line's own verdict
    (invalid UTF-8, a NUL, a carriage return, a blank line, a quoting error, a record that
    spans lines) returns None and the chunk is parsed line by line instead.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\x00" in text or "\r" in text:
        return None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    rows: list[SampleRow] = []
    rejected: list[RejectedLine] = []
    reader = csv.reader(lines, strict=True)
    try:
        for offset, fields in enumerate(reader):
            if reader.line_num != offset + 1 or not fields:
                return None
            line_number = first_line + offset
            try:
                rows.append(_row_from_fields(fields, layout, line_number, parsed_times))
            except _RowError as error:
                raw = lines[offset].encode()
                rejected.append(RejectedLine(line_number, _printable(raw), str(error)))
    except csv.Error:
        return None
    if len(rows) + len(rejected) != len(lines):
        return None
    return ParsedChunk(rows, rejected)


def _line_fields(raw: bytes) -> list[str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _RowError("line is not valid UTF-8") from None
    if text.endswith("\r"):
        text = text[:-1]
    if not text.strip():
        raise _RowError("empty line")
    if "\x00" in text:
        raise _RowError("line contains a NUL byte")
    try:
        return next(csv.reader((text,), strict=True))
    except csv.Error as error:
        raise _RowError(f"malformed CSV: {error}") from None


def _row_from_fields(
    fields: list[str], layout: ColumnLayout, line_number: int, parsed_times: dict[str, datetime]
) -> SampleRow:
    if len(fields) != len(layout.names):
        if len(fields) == 1 and not fields[0].strip():
            raise _RowError("empty line")
        raise _RowError(f"expected {len(layout.names)} columns, found {len(fields)}")
    for name, index, width in layout.limited_fields:
        if len(fields[index]) > width:
            raise _RowError(f"{name} is longer than {width} characters")

    timestamp_text = fields[layout.timestamp]
    timestamp = parsed_times.get(timestamp_text)
    if timestamp is None:
        timestamp = _parse_timestamp(timestamp_text)
        parsed_times[timestamp_text] = timestamp

    value_text = fields[layout.value]
    try:
        value = float(value_text)
    except ValueError:
        raise _RowError(f"value {value_text[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise _RowError(f"value {value_text[:40]!r} is not finite")

    uuid = fields[layout.uuid].strip()
    if not uuid:
        raise _RowError("uuid is empty")
    metric = fields[layout.metric].strip()
    if not metric:
        raise _RowError("metric_name is empty")
    index_text = fields[layout.gpu_index]
    try:
        gpu_index = int(index_text)
    except ValueError:
        raise _RowError(f"gpu_id {index_text[:40]!r} is not an integer") from None
    if not 0 <= gpu_index <= MAX_GPU_INDEX:
        raise _RowError(f"gpu_id {gpu_index} is out of range")

    # Positional and inline: this runs once per row, and keywords cost a third more.
    return SampleRow(
        line_number,
        timestamp,
        metric,
        uuid,
        gpu_index,
        fields[layout.device],
        fields[layout.model],
        fields[layout.hostname],
        value,
        "" if layout.namespace is None else fields[layout.namespace],
        "" if layout.pod is None else fields[layout.pod],
        "" if layout.container is None else fields[layout.container],
        "" if layout.labels is None else fields[layout.labels],
    )


def _parse_timestamp(text: str) -> datetime:
    try:
        timestamp = datetime.fromisoformat(text)
    except ValueError:
        raise _RowError(f"timestamp {text[:40]!r} is not an RFC 3339 time") from None
    if timestamp.tzinfo is None:
        raise _RowError(f"timestamp {text[:40]!r} has no time zone")
    return timestamp


def _printable(raw: bytes) -> str:
    # PostgreSQL text cannot hold NUL; keep everything else as close to the input as possible.
    text = raw.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
    if len(text) > MAX_STORED_LINE_CHARS:
        return text[:MAX_STORED_LINE_CHARS] + f"... [{len(raw)} bytes]"
    return text


def parse_labels(labels_raw: str) -> dict[str, str]:
    """Read ``key="value",key2="value2"`` into a dict; a malformed pair is skipped.

    Values may contain commas, so pairs are found by scanning quoted values rather than
    splitting on commas.
    """
    labels: dict[str, str] = {}
    position = 0
    length = len(labels_raw)
    while position < length:
        equals = labels_raw.find("=", position)
        if equals == -1:
            break
        key = labels_raw[position:equals].strip().lstrip(",").strip()
        if equals + 1 < length and labels_raw[equals + 1] == '"':
            closing = labels_raw.find('"', equals + 2)
            if closing == -1:
                break
            value = labels_raw[equals + 2 : closing]
            position = closing + 1
        else:
            comma = labels_raw.find(",", equals + 1)
            end = length if comma == -1 else comma
            value = labels_raw[equals + 1 : end]
            position = end
        if key:
            labels[key] = value
        comma = labels_raw.find(",", position)
        position = length if comma == -1 else comma + 1
    return labels
