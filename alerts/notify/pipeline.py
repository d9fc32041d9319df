"""From incidents to outbox rows, in small stages (after Alertmanager's notify.go).

    incidents --route--> groups --(group_wait / group_interval / repeat_interval)--> flush
    flush, per receiver:  mute (silences, maintenance, inhibit rules) -> dedup (notification log)
                          -> outbox (durable; delivered by alerts.notify.outbox.Dispatcher)
                             and record (notification log)

Every stage is a small class with one `exec` method; `build_pipeline` composes them and
reads like the diagram. A stage gets the alerts of one group and returns those that go on.
The dedup and outbox stages share one `NotificationLog` (given to both when they are built):
each reads what it needs from it, in the flush's transaction; nothing else passes between
stages but the alerts.

Two rules differ from Alertmanager on purpose:
* a resolved notice follows *every* incident a receiver was told about, silenced since or
  not (the notification log keeps every incident notified firing until its resolution
  was sent);
* a group waits for its incidents to be *ready* (their topology verdict known) before its
  first notification, so an outage is announced once, with its symptoms.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from alerts.incidents import Incident, timeline_in
from alerts.notify import metrics as m
from alerts.settings import AlertSettings, InhibitRuleSettings, RouteSettings
from alerts.silences import Silence
from collector.store.db import Connection
from ground.matchers import Matcher, all_match, parse_matchers

log = logging.getLogger(__name__)

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of a firing alert


def iso(ms: int | None) -> str:
    if ms is None:
        return ZERO_TIME
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(slots=True)
class NotifyAlert:
    """An incident as the notification path sees it (one alert of Alertmanager's payload)."""

    incident_id: int
    labels: dict[str, str]
    annotations: dict[str, str]
    firing: bool
    starts_ms: int
    ends_ms: int | None
    ready: bool
    symptoms: list[dict[str, Any]]

    @staticmethod
    def of(inc: Incident) -> NotifyAlert:
        labels = {**inc.labels, "incident": str(inc.id)}
        symptoms = [
            {"entity": s.entity, "entity_kind": s.entity_kind, "kind": s.kind, "since": iso(s.start_ms)}
            for s in inc.symptoms
        ]
        annotations = {
            **inc.annotations,
            "root_cause": inc.entity or inc.kind,
            "symptom_count": str(len(symptoms)),
        }
        if symptoms:
            shown = ", ".join(s["entity"] for s in symptoms[:50])
            annotations["symptoms"] = shown + (f" (+{len(symptoms) - 50} more)" if len(symptoms) > 50 else "")
        ends = None if inc.active else (inc.root_recovered_ms or inc.resolved_ms)
        return NotifyAlert(inc.id, labels, annotations, inc.active, inc.opened_ms, ends, inc.ready, symptoms)

    def fingerprint(self) -> str:
        return hashlib.sha256(orjson.dumps(self.labels, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


# -- routing and grouping ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    index: int
    matchers: tuple[Matcher, ...]
    receivers: tuple[str, ...]
    group_by: tuple[str, ...]
    group_wait_ms: int
    group_interval_ms: int
    repeat_ms: int
    continue_matching: bool

    @staticmethod
    def of(index: int, r: RouteSettings) -> Route:
        return Route(
            index,
            parse_matchers(r.matchers),
            tuple(r.receivers),
            tuple(r.group_by),
            int(r.group_wait_s * 1000),
            int(r.group_interval_s * 1000),
            int(r.repeat_interval_s * 1000),
            r.continue_matching,
        )


class Router:
    """The routes tried in order; the default route catches what none matched."""

    def __init__(self, settings: AlertSettings) -> None:
        self.routes = [Route.of(i, r) for i, r in enumerate(settings.routes)]
        self.default = Route.of(len(self.routes), settings.route)

    def routes_for(self, labels: Mapping[str, str]) -> list[Route]:
        out = []
        for r in self.routes:
            if all_match(r.matchers, labels):
                out.append(r)
                if not r.continue_matching:
                    return out
        return out or [self.default]


@dataclass(slots=True)
class Group:
    key: str
    route: Route
    labels: dict[str, str]
    next_flush_ms: int
    alerts: dict[int, NotifyAlert] = field(default_factory=dict)


class Grouper:
    """Aggregation groups in memory; what was sent is in the notification log (durable)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.groups: dict[str, Group] = {}

    def update(self, alerts: Iterable[NotifyAlert], now_ms: int) -> None:
        """Put the working set's alerts into their groups (replacing older snapshots)."""
        present: set[tuple[str, int]] = set()
        for a in alerts:
            for route in self.router.routes_for(a.labels):
                glabels = {g: a.labels.get(g, "") for g in route.group_by}
                key = f"{route.index}:" + orjson.dumps(glabels, option=orjson.OPT_SORT_KEYS).decode()
                g = self.groups.get(key)
                if g is None:
                    g = self.groups[key] = Group(key, route, glabels, now_ms + route.group_wait_ms)
                g.alerts[a.incident_id] = a
                present.add((key, a.incident_id))
        for key, g in list(self.groups.items()):
            for iid in [i for i in g.alerts if (key, i) not in present]:
                del g.alerts[iid]  # left the working set (done) or routes elsewhere now
            if not g.alerts:
                del self.groups[key]

    def due(self, now_ms: int) -> list[Group]:
        """Groups whose wait is over and whose firing incidents all have their verdict."""
        out = []
        for g in self.groups.values():
            if now_ms < g.next_flush_ms:
                continue
            if any(a.firing and not a.ready for a in g.alerts.values()):
                continue  # the topology verdict is coming: announce the outage once, complete
            out.append(g)
        return out

    def flushed(self, g: Group, now_ms: int) -> None:
        g.next_flush_ms = now_ms + g.route.group_interval_ms

    def holds(self, incident_id: int) -> bool:
        return any(incident_id in g.alerts for g in self.groups.values())


# -- the stages ------------------------------------------------------------------------------


@dataclass(slots=True)
class FlushContext:
    conn: Connection
    now_ms: int
    group: Group
    receiver: str = ""
    receiver_type: str = ""
    send_resolved: bool = True
    repeat_ms: int = 0
    external_url: str = ""
    enqueued: int = 0


class Stage(Protocol):
    def exec(self, ctx: FlushContext, alerts: list[NotifyAlert]) -> list[NotifyAlert]: ...


class Muter:
    """Silences and maintenance windows in force, and inhibit rules over the firing incidents."""

    def __init__(self, inhibit: Sequence[InhibitRuleSettings]) -> None:
        self.inhibit = [
            (parse_matchers(r.source_matchers), parse_matchers(r.target_matchers), tuple(r.equal))
            for r in inhibit
        ]
        self.silences: list[Silence] = []
        self.firing: list[dict[str, str]] = []
        self._noted: set[tuple[int, str]] = set()

    def refresh(self, silences: list[Silence], firing: list[dict[str, str]]) -> None:
        self.silences = silences
        self.firing = firing

    def muted_by(self, labels: Mapping[str, str]) -> str | None:
        for s in self.silences:
            if s.matches(labels):
                return f"{s.kind} #{s.id}"
        for src, tgt, equal in self.inhibit:
            if not all_match(tgt, labels):
                continue
            for other in self.firing:
                if (
                    other.get("incident") != labels.get("incident")
                    and all_match(src, other)
                    and all(other.get(e, "") == labels.get(e, "") for e in equal)
                ):
                    return f"inhibited by incident {other.get('incident', '?')}"
        return None

    def note(self, conn: Connection, incident_id: int, why: str, now_ms: int) -> None:
        if (incident_id, why) not in self._noted:
            self._noted.add((incident_id, why))
            timeline_in(conn, incident_id, now_ms, "muted", "engine", why)
            m.MUTED.labels(by=why.split(" ")[0]).inc()


class MuteStage:
    """Drops firing incidents that a silence, a maintenance window or an inhibit rule covers.
    Resolved ones pass: whether they are told is the dedup stage's decision."""

    def __init__(self, muter: Muter) -> None:
        self.muter = muter

    def exec(self, ctx: FlushContext, alerts: list[NotifyAlert]) -> list[NotifyAlert]:
        out = []
        for a in alerts:
            why = self.muter.muted_by(a.labels) if a.firing else None
            if why is None:
                out.append(a)
            else:
                self.muter.note(ctx.conn, a.incident_id, why, ctx.now_ms)
        return out


@dataclass(frozen=True, slots=True)
class LogEntry:
    """What a receiver was last told about a group: the incidents it was notified firing about
    (and not told resolved since), and when it was told (0: never)."""

    told: frozenset[int]
    sent_ms: int


class NotificationLog:
    """The notification log (Alertmanager's nflog), one row per receiver and group, in the store:
    read by the dedup stage to decide, written by the outbox stage with the notification it
    queues (one transaction: both or neither)."""

    def entry(self, conn: Connection, receiver: str, group_key: str) -> LogEntry:
        row = conn.execute(
            "SELECT firing, sent_ms FROM notification_log WHERE receiver=? AND group_key=?",
            (receiver, group_key),
        ).fetchone()
        if row is None:
            return LogEntry(frozenset(), 0)
        return LogEntry(frozenset(orjson.loads(row[0])), int(row[1]))

    def record(self, conn: Connection, receiver: str, group_key: str, told: set[int], sent_ms: int) -> None:
        conn.execute(
            "INSERT INTO notification_log (receiver, group_key, firing, resolved, sent_ms)"
            " VALUES (?, ?, ?, '[]', ?) ON CONFLICT (receiver, group_key)"
            " DO UPDATE SET firing=excluded.firing, sent_ms=excluded.sent_ms",
            (receiver, group_key, orjson.dumps(sorted(told)).decode(), sent_ms),
        )


class DedupStage:
    """Lets a group through only when the receiver has news: an incident it was not told
    about, a resolution of one it was told about, or the repeat interval is up."""

    def __init__(self, nflog: NotificationLog) -> None:
        self.nflog = nflog

    def exec(self, ctx: FlushContext, alerts: list[NotifyAlert]) -> list[NotifyAlert]:
        entry = self.nflog.entry(ctx.conn, ctx.receiver, ctx.group.key)
        told, sent_ms = set(entry.told), entry.sent_ms
        firing = [a for a in alerts if a.firing and a.ready]
        resolved = [a for a in alerts if not a.firing and a.incident_id in told]
        news = {a.incident_id for a in firing} - told
        repeat = bool(firing) and ctx.now_ms - sent_ms >= ctx.repeat_ms
        if not news and not resolved and not repeat:
            return []
        if not ctx.send_resolved and not news and not repeat:
            # Nothing to say but resolutions the receiver does not want: just forget them.
            self.nflog.record(
                ctx.conn, ctx.receiver, ctx.group.key, told - {a.incident_id for a in resolved}, sent_ms
            )
            return []
        return firing + (resolved if ctx.send_resolved else [])


class OutboxStage:
    """Writes the notification to the outbox and the notification log, in the tick's transaction:
    either both or neither, so a crash never loses nor repeats one."""

    def __init__(self, nflog: NotificationLog) -> None:
        self.nflog = nflog

    def exec(self, ctx: FlushContext, alerts: list[NotifyAlert]) -> list[NotifyAlert]:
        if not alerts:
            return alerts
        # The log as the dedup stage read it: nothing has written it since, in this transaction.
        previous = self.nflog.entry(ctx.conn, ctx.receiver, ctx.group.key)
        firing = sorted(a.incident_id for a in alerts if a.firing)
        resolved = sorted(a.incident_id for a in alerts if not a.firing)
        digest = hashlib.sha256(orjson.dumps([firing, resolved, previous.sent_ms])).hexdigest()[:24]
        dedup_key = f"{ctx.receiver}|{ctx.group.key}|{digest}"
        payload = build_payload(ctx, alerts, dedup_key)
        cur = ctx.conn.execute(
            "INSERT INTO outbox (dedup_key, receiver, group_key, status, payload, created_ms,"
            " next_attempt_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedup_key) DO NOTHING",
            (
                dedup_key,
                ctx.receiver,
                ctx.group.key,
                payload["status"],
                orjson.dumps(payload).decode(),
                ctx.now_ms,
                ctx.now_ms,
            ),
        )
        # Resolved incidents of the group leave the log whether or not their notice was wanted.
        gone = {i for i, a in ctx.group.alerts.items() if not a.firing}
        now_told = (set(previous.told) | set(firing)) - set(resolved) - gone
        self.nflog.record(ctx.conn, ctx.receiver, ctx.group.key, now_told, ctx.now_ms)
        if cur.rowcount:
            ctx.enqueued += 1
            m.ENQUEUED.labels(receiver=ctx.receiver).inc()
            log.info(
                "event=notification_queued receiver=%s status=%s firing=%d resolved=%d",
                ctx.receiver,
                payload["status"],
                len(firing),
                len(resolved),
            )
        return alerts


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dicts[0]
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def build_payload(ctx: FlushContext, alerts: list[NotifyAlert], dedup_key: str) -> dict[str, Any]:
    """The Alertmanager webhook body (version 4), plus each alert's incident and symptoms."""
    base = ctx.external_url.rstrip("/")
    items = []
    for a in sorted(alerts, key=lambda x: (not x.firing, x.incident_id)):
        items.append(
            {
                "status": "firing" if a.firing else "resolved",
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": iso(a.starts_ms),
                "endsAt": iso(a.ends_ms) if not a.firing else ZERO_TIME,
                "generatorURL": f"{base}/api/v1/incidents/{a.incident_id}" if base else "",
                "fingerprint": a.fingerprint(),
                "incident": {
                    "id": a.incident_id,
                    "root_cause": a.annotations.get("root_cause", ""),
                    "symptoms": a.symptoms,
                },
            }
        )
    return {
        "version": "4",
        "groupKey": ctx.group.key,
        "truncatedAlerts": 0,
        "status": "firing" if any(a.firing for a in alerts) else "resolved",
        "receiver": ctx.receiver,
        "groupLabels": ctx.group.labels,
        "commonLabels": _common([a.labels for a in alerts]),
        "commonAnnotations": _common([a.annotations for a in alerts]),
        "externalURL": base,
        "dedupKey": dedup_key,
        "alerts": items,
    }


@dataclass(frozen=True, slots=True)
class ReceiverPlan:
    name: str
    type: str
    send_resolved: bool
    resend_ms: int | None  # Alertmanager forgets alerts not re-posted: a shorter repeat
    stages: tuple[Stage, ...]


def build_pipeline(settings: AlertSettings, muter: Muter) -> dict[str, ReceiverPlan]:
    """receiver -> mute -> dedup -> outbox: the same stages for every receiver, the dedup and
    outbox stages over one notification log."""
    plans = {}
    nflog = NotificationLog()
    for r in settings.receivers:
        resend = getattr(r, "resend_interval_s", None)
        plans[r.name] = ReceiverPlan(
            r.name,
            r.type,
            r.send_resolved,
            int(resend * 1000) if resend else None,
            (MuteStage(muter), DedupStage(nflog), OutboxStage(nflog)),
        )
    return plans


def flush_group(
    conn: Connection, g: Group, plans: Mapping[str, ReceiverPlan], now_ms: int, external_url: str
) -> int:
    """Run one due group through every receiver of its route; returns notifications queued."""
    queued = 0
    for name in g.route.receivers:
        plan = plans[name]
        repeat = min(g.route.repeat_ms, plan.resend_ms) if plan.resend_ms else g.route.repeat_ms
        ctx = FlushContext(
            conn,
            now_ms,
            g,
            name,
            plan.type,
            plan.send_resolved,
            repeat,
            external_url=external_url,
        )
        alerts = list(g.alerts.values())
        for stage in plan.stages:
            alerts = stage.exec(ctx, alerts)
            if not alerts:
                break
        queued += ctx.enqueued
    # Resolved incidents have been through every receiver of this group: they leave it.
    for iid in [i for i, a in g.alerts.items() if not a.firing]:
        del g.alerts[iid]
    return queued
