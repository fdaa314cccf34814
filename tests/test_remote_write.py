"""Reading Prometheus remote write 1.0 bodies: series and samples as sent, staleness markers
skipped and counted, samples from the future set apart, and every malformed body a
``RemoteWriteError`` naming the problem, never anything else."""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import cramjam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import remote_write
from ingest.remote_write import (
    FUTURE_TOLERANCE_MS,
    DeclaredLengthError,
    RemoteWriteError,
    WriteBatch,
    decode,
)
from ingest.remote_write_pb2 import WriteRequest
from tests.support.reference import REPO
from tests.support.remote_write import (
    GPU_LABELS,
    NOW_MS,
    REFERENCE_BODY,
    STALE_MARKER,
    body_of,
    from_bits,
    snappy,
)

LIMIT = 1 << 20


def bits_of(value: float) -> int:
    bits: int = struct.unpack("<Q", struct.pack("<d", value))[0]
    return bits


PROMETHEUS_NORMAL_NAN = from_bits(0x7FF8000000000001)  # what Prometheus sends for NaN


def read(body: bytes) -> WriteBatch:
    return decode(body, max_bytes=LIMIT, now_ms=NOW_MS)


# --- What a body holds -------------------------------------------------------------------


def test_series_come_out_with_their_labels_and_samples_in_order() -> None:
    samples = [(NOW_MS - 2000, 41.0), (NOW_MS - 1000, 42.0), (NOW_MS, 43.5)]
    batch = read(body_of((list(GPU_LABELS.items()), samples), metadata=2))

    assert [(s.labels, s.samples, s.too_far_ahead, s.problem) for s in batch.series] == [
        (GPU_LABELS, samples, [], "")
    ]
    assert (batch.samples, batch.stale_markers, batch.too_far_ahead, batch.metadata) == (3, 0, 0, 2)


def test_labels_with_odd_characters_come_out_exactly_as_sent() -> None:
    odd = {
        "__name__": "DCGM_FI_DEV_POWER_USAGE",
        "pod": "trainer-0 \u201cquoted\u201d",
        "container": 'say "hi"\\n and a real\nnewline',
        "namespace": "\u00e9quipe-\u65e5\u672c-\U0001f680",
        "labels_raw": 'a="1",b="x, y"',
        "empty": "",
        "tab\tname": "\t",
    }
    batch = read(body_of((list(odd.items()), [(NOW_MS, 1.0)])))
    assert batch.series[0].labels == odd


def test_nan_and_infinities_that_are_not_staleness_markers_are_kept_as_samples() -> None:
    values = [PROMETHEUS_NORMAL_NAN, math.nan, math.inf, -math.inf, -0.0, 5e-324]
    samples = [(NOW_MS + i, value) for i, value in enumerate(values)]
    batch = read(body_of((list(GPU_LABELS.items()), samples)))

    kept = batch.series[0].samples
    assert [timestamp for timestamp, _ in kept] == [timestamp for timestamp, _ in samples]
    assert [bits_of(value) for _, value in kept] == [bits_of(value) for value in values]
    assert batch.stale_markers == 0


def test_staleness_markers_are_skipped_and_counted() -> None:
    vanished = [("__name__", "DCGM_FI_DEV_GPU_UTIL"), ("UUID", "GPU-gone")]
    batch = read(
        body_of(
            (list(GPU_LABELS.items()), [(NOW_MS - 1000, 40.0), (NOW_MS, STALE_MARKER)]),
            (vanished, [(NOW_MS, STALE_MARKER)]),
        )
    )
    assert [(s.labels["__name__"], s.samples) for s in batch.series] == [
        ("DCGM_FI_DEV_GPU_TEMP", [(NOW_MS - 1000, 40.0)])
    ]
    assert (batch.samples, batch.stale_markers) == (1, 2)


def test_samples_more_than_ten_minutes_ahead_are_set_apart() -> None:
    edge = NOW_MS + FUTURE_TOLERANCE_MS
    batch = read(body_of((list(GPU_LABELS.items()), [(edge, 1.0), (edge + 1, 2.0), (NOW_MS, 3.0)])))

    series = batch.series[0]
    assert series.samples == [(edge, 1.0), (NOW_MS, 3.0)]
    assert series.too_far_ahead == [(edge + 1, 2.0)]
    assert (batch.samples, batch.too_far_ahead) == (2, 1)


def test_a_series_without_a_metric_name_or_with_a_repeated_label_names_its_problem() -> None:
    batch = read(
        body_of(
            ([("UUID", "GPU-a")], [(NOW_MS, 1.0)]),
            ([("__name__", "DCGM_FI_DEV_GPU_TEMP"), ("gpu", "0"), ("gpu", "1")], [(NOW_MS, 2.0)]),
            ([("__name__", "DCGM_FI_DEV_GPU_TEMP"), ("gpu", "0")], [(NOW_MS, 3.0)]),
        )
    )
    assert [(s.problem, s.samples) for s in batch.series] == [
        ("no __name__ label: the series has no metric name", [(NOW_MS, 1.0)]),
        ("label name(s) 'gpu' given more than once", [(NOW_MS, 2.0)]),
        ("", [(NOW_MS, 3.0)]),
    ]


def test_metadata_exemplars_and_native_histograms_are_counted_not_read() -> None:
    request = WriteRequest()
    timeseries = request.timeseries.add()
    timeseries.labels.add(name="__name__", value="request_duration_seconds")
    timeseries.histograms.append(b"\x08\x05")
    timeseries.exemplars.append(b"\x11\x00\x00\x00\x00\x00\x00\xf0\x3f")
    request.metadata.append(b"\x08\x01")

    batch = read(snappy(request.SerializeToString()))
    assert (len(batch.series), batch.histograms, batch.exemplars, batch.metadata) == (0, 1, 1, 1)


def test_a_request_of_metadata_alone_has_no_series() -> None:
    batch = read(body_of(metadata=3))
    assert (batch.series, batch.samples, batch.metadata) == ([], 0, 3)


# --- Bodies that are not remote write -------------------------------------------------------


def with_invalid_utf8_label_value() -> bytes:
    request = WriteRequest()
    request.timeseries.add().labels.add(name="__name__", value="XY")
    return snappy(request.SerializeToString().replace(b"XY", b"\xff\xfe"))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "The body is empty"),
        (REFERENCE_BODY[: len(REFERENCE_BODY) // 2], "The snappy block is corrupt or cut short"),
        (b"\x80\x80\x80", "The body is not snappy-compressed"),
        (snappy(b"garbage, not protobuf"), "is not a remote write WriteRequest"),
        (snappy(b"hi"), "it has field(s) 13, which that message does not"),
        # A remote write 2.0 request: symbols (field 4) and timeseries (field 5).
        (snappy(b"\x22\x00\x22\x03foo\x2a\x00"), "it has field(s) 4, 5"),
        (with_invalid_utf8_label_value(), "bad UTF-8"),
    ],
    ids=["empty", "cut-in-half", "not-snappy", "snappy-of-garbage", "unknown-field",
         "remote-write-2", "invalid-utf8-label"],
)  # fmt: skip
def test_a_body_that_is_not_a_remote_write_request_is_refused_with_its_reason(
    body: bytes, reason: str
) -> None:
    with pytest.raises(RemoteWriteError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        read(body)


def test_a_protobuf_message_cut_in_half_inside_good_snappy_is_refused() -> None:
    message = bytes(cramjam.snappy.decompress_raw(REFERENCE_BODY))
    with pytest.raises(RemoteWriteError, match="is not a remote write WriteRequest"):
        read(snappy(message[: len(message) // 2]))


def test_a_snappy_block_claiming_two_gigabytes_is_refused_before_decompressing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    claim = (2 << 30) - 1
    varint = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x07])  # 2**31 - 1 as snappy's length varint
    assert cramjam.snappy.decompress_raw_len(varint) == claim
    decompressed: list[bytes] = []
    monkeypatch.setattr(cramjam.snappy, "decompress_raw", decompressed.append)

    with pytest.raises(DeclaredLengthError, match=f"declares {claim} bytes"):
        read(varint + b"\x00" * 64)
    assert decompressed == []


def test_the_size_limit_applies_to_the_decompressed_message() -> None:
    body = body_of((list(GPU_LABELS.items()), [(NOW_MS, 1.0)]))
    size = cramjam.snappy.decompress_raw_len(body)
    assert decode(body, max_bytes=size, now_ms=NOW_MS).samples == 1
    with pytest.raises(DeclaredLengthError):
        decode(body, max_bytes=size - 1, now_ms=NOW_MS)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_nothing_but_the_module_error(data: bytes) -> None:
    for body in (data, snappy(data)):
        try:
            batch = decode(body, max_bytes=LIMIT, now_ms=NOW_MS)
        except RemoteWriteError:
            continue
        assert batch.samples == sum(len(series.samples) for series in batch.series)


# --- The generated module -------------------------------------------------------------------

GENERATED = ("ingest/remote_write_pb2.py", "ingest/remote_write_pb2.pyi")


def test_the_committed_protobuf_module_is_what_the_proto_file_compiles_to(tmp_path: Path) -> None:
    result = subprocess.run(
        [REPO / "scripts" / "compile-protobuf.sh", str(tmp_path)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in GENERATED:
        fresh = (tmp_path / name).read_text()
        assert (REPO / name).read_text() == fresh, (
            f"{name} is stale: run `make protobuf` and commit the result."
        )


def test_the_module_reads_the_staleness_marker_by_its_bits_only() -> None:
    assert remote_write.is_stale_marker(STALE_MARKER)
    assert not remote_write.is_stale_marker(PROMETHEUS_NORMAL_NAN)
    assert not remote_write.is_stale_marker(math.nan)
    assert not remote_write.is_stale_marker(math.inf)
