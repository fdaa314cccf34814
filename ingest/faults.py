"""Fault injection for tests: kill this process at a named point of the delivery protocol.

``TELEMETRY_FAULT=<point>`` makes the process exit abruptly (no cleanup, like SIGKILL) the
first time it reaches that point; ``TELEMETRY_FAULT_AFTER=N`` lets the first N passes go.
The hook costs one dictionary lookup when unset and does nothing in production.
"""

from __future__ import annotations

import os

STREAMER_AFTER_RECORD = "streamer-after-record"  # chunks committed as outstanding, unpublished
STREAMER_AFTER_PUBLISH = "streamer-after-publish"  # chunks published, not yet confirmed

_passes: dict[str, int] = {}


def fault_point(name: str) -> None:
    if os.environ.get("TELEMETRY_FAULT") != name:
        return
    seen = _passes.get(name, 0)
    _passes[name] = seen + 1
    if seen >= int(os.environ.get("TELEMETRY_FAULT_AFTER", "0")):
        os._exit(137)
