"""Keep the process's memory where its data is: few malloc arenas, free pages handed back.

glibc gives each thread that meets a busy allocator an arena of its own (up to 8 per core),
and memory freed in one is kept for it. The service runs many threads (API handlers, store
work, the roller), each allocating and freeing large transient arrays: a 90-minute soak held
~300 MB in seven 64 MB arenas on top of ~360 MB of live data, growing in steps. Two arenas
and a trim after the roller's large, bursty rounds keep the resident size near the live size.
Anything but glibc (musl, macOS) is left alone; an explicit MALLOC_ARENA_MAX in the
environment wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from functools import cache

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # mallopt parameter (glibc malloc.h)


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    # glibc only: mallopt(M_ARENA_MAX) and malloc_trim are GNU extensions.
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_arenas(n: int = 2) -> bool:
    """At most `n` malloc arenas from now on (call before threads start). Whether it applied."""
    libc = _libc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, n))


def trim() -> bool:
    """Hand free heap pages back to the system. Whether any were released."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))
