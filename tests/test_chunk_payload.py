"""The collect message: a chunk survives the round trip, and anything else is a PayloadError."""

from __future__ import annotations

import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgpack
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import chunks
from ingest.chunks import Chunk, PayloadError
from tests.support.chunks import chunk_of
from tests.support.reference import REFERENCE_COLUMNS, REFERENCE_CSV

COLUMNS = REFERENCE_COLUMNS
PAYLOAD_KEYS = ("id", "source", "line", "lines", "columns", "stamp", "data")


def reference_lines() -> bytes:
    return REFERENCE_CSV.read_bytes().partition(b"\n")[2]


def make_chunk(**changes: Any) -> Chunk:
    chunk = chunk_of(
        [b'"a","b"', b'"c","d"'],
        chunk_id="source-3:000000001234",
        source_id=3,
        first_line=1234,
        stamp=datetime(2025, 7, 18, 20, 42, 34, 123456, tzinfo=timezone(timedelta(hours=2))),
    )
    return replace(chunk, **changes)


def offset_of(stamp: datetime | None) -> timedelta | None:
    return None if stamp is None else stamp.utcoffset()


def good_payload(**changes: Any) -> dict[str, Any]:
    return {**make_chunk().to_payload(), **changes}


# --- round trip ----------------------------------------------------------------------------


def test_round_trip_preserves_every_field_with_a_zoned_stamp() -> None:
    chunk = make_chunk()
    assert Chunk.from_payload(chunk.to_payload()) == chunk


def test_round_trip_keeps_the_stamp_offset() -> None:
    stamp = Chunk.from_payload(make_chunk().to_payload()).stamp
    assert stamp is not None
    assert stamp.utcoffset() == timedelta(hours=2)


def test_round_trip_preserves_a_missing_stamp() -> None:
    chunk = make_chunk(stamp=None)
    assert Chunk.from_payload(chunk.to_payload()) == chunk


def test_payload_carries_the_stamp_as_iso_text() -> None:
    assert make_chunk().to_payload()["stamp"] == "2025-07-18T20:42:34.123456+02:00"


def test_payload_carries_columns_as_a_list() -> None:
    assert make_chunk().to_payload()["columns"] == list(COLUMNS)


def test_payload_survives_msgpack_as_celery_sends_it() -> None:
    chunk = make_chunk()
    payload = msgpack.unpackb(msgpack.packb(chunk.to_payload(), use_bin_type=True), raw=False)
    assert Chunk.from_payload(payload) == chunk


def test_round_trip_preserves_the_reference_lines() -> None:
    chunk = make_chunk(data=reference_lines(), line_count=2470, first_line=2)
    assert Chunk.from_payload(chunk.to_payload()).data == reference_lines()


def test_compresses_the_reference_lines_to_under_a_fifth_of_their_size() -> None:
    raw = reference_lines()
    assert len(make_chunk(data=raw).to_payload()["data"]) < len(raw) / 5


SAFE_TEXT = st.text(st.characters(codec="utf-8"), max_size=20)
OFFSETS = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@settings(max_examples=200, deadline=None)
@given(
    chunk=st.builds(
        Chunk,
        chunk_id=st.text(st.characters(codec="utf-8"), min_size=1, max_size=100),
        source_id=st.integers(min_value=0, max_value=2**63 - 1),
        first_line=st.integers(min_value=1, max_value=2**63 - 1),
        line_count=st.integers(min_value=0, max_value=2**31),
        columns=st.lists(SAFE_TEXT, max_size=14).map(tuple),
        stamp=st.none() | st.datetimes(timezones=OFFSETS),
        data=st.binary(max_size=2_000),
    )
)
def test_round_trip_preserves_any_chunk(chunk: Chunk) -> None:
    payload = msgpack.unpackb(msgpack.packb(chunk.to_payload(), use_bin_type=True), raw=False)
    restored = Chunk.from_payload(payload)
    assert restored == chunk
    assert offset_of(restored.stamp) == offset_of(chunk.stamp)


# --- payloads that are not chunks ----------------------------------------------------------


@pytest.mark.parametrize("payload", [None, [], "chunk", b"chunk", 42, ["id", "source"]], ids=repr)
def test_from_payload_rejects_a_payload_that_is_not_a_dict(payload: object) -> None:
    with pytest.raises(PayloadError, match="not a chunk"):
        Chunk.from_payload(payload)


@pytest.mark.parametrize("missing", PAYLOAD_KEYS)
def test_from_payload_rejects_a_payload_missing_a_key(missing: str) -> None:
    payload = good_payload()
    del payload[missing]
    with pytest.raises(PayloadError, match=repr(missing)):
        Chunk.from_payload(payload)


def test_from_payload_rejects_an_empty_dict() -> None:
    with pytest.raises(PayloadError):
        Chunk.from_payload({})


def test_from_payload_rejects_corrupt_compressed_data() -> None:
    compressed = good_payload()["data"]
    with pytest.raises(PayloadError, match="not a readable chunk"):
        Chunk.from_payload(good_payload(data=compressed[:6] + b"garbage" + compressed[6:]))


def test_from_payload_rejects_truncated_compressed_data() -> None:
    with pytest.raises(PayloadError, match="not a readable chunk"):
        Chunk.from_payload(good_payload(data=good_payload()["data"][:-6]))


def test_from_payload_rejects_an_unknown_codec() -> None:
    with pytest.raises(PayloadError, match="unknown codec 'lzma'"):
        Chunk.from_payload(good_payload(codec="lzma"))


def test_from_payload_refuses_a_frame_claiming_more_than_a_chunk_can_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The frame's header claims its size: decompressing is refused before allocating it.
    monkeypatch.setattr(chunks, "MAX_CHUNK_BYTES", 50)
    frame = zstandard.ZstdCompressor().compress(b"x" * 100)
    assert zstandard.frame_content_size(frame) == 100
    with pytest.raises(PayloadError, match="too large"):
        Chunk.from_payload(good_payload(data=frame))


def test_reads_a_message_from_before_the_codec_field_as_zlib() -> None:
    chunk = make_chunk()
    legacy = {**chunk.to_payload(), "data": zlib.compress(chunk.data, 1)}
    del legacy["codec"]
    assert Chunk.from_payload(legacy) == chunk


def test_from_payload_rejects_corrupt_legacy_zlib_data() -> None:
    legacy = {**good_payload(), "data": zlib.compress(b"some lines\n")[:-3]}
    del legacy["codec"]
    with pytest.raises(PayloadError, match="not a readable chunk"):
        Chunk.from_payload(legacy)


def test_from_payload_rejects_uncompressed_data() -> None:
    with pytest.raises(PayloadError, match="not a readable chunk"):
        Chunk.from_payload(good_payload(data=b'"a","b"\n'))


def test_from_payload_rejects_data_given_as_text() -> None:
    with pytest.raises(PayloadError, match="not a readable chunk"):
        Chunk.from_payload(good_payload(data="eJwrSQUAAZUBBA=="))


def test_from_payload_rejects_a_stamp_without_a_time_zone() -> None:
    with pytest.raises(PayloadError, match="no time zone"):
        Chunk.from_payload(good_payload(stamp="2025-07-18T20:42:34"))


@pytest.mark.parametrize("stamp", ["yesterday", "", 1752871354, ["2025-07-18T20:42:34Z"]])
def test_from_payload_rejects_a_stamp_that_is_not_a_time(stamp: object) -> None:
    with pytest.raises(PayloadError, match="not a readable chunk"):
        Chunk.from_payload(good_payload(stamp=stamp))


@pytest.mark.parametrize("source", ["abc", "1.5", "", None, [3], {"id": 3}])
def test_from_payload_rejects_a_non_integer_source(source: object) -> None:
    with pytest.raises(PayloadError, match="not a readable chunk"):
        Chunk.from_payload(good_payload(source=source))


def test_a_pushed_chunk_belongs_to_no_source_and_comes_back_as_sent() -> None:
    chunk = make_chunk(
        chunk_id=f"{chunks.PUSH_PREFIX}7:{'0f' * 32}:2", source_id=None, stamp=None,
        format=chunks.ChunkFormat.REMOTE_WRITE, scraped_at=datetime(2025, 7, 18, tzinfo=UTC),
    )  # fmt: skip
    back = Chunk.from_payload(chunk.to_payload())
    assert back == chunk
    assert back.pushed


def test_from_payload_rejects_a_fractional_source_number() -> None:
    with pytest.raises(PayloadError):
        Chunk.from_payload(good_payload(source=3.7))


@pytest.mark.parametrize("key", ["line", "lines"])
def test_from_payload_rejects_a_non_integer_line_field(key: str) -> None:
    with pytest.raises(PayloadError, match="not a readable chunk"):
        Chunk.from_payload(good_payload(**{key: "many"}))


def test_from_payload_rejects_columns_that_are_not_a_sequence() -> None:
    with pytest.raises(PayloadError, match="not a readable chunk"):
        Chunk.from_payload(good_payload(columns=12))


def test_from_payload_rejects_an_empty_chunk_id() -> None:
    with pytest.raises(PayloadError, match="missing or too long"):
        Chunk.from_payload(good_payload(id=""))


def test_from_payload_rejects_a_chunk_id_over_100_characters() -> None:
    with pytest.raises(PayloadError, match="missing or too long"):
        Chunk.from_payload(good_payload(id="c" * 101))


def test_from_payload_accepts_a_chunk_id_of_exactly_100_characters() -> None:
    assert Chunk.from_payload(good_payload(id="c" * 100)).chunk_id == "c" * 100


# --- the format marker ---------------------------------------------------------------------

PAGE = b'# TYPE DCGM_FI_DEV_GPU_TEMP gauge\nDCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-1"} 40\n'
SCRAPED_AT = datetime(2026, 3, 2, 10, 0, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    "page_format", [chunks.ChunkFormat.EXPOSITION, chunks.ChunkFormat.OPENMETRICS]
)
def test_a_page_chunk_round_trips_with_its_format_and_scrape_time(
    page_format: chunks.ChunkFormat,
) -> None:
    chunk = make_chunk(columns=(), data=PAGE, format=page_format, scraped_at=SCRAPED_AT, stamp=None)

    assert Chunk.from_payload(chunk.to_payload()) == chunk


def test_a_stored_page_republished_is_the_very_same_message() -> None:
    chunk = make_chunk(
        columns=(), data=PAGE, format=chunks.ChunkFormat.EXPOSITION, scraped_at=SCRAPED_AT
    )

    republished = Chunk.from_payload(chunk.to_payload()).to_payload()

    assert msgpack.packb(republished) == msgpack.packb(chunk.to_payload())


def test_a_message_without_a_format_is_a_csv_chunk_as_before() -> None:
    payload = good_payload()
    del payload["format"], payload["scraped_at"]

    assert Chunk.from_payload(payload).format is chunks.ChunkFormat.CSV


@pytest.mark.parametrize(
    "changes",
    [
        {"format": "protobuf"},
        {"format": "exposition", "scraped_at": None},
        {"format": "exposition", "scraped_at": "2026-03-02T10:00:10"},
    ],
)
def test_an_unknown_format_or_a_page_without_its_scrape_time_is_refused(
    changes: dict[str, Any],
) -> None:
    with pytest.raises(PayloadError):
        Chunk.from_payload(good_payload(**changes))
