"""Aggregation core: SampleBatch -> per-(series, window) rollups with a mergeable quantile sketch.

See README.md in this folder for the sketch, the rollup fields and the merge semantics.
"""

from collector.core.availability import Availability, availability
from collector.core.batch import SampleBatch
from collector.core.rollup import RollupSet, floor_window, mean, merge, merge_into, quantiles, rollup, warm_up
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
