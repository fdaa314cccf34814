"""A second PostgreSQL session of the test database, for tests of what waits on what."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2  # type: ignore[import-untyped]
from django.db import connection


@contextmanager
def second_session(*statements: str) -> Iterator[None]:
    """Another session of the test database that ran ``statements`` in an open transaction."""
    settings_dict = connection.settings_dict
    other = psycopg2.connect(
        host=settings_dict["HOST"],
        port=settings_dict["PORT"],
        user=settings_dict["USER"],
        dbname=settings_dict["NAME"],
    )
    try:
        with other.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        yield
    finally:
        other.rollback()
        other.close()
