"""The alert engine: rules -> alerts -> incidents (with topology) -> notification path.

One `tick(now_ms)` does a whole step, synchronously and in one store transaction, so
tests drive it with a clock of their own and a crash never leaves half a decision:

1. read new StateChanges from the store (the SNMP poller, traps and probe health write
   them; reading the table keeps the data flowing one way and works across processes);
2. evaluate the rules: state rules every tick, rollup rules every `every`;
3. alerts: pending -> firing after `for`; firing -> resolved after `keep_firing_for`
   (the state machine: alerts.states);
4. incidents: a firing alert opens an incident, joins an ancestor's incident as a symptom,
   or waits for an ancestor's verdict (alerts.topology); a resolved root alert closes its
   incident once its symptoms have recovered or shown they are failures of their own;
   flapping alerts keep one incident open instead of opening one per flap (the decisions
   are here; every statement they make is in alerts.incidents);
5. the notification path (alerts.notify.pipeline) writes what receivers must be told into
   the outbox; the dispatchers (alerts.notify.outbox) deliver it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable

from prometheus_client import Counter, Gauge

from alerts.incidents import (
    add_symptom_in,
    end_symptom_in,
    get_in,
    notify_done_in,
    open_in,
    reopen_recovering_in,
    resolve_in,
    root_incident_in,
    root_recovered_in,
    set_ready_in,
    symptoms_in,
    timeline_in,
    unresolved_in,
    working_set_in,
)
from alerts.notify.outbox import prune_in
from alerts.notify.pipeline import Grouper, Muter, NotifyAlert, Router, build_pipeline, flush_group
from alerts.rules import (
    EntityKinds,
    RulesError,
    Sample,
    StateRule,
    ThresholdRule,
    builtin_kinds,
    evaluate_absence,
    evaluate_threshold,
    load_rules,
    render,
)
from alerts.settings import AlertSettings
from alerts.silences import SilenceRepo
from alerts.states import (
    OK_STATES,
    AnyRule,
    EntityState,
    Tracked,
    Verdict,
    load_in,
    persist_in,
    track,
    verdicts_of,
)
from alerts.topology import Node, Topology
from collector.store.db import Connection
from collector.store.store import Store
from ground.aio import wait_stop

log = logging.getLogger(__name__)

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
        self.alerts.update(load_in(conn))

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
            verdicts = verdicts_of(
                self.rules,
                evaluated,
                self.alerts,
                states=self.states,
                abnormal=self.abnormal,
                samples=self.samples,
                kinds=self.kinds,
                topo=topo,
            )
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
                prune_in(conn, now - OUTBOX_KEEP_MS)
        return queued

    # -- rules -> verdicts -----------------------------------------------------------------------

    def _node_of(self, topo: Topology, labels: dict[str, str]) -> Node | None:
        kind, entity = labels.get("entity_kind", ""), labels.get("entity", "")
        if not entity:
            return None
        if kind:
            return topo.node(kind, entity, labels.get("device", ""))
        return topo.nodes.get(("device", entity)) or topo.nodes.get(("probe", entity))

    # -- verdicts -> alerts ----------------------------------------------------------------------

    def _track(
        self, conn: Connection, verdicts: dict[str, Verdict], evaluated: set[str], now: int
    ) -> tuple[list[Tracked], list[Tracked]]:
        step = track(self.alerts, verdicts, evaluated, {r.name: r for r in self.rules}, now)
        for t in step.fired:
            self.fires.setdefault(t.key, deque(maxlen=1000)).append(now)
            log.info("event=alert_firing alert=%s", t.key)
        for t in step.resolved:
            log.info("event=alert_resolved alert=%s", t.key)
        persist_in(conn, self.alerts, step.changed, now)
        return step.fired, step.resolved

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
        again = reopen_recovering_in(conn, t.key, now)
        if again is not None:
            self._set_incident(conn, t, again, now)
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
            set_ready_in(conn, iid, False)
        log.info("event=incident_opened id=%d kind=%s entity=%s", iid, t.rule, t.labels.get("entity", "-"))
        self._set_incident(conn, t, iid, now)

    def _root_incident(self, conn: Connection, root: tuple[str, str]) -> int | None:
        # Only a state rule's incident (down, offline) on the ancestor is an outage to join.
        return root_incident_in(conn, *root, sorted(self._state_rule_names()))

    def _set_incident(self, conn: Connection, t: Tracked, iid: int, now: int) -> None:
        t.incident_id, t.held_since_ms = iid, None
        persist_in(conn, self.alerts, {t.key}, now)

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
        root_recovered_in(conn, inc.id, end, flapping)
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
        for inc in unresolved_in(conn):
            iid, entity, recovered = inc.id, inc.entity, inc.root_recovered_ms
            if not inc.ready:
                node = topo.node(inc.entity_kind, entity) if entity else None
                if (
                    node is None
                    or now - inc.opened_ms >= settle_ms
                    or not topo.unconfirmed_descendants(node, inc.opened_ms)
                ):
                    set_ready_in(conn, iid, True)
            if recovered is None:
                continue
            if inc.flapping:
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
        notify_done_in(conn, done)
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
