"""Keep glibc from hoarding the large buffers the service streams through.

Parts and ranged reads are allocated and freed a few MiB at a time by many threads. glibc's
default is to raise its mmap threshold after each such free (up to 32 MiB), so later buffers come
from per-thread arenas and are kept there: measured, a worker streaming two 64 MiB files at a time
peaked at ~600 MB resident while holding ~60 MB of live data. A fixed threshold of 1 MiB sends
every large buffer to mmap, returned to the system when freed, and two arenas stop the per-thread
spread. The same effect as starting with MALLOC_MMAP_THRESHOLD_=1048576 MALLOC_ARENA_MAX=2.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
M_ARENA_MAX = -8


def bound_malloc(mmap_threshold: int = 1024 * 1024, arenas: int = 2) -> bool:
    """Apply the limits; False where the C library is not glibc (nothing to do there)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_ARENA_MAX, arenas))
