"""Time buckets computed in the database, so an aggregate never loads samples into Python.

PostgreSQL has ``date_bin``; SQLite gets the same arithmetic on epoch seconds. Both align
buckets to the Unix epoch, so a bucket start is a multiple of the width.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateTimeField, Func
from django.db.models.sql.compiler import SQLCompiler


class TimeBucket(Func):
    """The start of the ``width``-wide bucket holding the expression's timestamp."""

    output_field = DateTimeField()

    def __init__(self, expression: Any, width: timedelta) -> None:
        super().__init__(expression)
        self.width_seconds = int(width.total_seconds())

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return (
            f"date_bin(make_interval(secs => %s), {sql}, TIMESTAMPTZ '1970-01-01 00:00:00+00')",
            [self.width_seconds, *params],
        )

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        # Django stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS[.ffffff]' text in UTC.
        return (
            f"strftime('%%Y-%%m-%%d %%H:%%M:%%S', "
            f"(CAST(strftime('%%s', {sql}) AS INTEGER) / %s) * %s, 'unixepoch')",
            [*params, self.width_seconds, self.width_seconds],
        )
