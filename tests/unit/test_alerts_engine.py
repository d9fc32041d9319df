"""The alert engine driven by its own clock over a real store (SQLite and PostgreSQL): alerts,
incidents, topology, flap damping, silences and the notification log (no network: outbox rows
only)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from alerts.engine import AlertEngine
from alerts.incidents import IncidentRepo
from alerts.notify.outbox import Outbox
from alerts.rules import parse_rules
from alerts.silences import SilenceRepo, maintenance_windows
from collector.ingest_settings import IngestSettings
from collector.mqtt.schema import validate_batch
from collector.pipeline import IngestPipeline
from collector.store.settings import StoreSettings
from collector.store.store import open_store
from tests.alerting import T0, Net, alert_settings

RULES = """
rules:
  - {name: device_down, kind: state, entity_kind: device, states: [down], severity: critical}
  - {name: probe_offline, kind: state, entity_kind: probe, states: [offline]}
  - {name: link_down, kind: state, entity_kind: interface, states: [down], for: 30s, keep_firing_for: 10s}
"""


@pytest.fixture
def net(store_settings: StoreSettings) -> Iterator[Net]:
    """The network in an empty store, once per backend (SQLite, PostgreSQL)."""
    n = Net(open_store(store_settings))
    yield n
    n.store.close()


def engine(net: Net, **kw: Any) -> AlertEngine:
    return AlertEngine(net.store, alert_settings(**kw), rules=parse_rules(RULES))


def sent(net: Net) -> list[dict[str, Any]]:
    cur = net.store.reader().execute("SELECT payload FROM outbox ORDER BY id")
    return [orjson.loads(r[0]) for r in cur]


def test_device_down_one_firing_then_one_resolved(net: Net) -> None:
    e = engine(net)
    net.down("bts-1", T0, T0 + 20_000)
    e.tick(T0 + 20_500)
    assert sent(net) == []  # the router has not answered since bts-1 failed: its verdict waits
    net.poll("rtr", T0 + 15_000, ok=True)
    e.tick(T0 + 21_000)
    e.tick(T0 + 22_000)
    out = sent(net)
    assert [p["status"] for p in out] == ["firing"]
    alert = out[0]["alerts"][0]
    assert alert["labels"]["alertname"] == "device_down" and alert["labels"]["entity"] == "bts-1"
    assert alert["annotations"]["root_cause"] == "bts-1" and alert["startsAt"].startswith(
        "2026-11-28T08:00:00"
    )
    net.up("bts-1", T0 + 60_000)
    for k in range(5):
        e.tick(T0 + 61_000 + k * 1000)
    out = sent(net)
    assert [p["status"] for p in out] == ["firing", "resolved"]
    inc = IncidentRepo(net.store).find()[0][0]
    assert inc.state == "resolved" and inc.root_recovered_ms == T0 + 60_000
    events = [t["event"] for t in IncidentRepo(net.store).timeline(inc.id)]
    assert events[0] == "opened" and "resolved" in events


def test_children_seen_down_before_the_router_join_its_incident(net: Net) -> None:
    e = engine(net)
    # Children fail first (poll order); the router has not answered since: their verdict waits.
    for i, c in enumerate(net.children):
        net.down(c, T0 + i * 100, T0 + 20_000)
    net.poll("rtr", T0 + 15_000, ok=False)
    e.tick(T0 + 21_000)
    assert sent(net) == [] and IncidentRepo(net.store).find()[1] == 0
    net.down("rtr", T0 + 1_000, T0 + 23_000)
    e.tick(T0 + 24_000)
    e.tick(T0 + 25_000)
    out = sent(net)
    assert len(out) == 1
    alert = out[0]["alerts"][0]
    assert alert["labels"]["entity"] == "rtr"
    assert sorted(s["entity"] for s in alert["incident"]["symptoms"]) == net.children
    assert IncidentRepo(net.store).find()[1] == 1
    spans = IncidentRepo(net.store).charged_spans("bts-1", T0, T0 + 60_000, T0 + 60_000)
    assert spans and spans[0][2] == "rtr" and spans[0][0] == T0 + 100


def test_router_recovers_first_children_that_stay_down_become_their_own_incidents(net: Net) -> None:
    e = engine(net)
    net.down("rtr", T0, T0 + 20_000)
    for c in net.children:
        net.down(c, T0 + 500, T0 + 20_000)
    e.tick(T0 + 21_000)
    e.tick(T0 + 22_000)
    assert len(sent(net)) == 1
    net.up("rtr", T0 + 100_000)
    # bts-0 and bts-1 come back at their next poll; bts-2 stays down (its own fault).
    net.up(net.children[0], T0 + 105_000)
    net.up(net.children[1], T0 + 106_000)
    for k in range(0, 50_000, 1000):
        e.tick(T0 + 101_000 + k)
    out = sent(net)
    statuses = [(p["status"], p["alerts"][0]["labels"]["entity"]) for p in out]
    assert statuses == [("firing", "rtr"), ("firing", net.children[2]), ("resolved", "rtr")] or statuses == [
        ("firing", "rtr"),
        ("resolved", "rtr"),
        ("firing", net.children[2]),
    ]
    own = IncidentRepo(net.store).find(entity=net.children[2])[0][0]
    assert own.opened_ms == T0 + 100_000  # charged to itself only from the router's recovery on
    spans = IncidentRepo(net.store).charged_spans(net.children[2], T0, T0 + 200_000, T0 + 200_000)
    assert spans == [(T0 + 500, T0 + 100_000, "rtr", spans[0][3])]


def test_probe_offline_behind_a_down_site_is_a_symptom(net: Net) -> None:
    e = engine(net)
    net.down("bts-0", T0, T0 + 20_000)
    net.poll("rtr", T0 + 15_000, ok=True)
    e.tick(T0 + 21_000)
    net.change("probe", "p-0", "offline", T0 + 2_000, "")
    e.tick(T0 + 22_000)
    e.tick(T0 + 23_000)
    out = sent(net)
    assert len(out) == 1 and out[0]["alerts"][0]["labels"]["entity"] == "bts-0"
    inc = IncidentRepo(net.store).find()[0][0]
    full = IncidentRepo(net.store).get(inc.id)
    assert full is not None and [s.entity for s in full.symptoms] == ["p-0"]


def test_flapping_link_keeps_one_incident(net: Net) -> None:
    e = engine(net, flap_window_s=600, flap_threshold=3)
    t = T0
    for _ in range(8):
        net.change("interface", "bts-1/ge-0/0/0", "down", t, "bts-1")
        net.poll("bts-1", t + 1, ok=True)
        net.poll("rtr", t + 1, ok=True)
        for k in range(0, 45_000, 1000):
            e.tick(t + k)
        net.change("interface", "bts-1/ge-0/0/0", "up", t + 45_000, "bts-1")
        for k in range(45_000, 60_000, 1000):
            e.tick(t + k)
        t += 60_000
    firing = [p for p in sent(net) if p["status"] == "firing"]
    assert len(firing) == 3  # then damped: the third incident stays open while it flaps
    incidents, total = IncidentRepo(net.store).find()
    assert total == 3 and incidents[0].flapping and incidents[0].state == "open" and incidents[0].flaps == 5
    for k in range(0, 700_000, 5000):
        e.tick(t + k)
    assert [p["status"] for p in sent(net)].count("resolved") == 3


def test_silence_mutes_then_expiry_notifies_and_resolved_follows_a_silenced_notice(net: Net) -> None:
    e = engine(net)
    silences = SilenceRepo(net.store)
    s = silences.create("silence", ['entity="bts-1"'], T0, T0 + 60_000, "ops", "works", T0)
    net.down("bts-1", T0, T0 + 20_000)
    net.poll("rtr", T0 + 15_000, ok=True)
    for k in range(0, 30_000, 1000):
        e.tick(T0 + 21_000 + k)
    assert sent(net) == []
    inc = IncidentRepo(net.store).find()[0][0]
    assert any(t["event"] == "muted" for t in IncidentRepo(net.store).timeline(inc.id))
    for k in range(0, 5_000, 1000):
        e.tick(T0 + 60_000 + k)
    assert [p["status"] for p in sent(net)] == ["firing"]  # expired, still firing: told now
    # Silenced again, then it recovers: the resolution is told all the same.
    silences.create("silence", ['entity="bts-1"'], T0 + 70_000, T0 + 999_000, "ops", "again", T0 + 70_000)
    net.up("bts-1", T0 + 80_000)
    for k in range(0, 5_000, 1000):
        e.tick(T0 + 81_000 + k)
    assert [p["status"] for p in sent(net)] == ["firing", "resolved"]
    assert silences.expire(s.id, T0 + 100_000) is not None


def test_manual_resolve_and_ack_and_comment(net: Net) -> None:
    e = engine(net)
    net.down("bts-1", T0, T0 + 20_000)
    net.poll("rtr", T0 + 15_000, ok=True)
    e.tick(T0 + 21_000)
    repo = IncidentRepo(net.store)
    inc = repo.find()[0][0]
    repo.acknowledge(inc.id, "an", "looking", T0 + 22_000)
    repo.comment(inc.id, "an", "truck sent", T0 + 23_000)
    repo.resolve(inc.id, "an", "fixed", T0 + 24_000)
    e.tick(T0 + 25_000)
    e.tick(T0 + 26_000)
    assert [p["status"] for p in sent(net)] == ["firing", "resolved"]
    events = [t["event"] for t in repo.timeline(inc.id)]
    assert events[:1] == ["opened"] and {"acknowledged", "comment", "resolved"} <= set(events)
    # Still down: no new incident until it has recovered and failed again.
    e.tick(T0 + 30_000)
    assert repo.find()[1] == 1


def test_maintenance_windows_for_labels(net: Net) -> None:
    repo = SilenceRepo(net.store)
    repo.create("maintenance", ['commune="16021"', 'kind="bts"'], T0, T0 + 3_600_000, "ops", "mast", T0)
    repo.create("maintenance", ['entity="rtr"'], T0 + 1_800_000, T0 + 7_200_000, "ops", "fw", T0)
    assert maintenance_windows(
        net.store, {"commune": "16021", "kind": "bts", "entity": "bts-1"}, T0, T0 + 86_400_000
    ) == [(T0, T0 + 3_600_000)]
    assert maintenance_windows(net.store, {"entity": "rtr", "kind": "router"}, T0, T0 + 3_600_000) == [
        (T0 + 1_800_000, T0 + 3_600_000)
    ]


def test_restart_does_not_notify_twice(net: Net, tmp_path: Path) -> None:
    e = engine(net)
    net.down("bts-1", T0, T0 + 20_000)
    net.poll("rtr", T0 + 15_000, ok=True)
    e.tick(T0 + 21_000)
    assert len(sent(net)) == 1
    e2 = engine(net)  # a new process over the same store
    for k in range(5):
        e2.tick(T0 + 22_000 + k * 1000)
    assert len(sent(net)) == 1
    net.up("bts-1", T0 + 30_000)
    for k in range(5):
        e2.tick(T0 + 31_000 + k * 1000)
    assert [p["status"] for p in sent(net)] == ["firing", "resolved"]
    assert len(Outbox(net.store).rows("hook")) == 2


def test_degradation_behind_a_down_site_joins_its_incident(net: Net) -> None:
    pipeline = IngestPipeline(net.store, IngestSettings())
    for minute in range(6):
        batch = validate_batch(
            {
                "v": 1,
                "probe_id": "p-0",
                "seq": minute,
                "measurements": [
                    {
                        "ts": T0 + minute * 60_000 + i * 10_000,
                        "target": "t",
                        "technology": "4G",
                        "operator": "vnpt",
                        "metrics": {"rtt_ms": 500.0},
                    }
                    for i in range(6)
                ],
            }
        )
        pipeline.accept(batch)
    asyncio.run(pipeline.flush())
    rules = parse_rules(
        RULES + "  - {name: rtt_high, kind: threshold, metric: rtt_ms, stat: p95, group_by: [entity],"
        " window: 5m, op: '>', threshold: 100}\n"
    )
    e = AlertEngine(net.store, alert_settings(), rules=rules)
    net.down("bts-0", T0, T0 + 20_000)
    net.poll("rtr", T0 + 20_000, ok=True)
    e.tick(T0 + 21_000)
    e.tick(T0 + 6 * 60_000 + 1000)
    e.tick(T0 + 6 * 60_000 + 2000)
    out = sent(net)
    assert len(out) == 1 and out[0]["alerts"][0]["labels"]["entity"] == "bts-0"
    inc = IncidentRepo(net.store).find()[0][0]
    full = IncidentRepo(net.store).get(inc.id)
    assert full is not None and [(s.kind, s.entity) for s in full.symptoms] == [("rtt_high", "p-0")]
    # Without the site failure the same degradation is an incident of its own.
    net.up("bts-0", T0 + 7 * 60_000)
    for k in range(0, 50_000, 1000):
        e.tick(T0 + 7 * 60_000 + 1000 + k)
    assert IncidentRepo(net.store).find(kind="rtt_high")[1] == 1


def test_two_engines_on_one_store_one_active_the_other_takes_over(net: Net) -> None:
    a, b = engine(net), engine(net)
    net.down("bts-1", T0, T0 + 20_000)
    net.poll("rtr", T0 + 20_000, ok=True)
    a.tick(T0 + 21_000)
    b.tick(T0 + 21_500)
    assert a.leader and not b.leader
    a.tick(T0 + 22_000)
    b.tick(T0 + 22_500)
    assert len(sent(net)) == 1 and IncidentRepo(net.store).find()[1] == 1
    # `a` dies; once its lease has run out `b` carries on from the store.
    net.up("bts-1", T0 + 25_000)
    for k in range(0, 15_000, 1000):
        b.tick(T0 + 26_000 + k)
    assert b.leader
    assert [p["status"] for p in sent(net)] == ["firing", "resolved"]
    assert IncidentRepo(net.store).find()[1] == 1
