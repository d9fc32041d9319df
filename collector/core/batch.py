"""SampleBatch: the columnar unit of work handed from collectors to the aggregation core."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from collector.core._jit import F64Array, I32Array, I64Array

_COLUMNS: tuple[tuple[str, type[np.generic]], ...] = (
    ("series_id", np.int32),
    ("ts_ms", np.int64),
    ("value", np.float64),
)


# eq=False: the generated __eq__ would compare numpy arrays with ``==`` and raise
# "truth value of an array is ambiguous"; identity equality is the honest default.
@dataclass(frozen=True, slots=True, eq=False)
class SampleBatch:
    """Samples as three equal-length 1-D columns, one row per sample.

    ``series_id`` (int32) names the time series, ``ts_ms`` (int64) is milliseconds since the
    Unix epoch (UTC; negative allowed), ``value`` (float64) is the measurement. No ordering is
    required. The arrays are not copied: do not mutate them while the batch is in use.
    """

    series_id: I32Array
    ts_ms: I64Array
    value: F64Array

    def __post_init__(self) -> None:
        # Exact dtypes, no silent casting: a float series_id or an int32 timestamp here is a bug
        # upstream (truncated ids, timestamps overflowing in 2038), better caught at the border.
        for name, dtype in _COLUMNS:
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray):
                raise ValueError(f"SampleBatch.{name} must be a numpy array, got {type(arr).__name__}")
            if arr.ndim != 1:
                raise ValueError(f"SampleBatch.{name} must be 1-D, got shape {arr.shape}")
            if arr.dtype != np.dtype(dtype):
                raise ValueError(
                    f"SampleBatch.{name} must have dtype {np.dtype(dtype).name}, got {arr.dtype.name}"
                )
        lengths = {name: len(getattr(self, name)) for name, _ in _COLUMNS}
        if len(set(lengths.values())) != 1:
            detail = ", ".join(f"{k}={v}" for k, v in lengths.items())
            raise ValueError(f"SampleBatch columns must have equal lengths, got {detail}")

    @classmethod
    def empty(cls) -> SampleBatch:
        """Return a batch with zero samples (correct dtypes)."""
        return cls(
            series_id=np.empty(0, dtype=np.int32),
            ts_ms=np.empty(0, dtype=np.int64),
            value=np.empty(0, dtype=np.float64),
        )

    def __len__(self) -> int:
        """Number of samples."""
        return int(self.value.shape[0])

    @staticmethod
    def concat(batches: Sequence[SampleBatch]) -> SampleBatch:
        """Concatenate batches in order into a new batch (fresh arrays); empty input gives an empty batch."""
        if not batches:
            return SampleBatch.empty()
        return SampleBatch(
            series_id=np.concatenate([b.series_id for b in batches]),
            ts_ms=np.concatenate([b.ts_ms for b in batches]),
            value=np.concatenate([b.value for b in batches]),
        )
