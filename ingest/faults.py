"""Fault injection for tests, at named points of the delivery protocol.

``TELEMETRY_FAULT=<point>`` arms one point; ``TELEMETRY_FAULT_AFTER=N`` lets its first N passes
go. At a *fault point* the process then exits abruptly (no cleanup, like SIGKILL); at a
*failure point* the database seems lost: ``OperationalError`` is raised, on the next
``TELEMETRY_FAULT_TIMES`` passes (default 1), and later passes go through again.
The hooks cost one dictionary lookup when unset and do nothing in production.
"""

from __future__ import annotations

import os

from django.db import OperationalError

STREAMER_AFTER_RECORD = "streamer-after-record"  # chunks committed as outstanding, unpublished
STREAMER_AFTER_PUBLISH = "streamer-after-publish"  # chunks published, not yet confirmed
# A failure point: the chunk's attempt counted and its samples written, uncommitted.
COLLECTOR_MID_COMMIT = "collector-mid-commit"
# A failure point: a push's parts about to be stored, nothing written yet.
PUSH_RECORD = "push-record"
PUSH_AFTER_RECORD = "push-after-record"  # a push's parts committed, unpublished, unanswered

_passes: dict[str, int] = {}


def _armed_pass(name: str) -> int | None:
    """How many passes the armed point ``name`` let go before this one; None when unarmed."""
    if os.environ.get("TELEMETRY_FAULT") != name:
        return None
    seen = _passes.get(name, 0)
    _passes[name] = seen + 1
    return seen - int(os.environ.get("TELEMETRY_FAULT_AFTER", "0"))


def fault_point(name: str) -> None:
    past = _armed_pass(name)
    if past is not None and past >= 0:
        os._exit(137)


def failure_point(name: str) -> None:
    past = _armed_pass(name)
    if past is not None and 0 <= past < int(os.environ.get("TELEMETRY_FAULT_TIMES", "1")):
        raise OperationalError(f"fault injected at {name} (pass {past + 1})")
