"""Availability and outage minutes of many devices, interfaces or probes over any period.

Computed by the core's availability kernel from the stored state changes; maintenance
windows (``netqos maintenance add`` or ``POST /api/v1/maintenance``: one table, shared with
alerting) are excluded: planned work is neither up nor down.

An operator key gets its own operator's entities only (asking for another's: 403), and of the
maintenance windows only those that apply to one of them.

A heavy query: run in a worker thread (a plain `def` endpoint), under the query gate
(api.max_queries, api.max_queries_per_key: one more is answered 429).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from api.auth import CurrentPrincipal, Principal, require_token
from api.deps import QueryGateDep, StoreDep
from api.errors import AUTH_ERRORS, TOO_MANY
from api.schemas import AvailabilityList, AvailabilityOut, ErrorOut, MaintenanceOut
from collector.store.availability import AvailabilityRepo, MaintenanceWindow
from collector.store.store import Store

router = APIRouter(
    prefix="/api/v1", tags=["availability"], dependencies=[Depends(require_token)], responses=AUTH_ERRORS
)


_PLACEMENT = ("operator", "technology", "site", "commune", "village")


def _entities(
    store: Store, kind: str, commune: str | None, operator: str | None
) -> dict[str, dict[str, str]]:
    """Entity -> its placement labels (for maintenance windows selecting by them), sorted."""
    conn = store.reader()
    where, args = [], []
    for col, val in (("commune", commune), ("operator", operator)):
        if val is not None:
            where.append(f"{col} = ?")
            args.append(val)
    cols = ", ".join(_PLACEMENT)
    if kind == "probe":
        sql = f"SELECT probe_id, {cols} FROM probes"
    elif kind == "device":
        sql = f"SELECT device_id, kind AS device_kind, {cols} FROM devices"
        where.append("in_inventory = 1")
    else:  # interfaces exist through their state changes only
        dcols = ", ".join(f"d.{c}" for c in _PLACEMENT)
        sql = (
            f"SELECT DISTINCT c.entity, c.device_id AS device, {dcols}"
            " FROM state_changes c JOIN devices d ON d.device_id = c.device_id"
        )
        where = [f"d.{w}" for w in where]
        where.append("c.entity_kind = 'interface'")
    if where:
        sql += " WHERE " + " AND ".join(where)
    cur = conn.execute(sql, args)
    names = [d[0] for d in cur.description]
    out = {str(r[0]): {n: str(v) for n, v in zip(names[1:], r[1:], strict=True) if v} for r in cur}
    return dict(sorted(out.items()))


@router.get(
    "/availability",
    response_model=AvailabilityList,
    responses={422: {"model": ErrorOut}, **TOO_MANY},
    summary="availability, outages and outage minutes per entity, maintenance windows excluded",
)
def get_availability(
    principal: CurrentPrincipal,
    store: StoreDep,
    gate: QueryGateDep,
    kind: Annotated[Literal["device", "interface", "probe"], Query(description="which entities")] = "device",
    from_: Annotated[
        datetime | None, Query(alias="from", description="ISO 8601 or Unix seconds; default 30 days ago")
    ] = None,
    to: Annotated[datetime | None, Query(description="ISO 8601 or Unix seconds; default now")] = None,
    commune: str | None = None,
    operator: Annotated[str | None, Query(description="one operator's; an operator key: its own")] = None,
) -> AvailabilityList:
    operator = principal.operator_scope(operator)
    now_ms = int(time.time() * 1000)
    to_ms = int(to.timestamp() * 1000) if to else now_ms
    from_ms = int(from_.timestamp() * 1000) if from_ else to_ms - 30 * 86_400_000
    if from_ms >= to_ms:
        raise HTTPException(422, "'from' must be before 'to'")
    until = max(from_ms, min(to_ms, now_ms))
    with gate.hold(principal.name):
        return _availability(store, principal, kind, from_ms, to_ms, until, commune, operator)


def _availability(
    store: Store,
    principal: Principal,
    kind: str,
    from_ms: int,
    to_ms: int,
    until: int,
    commune: str | None,
    operator: str | None,
) -> AvailabilityList:
    repo = AvailabilityRepo(store)
    labelled = _entities(store, kind, commune, operator)
    names = list(labelled)
    av = repo.availability(kind, names, from_ms, until, labels=labelled)
    ratios = av.availability_ratio
    return AvailabilityList(
        entity_kind=kind,
        from_ms=from_ms,
        to_ms=to_ms,
        until_ms=until,
        entities=[
            AvailabilityOut(
                entity_kind=kind,
                entity=name,
                up_s=int(av.up_ms[i]) / 1000,
                down_s=int(av.down_ms[i]) / 1000,
                unknown_s=int(av.unknown_ms[i]) / 1000,
                maintenance_s=int(av.maintenance_ms[i]) / 1000,
                outages=int(av.outages[i]),
                outage_minutes=float(av.outage_minutes[i]),
                availability_ratio=None if ratios[i] != ratios[i] else float(ratios[i]),
            )
            for i, name in enumerate(names)
        ],
        maintenance=[
            MaintenanceOut(
                id=w.id,
                matchers=[str(m) for m in w.matchers],
                entity_kind=w.entity_kind,
                entity=w.entity,
                start_ms=w.start_ms,
                end_ms=w.end_ms,
                reason=w.reason,
                creator=w.creator,
            )
            for w in repo.maintenance(from_ms, to_ms)
            if not principal.is_operator or _applies_to_any(w, kind, labelled)
        ],
    )


def _applies_to_any(w: MaintenanceWindow, kind: str, labelled: dict[str, dict[str, str]]) -> bool:
    """Whether `w` selects one of the entities (labelled as AvailabilityRepo.availability does):
    an operator key is shown the windows that excused its own time, not another's plans."""
    for e, labels in labelled.items():
        own = {**labels, "entity_kind": kind, "entity": e}
        if kind == "interface":
            own.setdefault("device", e.split("/", 1)[0])
        if w.applies(own):
            return True
    return False
