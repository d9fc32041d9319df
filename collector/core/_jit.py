"""Shared plumbing for the aggregation core: the kernel decorator and array type aliases.

Private module: nothing here is part of the public API.
"""

from __future__ import annotations

from collections.abc import Callable
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
