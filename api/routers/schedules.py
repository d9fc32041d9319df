"""Central measurement schedules: the department's test sets per probe group, and the probes' side.

Admin keys read and replace the schedules (``probes.schedules_file``; every write audited).
Probes fetch their own schedule and send their status with their own token (the HTTPS
fallback of the retained MQTT topics; docs/probe-agent.md, "Central schedules").
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from api.auth import CurrentPrincipal, require_role
from api.errors import AUTH_ERRORS, BAD_BODY, ERR
from api.ratelimit import check_write
from api.routers.ingest import _bearer, _probe_of
from collector.probe_schedules import (
    ScheduleConflict,
    ScheduleEntry,
    ScheduleError,
    ScheduleService,
)
from collector.store import audit
from probes.agent.schedule import canonical_json

router = APIRouter(prefix="/api/v1", tags=["schedules"])
_NOT_CONFIGURED: dict[int | str, dict[str, Any]] = {
    404: {**ERR, "description": "no schedules file configured, or no such probe"}
}


class ScheduleDocOut(BaseModel):
    version: int = Field(description="monotonic; every change raises it by one")
    digest: str = Field(description="SHA-256 of the schedules as canonical JSON")
    schedules: list[ScheduleEntry]


class ScheduleDocIn(BaseModel):
    schedules: list[ScheduleEntry] = Field(max_length=10_000)
    expected_version: int | None = Field(
        None, description="refuse (409) unless this is the running version: no lost concurrent edit"
    )


class ScheduleWriteOut(ScheduleDocOut):
    audit_id: int


class ProbeScheduleOut(BaseModel):
    probe_id: str
    name: str | None = Field(description="the schedule that fits the probe best; null: none fits")
    version: int | None
    digest: str | None
    schedule: dict[str, Any] | None = Field(description="the message the probe receives")


def _service(request: Request) -> ScheduleService:
    service: ScheduleService | None = getattr(request.app.state, "schedules", None)
    if service is None:
        raise HTTPException(404, "no measurement schedules here: set probes.schedules_file")
    return service


def _doc_out(service: ScheduleService) -> dict[str, Any]:
    doc = service.doc
    schedules = [s.model_dump(mode="json") for s in doc.schedules]
    return {
        "version": doc.version,
        "digest": hashlib.sha256(canonical_json(schedules)).hexdigest(),
        "schedules": doc.schedules,
    }


@router.get(
    "/schedules",
    response_model=ScheduleDocOut,
    responses={**AUTH_ERRORS, **_NOT_CONFIGURED},
    dependencies=[require_role("admin")],
    summary="the measurement schedules in force (per commune / operator / technology)",
)
def get_schedules(request: Request) -> ScheduleDocOut:
    return ScheduleDocOut(**_doc_out(_service(request)))


@router.put(
    "/schedules",
    response_model=ScheduleWriteOut,
    responses={
        **AUTH_ERRORS,
        **_NOT_CONFIGURED,
        **BAD_BODY,
        409: {**ERR, "description": "expected_version is not the running version"},
    },
    dependencies=[require_role("admin")],
    summary="replace the measurement schedules (version + 1; published to every probe; audited)",
)
async def put_schedules(
    request: Request, principal: CurrentPrincipal, body: ScheduleDocIn
) -> ScheduleWriteOut:
    check_write(request, principal.name)
    service = _service(request)
    store = request.app.state.store

    def write() -> ScheduleWriteOut:
        with store.transaction() as conn:
            try:
                doc = service.replace(body.schedules, expected_version=body.expected_version)
            except ScheduleConflict as exc:
                raise HTTPException(409, f"{exc}; read them again and retry") from None
            except ScheduleError as exc:
                raise HTTPException(422, str(exc)) from None
            out = _doc_out(service)
            aid = audit.record(
                conn,
                principal.actor(request),
                "schedules.replace",
                "schedules",
                {
                    "version": doc.version,
                    "digest": out["digest"],
                    "schedules": [s.name for s in doc.schedules],
                },
            )
        return ScheduleWriteOut(**out, audit_id=aid)

    return await asyncio.to_thread(write)


@router.get(
    "/schedules/probes/{probe_id}",
    response_model=ProbeScheduleOut,
    responses={**AUTH_ERRORS, **_NOT_CONFIGURED},
    dependencies=[require_role("admin")],
    summary="the schedule one probe gets (the most specific that fits it)",
)
def probe_schedule(request: Request, probe_id: str) -> ProbeScheduleOut:
    service = _service(request)
    found = request.app.state.store.probes(probe_id)
    if not found:
        raise HTTPException(404, f"no probe {probe_id!r}")
    ps = service.for_probe(found[0])
    if ps is None:
        return ProbeScheduleOut(probe_id=probe_id, name=None, version=None, digest=None, schedule=None)
    return ProbeScheduleOut(
        probe_id=probe_id,
        name=ps.name,
        version=ps.version,
        digest=ps.digest,
        schedule=orjson.loads(ps.message),
    )


# -- the probes' side (their own token, as POST /api/v1/ingest) --------------------------------

_PROBE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {**ERR, "description": "no or unknown probe token"},
    429: {**ERR, "description": "the probe calls faster than api.ingest_rate_per_s"},
}


@router.get(
    "/probe/schedule",
    responses={
        **_PROBE_ERRORS,
        200: {"content": {"application/json": {}}, "description": "the probe's schedule message"},
        404: {**ERR, "description": "no schedule fits this probe (it runs its own tests)"},
    },
    summary="the calling probe's schedule (HTTPS fallback of its retained MQTT topic)",
)
def my_schedule(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Response:
    probe_id = _probe_of(request, creds)
    service = _service(request)
    found = request.app.state.store.probes(probe_id)
    ps = service.for_probe(found[0]) if found else None
    if ps is None:
        raise HTTPException(404, f"no schedule fits probe {probe_id!r}")
    return Response(ps.message, media_type="application/json")


@router.post(
    "/probe/status",
    status_code=204,
    responses={**_PROBE_ERRORS, 422: {**ERR, "description": "not a status report of this probe"}},
    summary="the calling probe's status report (HTTPS fallback of its retained MQTT topic)",
)
async def my_status(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Response:
    probe_id = _probe_of(request, creds)
    service = _service(request)
    body = await request.body()
    # Kept in the store too (a thread: it writes), so a restart of the server does not lose it.
    if not body or await asyncio.to_thread(service.take_https_report, probe_id, body) is None:
        raise HTTPException(422, "not a v1 status report of this probe (see docs/probe-agent.md)")
    return Response(status_code=204)
