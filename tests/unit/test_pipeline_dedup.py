"""The de-dup window (collector/pipeline/dedup.py): the seq bitmap at and around its edges, the
content digest (its formula written out here), duplicates and seq conflicts against a real
SQLite store's batch log."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from collector.mqtt.schema import METRIC_NAMES, Decoded
from collector.pipeline.buffer import Buffer
from collector.pipeline.dedup import DedupWindow, SeqWindow, digest
from collector.store.store import Store

T0 = 1_795_852_800_000  # 2026-12-01T00:00:00Z
NAN = math.nan


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "netqos.db")
    yield s
    s.close()


def decoded(seq: int, rtt: float, instance: str | None = None) -> Decoded:
    row = (rtt,) + (NAN,) * (len(METRIC_NAMES) - 1)
    return Decoded(
        probe_id="p1",
        seq=seq,
        keys=[("t", "4G", "vnpt"), ("u", "4G", "vnpt"), ("t", "4G", "vnpt")],
        ts=[T0, T0 + 1000, T0 + 2000],
        values=[row, row, row],
        newest_ts=T0 + 2000,
        oldest_ts=T0,
        instance=instance,
    )


def test_the_seq_window_holds_size_seqs_and_slides_forward() -> None:
    w = SeqWindow(0, 8)
    for seq in (0, 3, 7):
        w.add(seq)
    assert 0 in w and 3 in w and 7 in w and 1 not in w and 8 not in w
    w.add(9)  # beyond 0..7: slides to 2..9, forgetting 0 and 1
    assert w.low == 2 and 0 not in w and 3 in w and 7 in w and 9 in w
    w.add(1)  # below the window: not remembered here (the store answers for it)
    assert 1 not in w and w.low == 2
    w.add(100)  # far beyond: everything older is gone
    assert w.low == 93 and 100 in w and 9 not in w


def test_the_digest_is_blake2b_of_ts_values_key_indexes_and_the_key_list() -> None:
    d = decoded(5, 12.5)
    h = hashlib.blake2b(digest_size=16)
    h.update(np.array([T0, T0 + 1000, T0 + 2000], dtype=np.int64).tobytes())
    h.update(np.array([[12.5] + [NAN] * (len(METRIC_NAMES) - 1)] * 3, dtype=np.float64).tobytes())
    h.update(np.array([0, 1, 0], dtype=np.int32).tobytes())  # first appearance order
    h.update(repr([("t", "4G", "vnpt"), ("u", "4G", "vnpt")]).encode())
    assert digest(d, Buffer(4)) == h.hexdigest()
    assert digest(decoded(5, 12.6), Buffer(4)) != h.hexdigest()


def test_without_an_instance_a_repeat_is_a_duplicate_only_with_the_same_content(store: Store) -> None:
    w = DedupWindow(store)
    buf = Buffer(4)
    first = decoded(1, 10.0)
    assert not w.is_duplicate(first, buf) and first.digest and not first.seq_conflict
    w.remember("p1", "", 1, first.digest, False)
    again = decoded(1, 10.0)
    assert w.is_duplicate(again, buf)  # exact redelivery
    other = decoded(1, 11.0)
    assert not w.is_duplicate(other, buf) and other.seq_conflict  # a restarted seq: stored, counted
    w.remember("p1", "", 1, other.digest, True)
    (n, last_ms), *_ = w.take_seq_conflicts().values()
    assert n == 1 and last_ms > 0 and w.take_seq_conflicts() == {}


def test_with_an_instance_the_seq_alone_decides(store: Store) -> None:
    w = DedupWindow(store)
    buf = Buffer(4)
    a = decoded(1, 10.0, instance="q1")
    assert not w.is_duplicate(a, buf) and a.digest == ""  # no digest needed
    w.remember("p1", "q1", 1, "", False)
    assert w.is_duplicate(decoded(1, 99.0, instance="q1"), buf)
    assert not w.is_duplicate(decoded(1, 10.0, instance="q2"), buf)  # another queue's seq 1


def test_seq_conflict_counts_given_back_add_up(store: Store) -> None:
    w = DedupWindow(store)
    w.remember("p1", "", 1, "a", True)
    taken = w.take_seq_conflicts()
    w.remember("p1", "", 2, "b", True)
    w.give_back_seq_conflicts(taken)  # the write failed: kept for the next flush
    ((n, _),) = w.take_seq_conflicts().values()
    assert n == 2
