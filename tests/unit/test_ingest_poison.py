"""One batch the store refuses must not stop ingestion: on both backends (SQLite, PostgreSQL),
a flush that the store refuses is split down to the refused batches, which are dead-lettered
(`store_rejected`), and every other batch of that flush is stored exactly once.

The refused values here come in through `IngestPipeline.accept` with a batch built directly,
past validation (which refuses them at the door): as a validation gap or a bug would let them
through. The refusals are the real databases' own.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import numpy as np
import pytest
from prometheus_client import REGISTRY

from collector.ingest_settings import IngestSettings
from collector.model import ProbeInfo, SeriesKey
from collector.mqtt.schema import METRIC_NAMES, Decoded, Rejection
from collector.pipeline import BatchRefused, IngestPipeline
from collector.store.settings import StoreSettings
from collector.store.store import Store, StoreError, open_store

T0 = 1_795_852_800_000  # 2026-11-28 00:00 UTC, a window start
NAN = float("nan")
RTT = METRIC_NAMES.index("rtt_ms")


def decoded(probe: str, seq: int, target: str, rtts: list[float]) -> Decoded:
    """A batch as the decoders hand it over, each row's only value its rtt_ms."""
    values = [tuple(v if i == RTT else NAN for i in range(len(METRIC_NAMES))) for v in rtts]
    ts = [T0 + 1000 * j for j in range(len(rtts))]
    return Decoded(probe, seq, [(target, "4G", "vnpt")] * len(rtts), ts, values, max(ts), min(ts))


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("netqos_ingest_messages_rejected_total", {"reason": reason}) or 0.0


def refused_samples() -> float:
    return REGISTRY.get_sample_value("netqos_ingest_samples_refused_total") or 0.0


def counts(store: Store) -> dict[tuple[str, str], tuple[int, float]]:
    """(entity, target) -> (samples, sum of rtt_ms) as stored."""
    sel = store.select_rollups("rtt_ms", 60, T0 - 60_000, T0 + 60_000)
    out: dict[tuple[str, str], tuple[int, float]] = {}
    r = sel.rollups
    for sid, c, s in zip(r.series_id.tolist(), r.count.tolist(), r.sum.tolist(), strict=True):
        key = (sel.labels[sid]["entity"], sel.labels[sid].get("target", ""))
        n0, s0 = out.get(key, (0, 0.0))
        out[key] = (n0 + c, s0 + s)
    return out


class Outcomes:
    """What each batch's callbacks were told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.letters: dict[str, tuple[Rejection, dict[str, object], Callable[[], None]]] = {}

    def stored(self, name: str) -> Callable[[], None]:
        return lambda: self.events.append(("stored", name))

    def refused(self, name: str) -> Callable[[Rejection, bytes, Callable[[], None]], None]:
        def on_rejected(why: Rejection, batch: bytes, ack: Callable[[], None]) -> None:
            # A real receiver dead-letters `batch`, then calls `ack` (the batch's on_stored).
            self.events.append(("refused", name))
            self.letters[name] = (why, json.loads(batch), ack)

        return on_rejected


def test_batches_the_store_refuses_are_dead_lettered_and_the_rest_stored_once(
    store_settings: StoreSettings,
) -> None:
    store = open_store(store_settings)
    store.register_probes([ProbeInfo(f"p{i}") for i in range(4)])
    pipe = IngestPipeline(store, IngestSettings())
    out = Outcomes()
    before_rejected, before_samples = rejected("store_rejected"), refused_samples()

    def accept(name: str, batch: Decoded) -> None:
        pipe.accept(batch, on_stored=out.stored(name), on_rejected=out.refused(name))

    accept("p0/0", decoded("p0", 0, "a", [1.0, 2.0, 3.0]))
    # A lone surrogate has no UTF-8 form: both drivers refuse the series' label.
    accept("p3/0", decoded("p3", 0, "a\ud800b", [100.0]))
    accept("p1/0", decoded("p1", 0, "a", [10.0, 20.0]))
    # 2**64 fits no BIGINT/INTEGER column: both databases refuse the batch's seq.
    accept("p1/2**64", decoded("p1", 2**64, "a", [1000.0]))
    accept("p2/0", decoded("p2", 0, "b", [4.0, 5.0, 6.0, 7.0]))
    accept("p0/1", decoded("p0", 1, "c", [0.5]))
    # Samples of another source (an SNMP poll): one series fine, one the store refuses.
    ok = pipe.series.index(SeriesKey.of("rtt_ms", "dev1", {"kind": "device", "target": "ok"}), 30)
    bad = pipe.series.index(SeriesKey.of("rtt_ms", "dev1", {"kind": "device", "target": "\udfff"}), 30)
    pipe.accept_samples(np.array([ok, bad]), T0, np.array([42.0, 43.0]))

    stored = asyncio.run(pipe.flush())

    # Hand count: p0/0 3 + p1/0 2 + p2/0 4 + p0/1 1 = 10 probe samples, and the one good SNMP sample.
    assert stored == 11
    assert counts(store) == {
        ("p0", "a"): (3, 6.0),
        ("p1", "a"): (2, 30.0),
        ("p2", "b"): (4, 22.0),
        ("p0", "c"): (1, 0.5),
        ("dev1", "ok"): (1, 42.0),
    }
    assert sorted(out.events) == sorted(
        [("stored", n) for n in ("p0/0", "p1/0", "p2/0", "p0/1")]
        + [("refused", "p3/0"), ("refused", "p1/2**64")]
    )
    for name, (probe, seq, rtt) in {"p3/0": ("p3", 0, 100.0), "p1/2**64": ("p1", 2**64, 1000.0)}.items():
        why, letter, _ack = out.letters[name]
        assert why.reason == "store_rejected" and why.detail
        assert (letter["probe_id"], letter["seq"]) == (probe, seq)
        assert letter["measurements"] == [
            {
                "ts": T0,
                "target": "a\ud800b" if probe == "p3" else "a",
                "technology": "4G",
                "operator": "vnpt",
                "metrics": {"rtt_ms": rtt},
            }
        ]
    out.events.clear()
    out.letters["p3/0"][2]()  # the ack handed over is the batch's own acknowledgement
    assert out.events == [("stored", "p3/0")]
    assert rejected("store_rejected") - before_rejected == 2
    assert refused_samples() - before_samples == 1
    probes = {p.probe_id: p for p in store.probes()}
    assert (probes["p0"].messages_total, probes["p0"].measurements_total, probes["p0"].last_seq) == (2, 4, 1)
    assert (probes["p1"].messages_total, probes["p1"].measurements_total, probes["p1"].last_seq) == (1, 2, 0)
    assert (probes["p2"].messages_total, probes["p2"].last_seq) == (1, 0)
    assert (probes["p3"].messages_total, probes["p3"].last_seq) == (0, None)
    assert pipe.buffered == 0

    # Nothing of it is left to poison the next flush: the refused series stays refused, the
    # probe's other data is stored.
    out.events.clear()
    accept("p3/1", decoded("p3", 1, "a", [8.0, 9.0]))
    accept("p3/2", decoded("p3", 2, "a\ud800b", [7.0]))
    assert asyncio.run(pipe.flush()) == 2
    assert sorted(out.events) == [("refused", "p3/2"), ("stored", "p3/1")]
    assert counts(store)[("p3", "a")] == (2, 17.0)
    assert rejected("store_rejected") - before_rejected == 3
    store.close()


def test_a_store_that_fails_as_a_store_keeps_everything_for_the_next_flush(
    store_settings: StoreSettings,
) -> None:
    """A failure that is not the data's (disk, connection) must not be mistaken for a refusal:
    no batch is dead-lettered, everything is retried."""
    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p0"), ProbeInfo("p1")])
    pipe = IngestPipeline(store, IngestSettings())
    out = Outcomes()
    pipe.accept(decoded("p0", 0, "a", [1.0]), on_stored=out.stored("p0"), on_rejected=out.refused("p0"))
    pipe.accept(decoded("p1", 0, "a", [2.0]), on_stored=out.stored("p1"), on_rejected=out.refused("p1"))
    real = store.write_rollups

    def failing(*args: object, **kw: object) -> int:
        raise StoreError("disk I/O error (simulated)")

    store.write_rollups = failing  # type: ignore[method-assign]
    assert asyncio.run(pipe.flush()) == 0
    assert out.events == [] and pipe.buffered == 2
    store.write_rollups = real  # type: ignore[method-assign]
    assert asyncio.run(pipe.flush()) == 2
    assert sorted(out.events) == [("stored", "p0"), ("stored", "p1")]
    store.close()


@pytest.mark.parametrize("n_bad", [1, 3])
def test_a_flush_of_refused_batches_only_ends_and_acknowledges_each(
    store_settings: StoreSettings, n_bad: int
) -> None:
    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p0")])
    pipe = IngestPipeline(store, IngestSettings())
    out = Outcomes()
    for k in range(n_bad):
        pipe.accept(
            decoded("p0", 2**64 + k, "a", [1.0]),
            on_stored=out.stored(str(k)),
            on_rejected=out.refused(str(k)),
        )
    assert asyncio.run(pipe.flush()) == 0
    assert sorted(out.events) == [("refused", str(k)) for k in range(n_bad)]
    assert pipe.buffered == 0 and store.total_count() == 0
    store.close()


def test_over_https_a_nul_target_and_a_batch_the_store_refuses_get_422_with_the_reason(
    store_settings: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.routers.ingest import token_sha256
    from netqos.config import Settings

    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p-https")])
    assert store.set_probe_token_sha256("p-https", token_sha256("probe-secret-1"))
    pipeline = IngestPipeline(store, IngestSettings())
    app = create_app(Settings(), store, pipeline=pipeline)
    now_ms = int(time.time() * 1000)

    def body(seq: int, target: str) -> dict[str, object]:
        m = {"ts": now_ms - 1000, "target": target, "technology": "4G", "operator": "vnpt"}
        rows = [{**m, "metrics": {"rtt_ms": 5.0}}]
        return {"v": 1, "probe_id": "p-https", "seq": seq, "measurements": rows}

    auth = {"Authorization": "Bearer probe-secret-1"}
    with TestClient(app) as c:
        r = c.post("/api/v1/ingest", json=body(1, "t\x00t"), headers=auth)
        assert r.status_code == 422 and r.json()["detail"].startswith("invalid_value: measurements.0.target")
        # The wiring of a store refusal to the answer (the refusals themselves are real above).
        real = store.write_rollups

        def refusing(*args: object, **kw: object) -> int:
            raise ValueError("value out of range (simulated refusal)")

        monkeypatch.setattr(store, "write_rollups", refusing)
        r = c.post("/api/v1/ingest", json=body(2, "t"), headers=auth)
        assert r.status_code == 422 and r.json()["detail"].startswith("store_rejected: ")
        monkeypatch.setattr(store, "write_rollups", real)
        r = c.post("/api/v1/ingest", json=body(3, "t"), headers=auth)
        assert r.status_code == 200, r.text
    assert store.total_count() == 1
    store.close()


def test_a_probe_starting_too_many_label_sets_in_an_hour_is_refused_and_it_shows_on_the_probe(
    store_settings: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Limit 3 new (target, technology, operator) label sets per probe and clock hour: 3 pass,
    the 4th is refused with nothing of its batch taken, label sets already started stay free,
    another probe has its own budget, the next hour a new one."""
    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p0"), ProbeInfo("p1")])
    pipe = IngestPipeline(store, IngestSettings(max_new_label_sets_per_probe_hour=3))
    hour = 1_795_852_800  # a clock hour's first second (s)
    monkeypatch.setattr("collector.series.time.time", lambda: hour + 10.0)

    def targets(probe: str, seq: int, names: list[str]) -> Decoded:
        b = decoded(probe, seq, names[0], [1.0] * len(names))
        b.keys = [(t, "4G", "vnpt") for t in names]
        return b

    assert pipe.accept(targets("p0", 0, ["a", "b", "c"])) == 3  # 3 new: on the limit
    with pytest.raises(BatchRefused) as refused:
        pipe.accept(targets("p0", 1, ["a", "d"]))  # 1 new: just above
    assert refused.value.why.reason == "too_many_series"
    assert "limit 3" in refused.value.why.detail
    assert pipe.accept(targets("p0", 2, ["c", "b", "a", "a"])) == 4  # nothing new: free
    assert pipe.accept(targets("p1", 0, ["x", "y", "z"])) == 3  # its own budget
    assert asyncio.run(pipe.flush()) == 10
    assert {k[1] for k in counts(store)} == {"a", "b", "c", "x", "y", "z"}  # no "d"
    p0, p1 = store.probes()
    assert (p0.series_refused_total, p0.series_refused_last_ms) == (1, (hour + 10) * 1000)
    assert (p1.series_refused_total, p1.series_refused_last_ms) == (0, None)
    assert (p0.messages_total, p0.last_seq) == (2, 2)  # the refused batch 1 is not counted

    # Shown on the probe by the API (list and detail).
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from api.app import create_app
    from netqos.config import Settings

    settings = Settings()
    settings.api.tokens = [SecretStr("test-token-0123456789")]
    with TestClient(create_app(settings, store, pipeline=pipe)) as c:
        auth = {"Authorization": "Bearer test-token-0123456789"}
        listed = {p["probe_id"]: p for p in c.get("/api/v1/probes", headers=auth).json()["probes"]}
        assert listed["p0"]["series_refused_total"] == 1
        assert listed["p0"]["series_refused_last_ms"] == (hour + 10) * 1000
        assert listed["p1"]["series_refused_total"] == 0
        assert c.get("/api/v1/probes/p0", headers=auth).json()["series_refused_total"] == 1

    monkeypatch.setattr("collector.series.time.time", lambda: hour + 3600.0)  # the next hour
    assert pipe.accept(targets("p0", 3, ["d", "e", "f"])) == 3
    with pytest.raises(BatchRefused):
        pipe.accept(targets("p0", 4, ["g"]))
    asyncio.run(pipe.flush())
    assert store.probes("p0")[0].series_refused_total == 2
    store.close()


def test_registration_decides_operator_and_technology_and_the_radio_s_differing_ones_are_kept_beside(
    store_settings: StoreSettings,
) -> None:
    store = open_store(store_settings)
    store.register_probes([ProbeInfo("reg", operator="vnpt", technology="4G"), ProbeInfo("free")])
    pipe = IngestPipeline(store, IngestSettings())
    b = decoded("reg", 0, "t", [1.0, 2.0, 3.0, 4.0])
    b.keys = [("t", "4G", "vnpt"), ("t", "4G", "viettel"), ("t", "3G", "vnpt"), ("t", "5G", "mobifone")]
    pipe.accept(b)
    f = decoded("free", 0, "t", [5.0])
    f.keys = [("t", "3G", "viettel")]
    pipe.accept(f)
    assert asyncio.run(pipe.flush()) == 5
    sel = store.select_rollups("rtt_ms", 60, T0 - 60_000, T0 + 60_000)
    got = sorted(
        (
            lab["entity"],
            lab["operator"],
            lab["technology"],
            lab.get("radio_operator", ""),
            lab.get("radio_technology", ""),
        )
        for lab in sel.labels.values()
    )
    assert got == [
        ("free", "viettel", "3G", "", ""),  # no registration to check against: as reported
        ("reg", "vnpt", "4G", "", ""),
        ("reg", "vnpt", "4G", "", "3G"),
        ("reg", "vnpt", "4G", "mobifone", "5G"),
        ("reg", "vnpt", "4G", "viettel", ""),
    ]
    store.close()


def test_the_nul_poison_pill_past_validation_is_isolated_by_the_store_refusal(
    store_settings: StoreSettings,
) -> None:
    """The issue's own poison, had validation missed it: PostgreSQL refuses U+0000 in text and
    that one batch is dead-lettered while the rest of its flush is stored; SQLite holds U+0000
    (its text is length-counted), so there the batch is simply stored."""
    postgres = store_settings.url is not None
    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p0"), ProbeInfo("p1")])
    pipe = IngestPipeline(store, IngestSettings())
    out = Outcomes()
    for name, b in {
        "p0/0": decoded("p0", 0, "a", [1.0, 2.0]),
        "p1/0": decoded("p1", 0, "speedtest\x00.example.vn", [50.0]),
        "p0/1": decoded("p0", 1, "a", [3.0]),
    }.items():
        pipe.accept(b, on_stored=out.stored(name), on_rejected=out.refused(name))
    assert asyncio.run(pipe.flush()) == (3 if postgres else 4)
    want = {("p0", "a"): (3, 6.0)}
    if postgres:
        assert sorted(out.events) == [("refused", "p1/0"), ("stored", "p0/0"), ("stored", "p0/1")]
        assert out.letters["p1/0"][0].reason == "store_rejected"
    else:
        assert sorted(out.events) == [("stored", "p0/0"), ("stored", "p0/1"), ("stored", "p1/0")]
        want[("p1", "speedtest\x00.example.vn")] = (1, 50.0)
    assert counts(store) == want
    store.close()


def test_a_refused_series_with_a_share_threshold_gets_no_counter_and_poisons_nothing(
    store_settings: StoreSettings,
) -> None:
    """The share counters (exact QCVN shares) are series too: a series the store refuses must
    not have its counter series created either, or that creation would fail every flush."""
    from compliance.profiles import Standards, share_counters

    store = open_store(store_settings)
    store.register_probes([ProbeInfo("q0", technology="4G", operator="vnpt"), ProbeInfo("q1")])
    pipe = IngestPipeline(store, IngestSettings(), share_counters=share_counters(Standards.load()))
    out = Outcomes()
    rsrp = METRIC_NAMES.index("rsrp_dbm")

    def batch(probe: str, seq: int, target: str, values: list[float]) -> Decoded:
        rows = [tuple(v if i == rsrp else NAN for i in range(len(METRIC_NAMES))) for v in values]
        ts = [T0 + 1000 * j for j in range(len(values))]
        return Decoded(probe, seq, [(target, "4G", "vnpt")] * len(values), ts, rows, max(ts), min(ts))

    for name, b in {
        "q0/0": batch("q0", 0, "a", [-100.0, -120.0]),
        "q1/0": batch("q1", 0, "a\ud800b", [-90.0]),  # refused by both databases (no UTF-8 form)
    }.items():
        pipe.accept(b, on_stored=out.stored(name), on_rejected=out.refused(name))
    assert asyncio.run(pipe.flush()) == 2
    assert sorted(out.events) == [("refused", "q1/0"), ("stored", "q0/0")]
    # The stored probe's counter says by hand: 1 of its 2 samples at or above -115 dBm.
    sel = store.select_rollups("rsrp_dbm>=-115.0", 60, T0 - 60_000, T0 + 60_000)
    assert (sel.rollups.count.tolist(), sel.rollups.sum.tolist()) == ([2], [1.0])
    # And the next flush is not poisoned.
    out.events.clear()
    pipe.accept(batch("q0", 1, "a", [-110.0]), on_stored=out.stored("q0/1"), on_rejected=out.refused("q0/1"))
    assert asyncio.run(pipe.flush()) == 1
    assert out.events == [("stored", "q0/1")]
    store.close()
