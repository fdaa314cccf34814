"""The PostgreSQL backend's health check: no round trip for a quiet connection, and a
connection the server ended is found unusable (telemetry_project.postgresql)."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DatabaseError, connection, connections
from django.db.backends.postgresql import base as django_postgresql

from telemetry_project.postgresql.base import DatabaseWrapper

pytestmark = pytest.mark.django_db


def _own_connection() -> Iterator[DatabaseWrapper]:
    """A connection of its own to the test database (autocommit, outside the test's
    transaction), as a web thread keeps one."""
    wrapper = connections.create_connection("default")
    assert isinstance(wrapper, DatabaseWrapper)
    wrapper.ensure_connection()
    try:
        yield wrapper
    finally:
        wrapper.close()


@pytest.fixture
def kept() -> Iterator[DatabaseWrapper]:
    yield from _own_connection()


@pytest.fixture
def other() -> Iterator[DatabaseWrapper]:
    yield from _own_connection()


def _backend_pid(wrapper: DatabaseWrapper) -> int:
    return int(wrapper.connection.get_backend_pid())


def _until(check: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_a_quiet_connection_is_usable_without_a_query(
    kept: DatabaseWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    def round_trip(_self: object) -> bool:
        raise AssertionError("the health check sent a query")

    monkeypatch.setattr(django_postgresql.DatabaseWrapper, "is_usable", round_trip)
    assert kept.is_usable()


def test_a_connection_whose_queries_raised_is_asked(
    kept: DatabaseWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[bool] = []

    def round_trip(_self: object) -> bool:
        asked.append(True)
        return True

    monkeypatch.setattr(django_postgresql.DatabaseWrapper, "is_usable", round_trip)
    with pytest.raises(DatabaseError), kept.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")  # a data error would not count
    assert kept.errors_occurred
    assert kept.is_usable()
    assert asked == [True]


def test_a_connection_the_server_terminated_is_unusable_and_replaced(
    kept: DatabaseWrapper,
) -> None:
    ended = _backend_pid(kept)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [ended])
    assert _until(lambda: not kept.is_usable())

    # What a new request does: close_old_connections, then its first query, before which
    # Django runs the health check (CONN_HEALTH_CHECKS) and replaces the connection.
    kept.close_if_unusable_or_obsolete()
    with kept.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != ended


def test_a_connection_with_something_to_read_is_asked_and_stays(
    kept: DatabaseWrapper, other: DatabaseWrapper
) -> None:
    with kept.cursor() as cursor:
        cursor.execute("LISTEN health_check_probe")
    with other.cursor() as cursor:  # committed at once: a notification is sent on commit
        cursor.execute("NOTIFY health_check_probe")
    # A notification arrives between queries: the socket reads as ready, and SELECT 1 finds
    # the connection sound.
    assert _until(lambda: bool(_readable(kept)))
    assert kept.is_usable()
    assert kept.connection.notifies  # the round trip read the notification


def _readable(wrapper: DatabaseWrapper) -> list[Any]:
    poller = select.poll()
    poller.register(wrapper.connection.fileno(), select.POLLIN)
    return poller.poll(0)
