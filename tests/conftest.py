"""Shared fixtures: a clean broker, real Celery worker processes on the test database, and
telemetry loaded once per module for the API tests. Helpers live in ``tests/support``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from pytest_django import DjangoDbBlocker

from ingest import dimensions
from tests.support.api_data import (
    PLANNER_SPEC,
    Loaded,
    generated_while_in_use,
    loaded_while_in_use,
)
from tests.support.reference import REFERENCE_CSV
from tests.support.workers import WorkerFactory, database_url_for_workers

# What makes a test more than a unit test: a fixture that reaches the database or the broker
# (directly or through another fixture), or a marker for processes, servers or tools.
SERVICE_FIXTURES = frozenset({"db", "transactional_db", "django_db_setup", "broker", "live_server"})
SERVICE_MARKERS = ("django_db", "integration", "slow", "faults", "deploy")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``unit`` the tests ``make test-quick`` runs: those that need no service."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures.isdisjoint(SERVICE_FIXTURES) and not any(
            item.get_closest_marker(marker) for marker in SERVICE_MARKERS
        ):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _fresh_dimension_cache() -> Iterator[None]:
    # Each test starts from empty tables; ids cached by an earlier test would be stale.
    dimensions.forget()
    yield
    dimensions.forget()


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    """The test Redis database, emptied before and after the test."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def pipeline_env(transactional_db: None, broker: redis.Redis) -> dict[str, str]:
    """Environment for worker and command processes: the test database and broker.

    Short delivery timings keep recovery scenarios quick; tests override them as needed.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST", "COV_", "TELEMETRY_FAULT"))
    }
    env.update(
        DATABASE_URL=database_url_for_workers(),
        REDIS_URL=settings.CELERY_BROKER_URL,
        LOG_LEVEL="INFO",
        REPUBLISH_AFTER_SECONDS="5",
        CELERY_VISIBILITY_TIMEOUT="10",
        RETRY_BACKOFF_MAX_SECONDS="2",
    )
    return env


@pytest.fixture
def workers(pipeline_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(pipeline_env, tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def reference_data(django_db_setup: None, django_db_blocker: DjangoDbBlocker) -> Iterator[Loaded]:
    """The reference export (2,470 rows, 247 GPUs, 31 hosts), committed for the module."""
    yield from loaded_while_in_use(django_db_blocker, REFERENCE_CSV)


@pytest.fixture(scope="module")
def generated_data(
    django_db_setup: None,
    django_db_blocker: DjangoDbBlocker,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Loaded]:
    """A generated export of about 300k rows, committed and ANALYZEd for the module."""
    folder = tmp_path_factory.mktemp("planner")
    yield from generated_while_in_use(django_db_blocker, folder, PLANNER_SPEC)
