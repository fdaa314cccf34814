"""The bound every task puts on its own database work.

Celery's ``time_limit`` and ``soft_time_limit`` are not enforced in the solo pool the
workers run (there is no parent process to kill a child, nor a signal to interrupt the one
process), so a task bounds itself: inside :func:`bounded_database_work` PostgreSQL cancels any
statement that runs longer than the bound, and ends the session of a task that sits in an
open transaction longer than it (say, holding a cursor row while a slow source trickles in).
Either surfaces as the database error an outage raises, which the tasks already retry or
skip without losing anything. docs/design.md, "Bounds on every task".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from django.db import Error, connection

SET_BOUNDS = (
    "SELECT set_config('statement_timeout', %(bound)s, false), "
    "set_config('idle_in_transaction_session_timeout', %(bound)s, false)"
)
RESET_BOUNDS = "RESET statement_timeout; RESET idle_in_transaction_session_timeout"


@contextmanager
def bounded_database_work(seconds: float) -> Iterator[None]:
    """Cancel any statement, or open transaction left idle, past ``seconds`` in the block.

    The bounds are session settings, so they cover the block's autocommit statements and
    every transaction it opens, and they are reset on the way out, so a connection the next
    task reuses starts from the server's defaults. On SQLite, which has neither setting, the
    busy timeout (settings) bounds the one wait a statement can have: a write lock.
    """
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute(SET_BOUNDS, {"bound": f"{max(1, round(seconds * 1000))}ms"})
    try:
        yield
    finally:
        _reset()


def _reset() -> None:
    if connection.connection is None:
        return  # closed: the next connection starts from the server's defaults anyway
    # A failure means the session is gone (ended by the bound itself, or by an outage): the
    # task's own error handling closes the connection, and a new one starts from the defaults.
    with suppress(Error), connection.cursor() as cursor:
        cursor.execute(RESET_BOUNDS)
