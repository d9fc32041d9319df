"""The audit log (admin keys): every write through the API, who, when, what."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.auth import require_role
from api.deps import StoreDep
from api.errors import AUTH_ERRORS, CSV_OR_JSON
from api.export import Format, table_response
from api.schemas import AuditList, AuditOut
from collector.store import audit

router = APIRouter(prefix="/api/v1", tags=["audit"], responses=AUTH_ERRORS)


@router.get(
    "/audit",
    response_model=AuditList,
    responses=CSV_OR_JSON,
    dependencies=[require_role("admin")],
    summary="audit log, newest first",
)
def get_audit(
    store: StoreDep,
    from_: Annotated[datetime | None, Query(alias="from", description="ISO 8601 or Unix seconds")] = None,
    to: Annotated[datetime | None, Query(description="ISO 8601 or Unix seconds")] = None,
    actor: Annotated[str | None, Query(max_length=64, description="a key's name")] = None,
    action: Annotated[str | None, Query(max_length=64, description="e.g. report.upload")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="at most 10,000 (more: 422)")] = 1000,
    format: Format = "json",
) -> AuditList | Response:
    rows = audit.entries(
        store,
        from_ms=_ms(from_),
        to_ms=_ms(to),
        actor=actor,
        action=action,
        limit=limit,
    )
    out = [AuditOut(**r) for r in rows]
    if format != "json":
        return table_response(format, (r.model_dump() for r in out), list(AuditOut.model_fields), "audit")
    return AuditList(entries=out, total=len(out))


def _ms(t: datetime | None) -> int | None:
    if t is None:
        return None
    try:
        return int(t.timestamp() * 1000)
    except (OverflowError, ValueError, OSError):
        return None
