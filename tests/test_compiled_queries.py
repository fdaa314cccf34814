"""Queries compiled once per shape answer what the ORM answers, for any later values."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.test.utils import CaptureQueriesContext

from api.compiled import CompiledQueries, nudged
from ingest.models import Gpu, Sample

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reference_data")]


def page_after(values: Sequence[Any]) -> QuerySet[Sample, tuple[Any, ...]]:
    gpu_id, moment = values
    samples = Sample.objects.filter(gpu_id=gpu_id, timestamp__gte=moment)
    return samples.order_by("timestamp", "id").values_list("timestamp", "value", "id")[:5]


def test_a_compiled_shape_answers_for_other_values_as_the_orm_does() -> None:
    queries = CompiledQueries()
    gpus = list(
        Gpu.objects.filter(sample_count__gt=0).order_by("id").values_list("id", "first_seen")
    )
    first_id, first_seen = gpus[0]
    queries.rows("page", page_after, [first_id, first_seen])
    for gpu_id, seen in gpus[1:4]:
        assert seen is not None
        values = [gpu_id, seen - timedelta(minutes=1)]
        with CaptureQueriesContext(connection) as run:
            rows = queries.rows("page", page_after, values)
        assert rows == list(page_after(values))
        assert rows
        assert len(run.captured_queries) == 1


def test_values_the_orm_gives_up_on_are_answered_the_orm_way() -> None:
    queries = CompiledQueries()

    def device(values: Sequence[Any]) -> QuerySet[Gpu, tuple[Any, ...]]:
        uuid, instance = values
        return Gpu.objects.filter(uuid=uuid, gpu_instance_id=instance).values_list("id")

    # A GPU instance id beyond the column's range: no row can match, and the ORM says so
    # without asking the database.
    assert queries.rows("device", device, ["GPU-x", 99999]) == []
    assert queries.rows("device", device, ["GPU-x", 3]) == []


def test_every_value_is_nudged_apart_keeping_its_type_and_sign() -> None:
    assert nudged(0, 0) == 1
    assert nudged(5, 1) == 3
    assert nudged("a", 2) == "a\x01\x01\x01"
    with pytest.raises(TypeError):
        nudged(True, 0)
