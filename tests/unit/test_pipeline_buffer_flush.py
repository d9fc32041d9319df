"""The columnar buffer (collector/pipeline/buffer.py) and the flush's sample selection
(collector/pipeline/flush.py). Expected rows, masks and JSON written out by hand."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from collector.core import SampleBatch
from collector.ingest_settings import IngestSettings
from collector.model import ProbeActivity, ProbeInfo
from collector.mqtt.schema import to_decoded, validate_batch
from collector.pipeline import IngestPipeline
from collector.pipeline.buffer import Buffer, batch_json
from collector.pipeline.flush import sample_mask
from collector.store.store import Store

T0 = 1_795_852_800_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "netqos.db")
    s.register_probes([ProbeInfo("p1")])
    yield s
    s.close()


def filled(rows: list[tuple[int, int]], key_ids: list[int], probe: str, seq: int) -> Buffer:
    """A buffer holding one batch: rows of (ts, key index)."""
    b = Buffer(2)
    b.room(len(rows))
    for r, (ts, key) in enumerate(rows):
        b.meas_ts[r], b.meas_key[r] = ts, key
        b.meas_values[r] = math.nan
        b.meas_values[r, 0] = float(r)
    b.rows = len(rows)
    b.key_ids = list(key_ids)
    b.batches = [(probe, "", seq, "d", len(rows), rows[-1][0], 0, len(rows))]
    b.activity = {probe: ProbeActivity(rows[-1][0], seq, 1, len(rows), None, None)}
    b.newest_ts_ms = [rows[-1][0]]
    return b


def test_room_grows_by_doubling_and_keeps_the_rows() -> None:
    b = filled([(1, 0), (2, 0)], [7], "p1", 1)
    assert len(b.meas_ts) == 2
    b.room(1)  # 3 rows needed: double to 4
    assert len(b.meas_ts) == 4 and b.meas_ts[:2].tolist() == [1, 2]
    b.room(10)  # 12 needed: more than double
    assert len(b.meas_ts) == 12


def test_a_failed_flush_goes_back_in_front_with_its_keys_rows_and_activity() -> None:
    old = filled([(10, 0), (11, 1)], [5, 6], "p1", 1)  # the failed flush: keys 5, 6
    new = filled([(20, 0)], [9], "p1", 2)  # taken since: key 9
    new.extend(old)
    assert new.rows == 3
    assert new.meas_ts[:3].tolist() == [10, 11, 20]
    assert new.key_ids == [5, 6, 9]
    assert new.meas_key[:3].tolist() == [0, 1, 2]  # the new row's key index moved past old's two
    assert [b[2] for b in new.batches] == [1, 2]
    assert [(b[6], b[7]) for b in new.batches] == [(0, 2), (2, 3)]  # row ranges shifted by 2
    act = new.activity["p1"]
    assert (act.messages, act.measurements, act.last_seq, act.last_seen_ms) == (2, 3, 2, 20)
    assert new.newest_ts_ms == [11, 20]


def test_a_dead_letter_is_the_batch_as_schema_v1_json_again(store: Store) -> None:
    p = IngestPipeline(store, IngestSettings())
    doc = {
        "v": 1,
        "probe_id": "p1",
        "seq": 4,
        "measurements": [
            {
                "ts": T0,
                "target": "t\u00e9",
                "technology": "4G",
                "operator": "vnpt",
                "metrics": {"rtt_ms": 1.5},
            },
            {
                "ts": T0 + 1,
                "target": "u",
                "technology": "5G",
                "operator": "vnpt",
                "metrics": {"loss_ratio": 0.0},
            },
        ],
    }
    p.accept(to_decoded(validate_batch(doc)))
    raw = batch_json(p._buf, 0, p.series)
    assert raw.isascii()  # escaped: any string can be written
    assert json.loads(raw) == doc


def test_the_sample_mask_keeps_the_kept_rows_samples_and_never_a_refused_series() -> None:
    # 3 probe rows with 2, 1 and 2 samples, then 2 samples of another source.
    batch = SampleBatch(
        np.array([1, 2, 3, -1, 5, 6, 7], dtype=np.int32),
        np.zeros(7, dtype=np.int64),
        np.zeros(7, dtype=np.float64),
    )
    per_row = np.array([2, 1, 2], dtype=np.int64)
    keep_row = np.array([True, False, True])
    assert sample_mask(batch, per_row, keep_row, False).tolist() == [
        True,
        True,
        False,
        False,
        True,
        False,
        False,
    ]
    assert sample_mask(batch, per_row, keep_row, True).tolist() == [
        True,
        True,
        False,
        False,
        True,
        True,
        True,
    ]
