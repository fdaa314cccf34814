"""Workers keep megabyte buffers out of the heap, so freeing them returns the memory.

glibc's own behaviour is the thing under test, so it runs in child processes with a fresh
allocator: the bytes glibc holds in mappings (``mallinfo2().hblkhd``) show where a 4 MiB
buffer went after an 8 MiB one was freed.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.reference import REPO

PROBE = """
import ctypes, sys
from ingest.worker_memory import fix_mmap_threshold

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed":
    fix_mmap_threshold()
freed = bytearray(8 << 20)
del freed  # glibc alone now serves buffers up to 8 MiB from the heap
before = libc.mallinfo2().hblkhd
kept = bytearray(4 << 20)
print(libc.mallinfo2().hblkhd - before)
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")


def mapped_bytes_of_a_4_mib_buffer(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout)


def test_a_worker_maps_a_large_buffer_of_its_own_after_freeing_a_larger_one() -> None:
    assert mapped_bytes_of_a_4_mib_buffer("fixed") >= 4 << 20


def test_without_it_glibc_would_take_that_buffer_from_the_heap() -> None:
    assert mapped_bytes_of_a_4_mib_buffer("default") == 0
