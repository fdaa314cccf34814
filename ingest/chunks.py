"""The collect message: a run of raw CSV lines or one exposition page, compressed, with
everything to commit it.

The streamer only finds line boundaries; the collector parses. Raw lines compress well
(``labels_raw`` repeats), which is what keeps Celery's per-byte costs (envelope, transport
encoding, the un-acked store) small. Zstandard at level 1 compresses better and faster than
zlib did (docs/measurements.md, "Chunk compression"). Celery serialises the payload with
msgpack, which carries bytes as bytes.

A message without a ``codec`` is zlib, as every chunk was before Zstandard: messages in
flight during an upgrade and dead letters kept from before stay readable.

``format`` says what the data is: ``csv`` (lines of a DCGM CSV, read with ``columns``; the
default, so messages from before the field existed read as before), ``exposition`` (a
Prometheus text-format page), ``openmetrics`` (an OpenMetrics page) or ``remote-write``
(series a Prometheus remote-wrote, ``ingest.pushed_series``). A page's chunk also carries
``scraped_at``, the time its lines without a timestamp of their own stand for; a remote-write
chunk carries there the time its request arrived. The payload is a function of the data and
these few fields only, so a page stored with its outstanding chunk is re-published as the
very same message.

A pushed chunk (``PUSH_PREFIX``: a remote write or an import sent over the API) belongs to no
stream source: its ``source_id`` is None.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import zstandard

COMPRESSION_LEVEL = 1
CODEC = "zstd"
# A chunk is thousands of lines; a frame claiming more than this is not one of ours.
MAX_CHUNK_BYTES = 1 << 30
# The ledger's chunk id column is this wide.
MAX_CHUNK_ID_CHARS = 100
# The ids of chunks pushed over the API start with this (``ingest.push``).
PUSH_PREFIX = "push:"


class PayloadError(ValueError):
    """A collect message that is not a chunk; it is dead-lettered whole."""


class ChunkFormat(StrEnum):
    CSV = "csv"
    EXPOSITION = "exposition"
    OPENMETRICS = "openmetrics"
    REMOTE_WRITE = "remote-write"


@dataclass(frozen=True, slots=True)
class Chunk:
    chunk_id: str
    source_id: int | None  # None for a pushed chunk
    first_line: int
    line_count: int
    columns: tuple[str, ...]  # the CSV header's names; empty for a page
    stamp: datetime | None  # processing-time stamp; None keeps the source's timestamps
    data: bytes  # the raw lines, uncompressed
    format: ChunkFormat = ChunkFormat.CSV
    scraped_at: datetime | None = None  # a page's scrape time; a remote write's arrival

    @property
    def pushed(self) -> bool:
        """Whether the chunk came over the API (remote write or an import), not a source."""
        return self.chunk_id.startswith(PUSH_PREFIX)

    def to_payload(self) -> dict[str, Any]:
        return {
            "id": self.chunk_id,
            "source": self.source_id,
            "line": self.first_line,
            "lines": self.line_count,
            "columns": list(self.columns),
            "stamp": self.stamp.isoformat() if self.stamp else None,
            "format": self.format.value,
            "scraped_at": self.scraped_at.isoformat() if self.scraped_at else None,
            "codec": CODEC,
            "data": zstandard.ZstdCompressor(level=COMPRESSION_LEVEL).compress(self.data),
        }

    @classmethod
    def from_payload(cls, payload: object) -> Chunk:
        if not isinstance(payload, dict):
            raise PayloadError(f"payload is a {type(payload).__name__}, not a chunk")
        try:
            stamp = _aware_time(payload["stamp"], "stamp")
            chunk_format = ChunkFormat(payload.get("format", ChunkFormat.CSV))
            scraped_at = _aware_time(payload.get("scraped_at"), "scraped_at")
            if chunk_format is not ChunkFormat.CSV and scraped_at is None:
                raise PayloadError(f"a chunk of format {chunk_format} has no scraped_at")
            data = _decompress(payload.get("codec"), payload["data"])
            chunk = cls(
                chunk_id=str(payload["id"]),
                source_id=_source_id(payload["source"], str(payload["id"])),
                first_line=_whole_number(payload["line"]),
                line_count=_whole_number(payload["lines"]),
                columns=tuple(str(name) for name in payload["columns"]),
                stamp=stamp,
                data=data,
                format=chunk_format,
                scraped_at=scraped_at,
            )
        except PayloadError:
            raise
        except (KeyError, TypeError, ValueError, zlib.error, zstandard.ZstdError) as error:
            raise PayloadError(f"payload is not a readable chunk: {error!r}") from None
        if not chunk.chunk_id or len(chunk.chunk_id) > MAX_CHUNK_ID_CHARS:
            raise PayloadError("chunk id is missing or too long")
        return chunk


def _aware_time(text: str | None, name: str) -> datetime | None:
    moment = datetime.fromisoformat(text) if text is not None else None
    if moment is not None and moment.tzinfo is None:
        raise PayloadError(f"chunk {name} has no time zone")
    return moment


def _source_id(value: object, chunk_id: str) -> int | None:
    # Only a pushed chunk belongs to no source.
    return None if value is None and chunk_id.startswith(PUSH_PREFIX) else _whole_number(value)


def _whole_number(value: object) -> int:
    # int() would truncate 3.7 and accept True; a chunk's numbers are exact or it is corrupt.
    if type(value) is not int:
        raise ValueError(f"{value!r} is not a whole number")
    return value


def _decompress(codec: object, data: bytes) -> bytes:
    if codec is None:
        return zlib.decompress(data)
    if codec != CODEC:
        raise ValueError(f"unknown codec {codec!r}")
    size = zstandard.frame_content_size(data)
    if not 0 <= size <= MAX_CHUNK_BYTES:
        raise ValueError(f"frame content size {size} is unknown or too large")
    return bytes(zstandard.ZstdDecompressor().decompress(data))
