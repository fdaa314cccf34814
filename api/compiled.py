"""Hot queries compiled to SQL once per process, then run with each request's values.

Building a queryset (``filter`` parsing lookups and joins) and compiling it to SQL cost the
telemetry page more Python than the database spends answering it: about 1 ms per query on
these machines, against a few tenths for the index probe itself. Yet a hot query has few
shapes (which filters are present, how many metrics, the page size); only its values change.

So the query of a shape is built and compiled once, by the very code that builds it
otherwise, twice over: from the request's values and from values nudged apart (each by a
different amount). The parameters that differ between the two are the request's values; the
rest (constants, the SQL text) is kept, and each later run of the shape puts its own values in
those places. Rows pass through the converters the ORM would apply. A backend that rewrites a
value on its way to the driver (SQLite writes datetimes as text) leaves its shapes uncompiled:
their queries are built every time, as before. A request whose values make the ORM give up on
the query (an id out of the column's range: no row can match) is answered the ORM's way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connections
from django.db.models import QuerySet

# Shapes per process: a handful are hot (page sizes are few); a client inventing limits
# cannot grow the cache without bound.
MAX_SHAPES: Final = 256

Build = Callable[[Sequence[Any]], QuerySet[Any, Any]]


def nudged(value: Any, index: int) -> Any:
    """``value`` moved by an amount that names ``index``, keeping its type (and an integer
    its sign, which a positive column's range check would refuse)."""
    step = index + 1
    if isinstance(value, bool):
        raise TypeError("a boolean changes a query's shape: make it part of the key")
    if isinstance(value, int):
        return value - step if value - step >= 0 else value + step
    if isinstance(value, datetime):
        return value + timedelta(microseconds=step)
    if isinstance(value, str):
        return value + "\x01" * step
    raise TypeError(f"no way to nudge a {type(value).__name__}")


def _index_of(first: Any, second: Any) -> int:
    """Which value moved ``first`` to ``second`` (``nudged``)."""
    if isinstance(first, datetime):
        return int(abs((second - first) // timedelta(microseconds=1))) - 1
    if isinstance(first, str):
        return int(len(second) - len(first)) - 1
    return int(abs(second - first)) - 1


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
            try:
                compiled = _compile(build, values, using)
            except (EmptyResultSet, FullResultSet):
                return list(build(values))
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
    compiler = build(values).query.get_compiler(using=using)
    sql, params = compiler.as_sql()
    other = [nudged(value, index) for index, value in enumerate(values)]
    other_sql, other_params = build(other).query.get_compiler(using=using).as_sql()
    if other_sql != sql or len(other_params) != len(params):
        return None
    slots = tuple(
        (position, _index_of(mine, theirs))
        for position, (mine, theirs) in enumerate(zip(params, other_params, strict=True))
        if mine != theirs
    )
    if {index for _, index in slots} != set(range(len(values))) or any(
        params[position] != values[index] for position, index in slots
    ):
        return None  # a value was rewritten on its way: this backend builds every time
    fields = [selected[0] for selected in compiler.select[: compiler.col_count]]
    converters = compiler.get_converters(fields)
    convert = None
    if converters:

        def convert(rows: list[Any]) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in compiler.apply_converters(rows, converters)]

    return _Compiled(sql, tuple(params), slots, convert)


QUERIES: Final = CompiledQueries()
