"""The series registry (collector/series.py): local indexes, probe streams and their label-set
cap, store ids, refused series. Against a real SQLite store; expected values by hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from collector.model import ProbeInfo, SeriesKey
from collector.series import BatchRefused, SeriesRegistry, probe_labels
from collector.store.store import Store

HOUR = 1_795_852_800  # 2026-12-01T00:00:00Z, a whole clock hour (seconds)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "netqos.db")
    yield s
    s.close()


def test_a_key_gets_one_local_index_and_keeps_it(store: Store) -> None:
    reg = SeriesRegistry(store, 500)
    a = SeriesKey.of("if_in_bps", "olt1", {"kind": "olt", "ifname": "pon0"})
    b = SeriesKey.of("if_in_bps", "olt1", {"kind": "olt", "ifname": "pon1"})
    assert reg.index(a, 30.0) == 0
    assert reg.index(b) == 1
    assert reg.index(a, 60.0) == 0  # known: neither a new index nor a new interval
    assert len(reg) == 2 and reg.key(1) == b and reg.interval(0) == 30.0 and reg.interval(1) is None


def test_resolve_gives_the_store_ids_in_local_order(store: Store) -> None:
    reg = SeriesRegistry(store, 500)
    keys = [SeriesKey.of("rtt_ms", f"p{i}", {"kind": "probe"}) for i in range(3)]
    for k in keys:
        reg.index(k, 60.0)
    assert reg.resolve() == 3
    ids = reg.series_ids.tolist()
    assert len(set(ids)) == 3 and min(ids) > 0
    assert store.series_ids(keys) == ids  # the store names the same series by those ids
    assert reg.resolve() == 3 and reg.series_ids.tolist() == ids  # nothing new: unchanged


def test_a_series_the_store_refuses_resolves_to_minus_one_with_why_and_the_rest_resolve(store: Store) -> None:
    reg = SeriesRegistry(store, 500)
    ok = reg.index(SeriesKey.of("rtt_ms", "dev1", {"kind": "device", "target": "ok"}), 30)
    bad = reg.index(SeriesKey.of("rtt_ms", "dev1", {"kind": "device", "target": "\udfff"}), 30)
    ok2 = reg.index(SeriesKey.of("rtt_ms", "dev1", {"kind": "device", "target": "ok2"}), 30)
    assert reg.resolve() == 3
    assert reg.series_id(bad) == -1 and reg.any_refused
    assert reg.series_id(ok) > 0 and reg.series_id(ok2) > 0
    assert "the store refused series" in reg.refused_why(bad)


def test_probe_streams_are_numbered_once_and_the_hourly_cap_holds_at_its_limit(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("collector.series.time.time", lambda: HOUR + 10.0)
    reg = SeriesRegistry(store, 3)
    k = [(f"t{i}", "4G", "vnpt") for i in range(5)]
    assert reg.streams_of("p1", k[:2]) == [0, 1]
    assert reg.streams_of("p1", [k[1], k[0]]) == [1, 0]  # known: no label set spent
    assert reg.streams_of("p1", [k[2]]) == [2]  # 3 of 3: at the limit, taken
    with pytest.raises(BatchRefused) as refused:  # one more: 4 > 3
        reg.streams_of("p1", [k[0], k[3]])
    assert refused.value.why.reason == "too_many_series"
    assert "would make 4 this hour" in refused.value.why.detail and "limit 3" in refused.value.why.detail
    assert reg.streams_of("p1", [k[0]]) == [0]  # the refusal changed nothing; known ones pass
    assert reg.streams_of("p2", [k[0]]) == [3]  # per probe: p2 has its own 3
    assert reg.stream(3) == ("p2", "t0", "4G", "vnpt")
    taken = reg.take_series_refused()
    assert taken == {"p1": (1, (HOUR + 10) * 1000)} and reg.take_series_refused() == {}
    reg.give_back_series_refused(taken)  # a write that failed keeps the count
    assert reg.take_series_refused() == {"p1": (1, (HOUR + 10) * 1000)}
    monkeypatch.setattr("collector.series.time.time", lambda: HOUR + 3600.0)  # the next hour
    assert reg.streams_of("p1", [k[3], k[4]]) == [4, 5]


def test_a_stream_series_takes_its_labels_from_the_registration(store: Store) -> None:
    reg = SeriesRegistry(store, 500, {"dl_bps": 3600.0})
    probes = {
        "p1": ProbeInfo("p1", commune="00004", village="v1", site="s1", operator="vnpt", technology="4G")
    }
    (sid,) = reg.streams_of("p1", [("8.8.8.8", "3G", "viettel")])
    table = reg.stream_table()
    assert table.shape == (1, table.shape[1]) and (table == -1).all()
    col = 0  # the first metric column
    local = reg.add_probe_series(sid, col, probes)
    assert reg.stream_table()[sid, col] == local == 0
    key = reg.key(local)
    assert key.entity == "p1"
    assert dict(key.labels) == {
        "kind": "probe",
        "operator": "vnpt",
        "technology": "4G",
        "target": "8.8.8.8",
        "commune": "00004",
        "village": "v1",
        "site": "s1",
        "radio_operator": "viettel",
        "radio_technology": "3G",
    }
    assert key.metric == "rtt_ms"
    assert reg.interval(local) == 60.0  # the probe's batch interval: rtt_ms has no own schedule
    dl = reg.add_probe_series(sid, 3, probes)  # dl_bps: its own schedule, hourly
    assert reg.key(dl).metric == "dl_bps" and reg.interval(dl) == 3600.0
    assert isinstance(reg.stream_table(), np.ndarray)


def test_an_unregistered_probe_files_what_its_radio_reports() -> None:
    labels = probe_labels(ProbeInfo("p9"), "t", "5G", "mobifone")
    assert labels == {
        "kind": "probe",
        "operator": "mobifone",
        "technology": "5G",
        "target": "t",
        "commune": "",
        "village": "",
        "site": "",
    }
