"""Prometheus remote write 1.0 bodies for tests: a WriteRequest built with the generated
protobuf module, snappy-compressed as senders send it."""

from __future__ import annotations

import struct

import cramjam

from ingest.remote_write import STALE_NAN_BITS
from ingest.remote_write_pb2 import WriteRequest
from tests.support.reference import REFERENCE_UUID

Labels = list[tuple[str, str]]
Samples = list[tuple[int, float]]

NOW_MS = 1_752_846_154_000  # 2025-07-18T13:42:34Z
GPU_LABELS = {
    "__name__": "DCGM_FI_DEV_GPU_TEMP",
    "gpu": "0",
    "UUID": REFERENCE_UUID,
    "device": "nvidia0",
    "modelName": "NVIDIA H100 80GB HBM3",
    "Hostname": "mtv5-dgx1-hgpu-031",
    "instance": "10.0.0.31:9400",
    "job": "dcgm",
}


def from_bits(bits: int) -> float:
    value: float = struct.unpack("<d", struct.pack("<Q", bits))[0]
    return value


STALE_MARKER = from_bits(STALE_NAN_BITS)


def snappy(message: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(message))


def body_of(*series: tuple[Labels, Samples], metadata: int = 0) -> bytes:
    """A remote write body: each series as (labels in order, samples as (ms, value))."""
    request = WriteRequest()
    for labels, samples in series:
        timeseries = request.timeseries.add()
        for name, value in labels:
            timeseries.labels.add(name=name, value=value)
        for timestamp, sample_value in samples:
            timeseries.samples.add(timestamp=timestamp, value=sample_value)
    request.metadata.extend([b"\x08\x02\x12\x14DCGM_FI_DEV_GPU_TEMP"] * metadata)
    return snappy(request.SerializeToString())


REFERENCE_BODY = body_of(
    (list(GPU_LABELS.items()), [(NOW_MS - i * 1000, float(i)) for i in range(50)])
)
