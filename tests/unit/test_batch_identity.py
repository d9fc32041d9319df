"""Batch identity: (probe, instance, seq) with an instance id, (probe, seq) and content without.

Nothing is ever dropped silently: a probe that restarts its seq without an instance id has
its new batches stored and counted as seq conflicts; an exact redelivery stays a duplicate.
Expected counts are worked out by hand in each test.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from collector.ingest_settings import IngestSettings
from collector.model import ProbeInfo
from collector.mqtt.schema import Decoded, decode, to_decoded, validate_batch
from collector.pipeline import IngestPipeline
from collector.store.settings import StoreSettings
from collector.store.store import open_store
from probes.agent.queue import BatchQueue

T0 = 1_795_852_800_000  # 2026-12-01T00:00:00Z


def body(seq: int, rtts: list[float], *, instance: str | None = None, base: int = T0) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "v": 1,
        "probe_id": "p1",
        "seq": seq,
        "measurements": [
            {
                "ts": base + i * 1000,
                "target": "t",
                "technology": "4G",
                "operator": "vnpt",
                "metrics": {"rtt_ms": r},
            }
            for i, r in enumerate(rtts)
        ],
    }
    if instance is not None:
        doc["instance"] = instance
    return doc


def offer(p: IngestPipeline, doc: dict[str, Any]) -> bool:
    """As the HTTPS route does: de-duplicate, then accept. True when accepted."""
    got = to_decoded(validate_batch(doc))
    if p.is_duplicate(got):
        return False
    p.accept(got)
    return True


def test_a_publisher_restarting_seq_at_0_loses_nothing(store_settings: StoreSettings) -> None:
    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p1")])
    p = IngestPipeline(store, IngestSettings())
    # First life: seqs 0, 1 with 2 measurements each.
    assert offer(p, body(0, [10.0, 11.0])) and offer(p, body(1, [12.0, 13.0]))
    assert asyncio.run(p.flush()) == 4
    # Reflashed: seqs from 0 again, other data (later timestamps, other values): 3 + 1.
    later = T0 + 3_600_000
    assert offer(p, body(0, [20.0, 21.0, 22.0], base=later))
    assert offer(p, body(1, [23.0], base=later))
    # The same restarted batch delivered again, before and after its flush: a duplicate.
    assert not offer(p, body(0, [20.0, 21.0, 22.0], base=later))
    assert asyncio.run(p.flush()) == 4
    assert not offer(p, body(1, [23.0], base=later))
    # A fresh worker (restart) knows all four batches from the store.
    q = IngestPipeline(store, IngestSettings())
    for doc in (body(0, [10.0, 11.0]), body(1, [12.0, 13.0]), body(0, [20.0, 21.0, 22.0], base=later)):
        assert not offer(q, doc)
    assert store.total_count() == 8  # 4 + 4 rtt samples, none dropped, none twice
    probe = store.probes("p1")[0]
    assert probe.messages_total == 4 and probe.measurements_total == 8
    assert probe.seq_conflicts_total == 2 and probe.seq_conflict_last_ms is not None
    store.close()


def test_an_exact_redelivery_is_a_duplicate_counted_once(store_settings: StoreSettings) -> None:
    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p1")])
    p = IngestPipeline(store, IngestSettings())
    assert offer(p, body(5, [1.0, 2.0]))
    assert not offer(p, body(5, [1.0, 2.0]))  # buffered, not stored yet
    asyncio.run(p.flush())
    assert not offer(p, body(5, [1.0, 2.0]))  # stored
    # One value differs (2.0 -> 2.5): not the same batch.
    assert offer(p, body(5, [1.0, 2.5]))
    asyncio.run(p.flush())
    probe = store.probes("p1")[0]
    assert probe.messages_total == 2 and probe.measurements_total == 4
    assert probe.seq_conflicts_total == 1
    store.close()


def test_with_an_instance_id_the_seq_is_per_instance(store_settings: StoreSettings) -> None:
    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p1")])
    p = IngestPipeline(store, IngestSettings())
    assert offer(p, body(0, [1.0], instance="first-life"))
    assert offer(p, body(0, [1.0], instance="second-life"))  # same seq and content, new instance
    # Same instance and seq: a duplicate whatever the content (the agent's seq identifies it).
    assert not offer(p, body(0, [9.0], instance="first-life"))
    asyncio.run(p.flush())
    assert not offer(IngestPipeline(store, IngestSettings()), body(0, [1.0], instance="second-life"))
    probe = store.probes("p1")[0]
    assert probe.messages_total == 2 and probe.seq_conflicts_total == 0
    store.close()


def test_the_scanner_and_the_decoder_give_one_digest(store_settings: StoreSettings) -> None:
    """A batch stored through the slow path is a duplicate when redelivered through the fast
    scanner (and the other way round): the digest is of the content, not of the path."""
    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p1")])
    now = T0 + 60_000
    raw = [orjson.dumps(body(s, [1.5, 2.25, 3.0])) for s in (0, 1)]
    a = IngestPipeline(store, IngestSettings())
    slow = decode(
        "netqos/v1/probes/p1/measurements",
        raw[0],
        topic_filter="netqos/v1/probes/+/measurements",
        now_ms=now,
        max_payload_bytes=1 << 20,
        max_future_ms=60_000,
        max_measurements=5000,
        known_probes={"p1"},
    )
    assert isinstance(slow, Decoded) and not a.is_duplicate(slow)
    a.accept(slow)
    fast = a.scan("p1", raw[1], now)
    assert fast is not None and not a.is_duplicate(fast)
    a.commit(fast)
    asyncio.run(a.flush())
    b = IngestPipeline(store, IngestSettings())
    again_fast = b.scan("p1", raw[0], now)
    assert again_fast is not None and b.is_duplicate(again_fast)
    assert b.is_duplicate(to_decoded(validate_batch(orjson.loads(raw[1]))))
    store.close()


def test_the_scanner_reads_and_checks_the_instance(store_settings: StoreSettings) -> None:
    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p1")])
    p = IngestPipeline(store, IngestSettings())
    now = T0 + 60_000
    got = p.scan("p1", orjson.dumps(body(0, [1.0], instance="A" * 64)), now)
    assert got is not None and got.instance == "A" * 64
    # 65 characters, or a space: left to the reference decoder, which refuses it.
    for bad in ("A" * 65, "a b", ""):
        payload = orjson.dumps(body(0, [1.0], instance=bad))
        assert p.scan("p1", payload, now) is None
        refused = decode(
            "netqos/v1/probes/p1/measurements",
            payload,
            topic_filter="netqos/v1/probes/+/measurements",
            now_ms=now,
            max_payload_bytes=1 << 20,
            max_future_ms=60_000,
            max_measurements=5000,
            known_probes={"p1"},
        )
        assert not isinstance(refused, Decoded)
    store.close()


def test_a_deleted_agent_queue_starts_a_new_instance_and_every_batch_is_stored(
    tmp_path: Path, store_settings: StoreSettings
) -> None:
    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p1")])
    p = IngestPipeline(store, IngestSettings())
    path = tmp_path / "queue.db"
    sent: list[bytes] = []
    for _life in range(2):  # the queue file deleted between the two lives, seq from 0 both times
        with BatchQueue(path, probe_id="p1", first_seq=0) as q:
            for i in range(3):
                q.enqueue({k: v for k, v in body(0, [float(i)]).items() if k != "seq"})
            sent += [b.body for b in q.peek(10)]
        path.unlink()
    docs = [orjson.loads(b) for b in sent]
    assert [d["seq"] for d in docs] == [0, 1, 2, 0, 1, 2]
    assert len({d["instance"] for d in docs}) == 2  # one instance per queue
    for d in docs:
        assert offer(p, d)
    asyncio.run(p.flush())
    probe = store.probes("p1")[0]
    assert probe.messages_total == 6 and probe.measurements_total == 6
    assert probe.seq_conflicts_total == 0
    store.close()
