"""The read model the collector keeps: each device's newest value per metric and its newest
workload, whatever order chunks commit in; built for existing databases by its migration."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from ingest import collector, read_model
from ingest.models import Gpu, LatestValue, Sample
from ingest.writer import SampleBatch
from tests.support.chunks import REFERENCE_LINES, chunk_of
from tests.support.reference import REFERENCE_UUID

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
FIRST_GPU_LINES = [line for line in REFERENCE_LINES[1:] if REFERENCE_UUID.encode() in line]


def test_the_newest_row_of_each_device_and_metric_wins_within_a_batch() -> None:
    batch = SampleBatch(
        series=[(7, None), (7, 3), (8, None)],
        metric_ids=[1, 2],
        timestamps=[T0 + timedelta(seconds=10), T0, T0 + timedelta(seconds=20)],
        series_of_row=[0, 1, 2, 0, 1],
        metric_of_row=[0, 0, 0, 1, 1],
        time_of_row=[0, 2, 1, 1, 0],
        values=[1.0, 2.0, 3.0, 4.0, 5.0],
    )

    assert read_model.newest_rows(batch) == {(7, 1): 1, (8, 1): 2, (7, 2): 4}
    assert read_model.newest_workloads(batch) == {7: (3, T0 + timedelta(seconds=20))}


def test_rows_of_one_stamp_keep_the_last_in_the_chunk() -> None:
    batch = SampleBatch([(1, None)], [5], [T0], [0, 0], [0, 0], [0, 0], [1.0, 2.0])

    assert read_model.newest_rows(batch) == {(1, 5): 1}


def latest_of(gpu: Gpu) -> dict[str, tuple[datetime, float]]:
    rows = LatestValue.objects.filter(gpu=gpu).values_list("metric__name", "timestamp", "value")
    return {name: (timestamp, value) for name, timestamp, value in rows}


@pytest.mark.django_db(transaction=True)
def test_an_older_chunk_committed_later_changes_nothing() -> None:
    newer, older = T0 + timedelta(minutes=1), T0
    collector.collect(chunk_of(FIRST_GPU_LINES, chunk_id="1:0:1:0", stamp=newer).to_payload())
    gpu = Gpu.objects.get(uuid=REFERENCE_UUID)
    after_newer = latest_of(gpu)

    collector.collect(chunk_of(FIRST_GPU_LINES, chunk_id="1:0:1:9", stamp=older).to_payload())

    assert latest_of(gpu) == after_newer
    assert {timestamp for timestamp, _ in after_newer.values()} == {newer}
    assert len(after_newer) == len(FIRST_GPU_LINES)

    newest = T0 + timedelta(minutes=2)
    collector.collect(chunk_of(FIRST_GPU_LINES, chunk_id="1:0:1:18", stamp=newest).to_payload())

    assert {timestamp for timestamp, _ in latest_of(gpu).values()} == {newest}


@pytest.mark.django_db(transaction=True)
def test_the_newest_workload_of_a_device_is_kept_and_never_moves_back() -> None:
    with_pod = [
        line.replace(b'"mtv5-dgx1-hgpu-031","","",""', b'"mtv5-dgx1-hgpu-031","main","llm-0","ml"')
        for line in FIRST_GPU_LINES
    ]
    collector.collect(chunk_of(with_pod, chunk_id="1:0:1:0", stamp=T0).to_payload())
    collector.collect(
        chunk_of(FIRST_GPU_LINES, chunk_id="1:0:1:9", stamp=T0 + timedelta(minutes=1)).to_payload()
    )
    gpu = Gpu.objects.select_related("workload").get(uuid=REFERENCE_UUID)

    assert gpu.workload is not None
    assert (gpu.workload.namespace, gpu.workload.pod, gpu.workload.container) == (
        "ml",
        "llm-0",
        "main",
    )
    assert gpu.workload_seen_at == T0


@pytest.mark.django_db(transaction=True)
def test_the_migration_builds_the_read_model_from_existing_samples() -> None:
    for at, minutes in enumerate((5, 1, 3)):
        stamp = T0 + timedelta(minutes=minutes)
        collector.collect(
            chunk_of(FIRST_GPU_LINES, chunk_id=f"1:0:1:{at}", stamp=stamp).to_payload()
        )
    expected = {
        (gpu_id, metric_id): (timestamp, value)
        for gpu_id, metric_id, timestamp, value in LatestValue.objects.values_list(
            "gpu_id", "metric_id", "timestamp", "value"
        )
    }
    executor = MigrationExecutor(connection)
    before = [("ingest", "0012_scrape_slots")]
    executor.migrate(before)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    rebuilt = {
        (gpu_id, metric_id): (timestamp, value)
        for gpu_id, metric_id, timestamp, value in LatestValue.objects.values_list(
            "gpu_id", "metric_id", "timestamp", "value"
        )
    }
    assert rebuilt == expected
    assert len(rebuilt) == Sample.objects.values("metric_id").distinct().count()
    assert {timestamp for timestamp, _ in rebuilt.values()} == {T0 + timedelta(minutes=5)}


def batch_at(timestamp: datetime, pairs: list[tuple[int, int]], values: list[float]) -> SampleBatch:
    """A stamped batch of one row per (gpu id, metric id) pair, no workloads."""
    gpus = sorted({gpu for gpu, _ in pairs})
    metrics = sorted({metric for _, metric in pairs})
    return SampleBatch(
        series=[(gpu, None) for gpu in gpus],
        metric_ids=metrics,
        timestamps=[timestamp],
        series_of_row=[gpus.index(gpu) for gpu, _ in pairs],
        metric_of_row=[metrics.index(metric) for _, metric in pairs],
        time_of_row=[0] * len(pairs),
        values=values,
    )


def stored() -> dict[tuple[int, int], tuple[datetime, float]]:
    return {
        (gpu_id, metric_id): (timestamp, value)
        for gpu_id, metric_id, timestamp, value in LatestValue.objects.values_list(
            "gpu_id", "metric_id", "timestamp", "value"
        )
    }


@pytest.mark.django_db
def test_a_batch_of_stored_new_and_older_pairs_writes_only_the_newer_times() -> None:
    later = T0 + timedelta(minutes=1)
    read_model.record_latest(batch_at(T0, [(1, 1), (1, 2)], [1.0, 2.0]))
    read_model.record_latest(batch_at(later, [(1, 1)], [3.0]))

    # (1, 1) is stored newer, (1, 2) older, (2, 1) and (1, 3) have no row yet.
    read_model.record_latest(
        batch_at(T0 + timedelta(seconds=30), [(1, 1), (1, 2), (2, 1), (1, 3)], [4.0, 5.0, 6.0, 7.0])
    )

    half_minute = T0 + timedelta(seconds=30)
    assert stored() == {
        (1, 1): (later, 3.0),
        (1, 2): (half_minute, 5.0),
        (2, 1): (half_minute, 6.0),
        (1, 3): (half_minute, 7.0),
    }


@pytest.mark.django_db
def test_an_equal_time_keeps_the_value_committed_first() -> None:
    read_model.record_latest(batch_at(T0, [(1, 1)], [1.0]))
    read_model.record_latest(batch_at(T0, [(1, 1)], [2.0]))

    assert stored() == {(1, 1): (T0, 1.0)}


@pytest.mark.django_db
def test_values_are_stored_as_the_very_same_doubles() -> None:
    values = [1 / 3, -0.0, 5e-324, 1.7976931348623157e308, 0.1 + 0.2, -12345678.875]
    pairs = [(1, metric) for metric in range(1, len(values) + 1)]

    read_model.record_latest(batch_at(T0, pairs, values))

    kept = stored()
    assert [kept[pair][1] for pair in pairs] == values
    assert math.copysign(1.0, kept[(1, 2)][1]) == -1.0  # the sign of -0.0 survives
