"""Network elements: status, last poll, interfaces with current rates, outages."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from api.auth import CurrentPrincipal, Principal
from api.deps import SettingsDep, StoreDep
from api.errors import AUTH_ERRORS, CSV_OR_JSON, NOT_FOUND
from api.export import Format, table_response
from api.limits import LIST_TOO_LONG, check_list_rows
from api.schemas import DeviceDetail, DeviceList, DeviceOut, OutageList, OutageOut, StateChangeOut
from collector.store.availability import AvailabilityRepo
from collector.store.devices import DeviceRepo

router = APIRouter(prefix="/api/v1", tags=["devices"], responses=AUTH_ERRORS)


def _visible(repo: DeviceRepo, principal: Principal, device_id: str) -> dict[str, Any]:
    row = repo.device(device_id)
    if row is None or not principal.may_see(row["operator"]):
        raise HTTPException(404, f"no device {device_id!r}" + (" of yours" if row else ""))
    return row


def _device_out(row: dict[str, Any]) -> DeviceOut:
    return DeviceOut(
        id=row["device_id"],
        host=row["host"],
        port=row["port"],
        operator=row["operator"],
        kind=row["kind"],
        technology=row["technology"],
        site=row["site"],
        commune=row["commune"],
        village=row["village"],
        parent=row["parent_id"],
        profile=row["profile"],
        poll_interval_s=row["poll_interval_s"],
        status=row["status"],
        status_since_ms=row["status_since_ms"],
        last_poll_ms=row["last_poll_ms"],
        last_success_ms=row["last_success_ms"],
        last_error=row["last_error"],
        last_poll_duration_s=row["last_duration_s"],
        last_varbinds=row["last_varbinds"],
        sys_name=row["sys_name"],
        polls_total=row["polls_total"],
        failures_total=row["failures_total"],
    )


@router.get(
    "/devices",
    response_model=DeviceList,
    responses={**CSV_OR_JSON, **LIST_TOO_LONG},
    summary="network elements and their status",
)
def list_devices(
    principal: CurrentPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    commune: Annotated[str | None, Query(description="only devices in this commune (code)")] = None,
    operator: Annotated[str | None, Query(description="only this operator's devices")] = None,
    status: Annotated[str | None, Query(description="up, down or unknown")] = None,
    format: Format = "json",
) -> DeviceList | Response:
    operator = principal.operator_scope(operator)
    rows = DeviceRepo(store).devices(commune=commune, operator=operator)
    out = [_device_out(r) for r in rows if status is None or r["status"] == status]
    check_list_rows(len(out), settings.api.max_list_rows, "devices")
    if format != "json":
        return table_response(format, (d.model_dump() for d in out), list(DeviceOut.model_fields), "devices")
    return DeviceList(devices=out, total=len(out))


@router.get(
    "/devices/{device_id}",
    response_model=DeviceDetail,
    responses=NOT_FOUND,
    summary="one device: status, last poll, current rows (interfaces with rates), gone rows,"
    " recent state changes",
)
def get_device(principal: CurrentPrincipal, store: StoreDep, device_id: str) -> DeviceDetail:
    repo = DeviceRepo(store)
    row = _visible(repo, principal, device_id)
    rows = repo.rows(device_id)
    gone = [r for r in rows if r["gone_ms"] is not None]
    rows = [r for r in rows if r["gone_ms"] is None]
    return DeviceDetail(
        **_device_out(row).model_dump(),
        interfaces=[r for r in rows if r["table"] == "interfaces"],
        tables={
            t: [r for r in rows if r["table"] == t]
            for t in sorted({r["table"] for r in rows})
            if t != "interfaces"
        },
        gone_rows=gone,
        state_changes=[StateChangeOut(**asdict(c)) for c in repo.state_changes(device_id, limit=50)],
    )


@router.get(
    "/devices/{device_id}/outages",
    response_model=OutageList,
    responses=NOT_FOUND,
    summary="outages of the device and its interfaces in a period, and the device's availability",
)
def device_outages(
    principal: CurrentPrincipal,
    store: StoreDep,
    device_id: str,
    from_: Annotated[
        datetime | None, Query(alias="from", description="ISO 8601 or Unix seconds; default 7 days ago")
    ] = None,
    to: Annotated[datetime | None, Query(description="ISO 8601 or Unix seconds; default now")] = None,
) -> OutageList:
    repo = DeviceRepo(store)
    _visible(repo, principal, device_id)
    now_ms = int(time.time() * 1000)
    to_ms = int(to.timestamp() * 1000) if to else now_ms
    from_ms = int(from_.timestamp() * 1000) if from_ else to_ms - 7 * 86_400_000
    if from_ms >= to_ms:
        raise HTTPException(422, "'from' must be before 'to'")
    outages = repo.outages(device_id, from_ms, to_ms)
    until = max(from_ms, min(to_ms, now_ms))  # the future is neither up nor down
    av = AvailabilityRepo(store).availability("device", [device_id], from_ms, until)
    ratio = float(av.availability_ratio[0])
    return OutageList(
        device_id=device_id,
        from_ms=from_ms,
        to_ms=to_ms,
        outages=[
            OutageOut(
                entity_kind=o.entity_kind,
                entity=o.entity,
                start_ms=o.start_ms,
                end_ms=o.end_ms,
                duration_s=((o.end_ms if o.end_ms is not None else now_ms) - o.start_ms) / 1000,
                cause=o.cause,
                end_reason=o.end_reason,
            )
            for o in outages
        ],
        down_s=int(av.down_ms[0]) / 1000,
        unknown_s=int(av.unknown_ms[0]) / 1000,
        maintenance_s=int(av.maintenance_ms[0]) / 1000,
        availability_ratio=None if ratio != ratio else ratio,  # NaN: no known state
    )
