"""Silences and maintenance windows: list, create, expire.

Both mute notifications of matching incidents while in force; maintenance windows also
take their minutes out of availability.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from alerts.silences import Silence, SilenceRepo
from api.alert_schemas import MatcherOut, SilenceIn, SilenceList, SilenceOut
from api.auth import Principal, require_role, require_token
from api.errors import AUTH_ERRORS, BAD_BODY, NOT_FOUND, ROW_ID_MAX
from collector.matchers import MatcherError
from collector.store import audit

# Silences and maintenance change what everyone is told: operators (their own network) and admins.
Writer = Annotated[Principal, require_role("operator", "admin")]

router = APIRouter(
    prefix="/api/v1", tags=["silences"], dependencies=[Depends(require_token)], responses=AUTH_ERRORS
)
SilenceId = Annotated[int, Path(ge=1, le=ROW_ID_MAX, description="the silence's or window's id")]

Kind = Literal["silence", "maintenance"]
_PATHS: dict[Kind, str] = {"silence": "/silences", "maintenance": "/maintenance"}


def _out(s: Silence, now_ms: int) -> SilenceOut:
    return SilenceOut(
        id=s.id,
        kind=s.kind,
        matchers=[MatcherOut(**m.as_dict()) for m in s.matchers],
        starts_ms=s.starts_ms,
        ends_ms=s.ends_ms,
        creator=s.creator,
        comment=s.comment,
        created_ms=s.created_ms,
        status=s.status(now_ms),
    )


def _register(kind: Kind) -> None:
    path = _PATHS[kind]
    word = "silences" if kind == "silence" else "maintenance windows"

    def listing(
        request: Request,
        include_expired: Annotated[bool, Query(description="also those that ended (history)")] = False,
    ) -> SilenceList:
        now = int(time.time() * 1000)
        found = SilenceRepo(request.app.state.store).find(kind, since_ms=0 if include_expired else now)
        return SilenceList(silences=[_out(s, now) for s in found], total=len(found))

    def create(request: Request, principal: Writer, body: SilenceIn) -> SilenceOut:
        now = int(time.time() * 1000)
        if principal.is_operator and f'operator="{principal.operator}"' not in [
            m.replace(" ", "") for m in body.matchers
        ]:
            # An operator's key mutes only its own network.
            raise HTTPException(
                403, f'an operator key needs the matcher operator="{principal.operator}" among its matchers'
            )
        starts = int(body.starts_at.timestamp() * 1000) if body.starts_at else now
        try:
            s = SilenceRepo(request.app.state.store).create(
                kind,
                body.matchers,
                starts,
                int(body.ends_at.timestamp() * 1000),
                body.creator,
                body.comment,
                now,
            )
        except (MatcherError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from None
        with request.app.state.store.transaction() as conn:
            audit.record(
                conn, principal.actor(request), f"{kind}.create", str(s.id), body.model_dump(mode="json")
            )
        return _out(s, now)

    def expire(request: Request, principal: Writer, silence_id: SilenceId) -> SilenceOut:
        repo = SilenceRepo(request.app.state.store)
        found = repo.get(silence_id)
        if found is None or found.kind != kind:
            raise HTTPException(404, f"no {kind} {silence_id}")
        now = int(time.time() * 1000)
        if principal.is_operator and not any(
            m.name == "operator" and m.op == "=" and m.value == principal.operator for m in found.matchers
        ):
            raise HTTPException(403, f"{kind} {silence_id} is not limited to operator {principal.operator!r}")
        expired = repo.expire(silence_id, now)
        assert expired is not None
        with request.app.state.store.transaction() as conn:
            audit.record(conn, principal.actor(request), f"{kind}.expire", str(silence_id), {})
        return _out(expired, now)

    router.add_api_route(
        path, listing, methods=["GET"], response_model=SilenceList, summary=f"{word} in force"
    )
    router.add_api_route(
        path,
        create,
        methods=["POST"],
        response_model=SilenceOut,
        status_code=201,
        responses={**BAD_BODY},
        summary=f"create one of the {word} (label matchers, start, end, creator, comment)",
        name=f"create_{kind}",
    )
    router.add_api_route(
        f"{path}/{{silence_id}}",
        expire,
        methods=["DELETE"],
        response_model=SilenceOut,
        responses={**NOT_FOUND},
        summary=f"end one of the {word} now (kept for history)",
        name=f"expire_{kind}",
    )


_register("silence")
_register("maintenance")
