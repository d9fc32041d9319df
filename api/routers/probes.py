"""Registered field probes and their activity."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from api.auth import CurrentPrincipal
from api.errors import AUTH_ERRORS, CSV_OR_JSON, NOT_FOUND
from api.export import Format, table_response
from api.limits import LIST_TOO_LONG, check_list_rows
from api.schemas import ProbeDetail, ProbeList, ProbeOut, ProbeWindow
from collector.store.probes import ProbeRepo

router = APIRouter(prefix="/api/v1", tags=["probes"], responses=AUTH_ERRORS)


@router.get(
    "/probes",
    response_model=ProbeList,
    responses={**CSV_OR_JSON, **LIST_TOO_LONG},
    summary="registered probes, last seen, counts",
)
def list_probes(
    request: Request,
    principal: CurrentPrincipal,
    commune: Annotated[str | None, Query(description="only probes in this commune (code)")] = None,
    operator: Annotated[str | None, Query(description="only probes of this operator")] = None,
    format: Format = "json",
) -> ProbeList | Response:
    operator = principal.operator_scope(operator)
    probes = request.app.state.store.probes()
    out = [
        ProbeOut(**asdict(p))
        for p in probes
        if (commune is None or p.commune == commune) and (operator is None or p.operator == operator)
    ]
    check_list_rows(len(out), request.app.state.settings.api.max_list_rows, "probes")
    if format != "json":
        return table_response(format, (p.model_dump() for p in out), list(ProbeOut.model_fields), "probes")
    return ProbeList(probes=out, total=len(out))


@router.get(
    "/probes/{probe_id}",
    response_model=ProbeDetail,
    responses=NOT_FOUND,
    summary="one probe: status, last seen, hourly completeness, clock quality, state changes",
)
def get_probe(request: Request, principal: CurrentPrincipal, probe_id: str) -> ProbeDetail:
    store = request.app.state.store
    found = store.probes(probe_id)
    if not found or not principal.may_see(found[0].operator):
        raise HTTPException(404, f"no probe {probe_id!r}" + (" of yours" if found else ""))
    probe = found[0]
    repo = ProbeRepo(store)
    now_ms = int(time.time() * 1000)
    windows = repo.windows(probe_id, now_ms - 24 * 3_600_000, now_ms, probe.expected_interval_s)
    return ProbeDetail(
        **asdict(probe),
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
