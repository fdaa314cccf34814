"""The GPU counters a chunk's commit adds to: exact sample counts and first/last seen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest import counters
from ingest.models import Gpu
from ingest.writer import SampleBatch

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def device(uuid: str) -> Gpu:
    return Gpu.objects.create(
        uuid=uuid, gpu_index=0, device="nvidia0", model_name="H100", hostname="host-1"
    )


@pytest.mark.django_db
def test_each_gpu_gets_its_count_and_its_earliest_and_latest_time() -> None:
    first, second = device("GPU-1"), device("GPU-2")
    # Times listed out of order, a GPU under two series (two workloads).
    times = [T0 + timedelta(seconds=20), T0, T0 + timedelta(seconds=40)]
    batch = SampleBatch(
        series=[(first.pk, None), (second.pk, None), (first.pk, 9)],
        metric_ids=[1],
        timestamps=times,
        series_of_row=[0, 0, 1, 2, 2],
        metric_of_row=[0, 0, 0, 0, 0],
        time_of_row=[0, 1, 0, 2, 0],
        values=[1.0, 2.0, 3.0, 4.0, 5.0],
    )

    counters.add_gpu_samples(batch)
    counters.add_gpu_samples(batch._replace(timestamps=[t + timedelta(hours=1) for t in times]))

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.sample_count, first.first_seen, first.last_seen) == (
        8,
        T0,
        T0 + timedelta(hours=1, seconds=40),
    )
    assert (second.sample_count, second.first_seen, second.last_seen) == (
        2,
        T0 + timedelta(seconds=20),
        T0 + timedelta(hours=1, seconds=20),
    )
