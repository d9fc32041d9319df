"""Aggregation core: SampleBatch -> per-(series, window) rollups with a mergeable quantile sketch.

See README.md in this folder for the sketch, the rollup fields and the merge semantics.
"""

from collector.core.availability import Availability, availability
from collector.core.batch import SampleBatch
from collector.core.rollup import RollupSet, floor_window, mean, merge, merge_into, quantiles, rollup
from collector.core.signals import CounterRates, WindowSums, counter_rates, jitter, sequence_loss
from collector.core.sketch import (
    ALPHA,
    GAMMA,
    MAX_KEY,
    MIN_ABS,
    OFFSET,
    SKETCH_FORMAT_VERSION,
    decode_sketch,
    decode_sketches,
    encode_sketch,
    encode_sketches,
    keys_of,
    value_of_keys,
)


def warm_up(package: str = "collector") -> float:
    """Compile (or load from numba's cache) every registered kernel under `package` (default:
    all of collector/); the seconds taken. See `collector.core.kernels`."""
    # Imported here: the registry imports every module of the package, this one's users included.
    from collector.core.kernels import warm_up as walk

    return walk(package)


__all__ = [
    "ALPHA",
    "GAMMA",
    "MAX_KEY",
    "MIN_ABS",
    "OFFSET",
    "SKETCH_FORMAT_VERSION",
    "Availability",
    "CounterRates",
    "RollupSet",
    "SampleBatch",
    "WindowSums",
    "availability",
    "counter_rates",
    "decode_sketch",
    "decode_sketches",
    "encode_sketch",
    "encode_sketches",
    "floor_window",
    "jitter",
    "keys_of",
    "mean",
    "merge",
    "merge_into",
    "quantiles",
    "rollup",
    "sequence_loss",
    "value_of_keys",
    "warm_up",
]
