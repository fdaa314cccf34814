"""The hot endpoints' plain representations write what their DRF serializers would."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from api.renderers import FastJSONRenderer
from api.serializers import GPU_COLUMNS, GpuSerializer, StatsSerializer, gpu_rows, stats_body


def test_stats_body_is_what_the_stats_serializer_writes() -> None:
    stats = {
        "total_records": 2470,
        "unique_gpus": 247,
        "unique_hosts": 31,
        "first_timestamp": datetime(2025, 7, 18, 20, 42, 34, 123456, tzinfo=UTC),
        "last_timestamp": datetime(2025, 7, 18, 22, 42, 34, tzinfo=timezone(timedelta(hours=2))),
        "metrics": {"DCGM_FI_DEV_GPU_TEMP": 247, "DCGM_FI_DEV_POWER_USAGE": 0},
        "rejected_rows": 3,
        "push_ignored_samples": 0,
        "push_stale_markers": 1,
        "collect_queue_depth": None,
        "ingest_rate_per_s": 12.5,
    }
    assert stats_body(stats) == StatsSerializer(stats).data
    empty = {**stats, "first_timestamp": None, "last_timestamp": None}
    assert stats_body(empty) == StatsSerializer(empty).data


def test_gpu_rows_write_times_as_the_gpu_serializer_does() -> None:
    seen = datetime(2025, 7, 18, 20, 42, 34, 500000, tzinfo=UTC)
    rows = [
        ("GPU-1", "host-a", 0, "nvidia0", "H100", None, None, seen, seen, 10, "{}"),
        ("GPU-2", "host-a", 1, "nvidia1", "H100", None, None, None, None, 0, '{"a": "b"}'),
    ]
    written = gpu_rows(rows)
    for row, body in zip(rows, written, strict=True):
        values = dict(zip(GPU_COLUMNS, row, strict=True))
        expected = GpuSerializer().fields
        for name in ("first_seen", "last_seen"):
            moment = values[name]
            assert body[name] == (
                None if moment is None else expected[name].to_representation(moment)
            )
    # The labels' JSON text is written into the body as it is.
    rendered = json.loads(FastJSONRenderer().render(written))
    assert [gpu["labels"] for gpu in rendered] == [{}, {"a": "b"}]
