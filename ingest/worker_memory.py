"""Worker processes give large freed buffers back to the system.

Streamers and collectors allocate and free buffers of megabytes for every chunk: the raw
lines, their compressed form, the COPY text. glibc's malloc raises its mmap threshold to the
size of each such buffer it frees, after which buffers of that size come from the heap,
where the small objects allocated among them keep the freed space from being returned
(docs/measurements.md, "Freed buffers in workers"). Setting the threshold once (which also
stops the adjustment) keeps every buffer from 128 KiB up in a mapping of its own, unmapped
when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Final

from celery.signals import worker_init, worker_process_init

M_MMAP_THRESHOLD: Final = -3  # the mallopt parameter number in glibc's <malloc.h>
MMAP_THRESHOLD_BYTES: Final = 128 * 1024  # glibc's own starting value


def fix_mmap_threshold(**_signal: object) -> None:
    """Pin glibc's mmap threshold in this process; elsewhere (musl, macOS) do nothing."""
    if not sys.platform.startswith("linux"):
        return
    library = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(library), "mallopt", None) if library else None
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


# The solo pool runs tasks in the worker's own process; prefork runs them in its children.
worker_init.connect(fix_mmap_threshold, weak=False)
worker_process_init.connect(fix_mmap_threshold, weak=False)
