"""Share counters: which series are counted, and the counter samples a batch gets."""

from __future__ import annotations

import numpy as np
import pytest

from collector.core import SampleBatch
from collector.core.shares import ShareCounters, counter_metric, is_counter_metric, with_counters


def test_counter_metric_names_one_series_per_threshold() -> None:
    assert counter_metric("dl_bps", 5e6) == counter_metric("dl_bps", 5_000_000) == "dl_bps>=5000000.0"
    assert counter_metric("rsrp_dbm", -115) == "rsrp_dbm>=-115.0"
    assert is_counter_metric("dl_bps>=5000000.0") and not is_counter_metric("dl_bps")


def test_thresholds_by_metric_technology_and_operator() -> None:
    c = ShareCounters(
        {("dl_bps", "4G", "viettel"): [5e6], ("dl_bps", "5G", ""): [30e6, 30e6], ("rsrp_dbm", "", ""): [-115]}
    )
    assert c.thresholds("dl_bps", {"technology": "4G", "operator": "viettel"}) == (5e6,)
    assert c.thresholds("dl_bps", {"technology": "4G", "operator": "vnpt"}) == ()
    assert c.thresholds("dl_bps", {"technology": "5G", "operator": "vnpt"}) == (30e6,)
    assert c.thresholds("rsrp_dbm", {"technology": "4G"}) == (-115.0,)
    assert c.thresholds("ul_bps", {"technology": "5G"}) == ()
    assert not ShareCounters({}) and ShareCounters({("m", "", ""): [1.0]})
    with pytest.raises(ValueError, match="finite"):
        ShareCounters({("m", "", ""): [float("nan")]})


def test_with_counters_appends_one_zero_or_one_per_sample_and_threshold() -> None:
    batch = SampleBatch(
        np.array([1, 2, 1, 3], dtype=np.int32),
        np.array([10, 20, 30, 40], dtype=np.int64),
        np.array([5.0, 7.0, 4.99, 9.0], dtype=np.float64),
    )
    # Series 1 counted against 5 (into 101) and 4 (into 102); series 3 against 10 (into 103).
    out = with_counters(
        batch,
        np.array([1, 1, 3], dtype=np.int32),
        np.array([5.0, 4.0, 10.0]),
        np.array([101, 102, 103], dtype=np.int32),
    )
    assert out.series_id[:4].tolist() == [1, 2, 1, 3]  # the batch itself is unchanged, first
    extra = sorted(
        zip(out.series_id[4:].tolist(), out.ts_ms[4:].tolist(), out.value[4:].tolist(), strict=True)
    )
    # 5.0 >= 5 (at the threshold counts), 4.99 < 5; both >= 4; 9 < 10.
    assert extra == [(101, 10, 1.0), (101, 30, 0.0), (102, 10, 1.0), (102, 30, 1.0), (103, 40, 0.0)]
    none = np.empty(0, dtype=np.int32)
    assert with_counters(batch, none, np.empty(0), none) is batch
