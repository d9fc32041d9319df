"""ground.memory: the arena limit, the trim and the on-demand report (SIGUSR1)."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc

from ground import memory


def test_the_report_names_where_memory_is() -> None:
    tracemalloc.start()
    try:
        hoard = [bytearray(1000) for _ in range(5000)]  # ~5 MB from one line of this file
        lines = memory.report(top=10)
    finally:
        tracemalloc.stop()
    assert lines[0].startswith("tracemalloc:")
    assert any("test_memory.py" in line for line in lines[1:11])  # the hoard's line is among the top
    assert any(line.startswith("gc-tracked objects:") for line in lines)
    assert len(hoard) == 5000
    # Without tracemalloc, the object census still comes.
    assert memory.report(top=3)[0].startswith("gc-tracked objects:")


def test_arena_limit_and_trim_on_glibc_and_an_explicit_setting_wins() -> None:
    code = "from ground import memory; print(memory.limit_arenas(), memory.trim() in (True, False))"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]  # this machine runs glibc
    env["MALLOC_ARENA_MAX"] = "4"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
