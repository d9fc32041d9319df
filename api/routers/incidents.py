"""Incidents: list, get (with symptoms and timeline), acknowledge, resolve, comment.

An operator key sees and acts only on incidents whose `operator` label is its operator
(403 with the reason otherwise); viewers read all, admins act on all. Who acknowledged,
resolved or commented is the key's name; a name typed in the body is kept only as a note.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from alerts.incidents import Incident, IncidentError, IncidentRepo
from api.alert_schemas import (
    CommentIn,
    IncidentAction,
    IncidentDetail,
    IncidentList,
    IncidentOut,
    SymptomOut,
    TimelineEntry,
)
from api.auth import CurrentPrincipal, Principal, require_role, require_token
from api.errors import AUTH_ERRORS, BAD_BODY, NOT_FOUND, ROW_ID_MAX, TOO_MANY
from api.ratelimit import check_write
from api.schemas import ErrorOut
from collector.store import audit

# Acknowledging, resolving and commenting change the record: operators and admins, audited.
Writer = Annotated[Principal, require_role("operator", "admin")]

router = APIRouter(
    prefix="/api/v1", tags=["incidents"], dependencies=[Depends(require_token)], responses=AUTH_ERRORS
)
IncidentId = Annotated[int, Path(ge=1, le=ROW_ID_MAX, description="the incident's id")]


def _repo(request: Request) -> IncidentRepo:
    return IncidentRepo(request.app.state.store)


def _out(inc: Incident, now_ms: int) -> IncidentOut:
    return IncidentOut(
        id=inc.id,
        kind=inc.kind,
        state=inc.state,
        severity=inc.severity,
        entity=inc.entity,
        entity_kind=inc.entity_kind,
        labels=inc.labels,
        annotations=inc.annotations,
        opened_ms=inc.opened_ms,
        acknowledged_ms=inc.acknowledged_ms,
        acknowledged_by=inc.acknowledged_by,
        resolved_ms=inc.resolved_ms,
        resolved_by=inc.resolved_by,
        root_recovered_ms=inc.root_recovered_ms,
        flapping=inc.flapping,
        symptom_count=len(inc.symptoms),
        outage_s=inc.outage_ms(now_ms) / 1000,
    )


def _own(principal: Principal, inc: Incident) -> None:
    """403 unless the key may see and act on `inc` (an operator key: its operator's only)."""
    if principal.is_operator and inc.labels.get("operator") != principal.operator:
        raise HTTPException(
            403,
            f"key {principal.name!r} (role operator) may see and act only on operator "
            f"{principal.operator!r}'s incidents; incident {inc.id} is not labelled "
            f'operator="{principal.operator}"',
        )


def _detail(repo: IncidentRepo, incident_id: IncidentId, principal: Principal) -> IncidentDetail:
    inc = repo.get(incident_id)
    if inc is None:
        raise HTTPException(404, f"no incident {incident_id}")
    _own(principal, inc)
    return IncidentDetail(
        **_out(inc, int(time.time() * 1000)).model_dump(),
        symptoms=[
            SymptomOut(
                entity=s.entity, entity_kind=s.entity_kind, kind=s.kind, start_ms=s.start_ms, end_ms=s.end_ms
            )
            for s in inc.symptoms
        ],
        timeline=[TimelineEntry(**t) for t in repo.timeline(incident_id)],
    )


@router.get("/incidents", response_model=IncidentList, summary="incidents, newest first (history kept)")
def list_incidents(
    request: Request,
    principal: CurrentPrincipal,
    state: Annotated[str | None, Query(pattern="^(open|acknowledged|resolved|active)$")] = None,
    kind: Annotated[str | None, Query(description="rule name, e.g. device_down")] = None,
    entity: Annotated[str | None, Query(description="root-cause entity id")] = None,
    operator: Annotated[
        str | None, Query(description="only this operator's (its `operator` label); an operator key: its own")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="a page: at most 1,000 (more: 422)")] = 100,
    offset: Annotated[int, Query(ge=0, le=ROW_ID_MAX)] = 0,
) -> IncidentList:
    found, total = _repo(request).find(
        state=state,
        kind=kind,
        entity=entity,
        operator=principal.operator_scope(operator),
        limit=limit,
        offset=offset,
    )
    now = int(time.time() * 1000)
    return IncidentList(incidents=[_out(i, now) for i in found], total=total)


@router.get(
    "/incidents/{incident_id}",
    response_model=IncidentDetail,
    responses={**NOT_FOUND, **BAD_BODY},
    summary="one incident: root cause, symptoms, timeline",
)
def get_incident(request: Request, principal: CurrentPrincipal, incident_id: IncidentId) -> IncidentDetail:
    return _detail(_repo(request), incident_id, principal)


def _act(
    request: Request, principal: Principal, incident_id: IncidentId, action: str, note: str, text: str
) -> IncidentDetail:
    check_write(request, principal.name)
    repo = _repo(request)
    inc = repo.get(incident_id)
    if inc is None:
        raise HTTPException(404, f"no incident {incident_id}")
    _own(principal, inc)
    now = int(time.time() * 1000)
    # The actor is the authenticated key; a typed signature goes into the text, marked as a note.
    by = principal.name
    if note and note != by:
        text = f"{text} (note: signed {note!r})".lstrip()
    try:
        if action == "acknowledge":
            repo.acknowledge(incident_id, by, text, now)
        elif action == "resolve":
            repo.resolve(incident_id, by, text, now)
        else:
            repo.comment(incident_id, by, text, now)
    except KeyError:
        raise HTTPException(404, f"no incident {incident_id}") from None
    except IncidentError as exc:
        raise HTTPException(409, str(exc)) from None
    with request.app.state.store.transaction() as conn:
        audit.record(
            conn,
            principal.actor(request),
            f"incident.{action}",
            str(incident_id),
            {"note": note, "text": text},
        )
    return _detail(repo, incident_id, principal)


_ACTION_RESPONSES: dict[int | str, dict[str, object]] = {
    **NOT_FOUND,
    **BAD_BODY,
    **TOO_MANY,
    409: {"model": ErrorOut},
}


@router.post(
    "/incidents/{incident_id}/acknowledge",
    response_model=IncidentDetail,
    responses=_ACTION_RESPONSES,
    summary="acknowledge: someone is on it (no notification; noted in the timeline, by the key's name)",
)
def acknowledge(
    request: Request, principal: Writer, incident_id: IncidentId, body: IncidentAction
) -> IncidentDetail:
    return _act(request, principal, incident_id, "acknowledge", body.by, body.comment)


@router.post(
    "/incidents/{incident_id}/resolve",
    response_model=IncidentDetail,
    responses=_ACTION_RESPONSES,
    summary="resolve by hand; receivers that were told get the resolved notice",
)
def resolve(
    request: Request, principal: Writer, incident_id: IncidentId, body: IncidentAction
) -> IncidentDetail:
    return _act(request, principal, incident_id, "resolve", body.by, body.comment)


@router.post(
    "/incidents/{incident_id}/comments",
    response_model=IncidentDetail,
    responses={**NOT_FOUND, **BAD_BODY, **TOO_MANY},
    summary="add a comment to the timeline",
)
def comment(request: Request, principal: Writer, incident_id: IncidentId, body: CommentIn) -> IncidentDetail:
    return _act(request, principal, incident_id, "comment", body.by, body.text)
