"""Each stage of the alert engine on its own, with hand-written inputs and expectations:

verdicts (`alerts.states.verdicts_of`) -> the alert state machine (`alerts.states.track`,
`persist_in`/`load_in`) -> the incident lifecycle statements (`alerts.incidents`) -> the
notification path's mute, dedup and outbox stages over one `NotificationLog`.

The pure stages take plain values; the ones that write take a real store (SQLite, and
PostgreSQL through `store_settings`)."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from alerts.incidents import (
    get_in,
    notify_done_in,
    open_in,
    reopen_recovering_in,
    root_incident_in,
    root_recovered_in,
    set_ready_in,
    unresolved_in,
)
from alerts.notify.pipeline import (
    DedupStage,
    FlushContext,
    Group,
    LogEntry,
    Muter,
    MuteStage,
    NotificationLog,
    NotifyAlert,
    OutboxStage,
    Route,
)
from alerts.rules import builtin_kinds, parse_rules
from alerts.settings import InhibitRuleSettings
from alerts.silences import Silence
from alerts.states import EntityState, Tracked, Verdict, load_in, persist_in, track, verdicts_of
from alerts.topology import Node, Topology
from collector.store.db import Connection
from collector.store.settings import StoreSettings
from collector.store.store import Store, open_store
from ground.matchers import parse_matchers

RULES = parse_rules(
    """
rules:
  - {name: device_down, kind: state, entity_kind: device, states: [down], severity: critical}
  - {name: link_down, kind: state, entity_kind: interface, states: [down], for: 30s, keep_firing_for: 10s}
"""
)
DEVICE_DOWN, LINK_DOWN = RULES
BY_NAME = {r.name: r for r in RULES}
NOW = 1_000_000


# -- verdicts --------------------------------------------------------------------------------


def test_verdicts_of_a_state_rule_carry_topology_labels_and_the_state_since() -> None:
    topo = Topology({("device", "bts-1"): Node("device", "bts-1", None, {"site": "S1", "commune": "16021"})})
    states = {
        ("device", "bts-1"): EntityState("down", NOW - 5_000, "bts-1"),
        ("interface", "bts-1:2"): EntityState("down", NOW - 7_000, "bts-1"),
        ("device", "bts-2"): EntityState("up", NOW - 1_000, "bts-2"),
    }
    out = verdicts_of(
        RULES,
        {"device_down", "link_down"},
        {},
        states=states,
        abnormal={("device", "bts-1"), ("interface", "bts-1:2")},
        samples={},
        kinds=builtin_kinds(),
        topo=topo,
    )
    # bts-2 is up and has no alert: no verdict about it at all.
    assert set(out) == {"device_down|device:bts-1", "link_down|interface:bts-1:2"}
    dev = out["device_down|device:bts-1"]
    assert dev.active and dev.since_ms == NOW - 5_000 and dev.value is None
    assert dev.labels == {
        "site": "S1",
        "commune": "16021",
        "alertname": "device_down",
        "severity": "critical",
        "entity": "bts-1",
        "entity_kind": "device",
    }
    link = out["link_down|interface:bts-1:2"]
    assert link.labels["device"] == "bts-1" and link.labels["severity"] == "warning"


def test_verdicts_of_an_entity_back_up_is_false_and_unevaluated_rules_say_nothing() -> None:
    labels = {"entity": "bts-1", "entity_kind": "device"}
    alert = Tracked("device_down|device:bts-1", "device_down", labels, "firing", 0)
    out = verdicts_of(
        RULES,
        {"device_down"},  # link_down not evaluated this step
        {alert.key: alert},
        states={("device", "bts-1"): EntityState("up", NOW, "bts-1")},
        abnormal=set(),
        samples={},
        kinds=builtin_kinds(),
        topo=Topology({}),
    )
    assert list(out) == [alert.key] and not out[alert.key].active and out[alert.key].since_ms == NOW


# -- the state machine -----------------------------------------------------------------------


def _v(rule: str, active: bool, since: int = -1) -> Verdict:
    return Verdict(BY_NAME[rule], {"entity": "x"}, None, active, since)


KEY = "link_down|interface:x"


def test_pending_fires_at_for_not_a_millisecond_before() -> None:
    alerts: dict[str, Tracked] = {}
    step = track(alerts, {KEY: _v("link_down", True, NOW)}, {"link_down"}, BY_NAME, NOW)
    assert alerts[KEY].state == "pending" and step.fired == [] and step.changed == {KEY}
    # for: 30 s -> 29.999 s after it became true it is still pending ...
    step = track(alerts, {KEY: _v("link_down", True, NOW)}, {"link_down"}, BY_NAME, NOW + 29_999)
    assert alerts[KEY].state == "pending" and step.fired == [] and step.changed == set()
    # ... and at 30.000 s it fires, once.
    step = track(alerts, {KEY: _v("link_down", True, NOW)}, {"link_down"}, BY_NAME, NOW + 30_000)
    assert alerts[KEY].state == "firing" and alerts[KEY].fired_ms == NOW + 30_000
    assert [t.key for t in step.fired] == [KEY]
    step = track(alerts, {KEY: _v("link_down", True, NOW)}, {"link_down"}, BY_NAME, NOW + 30_001)
    assert step.fired == []


def test_pending_that_turns_false_is_dropped_without_a_resolution() -> None:
    alerts: dict[str, Tracked] = {}
    track(alerts, {KEY: _v("link_down", True, NOW)}, {"link_down"}, BY_NAME, NOW)
    step = track(alerts, {KEY: _v("link_down", False, NOW + 1)}, {"link_down"}, BY_NAME, NOW + 1)
    assert alerts == {} and step.resolved == [] and step.changed == {KEY}


def test_firing_resolves_after_keep_firing_for_and_a_return_in_between_keeps_it() -> None:
    alerts = {KEY: Tracked(KEY, "link_down", {"entity": "x"}, "firing", NOW - 60_000, NOW - 30_000)}
    off = NOW
    step = track(alerts, {KEY: _v("link_down", False, off)}, {"link_down"}, BY_NAME, off + 9_999)
    assert KEY in alerts and alerts[KEY].false_since_ms == off and step.resolved == []
    # True again within keep_firing_for (10 s): it keeps firing, the false spell is forgotten.
    track(alerts, {KEY: _v("link_down", True, NOW - 60_000)}, {"link_down"}, BY_NAME, off + 9_999)
    assert alerts[KEY].state == "firing" and alerts[KEY].false_since_ms is None
    off2 = NOW + 20_000
    track(alerts, {KEY: _v("link_down", False, off2)}, {"link_down"}, BY_NAME, off2)
    step = track(alerts, {KEY: _v("link_down", False, off2)}, {"link_down"}, BY_NAME, off2 + 10_000)
    assert KEY not in alerts and [t.key for t in step.resolved] == [KEY]


def test_no_verdict_keeps_an_unevaluated_rule_and_resolves_a_removed_rule_at_once() -> None:
    alerts = {KEY: Tracked(KEY, "link_down", {}, "firing", 0, 1)}
    step = track(alerts, {}, set(), BY_NAME, NOW)  # link_down not evaluated: nothing changes
    assert KEY in alerts and step.changed == set() and alerts[KEY].false_since_ms is None
    step = track(alerts, {}, {"link_down"}, BY_NAME, NOW)  # evaluated, no verdict: false since now
    assert alerts[KEY].false_since_ms == NOW and step.resolved == [] and step.changed == {KEY}
    gone = {"old|x": Tracked("old|x", "old_rule", {}, "firing", 0, 1)}
    step = track(gone, {}, set(), BY_NAME, NOW)  # its rule is no longer loaded: keep_firing_for 0
    assert gone == {} and [t.key for t in step.resolved] == ["old|x"]


# -- in the store ----------------------------------------------------------------------------


@pytest.fixture
def store(store_settings: StoreSettings) -> Iterator[Store]:
    s = open_store(store_settings)
    yield s
    s.close()


def test_alerts_persist_and_load_back(store: Store) -> None:
    t = Tracked(KEY, "link_down", {"b": "2", "a": "1"}, "firing", 10, 20, 30, 1.5, None)
    with store.transaction() as conn:
        persist_in(conn, {KEY: t}, {KEY}, NOW)
    assert load_in(store.reader()) == {KEY: t}
    with store.transaction() as conn:
        persist_in(conn, {}, {KEY}, NOW)  # a key no longer tracked is deleted
    assert load_in(store.reader()) == {}


def _open(conn: Connection, kind: str = "device_down", entity: str = "rtr", key: str = "k1") -> int:
    return open_in(
        conn,
        kind=kind,
        alert_key=key,
        entity=entity,
        entity_kind="device",
        labels={"entity": entity},
        annotations={},
        severity="critical",
        opened_ms=NOW,
        ready=True,
    )


def _timeline(conn: Connection, iid: int) -> list[tuple[str, str]]:
    cur = conn.execute("SELECT event, detail FROM incident_timeline WHERE incident_id=? ORDER BY id", (iid,))
    return [(str(e), str(d)) for e, d in cur]


def test_incident_lifecycle_statements(store: Store) -> None:
    with store.transaction() as conn:
        iid = _open(conn)
        assert root_incident_in(conn, "device", "rtr", ["device_down"]) == iid
        assert root_incident_in(conn, "device", "rtr", ["probe_offline"]) is None
        assert root_incident_in(conn, "device", "rtr", []) is None
        assert reopen_recovering_in(conn, "k1", NOW + 1) is None  # its root has not recovered
        set_ready_in(conn, iid, False)
        assert [(u.id, u.ready, u.root_recovered_ms) for u in unresolved_in(conn)] == [(iid, False, None)]
        root_recovered_in(conn, iid, NOW + 5_000, flapping=True)
        root_recovered_in(conn, iid, NOW + 6_000, flapping=False)  # flapping once set stays set
        u = unresolved_in(conn)[0]
        assert u.root_recovered_ms == NOW + 6_000 and u.flapping
        assert reopen_recovering_in(conn, "k1", NOW + 7_000) == iid
        inc = get_in(conn, iid)
        assert inc is not None and inc.root_recovered_ms is None and inc.flaps == 1
        assert _timeline(conn, iid)[-1] == ("fired_again", "flapping")
        notify_done_in(conn, [iid])
        inc = get_in(conn, iid)
        assert inc is not None and inc.notify_done


# -- the notification path -------------------------------------------------------------------

ROUTE = Route(0, (), ("hook",), ("alertname",), 0, 0, 3_600_000, False)


def _alert(iid: int, firing: bool = True, ready: bool = True, **labels: str) -> NotifyAlert:
    return NotifyAlert(
        iid, {"alertname": "device_down", "incident": str(iid), **labels}, {}, firing, NOW, None, ready, []
    )


def _ctx(conn: Connection, group: Group, now: int = NOW, send_resolved: bool = True) -> FlushContext:
    return FlushContext(conn, now, group, "hook", "webhook", send_resolved, ROUTE.repeat_ms)


def _group(*alerts: NotifyAlert) -> Group:
    key = '0:{"alertname":"device_down"}'
    return Group(key, ROUTE, {"alertname": "device_down"}, 0, {a.incident_id: a for a in alerts})


def test_mute_stage_drops_silenced_and_inhibited_firing_but_passes_resolved(store: Store) -> None:
    muter = Muter(
        [
            InhibitRuleSettings(
                source_matchers=["severity=critical"], target_matchers=["severity=warning"], equal=["site"]
            )
        ]
    )
    silence = Silence(7, "silence", parse_matchers(["entity=bts-9"]), 0, NOW * 2, "ops", "", 0, None)
    with store.transaction() as conn:
        ids = [_open(conn, key=f"k{n}") for n in range(5)]  # muting notes it in their timelines
        critical = _alert(ids[0], severity="critical", site="S1")
        inhibited = _alert(ids[1], severity="warning", site="S1")
        other_site = _alert(ids[2], severity="warning", site="S2")
        silenced = _alert(ids[3], entity="bts-9")
        resolved = _alert(ids[4], firing=False, entity="bts-9")
        muter.refresh([silence], [critical.labels])
        out = MuteStage(muter).exec(
            _ctx(conn, _group()), [critical, inhibited, other_site, silenced, resolved]
        )
        assert [a.incident_id for a in out] == [ids[0], ids[2], ids[4]]
        assert _timeline(conn, ids[1])[-1] == ("muted", f"inhibited by incident {ids[0]}")
        assert _timeline(conn, ids[3])[-1] == ("muted", "silence #7")


def test_dedup_and_outbox_share_the_notification_log(store: Store) -> None:
    nflog = NotificationLog()
    dedup, outbox = DedupStage(nflog), OutboxStage(nflog)
    a1, a2 = _alert(1), _alert(2, ready=False)
    g = _group(a1, a2)
    with store.transaction() as conn:
        assert nflog.entry(conn, "hook", g.key).told == frozenset()
        passed = dedup.exec(_ctx(conn, g), [a1, a2])
        assert [a.incident_id for a in passed] == [1]  # 2 waits for its topology verdict
        outbox.exec(_ctx(conn, g), passed)
        entry = nflog.entry(conn, "hook", g.key)
        assert entry.told == {1} and entry.sent_ms == NOW
        # Nothing new within the repeat interval (1 h): just below it, no news; at it, a repeat.
        assert dedup.exec(_ctx(conn, g, NOW + 3_599_999), [a1]) == []
        assert dedup.exec(_ctx(conn, g, NOW + 3_600_000), [a1]) == [a1]
        # Incident 1 resolved: the receiver hears it, and the log forgets it.
        r1 = _alert(1, firing=False)
        g.alerts[1] = r1
        passed = dedup.exec(_ctx(conn, g, NOW + 10), [r1])
        assert passed == [r1]
        outbox.exec(_ctx(conn, g, NOW + 10), passed)
        assert nflog.entry(conn, "hook", g.key) == LogEntry(frozenset(), NOW + 10)
        rows = conn.execute("SELECT status, payload FROM outbox ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["firing", "resolved"]
    assert [a["status"] for a in orjson.loads(rows[1][1])["alerts"]] == ["resolved"]


def test_dedup_without_send_resolved_forgets_a_resolution_and_queues_nothing(store: Store) -> None:
    nflog = NotificationLog()
    g = _group(_alert(1, firing=False))
    with store.transaction() as conn:
        nflog.record(conn, "hook", g.key, {1, 2}, NOW)
        ctx = _ctx(conn, g, NOW + 1, send_resolved=False)
        assert DedupStage(nflog).exec(ctx, [_alert(1, firing=False)]) == []
        assert nflog.entry(conn, "hook", g.key).told == {2}
        assert nflog.entry(conn, "hook", g.key).sent_ms == NOW  # not a notification: when stays
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
