"""Registered field probes and their activity."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from api.auth import require_token
from api.schemas import ErrorOut, ProbeDetail, ProbeList, ProbeOut, ProbeWindow
from collector.store.probes import ProbeRepo

router = APIRouter(prefix="/api/v1", tags=["probes"], dependencies=[Depends(require_token)])


@router.get("/probes", response_model=ProbeList, summary="registered probes, last seen, counts")
def list_probes(
    request: Request,
    commune: Annotated[str | None, Query(description="only probes in this commune (code)")] = None,
    operator: Annotated[str | None, Query(description="only probes of this operator")] = None,
) -> ProbeList:
    probes = request.app.state.store.probes()
    out = [
        ProbeOut(**asdict(p))
        for p in probes
        if (commune is None or p.commune == commune) and (operator is None or p.operator == operator)
    ]
    return ProbeList(probes=out, total=len(out))


@router.get(
    "/probes/{probe_id}",
    response_model=ProbeDetail,
    responses={404: {"model": ErrorOut}},
    summary="one probe: status, last seen, hourly completeness, clock quality, state changes",
)
def get_probe(request: Request, probe_id: str) -> ProbeDetail:
    store = request.app.state.store
    found = store.probes(probe_id)
    if not found:
        raise HTTPException(404, f"no probe {probe_id!r}")
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
