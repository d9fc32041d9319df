"""The demo's simulated network elements: who they are, how they connect, what goes wrong.

:func:`build_device_fleet` lays out, per commune of :func:`probes.simulate.fleet.load_communes`:

* one aggregation router per operator present (``rtr-<commune>-<op>``, kind ``router``);
  every operator is present except MobiFone in some mountain communes;
* ``n_per_commune`` BTS per operator (``bts-<commune>-<op>-<n>``, kind ``bts``, 4G or 5G by
  terrain), each the child of its operator's router;
* one OLT for VNPT and Viettel in each non-mountain commune (``olt-<commune>-<op>``, kind
  ``olt``, FTTH: 16 GPON ports + 4 uplinks), also a child of the router.

Sites follow the probe fleet's names (``VTL-BTS-14797-02``, ``VNP-OLT-16021-01``), so a
probe's site is a device here. Interfaces are realistic in count and speed, and the traffic
of a router's port to a child mirrors the child's uplink (the router's in is the child's
out). Everything is a function of the seed.

:func:`inventory_rows` writes the matching inventory rows (the keys of
:class:`collector.inventory.Device`); :class:`DemoScenario` scripts a few incidents with
the agents' fault controls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probes.simulate.fleet import OPERATORS, Commune, load_communes
from probes.simulate.snmp_agent import IFTYPE_GPON, AgentFleet, SimDevice, SimInterface

log = logging.getLogger("probes.simulate.devices")

_SITE_PREFIX: dict[str, str] = {"viettel": "VTL", "vnpt": "VNP", "mobifone": "MBF"}
# P(a BTS is 5G) by terrain, as in the probe fleet's technology mix.
_P_5G: dict[str, float] = {"urban": 0.5, "coastal": 0.25, "plain": 0.15, "mountain": 0.03}
# P(MobiFone has a router in a mountain commune); the other operators are everywhere.
_P_MOBIFONE_MOUNTAIN = 0.4
_VILLAGES: dict[str, int] = {"urban": 20, "coastal": 14, "plain": 12, "mountain": 10}
_OLT_OPERATORS = ("vnpt", "viettel")
_ROUTER_PORTS = (16, 24, 48)


@dataclass(frozen=True)
class SimDeviceSpec:
    """One simulated device: the inventory facts plus what its agent serves."""

    id: str
    kind: str  # bts / olt / router
    operator: str
    technology: str  # 4G / 5G for a BTS, FTTH for an OLT, "" for a router
    commune: str  # commune code
    terrain: str
    village: str
    site: str
    parent: str | None
    interfaces: tuple[SimInterface, ...]
    sys_name: str
    location: str
    seed: int
    uptime_s: float
    community: str = "public"
    poll_interval_s: float | None = None


def _uplink_util(rng: np.random.Generator, technology: str) -> float:
    # Daily-mean downlink utilisation of a BTS/OLT uplink.
    lo, hi = {"5G": (0.05, 0.2), "4G": (0.1, 0.3), "FTTH": (0.1, 0.3)}[technology]
    return float(rng.uniform(lo, hi))


def _bts(rng: np.random.Generator, c: Commune, op: str, n: int, router_id: str, seed: int) -> SimDeviceSpec:
    tech = "5G" if rng.random() < _P_5G[c.terrain] else "4G"
    n_if = int(rng.integers(4, 9))
    up_speed = 10_000 if tech == "5G" else 1_000
    up_util = _uplink_util(rng, tech)
    up_ratio = float(rng.uniform(0.15, 0.35))  # upload / download
    ifs = [
        SimInterface(
            "xe-0/0/0" if up_speed == 10_000 else "ge-0/0/0",
            up_speed,
            up_util,
            alias=f"uplink {router_id}",
            out_ratio=up_ratio,
        )
    ]
    # Fronthaul to the radio units: each carries a share of the cell traffic, mostly out.
    n_ru = n_if - 1
    for k in range(1, n_if):
        share = up_util * up_speed / n_ru / 1_000
        ifs.append(
            SimInterface(
                f"ge-0/0/{k}", 1_000, min(0.9, share * up_ratio), alias=f"ru-{k}", out_ratio=1 / up_ratio
            )
        )
    bid = f"bts-{c.code}-{op}-{n}"
    return SimDeviceSpec(
        id=bid,
        kind="bts",
        operator=op,
        technology=tech,
        commune=c.code,
        terrain=c.terrain,
        village=_village(rng, c),
        site=f"{_SITE_PREFIX[op]}-BTS-{c.code}-{n:02d}",
        parent=router_id,
        interfaces=tuple(ifs),
        sys_name=bid,
        location=f"{c.name}, Thanh Hóa",
        seed=seed,
        uptime_s=_uptime(rng, c),
    )


def _olt(rng: np.random.Generator, c: Commune, op: str, router_id: str, seed: int) -> SimDeviceSpec:
    ifs = [
        SimInterface(
            f"gpon-0/1/{k}",
            2_500,
            float(rng.uniform(0.05, 0.35)),
            alias=f"pon {c.code}-v{int(rng.integers(1, _VILLAGES[c.terrain] + 1)):02d}",
            if_type=IFTYPE_GPON,
            out_ratio=float(rng.uniform(0.3, 0.8)),  # from the subscribers: upload
        )
        for k in range(16)
    ]
    up_util = _uplink_util(rng, "FTTH")
    up_ratio = float(rng.uniform(0.3, 0.6))
    for k in range(4):
        spare = k >= 2  # two uplinks in a LAG, two spare and shut
        ifs.append(
            SimInterface(
                f"xe-0/0/{k}",
                10_000,
                0.0 if spare else up_util,
                alias="spare" if spare else f"uplink {router_id}",
                admin_up=not spare,
                out_ratio=up_ratio,
            )
        )
    oid_ = f"olt-{c.code}-{op}"
    return SimDeviceSpec(
        id=oid_,
        kind="olt",
        operator=op,
        technology="FTTH",
        commune=c.code,
        terrain=c.terrain,
        village=_village(rng, c),
        site=f"{_SITE_PREFIX[op]}-OLT-{c.code}-01",
        parent=router_id,
        interfaces=tuple(ifs),
        sys_name=oid_,
        location=f"{c.name}, Thanh Hóa",
        seed=seed,
        uptime_s=_uptime(rng, c),
    )


def _router(
    rng: np.random.Generator, c: Commune, op: str, children: list[SimDeviceSpec], seed: int
) -> SimDeviceSpec:
    rid = f"rtr-{c.code}-{op}"
    need = 4 + len(children)
    sizes = [p for p in _ROUTER_PORTS if p >= need] or [need]
    n_ports = sizes[int(rng.integers(len(sizes)))]
    down_total = 0.0  # Mbit/s towards the children (daily mean)
    up_total = 0.0
    child_ports: list[SimInterface] = []
    n_xe = n_ge = 0
    for ch in children:
        uplink = ch.interfaces[0] if ch.kind == "bts" else ch.interfaces[16]
        ratio = uplink.out_ratio or 0.5
        down = uplink.speed_mbps * uplink.utilisation * (2 if ch.kind == "olt" else 1)
        down_total += down
        up_total += down * ratio
        speed = uplink.speed_mbps
        if speed >= 10_000:
            name, n_xe = f"xe-0/1/{n_xe}", n_xe + 1
        else:
            name, n_ge = f"ge-0/1/{n_ge}", n_ge + 1
        child_ports.append(
            SimInterface(
                name,
                speed,
                min(0.9, uplink.utilisation * ratio),
                alias=ch.id,
                out_ratio=1 / ratio,
            )
        )
    ifs: list[SimInterface] = []
    for k in range(4):  # two active uplinks to the operator's core, two spare
        spare = k >= 2
        per_link = down_total / 2 / 10_000
        ifs.append(
            SimInterface(
                f"xe-0/0/{k}",
                10_000,
                0.0 if spare else min(0.9, per_link),
                alias="spare" if spare else f"core-thh-{op}-{k + 1}",
                admin_up=not spare,
                out_ratio=(up_total / down_total) if down_total else 0.5,
            )
        )
    ifs += child_ports
    n_cust = int(rng.integers(0, 3))  # a few enterprise leased lines
    for k in range(n_ports - len(ifs)):
        cust = k < n_cust
        ifs.append(
            SimInterface(
                f"ge-0/2/{k}",
                1_000,
                float(rng.uniform(0.05, 0.4)) if cust else 0.0,
                alias=f"cust-{c.code}-{k + 1:02d}" if cust else "",
                admin_up=cust,
            )
        )
    return SimDeviceSpec(
        id=rid,
        kind="router",
        operator=op,
        technology="",
        commune=c.code,
        terrain=c.terrain,
        village=_village(rng, c),
        site=f"{_SITE_PREFIX[op]}-AGG-{c.code}",
        parent=None,
        interfaces=tuple(ifs),
        sys_name=rid,
        location=f"{c.name}, Thanh Hóa",
        seed=seed,
        uptime_s=_uptime(rng, c),
    )


def _village(rng: np.random.Generator, c: Commune) -> str:
    return f"{c.code}-v{int(rng.integers(1, _VILLAGES[c.terrain] + 1)):02d}"


def _uptime(rng: np.random.Generator, c: Commune) -> float:
    # Power cuts in the mountains: shorter uptimes there.
    days = rng.uniform(0.5, 10) if c.terrain == "mountain" else rng.uniform(5, 120)
    return float(days * 86_400)


def build_device_fleet(
    n_per_commune: int = 3, seed: int = 0, communes: list[Commune] | None = None
) -> list[SimDeviceSpec]:
    """The demo's devices (see the module docstring); ``n_per_commune`` BTS per operator and
    commune. Routers come first in each commune, then their BTS and OLTs. Deterministic."""
    if not 0 <= n_per_commune <= 99:
        raise ValueError("n_per_commune must be in 0..99")
    communes = load_communes() if communes is None else communes
    rng = np.random.default_rng([seed & 0xFFFF_FFFF, 0xDE71CE])
    specs: list[SimDeviceSpec] = []
    for c in communes:
        for op in OPERATORS:
            if op == "mobifone" and c.terrain == "mountain" and rng.random() >= _P_MOBIFONE_MOUNTAIN:
                continue
            rid = f"rtr-{c.code}-{op}"
            children = [_bts(rng, c, op, n, rid, seed) for n in range(1, n_per_commune + 1)]
            if op in _OLT_OPERATORS and c.terrain != "mountain":
                children.append(_olt(rng, c, op, rid, seed))
            specs.append(_router(rng, c, op, children, seed))
            specs += children
    return specs


def inventory_rows(
    specs: Sequence[SimDeviceSpec], host: str, ports: Mapping[str, int], credentials_name: str
) -> list[dict[str, Any]]:
    """Inventory rows (the keys of collector.inventory.Device) for the specs that have a port
    in ``ports`` (device id -> UDP port of its agent), in spec order."""
    rows: list[dict[str, Any]] = []
    for s in specs:
        if s.id not in ports:
            continue
        rows.append(
            {
                "id": s.id,
                "host": host,
                "port": int(ports[s.id]),
                "credentials": credentials_name,
                "operator": s.operator,
                "kind": s.kind,
                "technology": s.technology,
                "site": s.site,
                "commune": s.commune,
                "village": s.village,
                "parent": s.parent,
                "poll_interval_s": s.poll_interval_s,
                "profile": None,
            }
        )
    return rows


def sim_devices(specs: Sequence[SimDeviceSpec], **overrides: Any) -> list[SimDevice]:
    """One :class:`SimDevice` per spec (keywords such as ``trap_target`` apply to all)."""
    return [SimDevice.from_spec(s, **overrides) for s in specs]


# ---------------------------------------------------------------------------------------------
# Scripted incidents


@dataclass(frozen=True)
class ScenarioEvent:
    at_s: float  # seconds since the scenario started
    device_id: str
    what: str  # outage_start / outage_end / unreachable / reachable / link_down / link_up / slow / ...


@dataclass
class DemoScenario:
    """A few incidents, on a fixed schedule (periods and offsets in seconds from start):

    * **outage**: a router in a mountain commune goes ``down`` for ``outage_duration_s`` every
      ``outage_period_s``; its children (BTS, OLT) go ``silent`` with it (unreachable behind it).
      When power returns the router reboots (restart(): sysUpTime and counters from 0, a
      coldStart trap) and the children answer again;
    * **flap**: a BTS's uplink (ifIndex 1) goes down for ``flap_down_s`` every
      ``flap_period_s`` (linkDown/linkUp traps when a trap target is set);
    * **slow**: a BTS in another commune answers after ``slow_delay_s`` for
      ``slow_duration_s`` every ``slow_period_s``.

    The devices are picked from ``specs`` (deterministically) unless given. ``run`` returns
    when ``stop`` is set or after ``max_duration_s``, and leaves every device it touched
    answering normally with its links up.
    """

    specs: Sequence[SimDeviceSpec]
    outage_period_s: float = 1200.0
    outage_duration_s: float = 180.0
    outage_offset_s: float = 120.0
    flap_period_s: float = 300.0
    flap_down_s: float = 20.0
    flap_offset_s: float = 60.0
    slow_period_s: float = 1800.0
    slow_duration_s: float = 120.0
    slow_offset_s: float = 600.0
    slow_delay_s: float = 2.5
    tick_s: float = 0.5
    max_duration_s: float = 30 * 86_400.0
    outage_router: str | None = None
    flap_device: str | None = None
    slow_device: str | None = None
    clock: Callable[[], float] = time.monotonic
    events: list[ScenarioEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("outage_period_s", "flap_period_s", "slow_period_s", "tick_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        by_id = {s.id: s for s in self.specs}
        children: dict[str, list[str]] = {}
        for s in self.specs:
            if s.parent is not None:
                children.setdefault(s.parent, []).append(s.id)
        if self.outage_router is None:
            self.outage_router = next(
                (
                    s.id
                    for s in self.specs
                    if s.kind == "router" and s.terrain == "mountain" and children.get(s.id)
                ),
                next((s.id for s in self.specs if s.kind == "router"), None),
            )
        self.outage_children = list(children.get(self.outage_router or "", []))
        behind = {self.outage_router, *self.outage_children}
        outage_commune = by_id[self.outage_router].commune if self.outage_router in by_id else None
        bts = [s for s in self.specs if s.kind == "bts" and s.id not in behind]
        if self.flap_device is None:
            self.flap_device = next((s.id for s in bts if s.commune != outage_commune), None)
        if self.slow_device is None:
            self.slow_device = next(
                (s.id for s in bts if s.id != self.flap_device and s.commune != outage_commune), None
            )

    def _record(self, t: float, device_id: str, what: str) -> None:
        self.events.append(ScenarioEvent(round(t, 3), device_id, what))
        log.info("event=sim_incident device=%s what=%s at_s=%.1f", device_id, what, t)

    @staticmethod
    def _active(t: float, offset: float, period: float, duration: float) -> bool:
        return t >= offset and (t - offset) % period < duration

    async def run(self, fleet: AgentFleet, stop: asyncio.Event) -> None:
        """Drive the incidents on ``fleet`` until ``stop`` is set (or ``max_duration_s``)."""
        dev = fleet.by_id
        router = dev[self.outage_router].device if self.outage_router in dev else None
        kids = [dev[c].device for c in self.outage_children if c in dev]
        flap = dev[self.flap_device].device if self.flap_device in dev else None
        slow = dev[self.slow_device].device if self.slow_device in dev else None
        out = flapped = slowed = False
        t0 = self.clock()
        max_ticks = int(self.max_duration_s / self.tick_s) + 1
        try:
            for _ in range(max_ticks):
                t = self.clock() - t0
                if router is not None:
                    want = self._active(t, self.outage_offset_s, self.outage_period_s, self.outage_duration_s)
                    if want != out:
                        out = want
                        if out:
                            router.set_mode("down")
                            self._record(t, router.device_id, "outage_start")
                            for k in kids:
                                k.set_mode("silent")
                                self._record(t, k.device_id, "unreachable")
                        else:
                            router.set_mode("normal")
                            router.restart()  # power is back: the router reboots
                            self._record(t, router.device_id, "outage_end")
                            for k in kids:
                                k.set_mode("normal")
                                self._record(t, k.device_id, "reachable")
                if flap is not None:
                    want = self._active(t, self.flap_offset_s, self.flap_period_s, self.flap_down_s)
                    if want != flapped:
                        flapped = want
                        flap.set_link(1, not flapped)
                        self._record(t, flap.device_id, "link_down" if flapped else "link_up")
                if slow is not None:
                    want = self._active(t, self.slow_offset_s, self.slow_period_s, self.slow_duration_s)
                    if want != slowed:
                        slowed = want
                        slow.set_mode("slow" if slowed else "normal", delay_s=self.slow_delay_s)
                        self._record(t, slow.device_id, "slow" if slowed else "normal")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.tick_s)
                if stop.is_set():
                    break
        finally:
            t = self.clock() - t0
            if router is not None and out:
                router.set_mode("normal")
                router.restart()
                self._record(t, router.device_id, "outage_end")
                for k in kids:
                    k.set_mode("normal")
            if flap is not None and flapped:
                flap.set_link(1, True)
                self._record(t, flap.device_id, "link_up")
            if slow is not None and slowed:
                slow.set_mode("normal")
                self._record(t, slow.device_id, "normal")
