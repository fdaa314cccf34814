"""Remote-written series as a collect chunk carries them, and read back into rows.

The web process decodes a request (``ingest.remote_write``), keeps the series a collector can
store (``DCGM_FI_*`` fields; a series with a problem too, so that its samples are recorded as
rejected) and splits them, in the order sent, into parts of at most a chunk's samples: a long
series is cut across parts. A part travels as a chunk of format ``remote-write`` whose data
is msgpack of one entry per series, ``[labels, problem, first, timestamps, values]``: the
labels flattened (name, value, name, value, ...), the series' problem or "", the position in
the request of its first sample (the "line number" of rejected rows), the times in
milliseconds and the values. The same body always makes the same parts.

A collector reads a part with the label mapping of exporter pages (``exposition.LabelledRows``,
``ingest.devices``): each sample is stored at its own time; a sample more than
``FUTURE_TOLERANCE_MS`` ahead of the request's arrival, a series' problem, a label set that
names no device, a non-finite value and a DCGM blank sentinel are rejected rows whose text is
the sample written as an exposition line. Staleness markers never reach a part.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgpack
from prometheus_client.utils import floatToGoString

from ingest.dcgm import ParsedChunk
from ingest.exposition import DCGM_FAMILY_PREFIX, LabelledRows
from ingest.remote_write import (
    FUTURE_TOLERANCE_MS,
    METRIC_NAME_LABEL,
    Series,
    TimedValue,
    is_stale_marker,
)

ENTRY_FIELDS = 5


class SeriesError(ValueError):
    """A remote-write chunk whose data is not this module's encoding; it is dead-lettered."""


def is_stored(series: Series) -> bool:
    """Whether a collector has anything to do with the series: a DCGM field's, or one whose
    problem makes its samples rejected rows. Samples of other series are ignored."""
    name = series.labels.get(METRIC_NAME_LABEL, "")
    return bool(series.problem) or name.startswith(DCGM_FAMILY_PREFIX)


@dataclass(slots=True)
class Part:
    """Series (or pieces of them) for one chunk; ``first`` is the request position of its
    first sample, counting from 1."""

    first: int
    samples: int = 0
    entries: list[list[Any]] = field(default_factory=list)

    def encode(self) -> bytes:
        return bytes(msgpack.packb(self.entries, use_bin_type=True))


@dataclass(slots=True)
class Split:
    parts: list[Part]
    ignored: int  # samples of series no collector would store


def split(series: Iterable[Series], max_samples: int) -> Split:
    """The stored series' samples in parts of at most ``max_samples``, in the order sent."""
    parts: list[Part] = []
    ignored = 0
    position = 1
    for one in series:
        samples = [*one.samples, *one.too_far_ahead]
        if not is_stored(one):
            ignored += len(samples)
            position += len(samples)
            continue
        labels = [text for pair in one.labels.items() for text in pair]
        while samples:
            if not parts or parts[-1].samples == max_samples:
                parts.append(Part(first=position))
            part = parts[-1]
            room = max_samples - part.samples
            piece, samples = samples[:room], samples[room:]
            part.entries.append(
                [labels, one.problem, position, [at for at, _ in piece], [v for _, v in piece]]
            )
            part.samples += len(piece)
            position += len(piece)
    return Split(parts, ignored)


def parse_series(data: bytes, *, received_at: datetime, keep_job_and_instance: bool) -> ParsedChunk:
    """A part's rows, each at its own time; raises ``SeriesError`` for data that is not a part."""
    horizon = round(received_at.timestamp() * 1000) + FUTURE_TOLERANCE_MS
    rows = LabelledRows(received_at, source_times=True, keep_job_and_instance=keep_job_and_instance)
    for labels, problem, first, timestamps, values in _entries(data):
        # Without its name, a label set is the same for every field of a GPU, so each GPU is
        # resolved once per part however many fields it sends.
        name = labels.pop(METRIC_NAME_LABEL, "")
        if not problem and not name.startswith(DCGM_FAMILY_PREFIX):
            rows.parsed.skipped += len(values)
            continue
        series = problem or rows.series_of(labels)
        for line, timestamp, value in zip(
            range(first, first + len(values)), timestamps, values, strict=True
        ):
            if is_stale_marker(value):
                rows.parsed.skipped += 1
                continue
            if timestamp > horizon:
                reason: str | None = (
                    f"timestamp {timestamp} (ms) is more than {FUTURE_TOLERANCE_MS // 60_000} "
                    "minutes ahead of the time the request arrived"
                )
            else:
                reason = rows.add(series, name, value, timestamp / 1000, line)
            if reason is not None:
                rows.reject(line, exposition_line(name, labels, (timestamp, value)), reason)
    return rows.finish()


def _entries(data: bytes) -> Iterator[tuple[dict[str, str], str, int, list[int], list[float]]]:
    try:
        entries = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.UnpackException) as error:
        raise SeriesError(f"the data is not msgpack: {error}") from None
    if not isinstance(entries, list):
        raise SeriesError("the data is not a list of series")
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == ENTRY_FIELDS):
            raise SeriesError(f"a series entry is not a list of {ENTRY_FIELDS} fields")
        flat, problem, first, timestamps, values = entry
        if not (
            isinstance(flat, list)
            and len(flat) % 2 == 0
            and set(map(type, flat)) <= {str}
            and isinstance(problem, str)
            and type(first) is int
            and isinstance(timestamps, list)
            and isinstance(values, list)
            and len(timestamps) == len(values)
            and set(map(type, timestamps)) <= {int}
            and set(map(type, values)) <= {float}
        ):
            raise SeriesError("a series entry does not hold labels, problem, first, times, values")
        yield dict(zip(flat[::2], flat[1::2], strict=True)), problem, first, timestamps, values


def exposition_line(name: str, labels: dict[str, str], sample: TimedValue) -> str:
    """The sample of the series ``name{labels}`` as a line of the text exposition format, for a
    rejected row."""
    timestamp, value = sample
    pairs = ",".join(f'{key}="{_escaped(text)}"' for key, text in labels.items())
    shown: str = floatToGoString(value)  # type: ignore[no-untyped-call]
    return f"{name}{{{pairs}}} {shown} {timestamp}"


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
