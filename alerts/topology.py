"""Who depends on whom: devices have parents (BTS -> aggregation router -> core), interfaces
belong to their device, probes hang off the site (device) that serves them.

A snapshot is read from the store's device and probe tables each evaluation. The verdict
for an entity that went down answers the one question root-cause analysis needs:

* an ancestor is down -> the entity is a *symptom* of the top-most down ancestor;
* an ancestor has not answered a poll since the entity failed -> *wait*: its verdict is
  coming (polls run on independent schedules, so a child is often seen down before its
  parent; deciding now is the race LibreNMS's dependency suppression loses);
* otherwise the entity is its *own* root cause.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from collector.store.devices import DOWN_STATES
from collector.store.store import Store

NodeKey = tuple[str, str]  # (entity_kind, entity)
MAX_DEPTH = 32  # a deeper chain is a loop in the inventory
# Which device serves a probe's site when several share it: the access device first.
_SITE_PREFERENCE = {"bts": 0, "olt": 1, "switch": 2, "router": 3}


@dataclass(slots=True)
class Node:
    kind: str  # device / probe / interface
    entity: str
    parent: NodeKey | None
    labels: dict[str, str]
    status: str = "unknown"
    status_since_ms: int | None = None
    last_success_ms: int | None = None
    detect_ms: int = 0  # how long it takes to declare this entity down
    children: list[NodeKey] = field(default_factory=list)

    @property
    def down(self) -> bool:
        return self.status in DOWN_STATES


Verdict = tuple[Literal["own", "symptom", "wait"], NodeKey | None]


class Topology:
    """A snapshot of the dependency tree."""

    def __init__(self, nodes: dict[NodeKey, Node]) -> None:
        self.nodes = nodes
        for key, n in nodes.items():
            if n.parent is not None and n.parent in nodes:
                nodes[n.parent].children.append(key)

    @staticmethod
    def load(store: Store, down_after_misses: int = 3) -> Topology:
        conn = store.reader()
        nodes: dict[NodeKey, Node] = {}
        site_device: dict[str, tuple[int, str]] = {}
        for row in conn.execute(
            "SELECT device_id, parent_id, kind, operator, technology, site, commune, village, status,"
            " status_since_ms, last_success_ms, poll_interval_s FROM devices WHERE in_inventory = 1"
        ):
            dev, parent, kind, operator, tech, site, commune, village, status, since, ok_ms, interval = row
            labels = {
                "kind": kind,
                "operator": operator,
                "technology": tech,
                "site": site,
                "commune": commune,
                "village": village,
            }
            nodes[("device", dev)] = Node(
                "device",
                dev,
                ("device", parent) if parent else None,
                labels,
                status,
                since,
                ok_ms,
                int(interval * 1000 * down_after_misses),
            )
            if site:
                rank = (_SITE_PREFERENCE.get(kind, 9), dev)
                if site not in site_device or rank < (site_device[site][0], site_device[site][1]):
                    site_device[site] = rank
        for row in conn.execute(
            "SELECT probe_id, site, operator, technology, commune, village, status, status_since_ms,"
            " last_seen_ms, expected_interval_s FROM probes"
        ):
            pid, site, operator, tech, commune, village, status, since, seen, interval = row
            served_by = site_device.get(site)
            labels = {
                "kind": "probe",
                "operator": operator,
                "technology": tech,
                "site": site,
                "commune": commune,
                "village": village,
            }
            nodes[("probe", pid)] = Node(
                "probe",
                pid,
                ("device", served_by[1]) if served_by else None,
                labels,
                status,
                since,
                seen,
                int(interval * 1000 * 3),
            )
        return Topology(nodes)

    def node(self, kind: str, entity: str, device_id: str = "") -> Node | None:
        """The node of an entity; interfaces (not in the tables) hang off their device."""
        found = self.nodes.get((kind, entity))
        if found is not None or kind != "interface":
            return found
        dev_key = ("device", device_id or entity.split("/", 1)[0])
        dev = self.nodes.get(dev_key)
        if dev is None:
            return None
        labels = {**dev.labels, "device": dev.entity, "interface": entity.split("/", 1)[-1]}
        return Node("interface", entity, dev_key, labels, detect_ms=dev.detect_ms)

    def ancestors(self, node: Node) -> Iterator[Node]:
        """Parent, grandparent, ... (stops at a loop or MAX_DEPTH)."""
        seen = {(node.kind, node.entity)}
        key = node.parent
        for _ in range(MAX_DEPTH):
            if key is None or key in seen or key not in self.nodes:
                return
            seen.add(key)
            parent = self.nodes[key]
            yield parent
            key = parent.parent

    def verdict(self, node: Node, since_ms: int, now_ms: int, settle_max_ms: int) -> Verdict:
        """Own root cause, symptom of the top-most down ancestor, or wait for an ancestor's verdict."""
        chain = list(self.ancestors(node))
        down = [a for a in chain if a.down]
        if down:
            top = down[-1]
            return "symptom", (top.kind, top.entity)
        if now_ms - since_ms < settle_max_ms:
            for a in chain:
                if a.kind == "device" and (a.last_success_ms is None or a.last_success_ms < since_ms):
                    return "wait", (a.kind, a.entity)
        return "own", None

    def unconfirmed_descendants(self, node: Node, since_ms: int) -> list[Node]:
        """Descendant devices neither down nor heard from since `since_ms`: verdicts still to come."""
        out: list[Node] = []
        stack = list(node.children)
        seen: set[NodeKey] = set()
        while stack and len(seen) < 1_000_000:
            key = stack.pop()
            if key in seen:
                continue
            seen.add(key)
            child = self.nodes[key]
            if child.kind != "device":
                continue
            if not child.down and (child.last_success_ms is None or child.last_success_ms < since_ms):
                out.append(child)
            stack.extend(child.children)
        return out
