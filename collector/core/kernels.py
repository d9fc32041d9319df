"""The kernel registry: every numba kernel of collector/, and one warm-up that compiles them all.

A kernel registers itself with sample arguments (`collector.core._jit.sample`, one line above
its decorator). `warm_up()` imports every module of a package (so every registration has run)
and calls each registered kernel with its samples: numba compiles it, or loads the machine code
from its on-disk cache (`cache=True`: `__pycache__`, milliseconds a kernel). The service runs
it in a worker thread before it starts anything, so no poll, message or query compiles on the
event loop; `make warm` runs it once after installing (`python -m collector.core.kernels`).

`tests/unit/test_kernels.py` finds every numba function in collector/ and fails for one that
is not registered, or that the warm-up leaves uncompiled.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from types import ModuleType
from typing import Any

from numba.core.dispatcher import Dispatcher

from collector.core._jit import REGISTRY, Registered

#: The package whose modules hold the kernels.
PACKAGE = "collector"


def import_all(package: str = PACKAGE) -> list[ModuleType]:
    """`package` and every module under it, imported (their kernels register as they load)."""
    root = importlib.import_module(package)
    mods = [root]
    path = getattr(root, "__path__", None)
    if path is not None:
        for info in pkgutil.walk_packages(path, package + "."):
            mods.append(importlib.import_module(info.name))
    return mods


def registered(package: str = PACKAGE) -> dict[str, Registered]:
    """The registered kernels of the modules under `package` (imported first), by qualified name."""
    import_all(package)
    return {n: r for n, r in REGISTRY.items() if n == package or n.startswith(package + ".")}


def dispatchers_in(module: ModuleType) -> dict[str, Any]:
    """The numba functions a module defines (not the ones it imports), by qualified name."""
    out = {}
    for value in vars(module).values():
        if isinstance(value, Dispatcher) and value.py_func.__module__ == module.__name__:
            out[f"{module.__name__}.{value.py_func.__qualname__}"] = value
    return out


def warm_up(package: str = PACKAGE) -> float:
    """Compile (or load from numba's cache) every registered kernel under `package` by calling
    it with its samples; returns the seconds taken. Idempotent: a second call costs a
    dictionary lookup a kernel."""
    t0 = time.perf_counter()
    for kernel in registered(package).values():
        for make in kernel.samples:
            kernel.dispatcher(*make())
    return time.perf_counter() - t0


if __name__ == "__main__":  # `make warm`
    seconds = warm_up(sys.argv[1] if len(sys.argv) > 1 else PACKAGE)
    print(f"{len(registered())} kernels compiled or loaded from the cache in {seconds:.1f} s")
