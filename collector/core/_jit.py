"""Shared plumbing for numba kernels: the kernel decorator, the kernel registry (`sample`) and
array type aliases.

Private module: collector/ uses it; nothing here is part of the public API (the registry's is
`collector.core.kernels`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

I32Array = npt.NDArray[np.int32]
I64Array = npt.NDArray[np.int64]
F64Array = npt.NDArray[np.float64]
U8Array = npt.NDArray[np.uint8]

_F = TypeVar("_F", bound=Callable[..., Any])


def kernel(fn: _F) -> _F:
    """Compile ``fn`` with numba in nopython mode and return it under its own Python signature.

    Why a wrapper rather than ``@numba.njit`` directly: numba ships no type information, so
    mypy --strict sees ``njit`` as an untyped decorator and erases the kernel's signature.
    Casting back to the decorated function's type keeps the annotations useful and the call
    sites checked, without a ``type: ignore`` on every kernel.

    ``cache=True`` stores the machine code next to the module (``__pycache__``) so a restarted
    service loads it instead of recompiling; ``nogil=True`` lets kernels run in worker threads
    (e.g. an asyncio executor) in parallel with the event loop.
    """
    return cast(_F, numba.njit(cache=True, nogil=True)(fn))


# -- the kernel registry ------------------------------------------------------------------------
#
# Every numba kernel is registered here with small sample arguments (`@sample` above its
# decorator); `collector.core.kernels.warm_up` walks the registry before the service starts, so
# no real call compiles (or loads from numba's cache) on the event loop. A test finds every
# numba function in collector/ and fails for one not registered, or not compiled by the warm-up.

Samples = Callable[[], tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Registered:
    """A kernel (numba dispatcher) and its sample arguments: one factory per specialisation."""

    name: str
    dispatcher: Any
    samples: tuple[Samples, ...]


REGISTRY: dict[str, Registered] = {}


def sample(*factories: Samples) -> Callable[[_F], _F]:
    """Register the kernel below (put this above `@kernel`) with sample arguments, built when the
    warm-up runs; one factory for each argument types real calls use.

    The samples must have the types real calls pass: dtype, dimensions, layout and read-only
    flag of every array (numba compiles one specialisation per combination; the first real call
    with other types would compile another). They must also be valid input: the warm-up runs
    the kernel with them (small, so it costs nothing)."""

    def register(dispatcher: _F) -> _F:
        fn = cast(Any, dispatcher).py_func  # the Python function a numba dispatcher compiles
        name = f"{fn.__module__}.{fn.__qualname__}"
        REGISTRY[name] = Registered(name, dispatcher, factories)
        return dispatcher

    return register


def zeros(dtype: type[np.generic], *shape: int) -> npt.NDArray[Any]:
    """A writable zero array of `shape` (default: empty), for samples."""
    return np.zeros(shape or (0,), dtype=dtype)


def readonly(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """`a` made read-only, as np.frombuffer over bytes gives it (a specialisation of its own)."""
    a.flags.writeable = False
    return a
