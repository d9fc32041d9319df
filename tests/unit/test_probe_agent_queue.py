"""The durable queue: seq order, seq persistence, the size cap, and surviving SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from probes.agent.queue import BatchQueue, QueueError, initial_seq

REPO = Path(__file__).resolve().parents[2]


def batch(n: int = 2, tag: int = 0) -> dict[str, Any]:
    return {
        "v": 1,
        "probe_id": "p1",
        "measurements": [
            {
                "ts": 1_795_867_200_000 + i,
                "target": "t",
                "technology": "4G",
                "operator": "viettel",
                "metrics": {"rtt_ms": float(tag)},
            }
            for i in range(n)
        ],
    }


def test_seq_order_peek_and_ack(tmp_path: Path) -> None:
    with BatchQueue(tmp_path / "q.db", probe_id="p1", first_seq=100) as q:
        seqs = [q.enqueue(batch(tag=i)) for i in range(5)]
        assert seqs == [100, 101, 102, 103, 104]
        head = q.peek(3)
        assert [b.seq for b in head] == [100, 101, 102]
        assert head[0].batch()["seq"] == 100 and head[0].batch()["measurements"][0]["metrics"] == {
            "rtt_ms": 0.0
        }
        assert q.peek(1)[0].seq == 100  # peek does not remove
        assert q.ack(100) and not q.ack(100)  # acked twice: the second is a no-op
        assert q.ack(102)  # out of order is allowed; peek stays in seq order
        assert [b.seq for b in q.peek(10)] == [101, 103, 104]
        assert len(q) == 3
        s = q.stats()
        assert (s.pending_batches, s.pending_measurements, s.next_seq) == (3, 6, 105)


def test_seq_survives_restart_and_never_goes_back(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with BatchQueue(path, probe_id="p1", first_seq=0) as q:
        for _ in range(3):
            q.enqueue(batch())
        for b in q.peek(3):
            q.ack(b.seq)  # everything delivered: the queue is empty...
    with BatchQueue(path, probe_id="p1", first_seq=0) as q:
        assert len(q) == 0
        assert q.enqueue(batch()) == 3  # ...but seq goes on from where it was


def test_new_queue_starts_seq_at_the_clock(tmp_path: Path) -> None:
    before = int(time.time() * 1000)
    with BatchQueue(tmp_path / "q.db", probe_id="p1") as q:
        seq = q.enqueue(batch())
    assert before <= seq <= int(time.time() * 1000)
    assert seq < 2**53
    assert initial_seq(now_ms=5_000) == 0  # a clock stuck in 1970: start at 0


def test_cap_drops_oldest_and_counts(tmp_path: Path) -> None:
    with BatchQueue(tmp_path / "q.db", probe_id="p1", max_batches=10, first_seq=0) as q:
        for i in range(25):
            q.enqueue(batch(n=3, tag=i))
        assert [b.seq for b in q.peek(100)] == list(range(15, 25))
        s = q.stats()
        assert (s.dropped_batches, s.dropped_measurements, s.pending_batches) == (15, 45, 10)
    with BatchQueue(tmp_path / "q.db", probe_id="p1", max_batches=10) as q:
        assert q.stats().dropped_batches == 15  # the count is on disk too


def test_one_process_per_queue_and_one_probe_per_queue(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with BatchQueue(path, probe_id="p1") as q:
        with pytest.raises(QueueError, match="in use"):
            BatchQueue(path, probe_id="p1")
        q.enqueue(batch())
    with pytest.raises(QueueError, match="holds the queue of probe 'p1'"):
        BatchQueue(path, probe_id="p2")
    with BatchQueue(path, probe_id="p1") as q:  # the refused opens released their locks
        assert len(q) == 1


def test_corrupt_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    path.write_bytes(b"\x00garbage, not SQLite" * 500)
    with BatchQueue(path, probe_id="p1") as q:
        assert q.enqueue(batch()) > 0
    assert any(p.name.startswith("q.db.corrupt-") for p in tmp_path.iterdir())


def test_pragmas_wal_and_full_sync(tmp_path: Path) -> None:
    with BatchQueue(tmp_path / "q.db", probe_id="p1") as q:
        assert q._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert q._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from pathlib import Path
    from probes.agent.queue import BatchQueue
    q = BatchQueue(Path({path!r}), probe_id="p1", first_seq=1000)
    m = {{"ts": 1795867200000, "target": "t", "technology": "4G", "operator": "viettel",
          "metrics": {{"rtt_ms": 1.0}}}}
    while True:  # until killed
        seq = q.enqueue({{"v": 1, "probe_id": "p1", "measurements": [m] * 20}})
        print(seq, flush=True)  # printed only once enqueue returned: committed
    """
)


def test_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(repo=str(REPO), path=str(path))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    acknowledged: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(acknowledged) < 300 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acknowledged.append(int(line))
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # mid-write, no clean-up of any kind
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 300
    with BatchQueue(path, probe_id="p1") as q:
        stored = [b.seq for b in q.peek(1_000_000)]
        # Everything the writer saw committed is there, in order, without a gap from the first.
        assert stored[: len(acknowledged)] == acknowledged
        assert stored == list(range(1000, 1000 + len(stored)))
        assert all(len(b.batch()["measurements"]) == 20 for b in q.peek(5))
        # And seq continues after the last one stored, never re-using one.
        assert q.enqueue(batch()) == stored[-1] + 1
