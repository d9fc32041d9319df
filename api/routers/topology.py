"""Topology: the inventory's configured `parent:` of each device beside the LLDP neighbours its
poller saw (the `lldp_neighbours` table of the `lldp` profile), and where the two disagree."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.auth import CurrentPrincipal
from api.deps import StoreDep
from api.errors import AUTH_ERRORS
from collector.store.devices import DeviceRepo

router = APIRouter(prefix="/api/v1", tags=["devices"], responses=AUTH_ERRORS)

NEIGHBOURS = "lldp_neighbours"
PORTS = "lldp_ports"


class Neighbour(BaseModel):
    device: str | None = Field(description="the inventory device it was matched to; null: none or ambiguous")
    matched_by: str | None = Field(
        description="the inventory field that matched: `id`, `sys_name` (polled sysName) or `host`"
        " (management address); `ambiguous` when it matched several devices; `reported` when the"
        " link is known from the other device's table only; null: no match"
    )
    reported_by: str = Field(description="the device whose LLDP table holds the link (this one or the other)")
    local_port: str | None = Field(description="this device's port (its lldpLocPortTable name) where known")
    sys_name: str | None = Field(description="lldpRemSysName as the neighbour announces it")
    chassis_id: str | None = Field(description="lldpRemChassisId")
    port_id: str | None = Field(description="the neighbour's port: lldpRemPortId")
    port_desc: str | None = Field(description="lldpRemPortDesc")


class TopologyDevice(BaseModel):
    id: str
    operator: str
    kind: str
    sys_name: str | None
    configured_parent: str | None = Field(description="`parent:` in the inventory")
    lldp: bool = Field(description="the device's own LLDP table was polled with at least one neighbour")
    neighbours: list[Neighbour]
    discovered_parent: str | None = Field(
        description="the configured parent where it is a neighbour; else the only neighbour that is"
        " neither a configured child of this device nor unmatched; else null"
    )
    candidates: list[str] = Field(description="matched neighbours that are not configured children")


class Conflict(BaseModel):
    device: str
    kind: str = Field(
        description="`parent_differs`: the configured parent is not a neighbour and exactly one other"
        " device is; `parent_not_seen`: the configured parent is not a neighbour"
    )
    configured_parent: str
    discovered_parent: str | None
    detail: str


class Topology(BaseModel):
    devices: list[TopologyDevice]
    conflicts: list[Conflict]
    total: int


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) and v != "" else None


@router.get(
    "/topology", response_model=Topology, summary="configured parents beside LLDP neighbours, conflicts"
)
def topology(
    principal: CurrentPrincipal,
    store: StoreDep,
    operator: Annotated[str | None, Query(description="only this operator's devices")] = None,
) -> Topology:
    repo = DeviceRepo(store)
    devices = repo.devices(operator=principal.operator_scope(operator))
    visible = {d["device_id"]: d for d in devices}
    # Inventory field values (case-insensitive) -> device ids: a neighbour is matched to a
    # device only among the caller's visible devices, so no other operator's id leaks.
    keys: dict[str, dict[str, set[str]]] = {"id": {}, "sys_name": {}, "host": {}}
    for d in devices:
        for field, val in (("id", d["device_id"]), ("sys_name", d["sys_name"]), ("host", d["host"])):
            if _text(val):
                keys[field].setdefault(val.strip().lower(), set()).add(d["device_id"])

    def match(values: dict[str, Any], self_id: str) -> tuple[str | None, str | None]:
        for text in (_text(values.get("lldpRemSysName")), _text(values.get("lldpRemChassisId"))):
            if text is None:
                continue
            for field in ("id", "sys_name", "host"):
                found = keys[field].get(text.strip().lower(), set()) - {self_id}
                if len(found) == 1:
                    return next(iter(found)), field
                if len(found) > 1:
                    return None, "ambiguous"
        return None, None

    all_rows = repo.table_rows(NEIGHBOURS)
    port_names = {
        dev: {str(r["values"].get("lldpLocPortNum", r["index"])): r["name"] for r in rows}
        for dev, rows in repo.table_rows(PORTS).items()
    }
    neighbours: dict[str, list[Neighbour]] = {d: [] for d in visible}
    reverse: list[tuple[str, str, dict[str, Any], str | None]] = []
    for dev, rows in all_rows.items():
        if dev not in visible:
            continue
        for r in rows:
            v = r["values"]
            other, how = match(v, dev)
            port = port_names.get(dev, {}).get(str(v.get("lldpRemLocalPortNum")))
            neighbours[dev].append(
                Neighbour(
                    device=other,
                    matched_by=how,
                    reported_by=dev,
                    local_port=port,
                    sys_name=_text(v.get("lldpRemSysName")),
                    chassis_id=_text(v.get("lldpRemChassisId")),
                    port_id=_text(v.get("lldpRemPortId")),
                    port_desc=_text(v.get("lldpRemPortDesc")),
                )
            )
            if other is not None:
                reverse.append((other, dev, v, port))
    # The link seen from the other end too, where that end's own table does not hold it: it
    # may run no LLDP agent (or not be polled for it), and the link is as real from there.
    for other, dev, v, port in reverse:
        if any(n.device == dev for n in neighbours[other] if n.reported_by == other):
            continue
        neighbours[other].append(
            Neighbour(
                device=dev,
                matched_by="reported",
                reported_by=dev,
                local_port=_text(v.get("lldpRemPortDesc")) or _text(v.get("lldpRemPortId")),
                sys_name=_text(visible[dev]["sys_name"]),
                chassis_id=None,
                port_id=port,
                port_desc=None,
            )
        )
    children: dict[str, set[str]] = {}
    for d in devices:
        if d["parent_id"]:
            children.setdefault(d["parent_id"], set()).add(d["device_id"])
    out: list[TopologyDevice] = []
    conflicts: list[Conflict] = []
    for d in devices:
        did, parent = d["device_id"], d["parent_id"] or None
        seen = [n.device for n in neighbours[did] if n.device is not None]
        candidates = sorted({x for x in seen if x not in children.get(did, set())})
        has_lldp = bool(all_rows.get(did))
        discovered = parent if parent in seen else (candidates[0] if len(candidates) == 1 else None)
        out.append(
            TopologyDevice(
                id=did,
                operator=d["operator"],
                kind=d["kind"],
                sys_name=d["sys_name"],
                configured_parent=parent,
                lldp=has_lldp,
                neighbours=neighbours[did],
                discovered_parent=discovered,
                candidates=candidates,
            )
        )
        # A verdict needs LLDP data about the link: this device's own table, or its parent's.
        if parent is None or parent in seen or not (has_lldp or all_rows.get(parent)):
            continue
        if discovered is not None:
            conflicts.append(
                Conflict(
                    device=did,
                    kind="parent_differs",
                    configured_parent=parent,
                    discovered_parent=discovered,
                    detail=f"configured parent {parent!r} is not an LLDP neighbour; {discovered!r} is",
                )
            )
        else:
            conflicts.append(
                Conflict(
                    device=did,
                    kind="parent_not_seen",
                    configured_parent=parent,
                    discovered_parent=None,
                    detail=f"configured parent {parent!r} is not an LLDP neighbour"
                    + (f"; candidates: {', '.join(candidates)}" if candidates else ""),
                )
            )
    return Topology(devices=out, conflicts=conflicts, total=len(out))
