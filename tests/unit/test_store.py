"""The store on both backends (SQLite and PostgreSQL, through the `store_settings` fixture):
migrations, series, merging rollups across writes, probe registry, exactly-once ingest."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import numpy as np
import orjson
import pytest

from collector.core import SampleBatch, quantiles, rollup
from collector.ingest_settings import IngestSettings
from collector.model import ProbeInfo, SeriesKey
from collector.mqtt.schema import MeasurementBatch, to_decoded, validate_batch
from collector.pipeline import IngestPipeline, SeqWindow
from collector.store.devices import DeviceRepo
from collector.store.postgres import to_pg
from collector.store.settings import StoreSettings
from collector.store.store import Store, StoreError, open_store
from ground.errors import ConfigError
from netqos.service import load_probe_file


def test_schema_is_created_once_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    s = Store(db)
    assert s.schema_version() >= 1
    assert s.migrate() == []  # nothing left to apply
    s.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"probes", "series", "rollups", "schema_migrations"} <= tables
    conn.close()


def test_schema_is_created_once(store_settings: StoreSettings) -> None:
    s = open_store(store_settings)
    newest = s.backend.newest_version()
    assert newest >= 3 and s.schema_version() == newest
    assert s.migrate() == []  # nothing left to apply
    s.close()
    again = open_store(store_settings)  # a second process starting later applies nothing
    assert again.migrate() == [] and again.schema_version() == newest
    again.close()


def test_a_newer_schema_is_refused(store_settings: StoreSettings) -> None:
    s = open_store(store_settings)
    with s.transaction() as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, '0999_future.sql', 0)")
    s.close()
    with pytest.raises(StoreError, match="newer than this netqos knows"):
        open_store(store_settings)


def test_series_ids_are_stable_and_shared_between_processes(store_settings: StoreSettings) -> None:
    a, b = open_store(store_settings), open_store(store_settings)
    k1 = SeriesKey.of("rtt_ms", "p1", {"commune": "16021", "operator": "vnpt"})
    k2 = SeriesKey.of("rtt_ms", "p1", {"operator": "vnpt", "commune": "16021"})  # same labels, other order
    k3 = SeriesKey.of("rtt_ms", "p2", {"commune": "16021"})
    ids_a = a.series_ids([k1, k3])
    assert a.series_ids([k2]) == ids_a[:1]
    assert b.series_ids([k3, k1]) == ids_a[::-1]
    a.close()
    b.close()


def test_rollups_written_in_pieces_equal_one_rollup_of_everything(store_settings: StoreSettings) -> None:
    """Merging into stored rows (read, merge, write back) is exact: counts, min, max, sketch."""
    s = open_store(store_settings)
    sid = s.series_ids([SeriesKey.of("rtt_ms", f"p{i}", {}) for i in range(5)])
    rng = np.random.default_rng(3)
    n = 20_000
    batch = SampleBatch(
        series_id=np.asarray(sid, dtype=np.int32)[rng.integers(0, 5, n)],
        ts_ms=1_795_852_800_000 + rng.integers(0, 10 * 60_000, n),
        value=rng.lognormal(3, 1, n),
    )
    for part in np.array_split(np.arange(n), 7):
        piece = SampleBatch(batch.series_id[part], batch.ts_ms[part], batch.value[part])
        s.write_rollups(rollup(piece), 60)
    whole = rollup(batch)
    stored = s.select_rollups("rtt_ms", 60, 0, 2**62)
    got = stored.rollups
    assert s.total_count() == n
    order = np.lexsort((got.window_start_ms, got.series_id))
    assert np.array_equal(got.series_id[order], whole.series_id)
    assert np.array_equal(got.count[order], whole.count)
    assert np.array_equal(got.min[order], whole.min)
    assert np.array_equal(got.max[order], whole.max)
    np.testing.assert_allclose(got.sum[order], whole.sum, rtol=1e-12)
    q = np.array([0.5, 0.95, 0.99])
    assert np.array_equal(quantiles(got, q)[order], quantiles(whole, q))
    assert set(stored.labels) == set(sid)
    s.close()


def test_failed_flush_keeps_samples_for_the_next(store_settings: StoreSettings) -> None:
    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p1", commune="16021")])
    pipe = IngestPipeline(store, IngestSettings())
    batch = validate_batch(
        {
            "v": 1,
            "probe_id": "p1",
            "seq": 0,
            "measurements": [
                {
                    "ts": 1_795_852_800_000 + i,
                    "target": "t",
                    "technology": "4G",
                    "operator": "vnpt",
                    "metrics": {"rtt_ms": float(i)},
                }
                for i in range(10)
            ],
        }
    )
    pipe.accept(batch)

    real = store.write_rollups
    calls = {"n": 0}

    def failing_once(*args: object, **kw: object) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise StoreError("disk I/O error (simulated)")
        return real(*args, **kw)  # type: ignore[arg-type]

    store.write_rollups = failing_once  # type: ignore[method-assign]
    assert asyncio.run(pipe.flush()) == 0
    assert pipe.buffered == 10 and store.total_count() == 0
    pipe.accept({**batch, "seq": 1})
    assert asyncio.run(pipe.flush()) == 20
    assert store.total_count() == 20
    p = store.probes()[0]
    assert p.messages_total == 2 and p.last_seq == 1
    store.close()


def test_failed_flush_keeps_each_row_on_its_own_series(store_settings: StoreSettings) -> None:
    """Rows of a failed flush go in front of the next buffer's: each must keep its stream, for
    scanned and decoded batches alike (rows store key numbers into a per-buffer list)."""
    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p1"), ProbeInfo("p2")])
    pipe = IngestPipeline(store, IngestSettings())
    t0 = 1_795_852_800_000

    def payload(probe: str, seq: int, targets: list[str]) -> bytes:
        rows = [
            {"ts": t0 + i, "target": t, "technology": "4G", "operator": "vnpt", "metrics": {"rtt_ms": 1.0}}
            for i, t in enumerate(targets)
        ]
        return orjson.dumps({"v": 1, "probe_id": probe, "seq": seq, "measurements": rows})

    def scanned(probe: str, seq: int, targets: list[str]) -> None:
        got = pipe.scan(probe, payload(probe, seq, targets), t0)
        assert got is not None
        pipe.commit(got)

    scanned("p1", 0, ["a", "b", "b"])
    pipe.accept(validate_batch(orjson.loads(payload("p2", 0, ["c", "a"]))))
    real = store.write_rollups

    def failing_once(*args: object, **kw: object) -> int:
        # Intake goes on meanwhile (the event loop only waits for this thread here): these
        # rows are in the fresh buffer before the failed one's are put back in front.
        scanned("p2", 1, ["d", "c", "d", "d"])
        pipe.accept(validate_batch(orjson.loads(payload("p1", 2, ["e", "a"]))))
        store.write_rollups = real  # type: ignore[method-assign]
        raise StoreError("disk I/O error (simulated)")

    store.write_rollups = failing_once  # type: ignore[method-assign]
    assert asyncio.run(pipe.flush()) == 0
    scanned("p1", 1, ["b"])
    assert asyncio.run(pipe.flush()) == 12
    sel = store.select_rollups("rtt_ms", 60, t0 - 60_000, t0 + 60_000)
    counts: dict[tuple[str, str], int] = {}
    for sid, c in zip(sel.rollups.series_id.tolist(), sel.rollups.count.tolist(), strict=True):
        key = (sel.labels[sid]["entity"], sel.labels[sid]["target"])
        counts[key] = counts.get(key, 0) + c
    assert counts == {
        ("p1", "a"): 2,
        ("p1", "b"): 3,
        ("p1", "e"): 1,
        ("p2", "a"): 1,
        ("p2", "c"): 2,
        ("p2", "d"): 3,
    }
    store.close()


def test_probe_file_yaml_and_csv(tmp_path: Path) -> None:
    y = tmp_path / "probes.yaml"
    y.write_text("probes:\n  - probe_id: p1\n    commune: '16021'\n    operator: vnpt\n  - {probe_id: p2}\n")
    c = tmp_path / "probes.csv"
    c.write_text("probe_id,commune,village,site,operator,technology\np3,16030,16030-v01,s1,viettel,5G\n")
    assert [p.probe_id for p in load_probe_file(y)] == ["p1", "p2"]
    assert load_probe_file(y)[0].commune == "16021"
    assert load_probe_file(c)[0].technology == "5G"
    bad = tmp_path / "bad.yaml"
    bad.write_text("- probe_id: p1\n  colour: red\n")
    with pytest.raises(ConfigError, match="unknown fields"):
        load_probe_file(bad)


def test_two_workers_storing_the_same_batch_count_it_once(store_settings: StoreSettings) -> None:
    """A redelivered batch that reached a second worker is left out in the store's transaction."""
    store_a, store_b = open_store(store_settings), open_store(store_settings)
    store_a.register_probes([ProbeInfo("p1", commune="16021")])
    a, b = IngestPipeline(store_a, IngestSettings()), IngestPipeline(store_b, IngestSettings())

    def batch(seq: int, n: int) -> MeasurementBatch:
        return validate_batch(
            {
                "v": 1,
                "probe_id": "p1",
                "seq": seq,
                "measurements": [
                    {
                        "ts": 1_795_852_800_000 + seq * 1000 + i,
                        "target": "t",
                        "technology": "4G",
                        "operator": "vnpt",
                        "metrics": {"rtt_ms": float(i)},
                    }
                    for i in range(n)
                ],
            }
        )

    for p in (a, b):
        assert not p.is_duplicate(to_decoded(batch(7, 10)))  # neither has stored it yet
    acked: list[str] = []
    a.accept(batch(7, 10), on_stored=lambda: acked.append("a7"))
    b.accept(batch(8, 5), on_stored=lambda: acked.append("b8"))
    b.accept(batch(7, 10), on_stored=lambda: acked.append("b7"))  # the redelivery
    assert asyncio.run(a.flush()) == 10
    assert asyncio.run(b.flush()) == 5  # batch 7 left out, batch 8 stored
    assert store_a.total_count() == 15
    assert sorted(acked) == ["a7", "b7", "b8"]  # the duplicate is acknowledged too
    p = store_a.probes()[0]
    assert p.messages_total == 2 and p.measurements_total == 15
    # A new worker (a restart) knows both from the store.
    c = IngestPipeline(open_store(store_settings), IngestSettings())
    assert c.is_duplicate(to_decoded(batch(7, 10))) and c.is_duplicate(to_decoded(batch(8, 5)))
    assert not c.is_duplicate(to_decoded(batch(9, 1)))
    for s in (store_a, store_b, c.store):
        s.close()


def test_probe_goes_offline_after_three_missed_intervals_and_online_again(
    store_settings: StoreSettings,
) -> None:
    from collector.store.probes import ProbeRepo

    store = open_store(store_settings)
    store.register_probes(
        [ProbeInfo("p1", expected_interval_s=10.0), ProbeInfo("p2", expected_interval_s=60.0)]
    )
    pipe = IngestPipeline(store, IngestSettings())
    t0 = 1_795_852_800_000
    for pid in ("p1", "p2"):
        pipe.accept(
            validate_batch(
                {
                    "v": 1,
                    "probe_id": pid,
                    "seq": 0,
                    "measurements": [
                        {
                            "ts": t0,
                            "target": "t",
                            "technology": "4G",
                            "operator": "vnpt",
                            "metrics": {"rtt_ms": 1.0},
                        }
                    ],
                }
            )
        )
    asyncio.run(pipe.flush())
    repo = ProbeRepo(store)
    assert {(c.entity, c.state) for c in repo.transitions(t0 + 5_000)} == {("p1", "online"), ("p2", "online")}
    assert repo.transitions(t0 + 29_000) == []  # 2.9 intervals: not yet
    off = repo.transitions(t0 + 31_000)
    assert [(c.entity, c.state, c.since_ms) for c in off] == [("p1", "offline", t0 + 10_000)]
    assert repo.transitions(t0 + 32_000) == []  # recorded once
    # Back: a batch arrives 2 minutes later.
    pipe.accept(
        validate_batch(
            {
                "v": 1,
                "probe_id": "p1",
                "seq": 1,
                "measurements": [
                    {
                        "ts": t0 + 120_000,
                        "target": "t",
                        "technology": "4G",
                        "operator": "vnpt",
                        "metrics": {"rtt_ms": 1.0},
                    }
                ],
            }
        )
    )
    asyncio.run(pipe.flush())
    back = repo.transitions(t0 + 121_000)
    assert [(c.entity, c.state) for c in back] == [("p1", "online")]
    outages = (
        DeviceRepo(store)
        .store.reader()
        .execute("SELECT entity, start_ms, end_ms FROM outages WHERE entity_kind='probe'")
        .fetchall()
    )
    assert outages == [("p1", t0 + 10_000, t0 + 120_000)]
    windows = repo.windows("p1", t0, t0 + 3_600_000, 10.0)
    assert len(windows) == 1 and windows[0].batches == 2 and windows[0].expected_batches == 360
    assert 0 < windows[0].completeness < 0.01
    store.close()


def test_duplicates_older_than_the_memory_window_are_found_in_the_store(
    store_settings: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import collector.pipeline.dedup as dedup_module

    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p1")])
    a = IngestPipeline(store, IngestSettings())

    def batch(seq: int) -> MeasurementBatch:
        return validate_batch(
            {
                "v": 1,
                "probe_id": "p1",
                "seq": seq,
                "measurements": [
                    {
                        "ts": 1_795_852_800_000 + seq,
                        "target": "t",
                        "technology": "4G",
                        "operator": "vnpt",
                        "metrics": {"rtt_ms": 1.0},
                    }
                ],
            }
        )

    for seq in range(5):
        a.accept(batch(seq))
    asyncio.run(a.flush())
    monkeypatch.setattr(dedup_module, "SEEN_WINDOW", 2)
    b = IngestPipeline(store, IngestSettings())  # remembers seqs >= 3 (4 - 2 + 1) only
    assert b.is_duplicate(to_decoded(batch(0))) and b.is_duplicate(to_decoded(batch(1)))
    assert b.is_duplicate(to_decoded(batch(4))) and not b.is_duplicate(to_decoded(batch(5)))
    assert store.has_batch("p1", 3) and not store.has_batch("p1", 7)
    assert [p.probe_id for p in store.probes("p1")] == ["p1"] and store.probes("nope") == []
    store.close()


def test_the_old_import_path_still_gives_the_store() -> None:
    from collector.store.sqlite import SQLiteStore

    assert SQLiteStore is Store


def test_sql_is_translated_for_psycopg_outside_quoted_text() -> None:
    assert to_pg("SELECT a FROM t WHERE b = ? AND c LIKE 'x?%' AND d = ?") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE 'x?%%' AND d = %s"
    )
    assert to_pg("SELECT a % 7, 'it''s ?' FROM t WHERE b IN (?,?)") == (
        "SELECT a %% 7, 'it''s ?' FROM t WHERE b IN (%s,%s)"
    )
    assert to_pg('SELECT "odd?col" FROM t') == 'SELECT "odd?col" FROM t'
    with pytest.raises(StoreError, match="ON CONFLICT"):
        to_pg("INSERT OR REPLACE INTO t VALUES (?)")
    with pytest.raises(StoreError, match="ON CONFLICT"):
        to_pg("insert or ignore into t values (?)")


def test_the_common_sql_subset_answers_alike(store_settings: StoreSettings) -> None:
    """What the README promises writers of SQL: greatest/least, integer sums as int, `%`
    and `?` in text, RETURNING, ON CONFLICT upserts."""
    s = open_store(store_settings)
    conn = s.reader()
    assert conn.execute("SELECT greatest(3, ?, NULL), least(3, ?, NULL)", (5, 1)).fetchone() == (5, 1)
    assert conn.execute("SELECT greatest(NULL, NULL)").fetchone() == (None,)
    s.register_probes([ProbeInfo(f"p{i}") for i in range(4)])
    row = conn.execute("SELECT sum(messages_total + 2), count(*), avg(2 + 1) FROM probes").fetchone()
    assert row == (8, 4, 3.0) and type(row[0]) is int and type(row[2]) is float
    assert conn.execute("SELECT '50%' || ?, 'why?' FROM probes LIMIT 1", ("x",)).fetchone() == (
        "50%x",
        "why?",
    )
    with s.transaction() as w:
        sid = w.execute(
            "INSERT INTO series (metric, entity, labels) VALUES (?, ?, ?) RETURNING series_id",
            ("m", "e", "{}"),
        ).fetchone()[0]
        w.execute(
            "INSERT INTO series (metric, entity, labels) VALUES (?, ?, ?)"
            " ON CONFLICT (metric, entity, labels) DO UPDATE SET commune = excluded.commune || '!'",
            ("m", "e", "{}"),
        )
    assert conn.execute("SELECT series_id, commune FROM series WHERE metric = 'm'").fetchall() == [(sid, "!")]
    s.close()


def test_device_tables_on_both_backends(store_settings: StoreSettings) -> None:
    from collector.events import StateChange
    from collector.inventory import Device
    from collector.store.devices import PollRecord

    s = open_store(store_settings)
    repo = DeviceRepo(s)
    devices = [
        Device(id=f"r{i}", host="127.0.0.1", port=16100 + i, credentials="c", commune="16021", kind="router")
        for i in range(2)
    ]
    repo.sync_inventory(devices, {"r0": "router", "r1": "router"}, {"r0": 60.0, "r1": 30.0})
    t0 = 1_795_852_800_000
    rows = {"ifTable": [("2", "eth1", {"ifInOctets": 7}), ("10", "eth10", {"ifInOctets": 9})]}
    repo.write(
        [
            PollRecord("r0", t0, True, 0.25, varbinds=12, sys_name="core-1", rows=rows),
            PollRecord("r1", t0, False, 2.0, error="timeout"),
        ],
        [StateChange("device", "r1", "down", t0, "poller", "3 polls missed", "r1")],
    )
    # The same row again: updated in place (upsert), not added.
    rows2 = {"ifTable": [("2", "eth1", {"ifInOctets": 8})]}
    repo.write([PollRecord("r0", t0 + 60_000, True, 0.5, rows=rows2)], [])
    repo.write([], [StateChange("device", "r1", "up", t0 - 5, "poller", "answers", "r1")])  # clock went back
    r0, r1 = repo.device("r0"), repo.device("r1")
    assert r0 is not None and r1 is not None
    assert r0["sys_name"] == "core-1" and r0["polls_total"] == 2 and r0["last_success_ms"] == t0 + 60_000
    assert r1["failures_total"] == 1 and r1["last_error"] == "timeout" and r1["status"] == "up"
    assert [(r["index"], r["values"]) for r in repo.rows("r0")] == [
        ("2", {"ifInOctets": 8}),
        ("10", {"ifInOctets": 9}),
    ]
    # The outage is closed no earlier than it opened (greatest(start_ms, ?)).
    assert [(o.start_ms, o.end_ms) for o in repo.outages("r1", t0 - 1000, t0 + 1000)] == [(t0, t0)]
    assert [c.state for c in repo.state_changes("r1")] == ["down", "up"]
    repo.sync_inventory(devices[:1], {"r0": "router"}, {"r0": 60.0})
    assert [d["device_id"] for d in repo.devices(commune="16021")] == ["r0"]
    s.close()


def test_the_seq_window_answers_like_a_set_within_its_span_and_stays_small() -> None:
    # Against a plain set over a shuffled, gappy, sliding stream: inside [low, low + size) the
    # window knows exactly the seqs added; below it it claims nothing (the store is asked).
    rng = np.random.default_rng(7)
    w, added = SeqWindow(0, 64), set()
    seqs = np.arange(5000) + rng.integers(-40, 40, 5000)
    for seq in seqs[rng.random(5000) < 0.8].tolist():
        if seq < 0:
            continue
        w.add(seq)
        added.add(seq)
        probe = int(rng.integers(max(0, w.low - 10), w.low + 74))
        assert (probe in w) == (probe in added and w.low <= probe < w.low + 64)
    assert w.bits.bit_length() <= 64  # fixed size, however many seqs went through
    w.add(10**12)  # a wild seq slides the window without growing it
    assert 10**12 in w and w.bits.bit_length() <= 64 and w.low == 10**12 - 63
