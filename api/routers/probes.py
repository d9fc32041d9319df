"""Registered field probes and their activity."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from api.auth import require_token
from api.schemas import ProbeList, ProbeOut

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
