"""Parsing of DCGM CSV exports: the header's column layout, rows, and per-row validation.

A record is one physical line (DCGM never puts a newline inside a field), so each line is
parsed on its own with the real CSV dialect: a stray quote or a wrong column count rejects
that line alone instead of swallowing its neighbours. ``labels_raw`` holds ``key="value"``
pairs with commas and doubled quotes inside one quoted field, which only a CSV parser reads.

A MIG instance is a device of its own: its rows carry the parent GPU's uuid plus a GPU instance
id and profile, in the optional ``gpu_instance_id``/``gpu_instance_profile`` columns or, in a
file without them, as ``GPU_I_ID``/``GPU_I_PROFILE`` in ``labels_raw``. A value that is a
DCGM blank sentinel (``ingest.blanks``) is rejected with its meaning, never stored.

The module is longer than the project's others on purpose: the fast path over a whole chunk
and the line-by-line fallback feed one row builder, and the header layout, the field limits
and every rejection reason are what that builder checks. Split apart, the rules a row must
meet would live in several modules that have to change together.
"""

from __future__ import annotations

import csv
import math
import operator
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from ingest.blanks import SMALLEST_SENTINEL, blank_reason
from ingest.fields import dcgm_type

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
OPTIONAL_COLUMNS = (
    "container",
    "pod",
    "namespace",
    "labels_raw",
    "gpu_instance_id",
    "gpu_instance_profile",
)

# A raw line is stored with its rejection; beyond this it is cut, so a hostile 10 MB line
# cannot bloat the rejected-rows table.
MAX_STORED_LINE_CHARS = 2000
MAX_GPU_INDEX = 32767
MAX_GPU_INSTANCE_ID = 32767
# The API names a MIG instance "<uuid>:<GPU instance id>", so a uuid cannot hold the colon.
DEVICE_ID_SEPARATOR = ":"
# Times are stored by their day in UTC (and partitioned by it on PostgreSQL); a year at the
# very edge of Python's calendar would overflow that arithmetic, and no exporter writes one.
FIRST_YEAR = 1900
LAST_YEAR = 9000
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
    "gpu_instance_profile": 32,
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
    instance_id: int | None
    instance_profile: int | None

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
            instance_id=position.get("gpu_instance_id"),
            instance_profile=position.get("gpu_instance_profile"),
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
    """One valid data line, typed: the row-at-a-time view of a ``ParsedChunk``."""

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
    gpu_instance_id: int | None = None


DeviceKey = tuple[str, int | None]


class GpuFields(NamedTuple):
    """The fields that describe a row's device and workload: the same on every row of it.

    A device is a whole GPU (its uuid) or a MIG instance (its parent's uuid and its GPU
    instance id).
    """

    uuid: str
    gpu_index: int
    device: str
    model: str
    hostname: str
    namespace: str
    pod: str
    container: str
    labels_raw: str  # as on the first row seen with these fields
    gpu_instance_id: int | None = None  # None for a whole GPU
    gpu_instance_profile: str = ""
    # The GPU's labels when a page gave them as a label set; None: read from labels_raw.
    labels: tuple[tuple[str, str], ...] | None = None

    @property
    def device_key(self) -> DeviceKey:
        return (self.uuid, self.gpu_instance_id)


class MetricDoc(NamedTuple):
    """What an exposition page says of a metric family: its HELP text and TYPE."""

    help: str
    kind: str


class RejectedLine(NamedTuple):
    line_number: int
    raw: str
    reason: str


@dataclass(slots=True)
class ParsedChunk:
    """The valid rows of a chunk as columns, and its rejected lines.

    A chunk of DCGM rows names few GPUs, metrics and times many times over, so each distinct
    one is kept once and row ``i`` refers to them by position: its GPU is
    ``gpus[gpu_of_row[i]]``, its metric ``metrics[metric_of_row[i]]``, its time
    ``times[time_of_row[i]]``. The collector resolves the few distinct names to ids and
    writes the rows without a Python object per row.
    """

    gpus: list[GpuFields] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    gpu_of_row: list[int] = field(default_factory=list)
    metric_of_row: list[int] = field(default_factory=list)
    time_of_row: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    line_of_row: list[int] = field(default_factory=list)
    rejected: list[RejectedLine] = field(default_factory=list)
    # Exposition pages only: samples of families that are not DCGM fields (go_*, process_*),
    # neither rows nor rejections; and the page's HELP and TYPE of each DCGM field.
    skipped: int = 0
    metric_docs: dict[str, MetricDoc] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def rows(self) -> list[SampleRow]:
        """The valid rows one by one (for reports and tests; the collector uses the columns)."""
        gpus, metrics, times = self.gpus, self.metrics, self.times
        rows = []
        for line, gpu_at, metric_at, time_at, value in zip(
            self.line_of_row,
            self.gpu_of_row,
            self.metric_of_row,
            self.time_of_row,
            self.values,
            strict=True,
        ):
            gpu = gpus[gpu_at]
            rows.append(
                SampleRow(
                    line,
                    times[time_at],
                    metrics[metric_at],
                    gpu.uuid,
                    gpu.gpu_index,
                    gpu.device,
                    gpu.model,
                    gpu.hostname,
                    value,
                    gpu.namespace,
                    gpu.pod,
                    gpu.container,
                    gpu.labels_raw,
                    gpu.gpu_instance_id,
                )
            )
        return rows

    def reject_rows(self, doomed: Callable[[int], bool], reason: str) -> None:
        """Move the rows whose position satisfies ``doomed`` to the rejected lines."""
        keep = [index for index in range(len(self.values)) if not doomed(index)]
        if len(keep) == len(self.values):
            return
        kept = set(keep)
        self.rejected.extend(
            RejectedLine(line, "", reason)
            for index, line in enumerate(self.line_of_row)
            if index not in kept
        )
        self.rejected.sort()
        self.gpu_of_row = [self.gpu_of_row[index] for index in keep]
        self.metric_of_row = [self.metric_of_row[index] for index in keep]
        self.time_of_row = [self.time_of_row[index] for index in keep]
        self.values = [self.values[index] for index in keep]
        self.line_of_row = [self.line_of_row[index] for index in keep]


class RowError(ValueError):
    """A line is invalid; the message is the reason recorded with it."""


class _NotOneRecordPerLineError(Exception):
    """A chunk that one CSV reader cannot parse line for line; it is parsed line by line."""


def parse_lines(data: bytes, layout: ColumnLayout, first_line: int) -> ParsedChunk:
    """Parse a run of whole lines; every line ends as a row or as a rejection, none raises."""
    return _parse_clean_chunk(data, layout, first_line) or _parse_line_by_line(
        data, layout, first_line
    )


def _parse_clean_chunk(data: bytes, layout: ColumnLayout, first_line: int) -> ParsedChunk | None:
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
    reader = csv.reader(lines, strict=True)

    def records() -> Iterator[tuple[int, list[str]]]:
        for offset, fields in enumerate(reader):
            if reader.line_num != offset + 1 or not fields:
                raise _NotOneRecordPerLineError
            yield first_line + offset, fields

    builder = _ChunkBuilder(layout)
    try:
        builder.add_records(records())
    except (csv.Error, _NotOneRecordPerLineError):
        return None
    # Every record was exactly its own line, so every line is now a row or a rejection.
    return builder.finish(lambda line_number: lines[line_number - first_line].encode())


def _parse_line_by_line(data: bytes, layout: ColumnLayout, first_line: int) -> ParsedChunk:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line, not an empty line
    builder = _ChunkBuilder(layout)

    def records() -> Iterator[tuple[int, list[str]]]:
        for offset, raw in enumerate(lines):
            line_number = first_line + offset
            try:
                fields = _line_fields(raw)
            except RowError as error:
                builder.reject(line_number, str(error))
                continue
            except Exception as error:  # noqa: BLE001  (hostile input must never stop a chunk)
                builder.reject(line_number, _unparseable(error))
                continue
            yield line_number, fields

    builder.add_records(records())
    return builder.finish(lambda line_number: lines[line_number - first_line])


class _ChunkBuilder:
    """Validates rows and fills a ``ParsedChunk``'s columns, judging each distinct GPU,
    metric and time once: a chunk repeats them thousands of times.

    The lookups map raw field text to a position in the chunk's lists, or to a negative
    number ``~k`` for a value found invalid, whose reason is ``self.errors[k]``.
    """

    def __init__(self, layout: ColumnLayout) -> None:
        self.layout = layout
        self.parsed = ParsedChunk()
        self.errors: list[str] = []
        self.rejections: list[tuple[int, str]] = []
        positions = [layout.uuid, layout.gpu_index, layout.device, layout.model, layout.hostname]
        optional = (
            layout.namespace,
            layout.pod,
            layout.container,
            layout.instance_id,
            layout.instance_profile,
        )
        positions += [p for p in optional if p is not None]
        self.gpu_key = operator.itemgetter(*positions)
        self.gpu_lookup: dict[object, int] = {}
        self.metric_lookup: dict[str, int] = {}
        self.time_lookup: dict[str, int] = {}

    def reject(self, line_number: int, reason: str) -> None:
        self.rejections.append((line_number, reason))

    def add_records(self, records: Iterable[tuple[int, list[str]]]) -> None:
        """Add each (line number, fields) as a row, or reject it with its reason."""
        parsed, reject = self.parsed, self.reject
        width = len(self.layout.names)
        gpu_key, gpu_lookup = self.gpu_key, self.gpu_lookup
        metric_lookup, time_lookup = self.metric_lookup, self.time_lookup
        metric_at, time_at, value_at = self.layout.metric, self.layout.timestamp, self.layout.value
        # Instance columns, when the file has them, say which rows are MIG instances; without
        # them labels_raw does, which costs a substring search per row (~0.25 us).
        labels_at = self.layout.labels if self.layout.instance_id is None else None
        add_gpu, add_metric, add_time = (
            parsed.gpu_of_row.append,
            parsed.metric_of_row.append,
            parsed.time_of_row.append,
        )
        add_value, add_line = parsed.values.append, parsed.line_of_row.append
        isfinite = math.isfinite
        # Locals and no call per row but for new names: this loop runs for every sample.
        for line_number, fields in records:
            try:
                if len(fields) != width:
                    reject(line_number, _column_count_reason(fields, width))
                    continue
                key = gpu_key(fields)
                # A MIG instance named only in labels_raw differs from its GPU there alone.
                if labels_at is not None and "GPU_I_ID" in fields[labels_at]:
                    key = (key, fields[labels_at])
                gpu = gpu_lookup.get(key)
                if gpu is None:
                    gpu = self._new_gpu(fields, key)
                metric = metric_lookup.get(fields[metric_at])
                if metric is None:
                    metric = self._new_metric(fields[metric_at])
                time = time_lookup.get(fields[time_at])
                if time is None:
                    time = self._new_time(fields[time_at])
                if gpu < 0 or metric < 0 or time < 0:
                    invalid = gpu if gpu < 0 else metric if metric < 0 else time
                    reject(line_number, self.errors[~invalid])
                    continue
                value_text = fields[value_at]
                try:
                    value = float(value_text)
                except ValueError:
                    reject(line_number, f"value {value_text[:40]!r} is not a number")
                    continue
                if not isfinite(value):
                    reject(line_number, f"value {value_text[:40]!r} is not finite")
                    continue
                if value >= SMALLEST_SENTINEL:  # rare: only here can a value be a sentinel
                    blank = blank_reason(value_text, dcgm_type(parsed.metrics[metric]))
                    if blank is not None:
                        reject(line_number, blank)
                        continue
            except Exception as error:  # noqa: BLE001  (hostile input must never stop a chunk)
                reject(line_number, _unparseable(error))
                continue
            add_gpu(gpu)
            add_metric(metric)
            add_time(time)
            add_value(value)
            add_line(line_number)

    def _invalid(self, reason: str) -> int:
        self.errors.append(reason)
        return ~(len(self.errors) - 1)

    def _new_gpu(self, fields: list[str], key: object) -> int:
        try:
            gpu = _gpu_fields(fields, self.layout)
        except RowError as error:
            self.gpu_lookup[key] = position = self._invalid(str(error))
            return position
        self.gpu_lookup[key] = position = len(self.parsed.gpus)
        self.parsed.gpus.append(gpu)
        return position

    def _new_metric(self, text: str) -> int:
        name = text.strip()
        if len(text) > MAX_FIELD_CHARS["metric_name"]:
            position = self._invalid(_too_long("metric_name"))
        elif not name:
            position = self._invalid("metric_name is empty")
        else:
            position = len(self.parsed.metrics)
            self.parsed.metrics.append(name)
        self.metric_lookup[text] = position
        return position

    def _new_time(self, text: str) -> int:
        try:
            timestamp = _parse_timestamp(text)
        except RowError as error:
            position = self._invalid(str(error))
        else:
            position = len(self.parsed.times)
            self.parsed.times.append(timestamp)
        self.time_lookup[text] = position
        return position

    def finish(self, raw_line: Callable[[int], bytes]) -> ParsedChunk:
        self.parsed.rejected = [
            RejectedLine(line_number, printable_line(raw_line(line_number)), reason)
            for line_number, reason in sorted(self.rejections)
        ]
        return self.parsed


def _gpu_fields(fields: list[str], layout: ColumnLayout) -> GpuFields:
    def optional(position: int | None) -> str:
        return "" if position is None else fields[position]

    labels_raw = optional(layout.labels)
    instance_id, instance_profile = optional(layout.instance_id), optional(layout.instance_profile)
    if layout.instance_id is None and "GPU_I_ID" in labels_raw:
        labels = parse_labels(labels_raw)
        instance_id = labels.get("GPU_I_ID", "")
        instance_profile = instance_profile or labels.get("GPU_I_PROFILE", "")
    return gpu_fields(
        uuid=fields[layout.uuid],
        gpu_index=fields[layout.gpu_index],
        device=fields[layout.device],
        model=fields[layout.model],
        hostname=fields[layout.hostname],
        namespace=optional(layout.namespace),
        pod=optional(layout.pod),
        container=optional(layout.container),
        labels_raw=labels_raw,
        gpu_instance_id=instance_id,
        gpu_instance_profile=instance_profile,
    )


def gpu_fields(
    *,
    uuid: str,
    gpu_index: str,
    device: str,
    model: str,
    hostname: str,
    namespace: str = "",
    pod: str = "",
    container: str = "",
    labels_raw: str = "",
    gpu_instance_id: str = "",
    gpu_instance_profile: str = "",
    labels: tuple[tuple[str, str], ...] | None = None,
) -> GpuFields:
    """A row's device and workload from their texts, validated; raises ``RowError``.

    The one check of these fields for every source (CSV columns, exposition labels).
    """
    widths = {
        "uuid": uuid,
        "device": device,
        "modelName": model,
        "Hostname": hostname,
        "namespace": namespace,
        "pod": pod,
        "container": container,
        "gpu_instance_profile": gpu_instance_profile,
    }
    for name, text in widths.items():
        if len(text) > MAX_FIELD_CHARS[name]:
            raise RowError(_too_long(name))
    uuid = uuid.strip()
    if not uuid:
        raise RowError("uuid is empty")
    if DEVICE_ID_SEPARATOR in uuid:
        raise RowError(
            f"uuid {uuid[:40]!r} contains {DEVICE_ID_SEPARATOR!r}, "
            "which separates a GPU from its MIG instance in device ids"
        )
    instance = gpu_instance_id.strip()
    return GpuFields(
        uuid,
        _whole_number("gpu_id", gpu_index, MAX_GPU_INDEX),
        device,
        model,
        hostname,
        namespace,
        pod,
        container,
        labels_raw,
        _whole_number("gpu_instance_id", instance, MAX_GPU_INSTANCE_ID) if instance else None,
        gpu_instance_profile,
        labels,
    )


def _whole_number(name: str, text: str, largest: int) -> int:
    try:
        number = int(text)
    except ValueError:
        raise RowError(f"{name} {text[:40]!r} is not an integer") from None
    if not 0 <= number <= largest:
        raise RowError(f"{name} {number} is out of range")
    return number


def _too_long(name: str) -> str:
    return f"{name} is longer than {MAX_FIELD_CHARS[name]} characters"


def _column_count_reason(fields: list[str], width: int) -> str:
    if len(fields) == 1 and not fields[0].strip():
        return "empty line"
    return f"expected {width} columns, found {len(fields)}"


def _unparseable(error: Exception) -> str:
    return f"unparseable line: {type(error).__name__}: {error}"[:255]


def _line_fields(raw: bytes) -> list[str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RowError("line is not valid UTF-8") from None
    if text.endswith("\r"):
        text = text[:-1]
    if not text.strip():
        raise RowError("empty line")
    if "\x00" in text:
        raise RowError("line contains a NUL byte")
    try:
        return next(csv.reader((text,), strict=True))
    except csv.Error as error:
        raise RowError(f"malformed CSV: {error}") from None


def _parse_timestamp(text: str) -> datetime:
    try:
        timestamp = datetime.fromisoformat(text)
    except ValueError:
        raise RowError(f"timestamp {text[:40]!r} is not an RFC 3339 time") from None
    if timestamp.tzinfo is None:
        raise RowError(f"timestamp {text[:40]!r} has no time zone")
    try:
        utc_year = timestamp.astimezone(UTC).year
    except OverflowError:  # e.g. 0001-01-01 at +01:00 is a day before the calendar starts
        utc_year = 0
    if not FIRST_YEAR <= utc_year <= LAST_YEAR:
        raise RowError(f"timestamp {text[:40]!r} is outside the years {FIRST_YEAR} to {LAST_YEAR}")
    return timestamp


def printable_line(raw: bytes) -> str:
    # PostgreSQL text cannot hold NUL; keep everything else as close to the input as possible.
    # Only the stored head is decoded: escaping a hostile 10 MB line whole takes seconds.
    head = raw[: MAX_STORED_LINE_CHARS * 4]
    text = head.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
    if len(text) > MAX_STORED_LINE_CHARS or len(raw) > len(head):
        return text[:MAX_STORED_LINE_CHARS] + f"... [{len(raw)} bytes]"
    return text


# Labels that describe one sample, not its GPU: the metric's own name (Prometheus's
# ``__name__``, which every row of an export repeats) and the workload using the GPU at that
# moment (dcgm-exporter's Kubernetes attribution, or Prometheus's ``exported_`` copies of it
# when the scrape target's own labels clash), which is stored per sample. A GPU's labels are
# taken from the first row seen, so any of these kept would pin one row's value on the GPU.
PER_SAMPLE_LABELS = frozenset(
    {
        "__name__",
        "container",
        "pod",
        "namespace",
        "exported_container",
        "exported_pod",
        "exported_namespace",
    }
)


def gpu_labels(labels_raw: str) -> dict[str, str]:
    """The labels that belong to the GPU itself: ``labels_raw`` less the per-sample keys."""
    labels = parse_labels(labels_raw)
    return {key: value for key, value in labels.items() if key not in PER_SAMPLE_LABELS}


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
