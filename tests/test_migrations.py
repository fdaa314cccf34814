"""The committed migrations describe the models and build the tables docs/design.md describes
("Data model")."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db


def test_the_models_need_no_new_migration() -> None:
    call_command("makemigrations", "--check", "--dry-run", stdout=io.StringIO())


def test_the_sample_table_is_range_partitioned_by_time_with_id_and_time_as_key() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_partkeydef('ingest_sample'::regclass), "
            "pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'ingest_sample'::regclass AND contype = 'p'"
        )
        partition_key, primary_key = cursor.fetchone()
    assert partition_key == 'RANGE ("timestamp")'
    assert primary_key == 'PRIMARY KEY (id, "timestamp")'


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
