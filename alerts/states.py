"""The alert state machine: a rule's verdict on one entity or label group, step by step.

    (no alert) --true--> pending --true for `for`--> firing --false for `keep_firing_for`--> resolved
                         pending --false--> (gone, nothing was said)

`verdicts_of` turns the rules' results (entity states for state rules, samples for
threshold and absence rules) into one verdict per alert key; `track` takes those verdicts and
moves every alert along. Both decide and touch no database, so they are tested with plain
values. `load_in` and `persist_in` keep
the alerts in the store's `alerts` table (inside the caller's transaction), so a restarted or
a standby engine takes over where the last one stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson

from alerts.rules import AbsenceRule, EntityKinds, Sample, StateRule, ThresholdRule
from alerts.topology import Topology
from collector.store.db import Connection

AnyRule = ThresholdRule | AbsenceRule | StateRule
# States that are no news: an entity in one of them makes no state-rule alert.
OK_STATES = frozenset({"up", "online", "unknown", "disabled"})


@dataclass(slots=True)
class EntityState:
    """An entity's latest state change (from the SNMP poller, traps or probe health)."""

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
    since_ms: int  # when it became true (or false); -1: at the evaluation (`now`)


def verdicts_of(
    rules: Iterable[AnyRule],
    evaluated: set[str],
    alerts: Mapping[str, Tracked],
    *,
    states: Mapping[tuple[str, str], EntityState],
    abnormal: set[tuple[str, str]],
    samples: Mapping[str, list[Sample]],
    kinds: EntityKinds,
    topo: Topology,
) -> dict[str, Verdict]:
    """One verdict per alert key of the rules in `evaluated`. A state rule judges every entity of
    its kinds that is `abnormal` (not in OK_STATES) or already has an alert of it; its labels are
    the entity's topology labels, the rule's, and alertname, severity, entity, entity_kind (and
    device for an interface or a profile table's row). A threshold or absence rule judges its
    `samples`, keyed by their labels."""
    out: dict[str, Verdict] = {}
    tracked_by_rule: dict[str, list[Tracked]] = {}
    for t in alerts.values():
        tracked_by_rule.setdefault(t.rule, []).append(t)
    for rule in rules:
        if rule.name not in evaluated:
            continue
        base = {"alertname": rule.name, "severity": rule.severity}
        if isinstance(rule, StateRule):
            match = kinds.get(rule.entity_kind, frozenset((rule.entity_kind,)))
            keys = {k for k in abnormal if k[0] in match}
            keys |= {
                (t.labels.get("entity_kind", ""), t.labels.get("entity", ""))
                for t in tracked_by_rule.get(rule.name, [])
            }
            for kind, entity in keys:
                st = states.get((kind, entity))
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
            for s in samples.get(rule.name, []):
                labels = {**s.labels, **rule.labels, **base}
                key = rule.name + "|" + orjson.dumps(s.labels, option=orjson.OPT_SORT_KEYS).decode()
                out[key] = Verdict(rule, labels, s.value, s.active, -1)
    return out


@dataclass(slots=True)
class Step:
    """What one `track` changed: alerts that fired, alerts that resolved (and left the
    tracked set), and the keys whose stored row must be written or deleted."""

    fired: list[Tracked] = field(default_factory=list)
    resolved: list[Tracked] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)


def track(
    alerts: dict[str, Tracked],
    verdicts: Mapping[str, Verdict],
    evaluated: set[str],
    rules: Mapping[str, AnyRule],
    now: int,
) -> Step:
    """Move every alert of `alerts` (updated in place) along with this evaluation's verdicts.

    `evaluated` names the rules evaluated in this step: an alert of an evaluated rule that got no
    verdict (no data, entity gone), or of a rule no longer in `rules`, is false now; an alert of
    a rule not evaluated this step keeps its state."""
    step = Step()
    fired, resolved, changed = step.fired, step.resolved, step.changed
    for key, v in verdicts.items():
        since = v.since_ms if v.since_ms >= 0 else now
        t = alerts.get(key)
        if t is None:
            if not v.active:
                continue
            t = alerts[key] = Tracked(key, v.rule.name, v.labels, "pending", since)
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
            del alerts[key]
            changed.add(key)
        else:
            if t.false_since_ms is None:
                t.false_since_ms = since
                changed.add(key)
            if now - t.false_since_ms >= v.rule.keep_firing_for_s * 1000:
                resolved.append(t)
                del alerts[key]
                changed.add(key)
    for key, t in list(alerts.items()):
        if key in verdicts:
            continue
        rule = rules.get(t.rule)
        if rule is not None and t.rule not in evaluated:
            continue
        if t.state == "pending":
            del alerts[key]
        else:
            if t.false_since_ms is None:
                t.false_since_ms = now
            keep = rule.keep_firing_for_s * 1000 if rule is not None else 0
            if now - t.false_since_ms < keep:
                changed.add(key)
                continue
            resolved.append(t)
            del alerts[key]
        changed.add(key)
    return step


# -- in the store (inside the caller's transaction) ----------------------------------------------


def load_in(conn: Connection) -> dict[str, Tracked]:
    """Every stored alert, by key."""
    out: dict[str, Tracked] = {}
    for row in conn.execute(
        "SELECT alert_key, rule, labels, state, active_since_ms, fired_ms, false_since_ms, value,"
        " incident_id FROM alerts"
    ):
        key, rule, labels, state, since, fired, false_since, value, iid = row
        out[key] = Tracked(key, rule, orjson.loads(labels), state, since, fired, false_since, value, iid)
    return out


def persist_in(conn: Connection, alerts: Mapping[str, Tracked], keys: set[str], now: int) -> None:
    """Write the rows of `keys` as `alerts` has them; a key no longer in `alerts` is deleted."""
    for key in keys:
        t = alerts.get(key)
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
