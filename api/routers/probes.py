"""Registered field probes and their activity."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from api.auth import CurrentPrincipal
from api.deps import SettingsDep, StoreDep
from api.errors import AUTH_ERRORS, CSV_OR_JSON, NOT_FOUND
from api.export import Format, table_response
from api.limits import LIST_TOO_LONG, check_list_rows
from api.schemas import ProbeDetail, ProbeList, ProbeOut, ProbeWindow
from collector.model import ProbeInfo
from collector.probe_schedules import AgentReport, ProbeSchedule, ScheduleService
from collector.store.probes import ProbeRepo

router = APIRouter(prefix="/api/v1", tags=["probes"], responses=AUTH_ERRORS)


def fleet_row(request: Request, probe: ProbeInfo) -> ProbeOut:
    """The probe's registry row with what its agent last reported and the schedule it should run."""
    row: dict[str, Any] = asdict(probe)
    service: ScheduleService | None = getattr(request.app.state, "schedules", None)
    if service is None:
        return ProbeOut(**row)
    expected = service.for_probe(probe)
    report = service.reports.latest.get(probe.probe_id)
    row["schedule_expected_version"] = expected.version if expected is not None else None
    if report is not None:
        row.update(
            agent_version=report.agent_version,
            agent_report_ms=report.received_ms,
            schedule_name=report.schedule_name,
            schedule_version=report.schedule_version,
            schedule_refused_version=report.refused_version,
            schedule_refused_reason=report.refused_reason,
            queue_batches=report.queue_batches,
            data_month=report.data_month,
            data_used_bytes=report.data_used_bytes,
            data_budget_bytes=report.data_budget_bytes,
            tests_skipped_budget=report.tests_skipped_budget,
            radio_technology=report.radio_technology,
            radio_operator=report.radio_operator,
            rsrp_dbm=report.rsrp_dbm,
            sinr_db=report.sinr_db,
        )
    row["schedule_state"] = schedule_state_of(expected, report)
    return ProbeOut(**row)


def schedule_state_of(expected: ProbeSchedule | None, report: AgentReport | None) -> str:
    """current / pending / refused / local / unknown (ProbeOut.schedule_state)."""
    if report is None:
        return "unknown"
    if expected is None:
        return "local" if report.schedule_version is None else "current"
    if (report.schedule_version, report.schedule_digest) == (expected.version, expected.digest):
        return "current"
    if report.refused_version is not None and report.refused_version >= expected.version:
        return "refused"
    # Same tests under a newer document version are still what the server wants.
    if report.schedule_digest == expected.digest:
        return "current"
    return "pending"


@router.get(
    "/probes",
    response_model=ProbeList,
    responses={**CSV_OR_JSON, **LIST_TOO_LONG},
    summary="the probe fleet: registry, last batch, clock, agent version, schedule, queue, radio, data use",
)
def list_probes(
    request: Request,
    principal: CurrentPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    commune: Annotated[str | None, Query(description="only probes in this commune (code)")] = None,
    operator: Annotated[str | None, Query(description="only probes of this operator")] = None,
    state: Annotated[
        Literal["online", "offline", "unknown"] | None, Query(description="only probes in this state")
    ] = None,
    schedule_state: Annotated[
        Literal["current", "pending", "refused", "local", "unknown"] | None,
        Query(description="only probes whose schedule is in this state"),
    ] = None,
    format: Format = "json",
) -> ProbeList | Response:
    operator = principal.operator_scope(operator)
    probes = store.probes()
    out = [
        fleet_row(request, p)
        for p in probes
        if (commune is None or p.commune == commune)
        and (operator is None or p.operator == operator)
        and (state is None or p.status == state)
    ]
    if schedule_state is not None:
        out = [p for p in out if p.schedule_state == schedule_state]
    check_list_rows(len(out), settings.api.max_list_rows, "probes")
    if format != "json":
        return table_response(format, (p.model_dump() for p in out), list(ProbeOut.model_fields), "probes")
    return ProbeList(probes=out, total=len(out))


@router.get(
    "/probes/{probe_id}",
    response_model=ProbeDetail,
    responses=NOT_FOUND,
    summary="one probe: status, last seen, hourly completeness, clock quality, state changes",
)
def get_probe(request: Request, principal: CurrentPrincipal, store: StoreDep, probe_id: str) -> ProbeDetail:
    found = store.probes(probe_id)
    if not found or not principal.may_see(found[0].operator):
        raise HTTPException(404, f"no probe {probe_id!r}" + (" of yours" if found else ""))
    probe = found[0]
    repo = ProbeRepo(store)
    now_ms = int(time.time() * 1000)
    windows = repo.windows(probe_id, now_ms - 24 * 3_600_000, now_ms, probe.expected_interval_s)
    return ProbeDetail(
        **fleet_row(request, probe).model_dump(),
        windows=[
            ProbeWindow(
                start_ms=w.start_ms,
                batches=w.batches,
                measurements=w.measurements,
                expected_batches=w.expected_batches,
                completeness_ratio=w.completeness,
            )
            for w in windows
        ],
        state_changes=repo.changes(probe_id),
    )
