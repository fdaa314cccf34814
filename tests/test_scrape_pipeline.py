"""Live exporters scraped end to end: real beat, streamer and collector processes on PostgreSQL
and Redis, a local exporter serving pages that change at every scrape. Every slot is stored
once or is a gap, never twice, whatever fails around it."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator

import pytest
import redis
from django.core.management import call_command
from django.db.models import Count

from ingest import faults
from ingest.models import (
    Gpu,
    IngestedChunk,
    Metric,
    OutstandingChunk,
    RejectedRow,
    Sample,
    StreamSource,
    Tally,
    scrape_chunk_id,
)
from ingest.slots import slot_start
from telemetry_project.routing import COLLECT_QUEUE, STREAM_QUEUE
from tests.support.exporter_server import (
    MIG_INSTANCE,
    OPENMETRICS_GPUS,
    REJECTED_REASON,
    TEXT_GPUS,
    VALID_SERIES,
    Exporter,
    running_exporter,
    utilisation,
)
from tests.support.pipeline import duplicate_samples
from tests.support.servers import free_port
from tests.support.workers import Worker, WorkerFactory, wait_for

pytestmark = pytest.mark.integration

INTERVAL = "2"
SLOTS = 4


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    with running_exporter() as running:
        yield running


@pytest.fixture
def scrape_env(pipeline_env: dict[str, str]) -> dict[str, str]:
    # A hung target gives up well inside a 2 s slot.
    pipeline_env["SCRAPE_TIMEOUT_SECONDS"] = "1"
    return pipeline_env


def add_scrape_source(name: str, url: str) -> StreamSource:
    call_command(
        "add_source", name, url, "--kind", "scrape", "--interval", INTERVAL, stdout=io.StringIO()
    )
    return StreamSource.objects.get(name=name)


def start_beat(workers: WorkerFactory) -> Worker:
    command = [sys.executable, "-m", "celery", "-A", "telemetry_project", "beat",
               "--loglevel=INFO"]  # fmt: skip
    return workers.start_process("beat", command, ready="beat: Starting")


def slots_committed(source: StreamSource) -> list[str]:
    return list(IngestedChunk.objects.filter(source=source).values_list("chunk_id", flat=True))


def drained(broker: redis.Redis) -> bool:
    """Nothing queued and every recorded slot committed (a slot's outstanding row is confirmed
    only by its source's next scrape, which no longer comes once beat is stopped)."""
    recorded = {
        scrape_chunk_id(source_id, start_ms)
        for source_id, start_ms in OutstandingChunk.objects.values_list(
            "cursor__source_id", "start_offset"
        )
    }
    committed = IngestedChunk.objects.filter(pk__in=recorded).count()
    queued = broker.llen(COLLECT_QUEUE) + broker.llen(STREAM_QUEUE)
    return queued == 0 and committed == len(recorded)


def samples_of(uuids: tuple[str, ...]) -> int:
    return Sample.objects.filter(gpu__uuid__in=uuids).count()


def assert_each_slot_stored_once(source: StreamSource, uuids: tuple[str, ...]) -> int:
    """Every committed slot holds exactly the page's valid series, at the slot's time, and
    its sentinel refused; returns the number of slots."""
    chunk_ids = slots_committed(source)
    assert samples_of(uuids) == len(chunk_ids) * VALID_SERIES
    times = set(Sample.objects.filter(gpu__uuid__in=uuids).values_list("timestamp", flat=True))
    assert times == {slot_start(int(chunk_id.rpartition(":")[2])) for chunk_id in chunk_ids}
    rejected = RejectedRow.objects.filter(source=source)
    assert set(rejected.values_list("reason", flat=True)) == {REJECTED_REASON}
    assert rejected.count() == len(chunk_ids)
    ignored = Tally.source_key(str(source.pk), Tally.SourceCounter.IGNORED_SAMPLES)
    assert Tally.totals()[ignored] == len(chunk_ids)  # go_goroutines, once a page
    return len(chunk_ids)


def test_live_exporters_are_scraped_once_per_slot_and_failing_targets_touch_only_themselves(
    scrape_env: dict[str, str],
    workers: WorkerFactory,
    exporter: Exporter,
    broker: redis.Redis,
) -> None:
    text = add_scrape_source("node-a", f"{exporter.url}/metrics")
    openmetrics = add_scrape_source("node-b", f"{exporter.url}/openmetrics")
    failing = {
        add_scrape_source("answers-500", f"{exporter.url}/broken").pk: "HTTP 500",
        add_scrape_source("hangs", f"{exporter.url}/slow").pk: "timed out",
        add_scrape_source("sends-50-mb", f"{exporter.url}/huge").pk: "more than",
        add_scrape_source("refuses", f"http://127.0.0.1:{free_port()}/").pk: "refused",
    }
    for _ in range(2):
        workers.streamer()
    workers.collector()
    beat = start_beat(workers)

    wait_for(
        lambda: min(len(slots_committed(text)), len(slots_committed(openmetrics))) >= SLOTS,
        120,
        what=f"{SLOTS} slots of each live exporter",
    )
    beat.terminate()
    wait_for(lambda: drained(broker), 60, what="the recorded slots to commit")

    assert assert_each_slot_stored_once(text, TEXT_GPUS) >= SLOTS
    assert assert_each_slot_stored_once(openmetrics, OPENMETRICS_GPUS) >= SLOTS
    assert duplicate_samples() == 0
    # The MIG instance is a device of its own beside its parent, with its own series.
    parent = Gpu.objects.get(uuid=TEXT_GPUS[0], gpu_instance_id=None)
    instance = Gpu.objects.get(uuid=TEXT_GPUS[0], gpu_instance_id=MIG_INSTANCE)
    assert (instance.parent, instance.gpu_instance_profile) == (parent, "1g.5gb")
    assert set(instance.samples.values_list("metric__name", flat=True)) == {"DCGM_FI_DEV_GPU_UTIL"}
    assert parent.sample_count == 3 * len(slots_committed(text))  # util, power, energy
    # Values change from scrape to scrape, and are the page's own.
    scraped = set(parent.samples.filter(metric__name="DCGM_FI_DEV_GPU_UTIL").values_list(
        "value", flat=True
    ))  # fmt: skip
    assert len(scraped) > 1
    assert scraped <= {
        float(utilisation(n, 0)) for n in range(1, exporter.requests["/metrics"] + 1)
    }
    units = dict(Metric.objects.values_list("name", "unit"))
    assert units["DCGM_FI_DEV_POWER_USAGE"] == "W"
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" in units  # OpenMetrics' _total stripped
    assert not Metric.objects.filter(name__startswith="go_").exists()
    # Each failing target shows its own error and has written nothing.
    for source in StreamSource.objects.filter(pk__in=failing):
        assert failing[source.pk] in source.last_error, (source.name, source.last_error)
        assert source.last_scrape_at is not None
        assert source.last_success_at is None
        assert not IngestedChunk.objects.filter(source=source).exists()
    for source in (text, openmetrics):
        source.refresh_from_db()
        assert source.last_error == ""
        assert source.last_success_at is not None


@pytest.mark.slow  # a streamer killed twice over, each time with its slots waited out
@pytest.mark.parametrize("fault", [faults.STREAMER_AFTER_RECORD, faults.STREAMER_AFTER_PUBLISH])
def test_a_streamer_killed_mid_slot_and_a_flushed_broker_leave_each_slot_once_or_missing(
    scrape_env: dict[str, str],
    workers: WorkerFactory,
    exporter: Exporter,
    broker: redis.Redis,
    fault: str,
) -> None:
    source = add_scrape_source("node-a", f"{exporter.url}/metrics")
    doomed = workers.streamer(extra_env={"TELEMETRY_FAULT": fault, "TELEMETRY_FAULT_AFTER": "1"})
    workers.collector()
    beat = start_beat(workers)
    wait_for(lambda: doomed.process.poll() is not None, 60, what="the fault to kill the streamer")
    # The slot the streamer died in is recorded, its message unsent or unconfirmed.
    killed = set(OutstandingChunk.objects.values_list("start_offset", flat=True))
    assert killed
    broker.flushdb()  # whatever was queued (scrapes, collect messages) is lost

    workers.streamer()
    wait_for(
        lambda: len(slots_committed(source)) >= len(killed) + SLOTS,
        120,
        what="more slots after the restart",
    )
    beat.terminate()
    wait_for(lambda: drained(broker), 60, what="the recorded slots to commit")

    assert_each_slot_stored_once(source, TEXT_GPUS)
    assert duplicate_samples() == 0
    committed = {int(chunk_id.rpartition(":")[2]) for chunk_id in slots_committed(source)}
    assert killed <= committed  # published again from its stored page
    per_slot = Sample.objects.values("timestamp").annotate(n=Count("id"))
    assert {row["n"] for row in per_slot} == {VALID_SERIES}
