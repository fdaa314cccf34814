"""Hot queries compiled to SQL once per process, then run with each request's values.

Building a queryset (``filter`` parsing lookups and joins) and compiling it to SQL cost the
telemetry page more Python than the database spends answering it: about 1 ms per query on
these machines, against a few tenths for the index probe itself. Yet a hot query has few
shapes (which filters are present, how many metrics, the page size); only its values change.

So the query is built by the very code that builds it otherwise, once per shape, from
*markers*: values of the right type that nothing else in a query holds. Where the compiled
parameters hold a marker, each later run puts its own value; everything else (constants,
the SQL text) is kept. Rows pass through the same converters the ORM would apply. A backend
that rewrites a marker on its way to the driver (SQLite turns datetimes into text) leaves the
shape uncompiled: its queries are built every time, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from django.db import connections
from django.db.models import QuerySet

# Shapes per process: a handful are hot (page sizes are few); a client inventing limits
# cannot grow the cache without bound.
MAX_SHAPES: Final = 256
_INT_MARKER_BASE: Final = -(10**15)
_TIME_MARKER_BASE: Final = datetime(1, 1, 1, tzinfo=UTC)

Build = Callable[[Sequence[Any]], QuerySet[Any, Any]]


def marker(value: Any, index: int) -> Any:
    """A stand-in for ``value`` (the ``index``-th of a query's values): same type, a value
    no real query of this API holds (negative ids, the first day of year 1)."""
    if isinstance(value, bool):
        raise TypeError("a boolean changes a query's shape: make it part of the key")
    if isinstance(value, int):
        return _INT_MARKER_BASE - index
    if isinstance(value, datetime):
        return _TIME_MARKER_BASE + timedelta(microseconds=index + 1)
    if isinstance(value, str):
        return f"\x00marker{index}"
    raise TypeError(f"no marker for a {type(value).__name__}")


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    slots: tuple[tuple[int, int], ...]  # (parameter position, value index)
    convert: Callable[[list[Any]], list[tuple[Any, ...]]] | None


class CompiledQueries:
    """Compiled shapes by (database alias, key); thread-safe (gthread workers share it)."""

    def __init__(self) -> None:
        self._shapes: dict[tuple[str, Hashable], _Compiled | None] = {}
        self._lock = threading.Lock()

    def rows(
        self, key: Hashable, build: Build, values: Sequence[Any], using: str = "default"
    ) -> list[tuple[Any, ...]]:
        """The rows of the ``values_list`` queryset ``build(values)``, without building it
        when its shape (``key``) was compiled before. ``key`` must determine everything about
        the query but ``values``."""
        cache_key = (using, key)
        compiled = self._shapes.get(cache_key, _MISSING)
        if compiled is _MISSING:
            compiled = _compile(build, values, using)
            with self._lock:
                if len(self._shapes) >= MAX_SHAPES:
                    self._shapes.clear()
                self._shapes[cache_key] = compiled
        if compiled is None:
            return list(build(values))
        params = list(compiled.params)
        for position, index in compiled.slots:
            params[position] = values[index]
        with connections[using].cursor() as cursor:
            cursor.execute(compiled.sql, params)
            fetched: list[tuple[Any, ...]] = cursor.fetchall()
        return fetched if compiled.convert is None else compiled.convert(fetched)


_MISSING: Final[Any] = object()


def _compile(build: Build, values: Sequence[Any], using: str) -> _Compiled | None:
    markers = [marker(value, index) for index, value in enumerate(values)]
    queryset = build(markers)
    compiler = queryset.query.get_compiler(using=using)
    sql, params = compiler.as_sql()
    slots = tuple(
        (position, markers.index(param))
        for position, param in enumerate(params)
        if any(type(param) is type(found) and param == found for found in markers)
    )
    if {index for _, index in slots} != set(range(len(markers))):
        return None  # a marker was rewritten on its way: this backend builds every time
    fields = [selected[0] for selected in compiler.select[: compiler.col_count]]
    converters = compiler.get_converters(fields)
    convert = None
    if converters:

        def convert(rows: list[Any]) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in compiler.apply_converters(rows, converters)]

    return _Compiled(sql, tuple(params), slots, convert)


QUERIES: Final = CompiledQueries()
