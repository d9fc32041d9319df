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
from api.auth import CurrentPrincipal, Principal, require_role, require_token
from api.errors import AUTH_ERRORS, BAD_BODY, NOT_FOUND, ROW_ID_MAX, TOO_MANY
from api.limits import LIST_TOO_LONG, check_capped
from api.ratelimit import check_write
from collector.store import audit
from ground.matchers import REFUSED, MatcherError, parse_matchers

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
        refused=s.refused,
    )


def _own(principal: Principal, s: Silence, word: str) -> None:
    """403 unless the key may see and act on `s`: an operator key only on those limited to its
    operator (viewers read all, admins act on all)."""
    if principal.is_operator and not s.limited_to(principal.operator or ""):
        raise HTTPException(
            403,
            f"key {principal.name!r} (role operator) may see and act only on operator "
            f"{principal.operator!r}'s {word}; {s.kind} {s.id} is not limited to "
            f'operator="{principal.operator}"',
        )


def _register(kind: Kind) -> None:
    path = _PATHS[kind]
    word = "silences" if kind == "silence" else "maintenance windows"

    def listing(
        request: Request,
        principal: CurrentPrincipal,
        include_expired: Annotated[bool, Query(description="also those that ended (history)")] = False,
        operator: Annotated[
            str | None, Query(description='only those limited to this operator (an `operator="..."` matcher)')
        ] = None,
    ) -> SilenceList:
        now = int(time.time() * 1000)
        cap: int = request.app.state.settings.api.max_list_rows
        # One row over the cap is read (SQL LIMIT), never the whole history.
        found = SilenceRepo(request.app.state.store).find(
            kind,
            since_ms=0 if include_expired else now,
            limit=cap + 1,
            operator=principal.operator_scope(operator),
        )
        check_capped(len(found), cap, word)
        return SilenceList(silences=[_out(s, now) for s in found], total=len(found))

    def get_one(request: Request, principal: CurrentPrincipal, silence_id: SilenceId) -> SilenceOut:
        found = SilenceRepo(request.app.state.store).get(silence_id)
        if found is None or found.kind != kind:
            raise HTTPException(404, f"no {kind} {silence_id}")
        _own(principal, found, word)
        return _out(found, int(time.time() * 1000))

    def create(request: Request, principal: Writer, body: SilenceIn) -> SilenceOut:
        check_write(request, principal.name)
        now = int(time.time() * 1000)
        try:
            parsed = parse_matchers(body.matchers)
        except MatcherError as exc:
            REFUSED.labels(where="write").inc()
            raise HTTPException(422, str(exc)) from None
        if principal.is_operator and {m.value for m in parsed if m.name == "operator" and m.op == "="} != {
            principal.operator
        }:
            # An operator's key mutes only its own network.
            raise HTTPException(
                403,
                f"key {principal.name!r} (role operator) may create {word} only for operator "
                f'{principal.operator!r}: add the matcher operator="{principal.operator}" (and no other '
                "operator=...)",
            )
        starts = int(body.starts_at.timestamp() * 1000) if body.starts_at else now
        # Who created it is the key; a name typed in the body is kept only as a note.
        comment = body.comment
        if body.creator and body.creator != principal.name:
            comment = f"{comment} (note: signed {body.creator!r})".lstrip()
        try:
            s = SilenceRepo(request.app.state.store).create(
                kind,
                [str(m) for m in parsed],
                starts,
                int(body.ends_at.timestamp() * 1000),
                principal.name,
                comment,
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
        check_write(request, principal.name)
        repo = SilenceRepo(request.app.state.store)
        found = repo.get(silence_id)
        if found is None or found.kind != kind:
            raise HTTPException(404, f"no {kind} {silence_id}")
        now = int(time.time() * 1000)
        _own(principal, found, word)
        expired = repo.expire(silence_id, now)
        assert expired is not None
        with request.app.state.store.transaction() as conn:
            audit.record(conn, principal.actor(request), f"{kind}.expire", str(silence_id), {})
        return _out(expired, now)

    router.add_api_route(
        path,
        listing,
        methods=["GET"],
        response_model=SilenceList,
        responses=LIST_TOO_LONG,
        summary=f"{word} in force (an operator key: its operator's only)",
        name=f"list_{kind}",
    )
    router.add_api_route(
        f"{path}/{{silence_id}}",
        get_one,
        methods=["GET"],
        response_model=SilenceOut,
        responses={**NOT_FOUND},
        summary=f"one of the {word}",
        name=f"get_{kind}",
    )
    router.add_api_route(
        path,
        create,
        methods=["POST"],
        response_model=SilenceOut,
        status_code=201,
        responses={**BAD_BODY, **TOO_MANY},
        summary=f"create one of the {word} (label matchers, start, end, creator, comment)",
        name=f"create_{kind}",
    )
    router.add_api_route(
        f"{path}/{{silence_id}}",
        expire,
        methods=["DELETE"],
        response_model=SilenceOut,
        responses={**NOT_FOUND, **TOO_MANY},
        summary=f"end one of the {word} now (kept for history)",
        name=f"expire_{kind}",
    )


_register("silence")
_register("maintenance")
