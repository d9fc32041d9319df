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


def report(top: int = 25) -> list[str]:
    """Lines saying where the memory is: with tracemalloc on (PYTHONTRACEMALLOC=1), the source
    lines holding the most; always the most numerous object types the collector tracks, and
    glibc's own figures. For an operator chasing growth (`kill -USR1`): costs a pass over
    every object, so it is never run on a timer."""
    import gc
    import tracemalloc
    from collections import Counter

    out: list[str] = []
    if tracemalloc.is_tracing():
        stats = tracemalloc.take_snapshot().statistics("lineno")
        out.append(f"tracemalloc: {sum(s.size for s in stats) / 2**20:.1f} MiB traced; top {top}:")
        out += [f"  {s.size / 2**20:8.2f} MiB {s.count:9d} blocks  {s.traceback[0]}" for s in stats[:top]]
    counts = Counter(type(o).__name__ for o in gc.get_objects())
    out.append(f"gc-tracked objects: {sum(counts.values())}; most numerous:")
    out += [f"  {n:9d} {name}" for name, n in counts.most_common(top)]
    return out
