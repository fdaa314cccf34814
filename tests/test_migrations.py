"""The committed migrations describe the models and build the tables docs/design.md describes
("Data model")."""

from __future__ import annotations

import io
from datetime import date

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from ingest.models import Sample
from ingest.partitions import attached_partitions, ensure_partitions, forget, midnight
from ingest.sample_ids import take_ids

pytestmark = pytest.mark.django_db


def test_the_models_need_no_new_migration() -> None:
    call_command("makemigrations", "--check", "--dry-run", stdout=io.StringIO())


def test_the_sample_table_is_range_partitioned_by_time_with_gpu_time_and_id_as_key() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_partkeydef('ingest_sample'::regclass), "
            "pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'ingest_sample'::regclass AND contype = 'p'"
        )
        partition_key, primary_key = cursor.fetchone()
    assert partition_key == 'RANGE ("timestamp")'
    assert primary_key == 'PRIMARY KEY (gpu_id, "timestamp", id)'


def sample_indexes(table: str) -> dict[str, str]:
    """The indexes of ``table``: name -> access method and columns, as pg_indexes shows them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, regexp_replace(indexdef, '^.* USING ', '') FROM pg_indexes "
            "WHERE tablename = %s",
            [table],
        )
        return dict(cursor.fetchall())


BRIN_TIME_ID = """brin ("timestamp", id) WITH (autosummarize='on')"""


def test_the_sample_table_and_each_partition_have_one_btree_and_one_brin_index() -> None:
    ensure_partitions({date(2030, 5, 1)})
    [partition] = [p.name for p in attached_partitions() if p.covers(midnight(date(2030, 5, 1)))]
    assert sample_indexes("ingest_sample") == {
        "ingest_sample_gpu_time_id": 'btree (gpu_id, "timestamp", id)',
        "ingest_sample_time_id_brin": BRIN_TIME_ID,
    }
    assert sorted(sample_indexes(partition).values()) == [
        BRIN_TIME_ID,
        'btree (gpu_id, "timestamp", id)',
    ]


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_samples_and_takes_new_ids_a_chunk_above_them() -> None:
    before = [("ingest", "0013_latest_values_read_model")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        forget()  # the partition an earlier test's transaction made was rolled back with it
        ensure_partitions({date(2030, 5, 1)})
        with connection.cursor() as cursor:
            # Ids as the old sequence left them: one past the last 65,536 boundary, and more.
            cursor.execute(
                "INSERT INTO ingest_sample (id, timestamp, value, gpu_id, metric_id) "
                "SELECT 3 * 65536 + g, '2030-05-01T12:00:00Z'::timestamptz + g * interval '1s', "
                "g, 1 + g % 2, 1 FROM generate_series(1, 10) AS g"
            )
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
        with connection.cursor() as cursor:
            ids = take_ids(cursor, 3)
            cursor.execute(
                "INSERT INTO ingest_sample (timestamp, value, gpu_id, metric_id) "
                "VALUES ('2030-05-01T13:00:00Z', 1, 1, 1) RETURNING id"
            )
            [by_default] = cursor.fetchone()
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert Sample.objects.count() == 11
    assert ids == [4 * 65536, 4 * 65536 + 1, 4 * 65536 + 2]  # the serial after the old ids
    assert by_default == 5 * 65536  # a row without an id takes a serial of its own


def test_samples_carry_no_foreign_key_constraints() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_constraint "
            "WHERE conrelid = 'ingest_sample'::regclass AND contype = 'f'"
        )
        assert cursor.fetchone()[0] == 0


def test_counter_tables_leave_room_for_in_place_updates() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reloptions FROM pg_class "
            "WHERE relname IN ('ingest_gpu', 'ingest_tally') ORDER BY relname"
        )
        options = dict(cursor.fetchall())
    assert options == {"ingest_gpu": ["fillfactor=50"], "ingest_tally": ["fillfactor=50"]}


def test_the_labels_migration_removes_per_sample_keys_from_stored_gpus(
    transactional_db: None,
) -> None:
    before = [("ingest", "0004_counter_table_fillfactor")]
    after = [("ingest", "0005_gpu_labels_without_per_sample_keys")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        gpu_model = executor.loader.project_state(before).apps.get_model("ingest", "Gpu")
        static = {"DCGM_FI_DRIVER_VERSION": "535.129.03", "Hostname": "host-a", "gpu": "0"}
        gpu_model.objects.create(
            uuid="GPU-old", gpu_index=0, device="nvidia0", model_name="H100", hostname="host-a",
            labels={**static, "__name__": "DCGM_FI_DEV_GPU_UTIL", "pod": "trainer-0"},
        )  # fmt: skip
        gpu_model.objects.create(
            uuid="GPU-clean", gpu_index=1, device="nvidia1", model_name="H100",
            hostname="host-a", labels=static,
        )  # fmt: skip
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        migrated = executor.loader.project_state(after).apps.get_model("ingest", "Gpu")
        labels = dict(migrated.objects.values_list("uuid", "labels"))
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert labels == {"GPU-old": static, "GPU-clean": static}
