"""Administrative units: communes (xã/phường) with their villages; imports by admin keys."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.auth import CurrentPrincipal, require_role
from api.deps import SettingsDep, StoreDep
from api.errors import AUTH_ERRORS, CSV_OR_JSON, ERR, TOO_MANY
from api.export import Format, table_response
from api.limits import LIST_TOO_LONG, check_list_rows
from api.schemas import CommuneList, CommuneOut, ImportResult, VillageList, VillageOut
from api.uploads import UPLOAD_BODY, format_of, off_loop, parse, read_upload, sha256_hex, table_error
from collector.inventory.tabular import Errors, TableError
from collector.inventory.units import parse_communes, parse_villages
from collector.store import audit
from collector.store.units import UnitRepo

router = APIRouter(prefix="/api/v1", tags=["units"], responses=AUTH_ERRORS)
UploadFormat = Annotated[
    Literal["csv", "json"] | None, Query(description="csv or json; default: from Content-Type")
]
_UPLOAD_ERRORS = {**TOO_MANY, 413: {**ERR, "description": "larger than api.max_upload_bytes"}}


_LIST_ERRORS = {**CSV_OR_JSON, **LIST_TOO_LONG}


@router.get("/communes", response_model=CommuneList, responses=_LIST_ERRORS, summary="communes and wards")
def list_communes(
    principal: CurrentPrincipal, store: StoreDep, settings: SettingsDep, format: Format = "json"
) -> CommuneList | Response:
    found = UnitRepo(store).communes()
    check_list_rows(len(found), settings.api.max_list_rows, "communes")
    out = [CommuneOut(**c) for c in found]
    if format != "json":
        return table_response(
            format, (c.model_dump() for c in out), list(CommuneOut.model_fields), "communes"
        )
    return CommuneList(communes=out, total=len(out))


@router.get("/villages", response_model=VillageList, responses=_LIST_ERRORS, summary="villages, by commune")
def list_villages(
    principal: CurrentPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    commune: Annotated[str | None, Query(max_length=32, description="only this commune's")] = None,
    format: Format = "json",
) -> VillageList | Response:
    found = UnitRepo(store).villages(commune)
    check_list_rows(len(found), settings.api.max_list_rows, "villages")
    out = [VillageOut(**v) for v in found]
    if format != "json":
        return table_response(
            format, (v.model_dump() for v in out), list(VillageOut.model_fields), "villages"
        )
    return VillageList(villages=out, total=len(out))


@router.post(
    "/units/communes",
    response_model=ImportResult,
    openapi_extra=UPLOAD_BODY,
    responses=_UPLOAD_ERRORS,
    dependencies=[require_role("admin")],
    summary="import communes (code, name, type xa/phuong, lat, lon); upsert by code, all or nothing",
)
async def import_communes(
    request: Request,
    principal: CurrentPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    format: UploadFormat = None,
) -> ImportResult:
    body = await read_upload(request, principal)
    fmt = format_of(request, format)
    max_rows = settings.api.max_upload_rows

    def store_communes() -> ImportResult:
        table = parse(body, fmt, "communes", max_rows)
        errors = Errors()
        communes = parse_communes(table, errors)
        try:
            errors.raise_if_any()
        except TableError as exc:
            raise table_error(exc, "communes") from None
        with store.transaction() as conn:
            n = UnitRepo.upsert_communes(conn, communes)
            aid = audit.record(
                conn,
                principal.actor(request),
                "units.communes",
                "communes",
                {"rows": n, "sha256": sha256_hex(body)},
            )
        return ImportResult(imported=n, audit_id=aid)

    return await off_loop(store_communes)


@router.post(
    "/units/villages",
    response_model=ImportResult,
    openapi_extra=UPLOAD_BODY,
    responses=_UPLOAD_ERRORS,
    dependencies=[require_role("admin")],
    summary="import villages (code, name, commune); upsert by code, all or nothing",
)
async def import_villages(
    request: Request,
    principal: CurrentPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    format: UploadFormat = None,
) -> ImportResult:
    body = await read_upload(request, principal)
    fmt = format_of(request, format)
    max_rows = settings.api.max_upload_rows

    def store_villages() -> ImportResult:
        table = parse(body, fmt, "villages", max_rows)
        errors = Errors()
        villages = parse_villages(table, UnitRepo(store).commune_codes(), errors)
        try:
            errors.raise_if_any()
        except TableError as exc:
            raise table_error(exc, "villages") from None
        with store.transaction() as conn:
            n = UnitRepo.upsert_villages(conn, villages)
            aid = audit.record(
                conn,
                principal.actor(request),
                "units.villages",
                "villages",
                {"rows": n, "sha256": sha256_hex(body)},
            )
        return ImportResult(imported=n, audit_id=aid)

    return await off_loop(store_villages)
