"""The alert engine: rules -> alerts -> incidents (with topology) -> notification path.

One `tick(now_ms)` does a whole step, synchronously and in one store transaction, so
tests drive it with a clock of their own and a crash never leaves half a decision:

1. read new StateChanges from the store (the SNMP poller, traps and probe health write
   them; reading the table keeps the data flowing one way and works across processes);
2. evaluate the rules: state rules every tick, rollup rules every `every`;
3. alerts: pending -> firing after `for`; firing -> resolved after `keep_firing_for`;
4. incidents: a firing alert opens an incident, joins an ancestor's incident as a symptom,
   or waits for an ancestor's verdict (alerts.topology); a resolved root alert closes its
   incident once its symptoms have recovered or shown they are failures of their own;
   flapping alerts keep one incident open instead of opening one per flap;
5. the notification path (alerts.notify.pipeline) writes what receivers must be told into
   the outbox; the dispatchers (alerts.notify.outbox) deliver it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import Counter, Gauge

from alerts.incidents import (
    add_symptom_in,
    end_symptom_in,
    get_in,
    open_in,
    resolve_in,
    symptoms_in,
    timeline_in,
    working_set_in,
)
from alerts.notify.pipeline import Grouper, Muter, NotifyAlert, Router, build_pipeline, flush_group
from alerts.rules import (
    AbsenceRule,
    EntityKinds,
    RulesError,
    Sample,
    StateRule,
    ThresholdRule,
    builtin_kinds,
    evaluate_absence,
    evaluate_threshold,
    load_rules,
)
from alerts.silences import SilenceRepo
from alerts.topology import Node, Topology
from collector.store.db import Connection
from collector.store.store import Store
from netqos.aio import wait_stop
from netqos.config import AlertSettings

log = logging.getLogger(__name__)

AnyRule = ThresholdRule | AbsenceRule | StateRule
# States that are no news: an entity in one of them makes no state-rule alert.
OK_STATES = frozenset({"up", "online", "unknown", "disabled"})
_GRACE_MS = 5_000  # beyond a detection period: poll durations, flush intervals
_CHANGES_PER_READ = 10_000
OUTBOX_KEEP_MS = 30 * 86_400_000
LEASE_MIN_S = 10.0

RULES_LOADED = Gauge("netqos_alert_rules_loaded", "alert rules in force")
RULE_RELOADS = Counter("netqos_alert_rules_reloads_total", "rule file reloads, by outcome", ["outcome"])
RULE_ERRORS = Counter("netqos_alert_rule_evaluation_failures_total", "rule evaluations that failed", ["rule"])
ALERTS = Gauge("netqos_alerts", "alerts by state", ["state"])
INCIDENTS_ACTIVE = Gauge("netqos_incidents_active", "incidents not resolved")
TICK_FAILURES = Counter("netqos_alert_engine_failures_total", "engine steps that failed (retried next tick)")


@dataclass(slots=True)
class EntityState:
    state: str
    since_ms: int
    device_id: str


@dataclass(slots=True)
class Tracked:
    """One alert: a rule's verdict on one entity or label group."""

    key: str
    rule: str
    labels: dict[str, str]
    state: str  # pending / firing
    active_since_ms: int
    fired_ms: int | None = None
    false_since_ms: int | None = None
    value: float | None = None
    incident_id: int | None = None
    held_since_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    rule: AnyRule
    labels: dict[str, str]
    value: float | None
    active: bool
    since_ms: int  # when it became true (or false)


_FIELD_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*))?\}")


def render(template: str, labels: dict[str, str], value: float | None) -> str:
    """Fill `{label}` and `{value:.1f}`-style fields; no attribute access (rules are data, not code)."""

    def repl(m: re.Match[str]) -> str:
        name, spec = m.group(1), m.group(2) or ""
        v: Any = value if name == "value" else labels.get(name, m.group(0))
        try:
            return format(v, spec) if v is not None else ""
        except (ValueError, TypeError):
            return str(v)

    return _FIELD_RE.sub(repl, template)


class AlertEngine:
    """Rules, alerts and incidents over one store; see the module docstring."""

    def __init__(
        self,
        store: Store,
        settings: AlertSettings,
        *,
        down_after_misses: int = 3,
        rules: list[AnyRule] | None = None,
        on_enqueue: Callable[[], None] | None = None,
        kinds: EntityKinds | None = None,
    ) -> None:
        self.store = store
        # What a state rule's entity_kind matches (`onu` -> the `onus` rows of every profile).
        self.kinds = kinds if kinds is not None else builtin_kinds()
        self.settings = settings
        self.down_after_misses = down_after_misses
        self.on_enqueue = on_enqueue
        self._rules_mtime = self._mtime()
        self.rules: list[AnyRule] = (
            rules if rules is not None else load_rules(settings.rules_file, self.kinds)
        )
        RULES_LOADED.set(len(self.rules))
        self._reload_requested = False
        self._pruned_ms = 0
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.leader = False
        self.states: dict[tuple[str, str], EntityState] = {}
        self.abnormal: set[tuple[str, str]] = set()
        self.cursor = 0
        self.alerts: dict[str, Tracked] = {}
        self.samples: dict[str, list[Sample]] = {}
        self.last_eval: dict[str, int] = {}
        self.fires: dict[str, deque[int]] = {}
        self.router = Router(settings)
        self.grouper = Grouper(self.router)
        self.muter = Muter(settings.inhibit_rules)
        self.plans = build_pipeline(settings, self.muter)

    # -- start-up and rules ---------------------------------------------------------------------

    def _mtime(self) -> float | None:
        path = self.settings.rules_file
        try:
            return path.stat().st_mtime if path is not None else None
        except OSError:
            return None

    def _load(self) -> None:
        conn = self.store.reader()
        # The latest change of every entity: the row of each entity's largest id.
        for kind, entity, state, since, device_id in conn.execute(
            "SELECT c.entity_kind, c.entity, c.state, c.since_ms, c.device_id FROM state_changes c"
            " JOIN (SELECT max(id) AS id FROM state_changes GROUP BY entity_kind, entity) latest"
            " ON latest.id = c.id"
        ):
            self._set_state(kind, entity, state, since, device_id)
        self.cursor = int(conn.execute("SELECT coalesce(max(id), 0) FROM state_changes").fetchone()[0])
        for row in conn.execute(
            "SELECT alert_key, rule, labels, state, active_since_ms, fired_ms, false_since_ms, value,"
            " incident_id FROM alerts"
        ):
            key, rule, labels, state, since, fired, false_since, value, iid = row
            self.alerts[key] = Tracked(
                key, rule, orjson.loads(labels), state, since, fired, false_since, value, iid
            )

    def request_reload(self) -> None:
        """Re-read the rules file at the next tick (SIGHUP)."""
        self._reload_requested = True

    def reload(self) -> bool:
        """Load the rules file again; on any problem keep the rules in force and say why."""
        self._rules_mtime = self._mtime()
        try:
            rules = load_rules(self.settings.rules_file, self.kinds)
        except RulesError as exc:
            RULE_RELOADS.labels(outcome="rejected").inc()
            for problem in exc.problems[:20]:
                log.error("event=rules_rejected problem=%r", problem)
            return False
        self.rules = rules
        RULES_LOADED.set(len(rules))
        RULE_RELOADS.labels(outcome="loaded").inc()
        log.info("event=rules_loaded count=%d source=%s", len(rules), self.settings.rules_file or "built-in")
        return True

    # -- one engine per store ---------------------------------------------------------------------

    def _hold_lease(self, now: int) -> bool:
        """Take or renew the engine lease; False while another process holds it."""
        lease_ms = int(max(LEASE_MIN_S, 5 * self.settings.eval_interval_s) * 1000)
        with self.store.transaction() as conn:
            row = conn.execute("SELECT holder, expires_ms FROM leases WHERE name='alert-engine'").fetchone()
            if row is not None and row[0] != self.holder and row[1] > now:
                mine = False
            else:
                conn.execute(
                    "INSERT INTO leases (name, holder, expires_ms) VALUES ('alert-engine', ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                    " expires_ms = excluded.expires_ms",
                    (self.holder, now + lease_ms),
                )
                mine = True
        if mine and not self.leader:
            # Taking over (or starting): what another engine decided meanwhile is in the store.
            self.alerts.clear()
            self.states.clear()
            self.abnormal.clear()
            self._load()
            log.info("event=alert_engine_active holder=%s", self.holder)
        elif not mine and self.leader:
            log.warning("event=alert_engine_standby reason=another_process_holds_the_lease")
        self.leader = mine
        return mine

    # -- state changes --------------------------------------------------------------------------

    def _set_state(self, kind: str, entity: str, state: str, since_ms: int, device_id: str) -> None:
        key = (kind, entity)
        self.states[key] = EntityState(state, since_ms, device_id)
        if state in OK_STATES:
            self.abnormal.discard(key)
        else:
            self.abnormal.add(key)

    def _read_changes(self) -> None:
        conn = self.store.reader()
        for _ in range(1000):  # bounded: 10 million changes a tick at most
            rows = conn.execute(
                "SELECT id, entity_kind, entity, state, since_ms, device_id FROM state_changes WHERE id > ?"
                " ORDER BY id LIMIT ?",
                (self.cursor, _CHANGES_PER_READ),
            ).fetchall()
            for cid, kind, entity, state, since, device_id in rows:
                self._set_state(kind, entity, state, since, device_id)
                self.cursor = int(cid)
            if len(rows) < _CHANGES_PER_READ:
                return

    # -- the step ------------------------------------------------------------------------------

    def tick(self, now_ms: int | None = None) -> int:
        """One evaluation step; returns the notifications queued."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if not self._hold_lease(now):
            return 0
        if self._reload_requested or self._mtime() != self._rules_mtime:
            self._reload_requested = False
            self.reload()
        self._read_changes()
        topo = Topology.load(self.store, self.down_after_misses)
        evaluated: set[str] = set()
        for rule in self.rules:
            if isinstance(rule, StateRule):
                evaluated.add(rule.name)
            elif now - self.last_eval.get(rule.name, -(2**62)) >= rule.every_s * 1000:
                try:
                    if isinstance(rule, ThresholdRule):
                        self.samples[rule.name] = evaluate_threshold(self.store, rule, now)
                    else:
                        self.samples[rule.name] = evaluate_absence(self.store, rule, now)
                except Exception:
                    RULE_ERRORS.labels(rule=rule.name).inc()
                    log.exception("event=rule_failed rule=%s", rule.name)
                    continue
                self.last_eval[rule.name] = now
                evaluated.add(rule.name)
        with self.store.transaction() as conn:
            verdicts = self._verdicts(topo, evaluated)
            fired, resolved = self._track(conn, verdicts, evaluated, now)
            for t in resolved:
                self._resolved(conn, t, now)
            for t in sorted(fired, key=lambda x: self._depth(topo, x)):
                self._attach(conn, topo, t, now)
            self._settle(conn, topo, now)
            queued = self._notify(conn, now)
        ALERTS.labels(state="pending").set(sum(1 for t in self.alerts.values() if t.state == "pending"))
        ALERTS.labels(state="firing").set(sum(1 for t in self.alerts.values() if t.state == "firing"))
        if queued and self.on_enqueue is not None:
            self.on_enqueue()
        if now - self._pruned_ms >= 3_600_000:
            self._pruned_ms = now
            with self.store.transaction() as conn:
                # Delivered notifications are history of the outbox, not of the incidents (whose
                # timelines keep every delivery): a month of them is plenty.
                conn.execute(
                    "DELETE FROM outbox WHERE state != 'pending' AND created_ms < ?", (now - OUTBOX_KEEP_MS,)
                )
        return queued

    # -- rules -> verdicts -----------------------------------------------------------------------

    def _node_of(self, topo: Topology, labels: dict[str, str]) -> Node | None:
        kind, entity = labels.get("entity_kind", ""), labels.get("entity", "")
        if not entity:
            return None
        if kind:
            return topo.node(kind, entity, labels.get("device", ""))
        return topo.nodes.get(("device", entity)) or topo.nodes.get(("probe", entity))

    def _verdicts(self, topo: Topology, evaluated: set[str]) -> dict[str, Verdict]:
        out: dict[str, Verdict] = {}
        tracked_by_rule: dict[str, list[Tracked]] = {}
        for t in self.alerts.values():
            tracked_by_rule.setdefault(t.rule, []).append(t)
        for rule in self.rules:
            if rule.name not in evaluated:
                continue
            base = {"alertname": rule.name, "severity": rule.severity}
            if isinstance(rule, StateRule):
                match = self.kinds.get(rule.entity_kind, frozenset((rule.entity_kind,)))
                keys = {k for k in self.abnormal if k[0] in match}
                keys |= {
                    (t.labels.get("entity_kind", ""), t.labels.get("entity", ""))
                    for t in tracked_by_rule.get(rule.name, [])
                }
                for kind, entity in keys:
                    st = self.states.get((kind, entity))
                    if st is None:
                        continue
                    node = topo.node(kind, entity, st.device_id)
                    labels = {
                        **(node.labels if node is not None else {}),
                        **rule.labels,
                        **base,
                        "entity": entity,
                        "entity_kind": kind,
                    }
                    if kind not in ("device", "probe"):  # an interface or a profile table's row
                        labels["device"] = st.device_id
                    key = f"{rule.name}|{kind}:{entity}"
                    out[key] = Verdict(rule, labels, None, st.state in rule.states, st.since_ms)
            else:
                for s in self.samples.get(rule.name, []):
                    labels = {**s.labels, **rule.labels, **base}
                    key = rule.name + "|" + orjson.dumps(s.labels, option=orjson.OPT_SORT_KEYS).decode()
                    out[key] = Verdict(rule, labels, s.value, s.active, -1)
        return out

    # -- verdicts -> alerts ----------------------------------------------------------------------

    def _track(
        self, conn: Connection, verdicts: dict[str, Verdict], evaluated: set[str], now: int
    ) -> tuple[list[Tracked], list[Tracked]]:
        fired: list[Tracked] = []
        resolved: list[Tracked] = []
        rules = {r.name: r for r in self.rules}
        changed: set[str] = set()
        for key, v in verdicts.items():
            since = v.since_ms if v.since_ms >= 0 else now
            t = self.alerts.get(key)
            if t is None:
                if not v.active:
                    continue
                t = self.alerts[key] = Tracked(key, v.rule.name, v.labels, "pending", since)
                changed.add(key)
            if t.labels != v.labels or t.value != v.value:
                t.labels, t.value = v.labels, v.value
                changed.add(key)
            if v.active:
                if t.false_since_ms is not None:
                    t.false_since_ms = None
                    changed.add(key)
                if t.state == "pending" and now - t.active_since_ms >= v.rule.for_s * 1000:
                    t.state, t.fired_ms = "firing", now
                    fired.append(t)
                    changed.add(key)
            elif t.state == "pending":
                del self.alerts[key]
                changed.add(key)
            else:
                if t.false_since_ms is None:
                    t.false_since_ms = since
                    changed.add(key)
                if now - t.false_since_ms >= v.rule.keep_firing_for_s * 1000:
                    resolved.append(t)
                    del self.alerts[key]
                    changed.add(key)
        # Alerts of evaluated rules that got no verdict (no data, entity gone), or of rules no
        # longer loaded, are false now.
        for key, t in list(self.alerts.items()):
            if key in verdicts:
                continue
            rule = rules.get(t.rule)
            if rule is not None and t.rule not in evaluated:
                continue
            if t.state == "pending":
                del self.alerts[key]
            else:
                if t.false_since_ms is None:
                    t.false_since_ms = now
                keep = rule.keep_firing_for_s * 1000 if rule is not None else 0
                if now - t.false_since_ms < keep:
                    changed.add(key)
                    continue
                resolved.append(t)
                del self.alerts[key]
            changed.add(key)
        for t in fired:
            self.fires.setdefault(t.key, deque(maxlen=1000)).append(now)
            log.info("event=alert_firing alert=%s", t.key)
        for t in resolved:
            log.info("event=alert_resolved alert=%s", t.key)
        self._persist(conn, changed, now)
        return fired, resolved

    def _persist(self, conn: Connection, keys: set[str], now: int) -> None:
        for key in keys:
            t = self.alerts.get(key)
            if t is None:
                conn.execute("DELETE FROM alerts WHERE alert_key=?", (key,))
                continue
            conn.execute(
                "INSERT INTO alerts (alert_key, rule, labels, state, active_since_ms, fired_ms,"
                " false_since_ms, value, incident_id, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (alert_key) DO UPDATE SET rule = excluded.rule, labels = excluded.labels,"
                " state = excluded.state, active_since_ms = excluded.active_since_ms,"
                " fired_ms = excluded.fired_ms, false_since_ms = excluded.false_since_ms,"
                " value = excluded.value, incident_id = excluded.incident_id,"
                " updated_ms = excluded.updated_ms",
                (
                    key,
                    t.rule,
                    orjson.dumps(t.labels, option=orjson.OPT_SORT_KEYS).decode(),
                    t.state,
                    t.active_since_ms,
                    t.fired_ms,
                    t.false_since_ms,
                    t.value,
                    t.incident_id,
                    now,
                ),
            )

    # -- alerts -> incidents ---------------------------------------------------------------------

    def _depth(self, topo: Topology, t: Tracked) -> int:
        node = self._node_of(topo, t.labels)
        return 0 if node is None else sum(1 for _ in topo.ancestors(node))

    def _state_rule_names(self) -> set[str]:
        return {r.name for r in self.rules if isinstance(r, StateRule)}

    def _rule(self, name: str) -> AnyRule | None:
        return next((r for r in self.rules if r.name == name), None)

    def _attach(
        self, conn: Connection, topo: Topology, t: Tracked, now: int, opened_ms: int | None = None
    ) -> None:
        """Give a firing alert its incident: its own, an ancestor's (as a symptom), or none yet."""
        settle_ms = int(self.settings.topology_settle_max_s * 1000)
        node = self._node_of(topo, t.labels)
        since = opened_ms if opened_ms is not None else t.active_since_ms
        # Any alert on an entity (down, offline, or a degradation of a rule grouped by entity)
        # behind a failed ancestor is a symptom of the ancestor's outage.
        if node is not None:
            held_for = now - (t.held_since_ms if t.held_since_ms is not None else now)
            kind, root = topo.verdict(node, since, now, settle_ms)
            if kind == "symptom" and root is not None:
                root_inc = self._root_incident(conn, root)
                if root_inc is not None:
                    add_symptom_in(
                        conn,
                        root_inc,
                        alert_key=t.key,
                        entity=node.entity,
                        entity_kind=node.kind,
                        kind=t.rule,
                        labels=t.labels,
                        start_ms=since,
                        now_ms=now,
                    )
                    self._set_incident(conn, t, root_inc, now)
                    return
                kind = "wait"  # the root's own alert has not fired yet
            if kind == "wait" and held_for < settle_ms:
                if t.held_since_ms is None:
                    t.held_since_ms = now
                    log.info("event=alert_held alert=%s reason=waiting_for_topology", t.key)
                return
        # Its own root cause. A flapping (or recovering) incident of the same alert goes on.
        row = conn.execute(
            "SELECT id, flapping FROM incidents WHERE alert_key=? AND state != 'resolved'"
            " AND root_recovered_ms IS NOT NULL ORDER BY id DESC LIMIT 1",
            (t.key,),
        ).fetchone()
        if row is not None:
            conn.execute("UPDATE incidents SET root_recovered_ms=NULL, flaps=flaps+1 WHERE id=?", (row[0],))
            timeline_in(
                conn, row[0], now, "fired_again", "engine", "flapping" if row[1] else "before it settled"
            )
            self._set_incident(conn, t, int(row[0]), now)
            return
        rule = self._rule(t.rule)
        annotations = {"summary": render(rule.summary, t.labels, t.value)} if rule and rule.summary else {}
        iid = open_in(
            conn,
            kind=t.rule,
            alert_key=t.key,
            entity=t.labels.get("entity", ""),
            entity_kind=t.labels.get("entity_kind", ""),
            labels=t.labels,
            annotations=annotations,
            severity=t.labels.get("severity", "warning"),
            opened_ms=since,
            ready=True,
            detail=f"{t.rule} fired" + (f" (value {t.value:g})" if t.value is not None else ""),
        )
        if node is not None and node.children and topo.unconfirmed_descendants(node, since):
            conn.execute("UPDATE incidents SET ready=0 WHERE id=?", (iid,))
        log.info("event=incident_opened id=%d kind=%s entity=%s", iid, t.rule, t.labels.get("entity", "-"))
        self._set_incident(conn, t, iid, now)

    def _root_incident(self, conn: Connection, root: tuple[str, str]) -> int | None:
        names = sorted(self._state_rule_names())
        if not names:
            return None
        row = conn.execute(
            f"SELECT id FROM incidents WHERE entity_kind=? AND entity=? AND state != 'resolved'"
            f" AND kind IN ({','.join('?' * len(names))}) ORDER BY id DESC LIMIT 1",
            (*root, *names),
        ).fetchone()
        return None if row is None else int(row[0])

    def _set_incident(self, conn: Connection, t: Tracked, iid: int, now: int) -> None:
        t.incident_id, t.held_since_ms = iid, None
        self._persist(conn, {t.key}, now)

    def _resolved(self, conn: Connection, t: Tracked, now: int) -> None:
        if t.incident_id is None:
            return  # held for topology and never attached: nothing was said about it
        inc = get_in(conn, t.incident_id)
        if inc is None or inc.state == "resolved":
            return
        end = t.false_since_ms if t.false_since_ms is not None else now
        if inc.alert_key != t.key:
            end_symptom_in(conn, inc.id, t.key, end, now, "recovered")
            return
        window_ms = self.settings.flap_window_s * 1000
        fires = self.fires.get(t.key, deque())
        recent = sum(1 for f in fires if now - f <= window_ms)
        flapping = recent >= self.settings.flap_threshold
        conn.execute(
            "UPDATE incidents SET root_recovered_ms=?, flapping=greatest(flapping, ?) WHERE id=?",
            (end, int(flapping), inc.id),
        )
        if flapping and not inc.flapping:
            timeline_in(
                conn,
                inc.id,
                now,
                "flapping",
                "engine",
                f"{recent} firings within {self.settings.flap_window_s:g} s:"
                " resolved only once stable that long",
            )
        else:
            timeline_in(conn, inc.id, now, "root_recovered", "engine", f"{t.rule} no longer holds")

    def _settle(self, conn: Connection, topo: Topology, now: int) -> None:
        settle_ms = int(self.settings.topology_settle_max_s * 1000)
        # Alerts waiting for a verdict try again.
        for t in list(self.alerts.values()):
            if t.state == "firing" and t.incident_id is None:
                self._attach(conn, topo, t, now)
        by_key = self.alerts
        for row in conn.execute(
            "SELECT id, entity, entity_kind, opened_ms, root_recovered_ms, flapping, ready"
            " FROM incidents WHERE state != 'resolved'"
        ).fetchall():
            iid, entity, entity_kind, opened, recovered, flapping, ready = row
            if not ready:
                node = topo.node(entity_kind, entity) if entity else None
                if (
                    node is None
                    or now - opened >= settle_ms
                    or not topo.unconfirmed_descendants(node, opened)
                ):
                    conn.execute("UPDATE incidents SET ready=1 WHERE id=?", (iid,))
            if recovered is None:
                continue
            if flapping:
                if now - recovered >= self.settings.flap_window_s * 1000:
                    resolve_in(conn, iid, now, "engine", "stable again after flapping")
                continue
            open_symptoms = [s for s in symptoms_in(conn, iid) if s.end_ms is None]
            for s in open_symptoms:
                sym = by_key.get(s.alert_key)
                if sym is None or sym.incident_id != iid:
                    end_symptom_in(conn, iid, s.alert_key, now, now, "no longer firing")
                    continue
                node = topo.node(s.entity_kind, s.entity, sym.labels.get("device", ""))
                detect = node.detect_ms if node is not None else 0
                if now - recovered >= min(detect + _GRACE_MS, max(settle_ms, _GRACE_MS)):
                    # Still failing a detection period after its root cause came back: its own fault.
                    end_symptom_in(
                        conn, iid, s.alert_key, recovered, now, "still failing after the root recovered"
                    )
                    sym.incident_id = None
                    self._attach(conn, topo, sym, now, opened_ms=recovered)
            if not [s for s in symptoms_in(conn, iid) if s.end_ms is None]:
                resolve_in(conn, iid, now, "engine", "root cause recovered")
                log.info("event=incident_resolved id=%d entity=%s", iid, entity or "-")

    # -- incidents -> outbox ---------------------------------------------------------------------

    def _notify(self, conn: Connection, now: int) -> int:
        working = working_set_in(conn)
        INCIDENTS_ACTIVE.set(sum(1 for i in working if i.active))
        alerts = [NotifyAlert.of(i) for i in working]
        self.muter.refresh(
            SilenceRepo.in_force(conn, now), [a.labels for a in alerts if a.firing and a.ready]
        )
        self.grouper.update(alerts, now)
        queued = 0
        for g in self.grouper.due(now):
            queued += flush_group(conn, g, self.plans, now, self.settings.external_url)
            self.grouper.flushed(g, now)
        done = [i.id for i in working if not i.active and not self.grouper.holds(i.id)]
        conn.executemany("UPDATE incidents SET notify_done=1 WHERE id=?", [(i,) for i in done])
        return queued

    # -- running -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every `alerts.eval_interval_s` until `stop`; a failing step is logged and retried."""
        while not await wait_stop(stop, self.settings.eval_interval_s):
            try:
                await asyncio.to_thread(self.tick)
            except Exception:
                TICK_FAILURES.inc()
                log.exception("event=alert_engine_step_failed")
