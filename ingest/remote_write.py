"""Prometheus remote write 1.0 bodies, read into plain series.

A body is a ``WriteRequest`` protobuf message (``remote_write.proto``; the generated
``remote_write_pb2`` module is committed, ``make protobuf`` regenerates it) compressed with
snappy's block format. Reading one checks the length the snappy block declares against the
caller's limit before anything is decompressed, so a few bytes claiming gigabytes cost
nothing, then lets the protobuf runtime parse it.

What comes out is free of protobuf types: per series its labels and its samples as
``(timestamp in ms, value)``. Prometheus's staleness markers (a NaN with one particular bit
pattern, written when a series disappears) are not samples: they are left out and counted.
Samples stamped too far ahead of the receiver's clock are set apart with the series, for the
caller to reject with that reason. Any other NaN or an infinity is kept as sent: judging
values is the collector's work, as for every other input.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cramjam
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from ingest.remote_write_pb2 import Label, WriteRequest

# Prometheus's value.StaleNaN: a signalling NaN no arithmetic produces, so its bits identify
# it; an ordinary NaN sample (0x7ff8000000000001 from Prometheus) is a sample like any other.
STALE_NAN_BITS = 0x7FF0000000000002
# A sample stamped further than this ahead of the receiver's clock is refused: a clock that far
# off would put it beyond every later query's "now".
FUTURE_TOLERANCE_MS = 10 * 60 * 1000
METRIC_NAME_LABEL = "__name__"

_DOUBLE = struct.Struct("<d")
_UINT64 = struct.Struct("<Q")

# (timestamp in milliseconds since the epoch, value)
TimedValue = tuple[int, float]


class RemoteWriteError(ValueError):
    """The body is not a snappy-compressed remote write 1.0 ``WriteRequest``; says why."""


class DeclaredLengthError(RemoteWriteError):
    """The snappy block declares more bytes than the caller accepts."""


@dataclass(slots=True)
class Series:
    """One time series of a request, as sent.

    ``problem`` names what makes the whole series unusable (no metric name, a label name given
    twice), or is empty; its samples are kept either way, so each can be recorded as rejected
    with that reason.
    """

    labels: dict[str, str]
    samples: list[TimedValue] = field(default_factory=list)
    # Stamped more than FUTURE_TOLERANCE_MS after the request arrived.
    too_far_ahead: list[TimedValue] = field(default_factory=list)
    problem: str = ""


@dataclass(slots=True)
class WriteBatch:
    """What one request held; only ``series`` is data, the counts are for the answer and logs."""

    series: list[Series] = field(default_factory=list)
    samples: int = 0  # kept in ``Series.samples``
    too_far_ahead: int = 0
    stale_markers: int = 0  # skipped
    histograms: int = 0  # native histogram samples: not read, skipped
    exemplars: int = 0  # skipped
    metadata: int = 0  # metric metadata entries: skipped


def is_stale_marker(value: float) -> bool:
    """Whether ``value`` is Prometheus's staleness marker (NaN compared unequal to itself)."""
    return value != value and _UINT64.unpack(_DOUBLE.pack(value))[0] == STALE_NAN_BITS


def uncompress(body: bytes, max_bytes: int) -> bytes:
    """The content of a snappy block, refused before decompressing when it declares more than
    ``max_bytes``."""
    if not body:
        raise RemoteWriteError("The body is empty: send a snappy-compressed WriteRequest.")
    try:
        declared = cramjam.snappy.decompress_raw_len(body)
    except cramjam.DecompressionError as error:
        raise RemoteWriteError(
            f"The body is not snappy-compressed (block format): {error}."
        ) from None
    if declared > max_bytes:
        raise DeclaredLengthError(
            f"The snappy block declares {declared} bytes uncompressed, over the limit of "
            f"{max_bytes}; send smaller batches."
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as error:
        raise RemoteWriteError(f"The snappy block is corrupt or cut short: {error}.") from None


def parse(message: bytes) -> WriteRequest:
    """The ``WriteRequest`` in ``message``; anything else is a ``RemoteWriteError``."""
    request = WriteRequest()
    try:
        request.ParseFromString(message)
    except DecodeError as error:
        raise RemoteWriteError(f"The body is not a remote write WriteRequest: {error}.") from None
    # Bytes that are not protobuf at all often still parse, as fields nobody declared; a real
    # WriteRequest has none at the top level (remote write 2.0 uses other numbers).
    fields = UnknownFieldSet(request)
    unknown = sorted({fields[index].field_number for index in range(len(fields))})
    if unknown:
        raise RemoteWriteError(
            "The body is not a remote write 1.0 WriteRequest: it has field(s) "
            f"{', '.join(map(str, unknown))}, which that message does not."
        )
    return request


def decode(body: bytes, *, max_bytes: int, now_ms: int | None = None) -> WriteBatch:
    """Read a remote write body (snappy block of a ``WriteRequest``) into a ``WriteBatch``.

    ``max_bytes`` bounds the decompressed message; ``now_ms`` (default: the clock) is when
    the request arrived, from which samples too far ahead are judged. Raises
    ``RemoteWriteError`` (``DeclaredLengthError`` for the size) and nothing else.
    """
    request = parse(uncompress(body, max_bytes))
    horizon = (time.time_ns() // 1_000_000 if now_ms is None else now_ms) + FUTURE_TOLERANCE_MS
    batch = WriteBatch(metadata=len(request.metadata))
    for timeseries in request.timeseries:
        series = Series(labels={label.name: label.value for label in timeseries.labels})
        series.problem = _problem(timeseries.labels, series.labels)
        for sample in timeseries.samples:
            value, timestamp = sample.value, sample.timestamp
            if is_stale_marker(value):
                batch.stale_markers += 1
            elif timestamp > horizon:
                series.too_far_ahead.append((timestamp, value))
            else:
                series.samples.append((timestamp, value))
        batch.samples += len(series.samples)
        batch.too_far_ahead += len(series.too_far_ahead)
        batch.histograms += len(timeseries.histograms)
        batch.exemplars += len(timeseries.exemplars)
        if series.samples or series.too_far_ahead:
            batch.series.append(series)
    return batch


def _problem(sent: Sequence[Label], labels: dict[str, str]) -> str:
    """Why a series cannot be stored whatever its samples, or ""."""
    if len(labels) != len(sent):
        names = [label.name for label in sent]
        repeated = sorted({name for name in names if names.count(name) > 1})
        return f"label name(s) {', '.join(map(repr, repeated))} given more than once"
    if not labels.get(METRIC_NAME_LABEL):
        return f"no {METRIC_NAME_LABEL} label: the series has no metric name"
    return ""
