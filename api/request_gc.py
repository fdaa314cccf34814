"""Garbage collection paced by requests, so that no request pays for its neighbours' garbage.

Every request leaves a few hundred objects in reference cycles (Django's request and its
message storage, DRF's request and view, a filter's form), which only CPython's cycle
collector frees. Left to its allocation thresholds, the collector runs in whichever request
crosses one: at the API's read endpoints about one request in twenty-five paid about 2 ms
(up to 6) for all the others' garbage, and about one in nine hundred a full pass over every
object Django had loaded, about 70 ms. Those lumps were most of the endpoints' p99
(docs/measurements.md, "Garbage collection and the latency tail").

So the collection is paced by requests instead:

- at the start of each request (``request_started``), the objects allocated since the last
  collection are collected: the previous request's garbage, a few hundred objects
  (0.02-0.1 ms), and an older generation whenever its count is due, as the automatic
  collector would. Not at the end of a request: its own objects are still referenced then
  (the handler holds the response while it closes it), and a collection would promote them
  to an older generation, to be freed later in a bigger, costlier pass;
- the youngest generation's threshold is raised from 700 to ``YOUNG_THRESHOLD`` objects,
  more than a common request holds at once: at 700 the collector still ran inside about one
  request in two hundred (those that allocate the most), where it finds nothing to free among
  the request's live objects and promotes them all to an older generation. A request that
  allocates far more (an export, the fleet view) is still collected within it, as before;
- at the end of the first request, once the URLconf, views, serializers and schema are
  loaded, everything alive is collected and then frozen (``gc.freeze``): a full collection
  no longer walks the framework's own objects, which live as long as the process.

All of it happens only in a process that serves requests: workers keep the defaults.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

# The youngest generation's threshold once the process serves requests (the default is 700).
YOUNG_THRESHOLD: Final = 10_000


class RequestPacedCollector:
    """Receivers of ``request_started`` (collect) and ``request_finished`` (freeze, once)."""

    def __init__(self) -> None:
        self._frozen = False
        self._lock = threading.Lock()

    def collect(self, **_signal: Any) -> None:
        gc.collect(generation_due())

    def freeze_once(self, **_signal: Any) -> None:
        if self._frozen:
            return
        with self._lock:
            if not self._frozen:
                gc.collect()
                gc.freeze()
                gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
                self._frozen = True


def generation_due() -> int:
    """The oldest generation whose count has passed its threshold, else the youngest: what
    the automatic collector would collect once its youngest threshold was crossed."""
    counts, thresholds = gc.get_count(), gc.get_threshold()
    for generation in (2, 1):
        if counts[generation] > thresholds[generation]:
            return generation
    return 0


PACED_COLLECTOR = RequestPacedCollector()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector off for the block (and back on after it, if it was on), for
    work that allocates a great many containers and no cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
