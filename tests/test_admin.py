"""The admin site: every page answers, the sample list never counts or scans its table,
the source actions drive beat and the streamers, and dead letters replay exactly once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import kombu.exceptions
import msgpack
import pytest
import redis
from django.contrib.admin.utils import quote
from django.db import connection
from django.db.models import Model
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from ingest import dead_letters
from ingest.models import (
    ChunkAttempt,
    DeadLetter,
    Gpu,
    IngestedChunk,
    LatestValue,
    Metric,
    OutstandingChunk,
    PushChunk,
    RejectedRow,
    Sample,
    StreamCursor,
    StreamSource,
    Tally,
    Workload,
    chunk_id_for,
)
from ingest.partitions import ensure_partitions, midnight
from ingest.schedule import periodic_task_name
from telemetry_project.routing import COLLECT_QUEUE
from tests.support.chunks import chunk_of
from tests.support.reference import REFERENCE_COLUMNS

# A day no other test writes samples on, so its partition is this module's own.
DAY = date(2030, 1, 2)
NOON = datetime(2030, 1, 2, 12, 0, tzinfo=UTC)
COLUMNS = REFERENCE_COLUMNS
PAGE = 100  # the admin's rows per page


def changelist_url(model: type[Model]) -> str:
    return reverse(f"admin:ingest_{model._meta.model_name}_changelist")


def change_url(obj: Model) -> str:
    return reverse(f"admin:ingest_{obj._meta.model_name}_change", args=[quote(obj.pk)])


def make_gpu(number: int, host: str = "node-a") -> Gpu:
    return Gpu.objects.create(
        uuid=f"GPU-{number:08x}-0000-4000-8000-000000000000",
        gpu_index=number % 8,
        device=f"nvidia{number % 8}",
        model_name="NVIDIA H100 80GB HBM3",
        hostname=host,
    )


def make_samples(
    gpu: Gpu, metric: Metric, count: int, *, start: datetime = NOON, step_seconds: int = 1
) -> list[Sample]:
    """``count`` samples of one GPU and metric, one every ``step_seconds`` from ``start``."""
    stamps = [start + timedelta(seconds=i * step_seconds) for i in range(count)]
    ensure_partitions({stamp.date() for stamp in stamps})  # outside any transaction
    return Sample.objects.bulk_create(
        Sample(timestamp=stamp, value=float(i), gpu=gpu, metric=metric)
        for i, stamp in enumerate(stamps)
    )


def make_chunk_payload(source: StreamSource, start_offset: int = 100) -> dict[str, Any]:
    line = (
        b'"2025-07-18T20:42:34Z","DCGM_FI_DEV_GPU_UTIL","0","nvidia0","GPU-1","H100",'
        b'"node-a","","","","42",""'
    )
    chunk_id = chunk_id_for(source.pk, 0, 1, start_offset)
    return chunk_of([line], chunk_id=chunk_id, source_id=source.pk, stamp=NOON).to_payload()


def make_dead_letter(source: StreamSource, payload: object, chunk_id: str = "") -> DeadLetter:
    return DeadLetter.objects.create(
        chunk_id=chunk_id,
        source=source,
        payload=msgpack.packb(payload, use_bin_type=True),
        reason="failed 5 times; last error: MemoryError",
        attempts=6,
    )


def dead_lettered_chunk(source: StreamSource) -> DeadLetter:
    """A chunk as the collector leaves it after too many attempts: a dead letter, and a
    ledger row that marks it done."""
    payload = make_chunk_payload(source, 9000)
    IngestedChunk.objects.create(chunk_id=payload["id"], source=source, dead_lettered=True)
    return make_dead_letter(source, payload, payload["id"])


def rows_shown(response: Any) -> list[Any]:
    return list(response.context["cl"].result_list)


def select_action(client: Client, model: type[Model], action: str, objects: Iterable[Model]) -> Any:
    return client.post(
        changelist_url(model),
        {"action": action, "_selected_action": [obj.pk for obj in objects]},
        follow=True,
    )


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@dataclass
class OneOfEach:
    """One row of every ingest model, as the pipeline would have left them."""

    rows: dict[type[Model], Model]


@pytest.fixture
def one_of_each() -> OneOfEach:
    source = StreamSource.objects.create(name="reference", location="/data/dcgm.csv")
    cursor = StreamCursor.objects.create(
        source=source, shard=0, start_offset=100, start_line=2, position=5000, next_line=60,
        rows_streamed=58,
    )  # fmt: skip
    outstanding = OutstandingChunk.objects.create(
        cursor=cursor, pass_number=1, start_offset=5000, end_offset=9000, first_line=60,
        line_count=40, stamp=NOON, published_at=NOON,
    )  # fmt: skip
    committed_id = chunk_id_for(source.pk, 0, 1, 100)
    ledger = IngestedChunk.objects.create(chunk_id=committed_id, source=source, rows_committed=58)
    gpu = make_gpu(1)
    metric = Metric.objects.create(name="DCGM_FI_DEV_GPU_UTIL", unit="%")
    workload = Workload.objects.create(namespace="training", pod="llm-0", container="main")
    # A minute ago: in the last 15 minutes, which the sample list shows without a GPU chosen.
    [sample] = make_samples(gpu, metric, 1, start=timezone.now() - timedelta(minutes=1))
    Sample.objects.filter(pk=sample.pk).update(workload=workload)
    failing_id = chunk_id_for(source.pk, 0, 1, 9000)
    attempt = ChunkAttempt.objects.create(chunk_id=failing_id, attempts=2, last_error="boom")
    rejected = RejectedRow.objects.create(
        source=source, chunk_id=committed_id, line_number=7, raw_line='"x"', reason="1 column"
    )
    letter = make_dead_letter(source, make_chunk_payload(source, 9000), failing_id)
    tally = Tally.objects.create(name=Tally.metric_key(metric.pk), stripe=3, value=58)
    latest = LatestValue.objects.create(gpu=gpu, metric=metric, timestamp=NOON, value=58.0)
    pushed = PushChunk.objects.create(
        chunk_id=f"push:1:{'ab' * 32}:0", token_id=1, format="remote-write", payload=b"\x80",
        received_at=NOON, last_published_at=NOON,
    )  # fmt: skip
    rows: list[Model] = [source, cursor, outstanding, ledger, gpu, metric, workload, sample,
                         attempt, rejected, letter, tally, latest, pushed]  # fmt: skip
    return OneOfEach({type(row): row for row in rows})


INGEST_MODELS = [
    ChunkAttempt, DeadLetter, Gpu, IngestedChunk, LatestValue, Metric, OutstandingChunk,
    PushChunk, RejectedRow, Sample, StreamCursor, StreamSource, Tally, Workload,
]  # fmt: skip


def test_every_ingest_model_is_in_the_admin() -> None:
    from django.apps import apps
    from django.contrib import admin

    models = set(apps.get_app_config("ingest").get_models())
    assert models == set(INGEST_MODELS)
    assert all(admin.site.is_registered(model) for model in models)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("model", INGEST_MODELS, ids=lambda model: model.__name__)
def test_every_ingest_changelist_and_change_page_answers_200_for_staff(
    admin_client: Client, one_of_each: OneOfEach, model: type[Model]
) -> None:
    listing = admin_client.get(changelist_url(model))
    assert listing.status_code == 200
    assert len(rows_shown(listing)) == 1
    detail = admin_client.get(change_url(one_of_each.rows[model]))
    assert detail.status_code == 200


@pytest.mark.django_db
def test_a_stream_source_can_be_added_in_the_admin(admin_client: Client, tmp_path: Path) -> None:
    csv = tmp_path / "dcgm.csv"
    csv.write_text(",".join(COLUMNS) + "\n")
    form = {"name": "nightly", "location": str(csv), "site": "default", "batch_size": 500,
            "interval_seconds": 10, "pace": "paced", "timestamp_mode": "processing",
            "shards": 1, "enabled": "on", "scheduled": "on",
            "cursors-TOTAL_FORMS": 0, "cursors-INITIAL_FORMS": 0}  # fmt: skip
    assert admin_client.get(reverse("admin:ingest_streamsource_add")).status_code == 200

    missing = admin_client.post(
        reverse("admin:ingest_streamsource_add"), {**form, "location": str(tmp_path / "no.csv")}
    )
    assert missing.status_code == 200  # the form again, with the error
    assert "is not a readable file" in missing.content.decode()

    added = admin_client.post(reverse("admin:ingest_streamsource_add"), form)
    assert added.status_code == 302
    source = StreamSource.objects.get(name="nightly")
    beat = PeriodicTask.objects.get(name=periodic_task_name(source))
    assert (beat.enabled, beat.queue, beat.interval.every) == (True, "stream", 10)


@pytest.mark.django_db
def test_editing_a_source_updates_its_beat_entry_but_not_the_file_it_streams(
    admin_client: Client,
) -> None:
    source = StreamSource.objects.create(name="reference", location="/data/dcgm.csv")
    cursor = StreamCursor.objects.create(
        source=source, shard=0, start_offset=100, start_line=2, position=100, next_line=2
    )
    StreamSource.objects.filter(pk=source.pk).update(columns=list(COLUMNS), throttled_ticks=4)
    form = {"name": "reference", "location": "/data/another.csv", "site": "default",
            "batch_size": 1000, "interval_seconds": 30, "pace": "fast",
            "timestamp_mode": "processing", "shards": 4, "enabled": "on", "scheduled": "on",
            "cursors-TOTAL_FORMS": 1, "cursors-INITIAL_FORMS": 1,
            "cursors-0-id": cursor.pk, "cursors-0-source": source.pk}  # fmt: skip

    response = admin_client.post(change_url(source), form)

    assert response.status_code == 302
    source.refresh_from_db()
    assert (source.interval_seconds, source.pace) == (30, "fast")
    assert (source.location, source.shards) == ("/data/dcgm.csv", 1)  # laid out: read-only
    assert (source.columns, source.throttled_ticks) == (list(COLUMNS), 4)  # the streamers' own
    assert beat_entry(source).interval.every == 30


@pytest.mark.django_db
def test_the_file_of_a_command_line_only_source_cannot_be_changed_in_the_admin(
    admin_client: Client, tmp_path: Path
) -> None:
    # Registered by import_csv for a file outside STREAM_SOURCE_DIRS, not yet streamed.
    source = StreamSource.objects.create(
        name="named", location="/home/ops/export.csv", scheduled=False, command_line_only=True
    )
    allowed = tmp_path / "other.csv"
    allowed.write_text(",".join(COLUMNS) + "\n")
    form = {"name": "named", "location": str(allowed), "site": "default", "batch_size": 1000,
            "interval_seconds": 5, "pace": "fast", "timestamp_mode": "source", "shards": 2,
            "enabled": "on", "cursors-TOTAL_FORMS": 0, "cursors-INITIAL_FORMS": 0}  # fmt: skip

    page = admin_client.get(change_url(source)).content.decode()
    response = admin_client.post(change_url(source), form)

    assert 'name="location"' not in page
    assert response.status_code == 302
    source.refresh_from_db()
    assert (source.location, source.shards) == ("/home/ops/export.csv", 1)
    assert source.command_line_only


@pytest.mark.django_db
@pytest.mark.parametrize("model", INGEST_MODELS, ids=lambda model: model.__name__)
def test_anonymous_visitors_are_sent_to_the_login_page(client: Client, model: type[Model]) -> None:
    name = model._meta.model_name
    for url in (changelist_url(model), reverse(f"admin:ingest_{name}_change", args=["1"])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


# -- Samples: no counting, no scanning ----------------------------------------------------


def sample_queries(context: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in context.captured_queries if "ingest_sample" in query["sql"]]


@pytest.mark.django_db(transaction=True)
def test_the_sample_changelist_never_counts_the_sample_table_and_still_pages(
    admin_client: Client,
) -> None:
    gpu = make_gpu(1)
    metric = Metric.objects.create(name="DCGM_FI_DEV_POWER_USAGE", unit="W")
    # Within the last 15 minutes, which the list shows when no GPU or range is chosen.
    make_samples(gpu, metric, PAGE + 30, start=timezone.now() - timedelta(minutes=5))

    pages = {}
    for page in (1, 2):
        with CaptureQueriesContext(connection) as context:
            pages[page] = admin_client.get(changelist_url(Sample), {"p": page})
        assert pages[page].status_code == 200
        queries = sample_queries(context)
        assert queries, "the page read no samples at all"
        assert not [sql for sql in queries if "COUNT(" in sql.upper()]
        assert len(queries) == 1  # one query fetches the page and tells whether more follow

    first, second = pages[1], pages[2]
    assert len(rows_shown(first)) == PAGE
    assert len(rows_shown(second)) == 30
    assert 'href="?p=2"' in first.content.decode()
    assert "of more than 100 (not counted)" in first.content.decode()
    assert "130 samples" in second.content.decode()  # the last page knows the total
    newest_first = [sample.value for sample in rows_shown(first) + rows_shown(second)]
    assert newest_first == [float(value) for value in reversed(range(PAGE + 30))]
    assert admin_client.get(changelist_url(Sample), {"p": 3})["Location"].endswith("?e=1")


def brin_indexes() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT index.relname FROM pg_class index JOIN pg_am ON pg_am.oid = index.relam "
            "WHERE pg_am.amname = 'brin' AND index.relname LIKE 'ingest_sample%%'"
        )
        return {name for (name,) in cursor.fetchall()}


@dataclass(frozen=True)
class SampleScan:
    relation: str
    kind: str
    index: str
    condition: str


def sample_scans(sql: str) -> list[SampleScan]:
    """How the query reads each partition of the sample table that holds rows.

    An empty partition (one made ahead of time, or by another test) costs nothing to read,
    and the planner rightly reads it whole; every other one must be read through an index.
    """
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
        [document] = cursor.fetchone()
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE 'ingest_sample_p%%' AND reltuples > 0"
        )
        holding_rows = {name for (name,) in cursor.fetchall()}

    def walk(node: dict[str, Any], parent: dict[str, Any] | None) -> Iterable[SampleScan]:
        relation = node.get("Relation Name", "")
        if relation in holding_rows:
            # A bitmap heap scan is as good as the index scan beneath it.
            child = node["Plans"][0] if node["Node Type"] == "Bitmap Heap Scan" else node
            yield SampleScan(
                relation,
                node["Node Type"],
                child.get("Index Name", ""),
                child.get("Index Cond", ""),
            )
        for below in node.get("Plans", []):
            yield from walk(below, node)

    return list(walk(document[0]["Plan"], None))


@pytest.mark.django_db(transaction=True)
def test_the_sample_changelist_reads_the_sample_table_through_indexes_only(
    admin_client: Client,
) -> None:
    """With a GPU, its part of the one B-tree; without, a time range through the BRIN index."""
    gpus = [make_gpu(number, host=f"node-{number // 8}") for number in range(16)]
    metrics = [Metric.objects.create(name=f"DCGM_FI_DEV_{n}") for n in ("A", "B", "C", "D")]
    # Today's partition holds the whole day, so the last 15 minutes are a small part of it at
    # any time of day (rows after now included: the list stops at now).
    today = timezone.now().astimezone(UTC).date()
    ensure_partitions({DAY, DAY + timedelta(days=1), DAY + timedelta(days=2), today})
    with connection.cursor() as cursor:
        fill = (
            "INSERT INTO ingest_sample (timestamp, value, gpu_id, metric_id) "
            "SELECT %s + g * %s * interval '1 second', g, (%s::int[])[1 + g %% 16], "
            "(%s::int[])[1 + g %% 4] FROM generate_series(0, %s) AS g"
        )
        gpu_ids, metric_ids = [gpu.pk for gpu in gpus], [metric.pk for metric in metrics]
        cursor.execute(fill, [NOON, 1, gpu_ids, metric_ids, 119_999])
        cursor.execute(fill, [midnight(today), 0.432, gpu_ids, metric_ids, 199_999])
        cursor.execute("ANALYZE ingest_sample")
    brin = brin_indexes()

    views: list[dict[str, str | int]] = [
        {},
        {"metric__id__exact": metrics[2].pk, "start": "2030-01-03 01:00", "p": 3},
        {"start": "2030-01-03 01:00", "end": "2030-01-03 01:10"},
        {"start": "2030-01-03 01:00", "end": "2030-01-03 09:00"},  # cut to its last 15 min
        {"start": "2030-01-03"},  # a date alone: from its midnight, 15 minutes
        {"end": "2030-01-03 12:00", "metric__id__exact": metrics[1].pk},  # up to noon, 15 min
        {"gpu": gpus[3].pk},
        {"gpu": gpus[3].uuid, "metric__id__exact": metrics[3].pk},
        {"gpu": gpus[5].pk, "start": "2030-01-03", "end": "2030-01-03"},
    ]
    for params in views:
        with CaptureQueriesContext(connection) as context:
            response = admin_client.get(changelist_url(Sample), params)
        assert response.status_code == 200, params
        assert rows_shown(response), params
        [sql] = sample_queries(context)
        assert "COUNT(" not in sql.upper()
        scans = sample_scans(sql)
        assert scans, params
        for scan in scans:
            assert scan.kind != "Seq Scan", (params, scan)
            if "gpu" in params:
                assert "(gpu_id = " in scan.condition, (params, scan)
            else:  # never the B-tree read whole for want of a GPU
                assert scan.index in brin, (params, scan)

    sample = Sample.objects.filter(gpu_id=gpus[7].pk, timestamp__gte=NOON).order_by("id")[500]
    with CaptureQueriesContext(connection) as context:
        response = admin_client.get(change_url(sample))
    assert response.status_code == 200
    assert response.context["original"] == sample
    scans = [scan for sql in sample_queries(context) for scan in sample_scans(sql)]
    assert scans
    assert all(scan.index in brin and "(id = " in scan.condition for scan in scans), scans


@pytest.mark.django_db(transaction=True)
def test_the_sample_list_filters_by_gpu_metric_and_time_range(admin_client: Client) -> None:
    one, two = make_gpu(1), make_gpu(2)
    util = Metric.objects.create(name="DCGM_FI_DEV_GPU_UTIL")
    temp = Metric.objects.create(name="DCGM_FI_DEV_GPU_TEMP")
    for gpu in (one, two):
        for metric in (util, temp):
            make_samples(gpu, metric, 6, step_seconds=600)  # 12:00 to 12:50

    def shown(**params: str | int) -> list[Sample]:
        response = admin_client.get(changelist_url(Sample), params)
        assert response.status_code == 200
        return rows_shown(response)

    # With a GPU: any range, the whole history by default.
    by_id = shown(gpu=one.pk)
    assert len(by_id) == 12
    assert {sample.gpu_id for sample in by_id} == {one.pk}
    assert [sample.timestamp for sample in by_id] == sorted(
        (sample.timestamp for sample in by_id), reverse=True
    )
    assert {sample.pk for sample in shown(gpu=one.uuid)} == {sample.pk for sample in by_id}
    assert shown(gpu="GPU-no-such-uuid") == []
    window = shown(gpu=one.pk, start="2030-01-02 12:10", end="2030-01-02T12:30:00+00:00")
    assert len(window) == 6  # 12:10, 12:20 and 12:30, inclusive, of 2 metrics
    assert {sample.timestamp.minute for sample in window} == {10, 20, 30}
    assert len(shown(gpu=one.pk, start="2030-01-02T13:10:00+01:00")) == 10  # 12:10 UTC on
    assert len(shown(gpu=one.pk, end="2030-01-02")) == 12  # a date alone: that whole day
    assert len(shown(gpu=one.pk, end="2030-01-01")) == 0

    # Without a GPU: at most 15 minutes, the last 15 (of the clock, not of 2030) by default.
    assert shown() == []
    assert len(shown(start="2030-01-02 12:00", end="2030-01-02 12:15")) == 8
    temp_from_noon = shown(metric__id__exact=temp.pk, start="2030-01-02 12:00")
    assert [(s.gpu_id, s.timestamp.minute) for s in temp_from_noon] == [
        (two.pk, 10), (one.pk, 10), (two.pk, 0), (one.pk, 0),
    ]  # fmt: skip
    response = admin_client.get(
        changelist_url(Sample), {"start": "2030-01-02 12:00", "end": "2030-01-02 12:30"}
    )
    assert {sample.timestamp.minute for sample in rows_shown(response)} == {20, 30}
    assert any("at most 15 minutes" in message for message in messages_of(response))
    up_to_noon = shown(end="2030-01-02 12:10", metric__id__exact=util.pk)
    assert {sample.timestamp.minute for sample in up_to_noon} == {0, 10}

    everything = shown(gpu=two.uuid, metric__id__exact=util.pk, start="2030-01-02 12:40")
    assert [(s.gpu_id, s.metric_id, s.timestamp.minute) for s in everything] == [
        (two.pk, util.pk, 50),
        (two.pk, util.pk, 40),
    ]

    response = admin_client.get(changelist_url(Sample), {"gpu": str(one.pk), "start": "yesterday"})
    assert len(rows_shown(response)) == 12  # ignored, and said so
    assert any("'yesterday' is not a date" in message for message in messages_of(response))


@pytest.mark.django_db(transaction=True)
def test_gpu_pages_link_to_the_samples_of_that_gpu(admin_client: Client) -> None:
    one, two = make_gpu(1), make_gpu(2)
    metric = Metric.objects.create(name="DCGM_FI_DEV_GPU_UTIL")
    make_samples(one, metric, 3)
    make_samples(two, metric, 5)
    link = f"{changelist_url(Sample)}?gpu={two.pk}"

    assert f'href="{link}"' in admin_client.get(changelist_url(Gpu)).content.decode()
    assert f'href="{link}"' in admin_client.get(change_url(two)).content.decode()
    response = admin_client.get(link)
    assert [sample.gpu_id for sample in rows_shown(response)] == [two.pk] * 5
    assert str(two) in response.content.decode()  # the filter names the GPU it shows


@pytest.mark.django_db(transaction=True)
def test_samples_cannot_be_added_changed_or_deleted(admin_client: Client) -> None:
    [sample] = make_samples(make_gpu(1), Metric.objects.create(name="DCGM_FI_DEV_SM_CLOCK"), 1)
    assert admin_client.get(reverse("admin:ingest_sample_add")).status_code == 403
    assert (
        admin_client.get(reverse("admin:ingest_sample_delete", args=[sample.pk])).status_code == 403
    )
    detail = admin_client.get(change_url(sample))
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    admin_client.post(change_url(sample), {"value": "99"})
    assert Sample.objects.get(pk=sample.pk).value == 0.0


@pytest.mark.django_db
def test_gpus_cannot_be_deleted_from_the_admin(admin_client: Client) -> None:
    gpu = make_gpu(1)
    assert admin_client.get(reverse("admin:ingest_gpu_delete", args=[gpu.pk])).status_code == 403
    listing = admin_client.get(changelist_url(Gpu))
    assert "delete_selected" not in listing.content.decode()
    select_action(admin_client, Gpu, "delete_selected", [gpu])
    assert Gpu.objects.filter(pk=gpu.pk).exists()
    assert admin_client.get(reverse("admin:ingest_gpu_add")).status_code == 403


# -- Stream source actions -------------------------------------------------------------------


def beat_entry(source: StreamSource) -> PeriodicTask:
    return PeriodicTask.objects.get(name=periodic_task_name(source))


@pytest.mark.django_db
def test_pause_and_resume_switch_the_sources_beat_entry_off_and_on(admin_client: Client) -> None:
    source = StreamSource.objects.create(name="reference", location="/data/dcgm.csv")
    other = StreamSource.objects.create(name="other", location="/data/other.csv")
    assert beat_entry(source).enabled

    paused = select_action(admin_client, StreamSource, "pause", [source])
    assert not StreamSource.objects.get(pk=source.pk).enabled
    assert not beat_entry(source).enabled
    assert beat_entry(other).enabled  # only the selected source
    assert "Paused 1 source (reference)" in " ".join(messages_of(paused))

    resumed = select_action(admin_client, StreamSource, "resume", [source, other])
    assert StreamSource.objects.get(pk=source.pk).enabled
    assert beat_entry(source).enabled
    assert "Resumed 1 source (reference)" in " ".join(messages_of(resumed))
    assert "Already running: other." in messages_of(resumed)


@pytest.mark.django_db
def test_rewind_restarts_every_cursor_at_its_start_as_the_next_pass(admin_client: Client) -> None:
    source = StreamSource.objects.create(name="reference", location="/data/dcgm.csv", shards=2)
    for shard, (start, line) in enumerate([(100, 2), (50_000, 900)]):
        StreamCursor.objects.create(
            source=source, shard=shard, start_offset=start, start_line=line,
            position=start + 7000, next_line=line + 120, pass_number=3, rows_streamed=500,
            finished=True,
        )  # fmt: skip
    never_streamed = StreamSource.objects.create(name="fresh", location="/data/fresh.csv")

    response = select_action(admin_client, StreamSource, "rewind", [source, never_streamed])

    cursors = list(source.cursors.order_by("shard"))
    assert [(c.position, c.next_line, c.pass_number, c.finished) for c in cursors] == [
        (100, 2, 4, False),
        (50_000, 900, 4, False),
    ]
    assert "Rewound 1 source: reference (pass 4)" in " ".join(messages_of(response))
    assert "nothing to rewind: fresh" in " ".join(messages_of(response))


@pytest.mark.django_db
def test_stream_once_puts_one_tick_on_the_sources_stream_queue(
    admin_client: Client, broker: redis.Redis
) -> None:
    source = StreamSource.objects.create(name="reference", location="/data/dcgm.csv")
    edge = StreamSource.objects.create(name="edge", location="/data/edge.csv", site="lab")
    paused = StreamSource.objects.create(name="paused", location="/x.csv", enabled=False)

    response = select_action(admin_client, StreamSource, "stream_once", [source, edge, paused])

    assert broker.llen("stream") == 1
    assert broker.llen("stream.lab") == 1
    assert broker.llen(COLLECT_QUEUE) == 0
    shown = " ".join(messages_of(response))
    assert "Sent a stream tick for 2 sources" in shown
    assert "Paused, so no tick was sent: paused" in shown


# -- Dead letters ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_replay_releases_the_dead_lettered_chunk_and_sends_it_to_the_collectors_once(
    admin_client: Client, broker: redis.Redis
) -> None:
    source = StreamSource.objects.create(name="reference", location="/data/dcgm.csv")
    letter = dead_lettered_chunk(source)
    chunk_id = letter.chunk_id
    committed = IngestedChunk.objects.create(
        chunk_id=chunk_id_for(source.pk, 0, 1, 100), source=source, rows_committed=58
    )
    ChunkAttempt.objects.create(chunk_id=chunk_id, attempts=6, last_error="MemoryError")

    response = select_action(admin_client, DeadLetter, "replay", [letter])

    assert "Replayed 1 dead letter to the collect queue." in messages_of(response)
    letter.refresh_from_db()
    assert letter.replayed_at is not None
    assert not IngestedChunk.objects.filter(pk=chunk_id).exists()
    assert not ChunkAttempt.objects.filter(pk=chunk_id).exists()
    assert IngestedChunk.objects.get(pk=committed.pk).rows_committed == 58
    assert broker.llen(COLLECT_QUEUE) == 1

    select_action(admin_client, DeadLetter, "replay", [letter])  # already replayed
    assert broker.llen(COLLECT_QUEUE) == 1


@pytest.mark.django_db(transaction=True)
def test_replay_never_deletes_a_committed_ledger_row(broker: redis.Redis) -> None:
    source = StreamSource.objects.create(name="reference", location="/data/dcgm.csv")
    payload = make_chunk_payload(source)
    IngestedChunk.objects.create(chunk_id=payload["id"], source=source, rows_committed=1)
    letter = make_dead_letter(source, payload, payload["id"])

    assert dead_letters.replay([letter]) == 1

    assert IngestedChunk.objects.get(pk=payload["id"]).rows_committed == 1
    assert broker.llen(COLLECT_QUEUE) == 1  # the collector will see a duplicate and drop it


@pytest.mark.django_db(transaction=True)
def test_a_message_that_is_not_a_chunk_is_replayed_as_it_is(broker: redis.Redis) -> None:
    source = StreamSource.objects.create(name="reference", location="/data/dcgm.csv")
    letters = [make_dead_letter(source, "not a chunk"), make_dead_letter(source, {"lines": 3})]

    assert dead_letters.replay(letters) == 2

    assert broker.llen(COLLECT_QUEUE) == 2
    assert all(letter.replayed_at is not None for letter in DeadLetter.objects.all())


@pytest.mark.django_db(transaction=True)
def test_a_replay_the_broker_refuses_leaves_the_dead_letter_as_it_was(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    letter = dead_lettered_chunk(
        StreamSource.objects.create(name="reference", location="/data/dcgm.csv")
    )

    def broker_down(payload: dict[str, Any], connection: object) -> None:
        raise kombu.exceptions.OperationalError("Error 111 connecting to redis. Refused.")

    monkeypatch.setattr(dead_letters, "publish_chunk", broker_down)
    response = select_action(admin_client, DeadLetter, "replay", [letter])

    assert "Replayed 0 dead letters, then stopped" in " ".join(messages_of(response))
    letter.refresh_from_db()
    assert letter.replayed_at is None  # still replayable
    assert IngestedChunk.objects.get(pk=letter.chunk_id).dead_lettered  # the chunk stays done
