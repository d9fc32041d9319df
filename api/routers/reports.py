"""Reports for the plan's KPIs: uploaded as CSV or JSON, validated line by line, versioned, audited."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from api.auth import CurrentPrincipal, require_role
from api.deps import PlanDep, SettingsDep, StoreDep
from api.errors import AUTH_ERRORS, CSV_OR_JSON, ERR, NOT_FOUND, TOO_MANY
from api.export import Format, table_response
from api.limits import LIST_TOO_LONG, check_capped
from api.ratelimit import check_write
from api.schemas import ReportDetail, ReportList, ReportOut, ReportValueOut
from api.uploads import UPLOAD_BODY, format_of, off_loop, parse, read_upload, sha256_hex, table_error
from collector.inventory.tabular import Errors, NumberFormat, TableError
from collector.store.reports import ReportRepo
from collector.store.units import UnitRepo
from compliance.plan import validate_report

router = APIRouter(prefix="/api/v1", tags=["reports"], responses=AUTH_ERRORS)


@router.post(
    "/reports",
    response_model=ReportDetail,
    status_code=201,
    openapi_extra=UPLOAD_BODY,
    responses={**TOO_MANY, 413: {**ERR, "description": "larger than api.max_upload_bytes"}},
    dependencies=[require_role("operator", "admin")],
    summary="upload a report (CSV or JSON rows); validated with line numbers, stored as a new version",
)
async def upload_report(
    request: Request,
    principal: CurrentPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    plan: PlanDep,
    kind: Annotated[str, Query(pattern=r"^[a-z0-9_]{1,64}$", description="a report kind of the plan")],
    year: Annotated[int, Query(ge=2000, le=2100, description="the year the figures are for")],
    operator: Annotated[
        str | None, Query(pattern=r"^[a-z0-9_-]{1,32}$", description="operator reports: whose (admin keys)")
    ] = None,
    note: Annotated[str, Query(max_length=500, description="free text kept with the report")] = "",
    format: Annotated[
        Literal["csv", "json"] | None, Query(description="csv or json; default: from Content-Type")
    ] = None,
    number_format: Annotated[
        NumberFormat,
        Query(
            description="how the file writes numbers: vi (3.760.000; 1.234,5), en (3,760,000; 1,234.5),"
            " plain (1234.5), or auto: from all the file's values together; a value that reads"
            " two ways in an auto file (12.000) is refused"
        ),
    ] = "auto",
) -> ReportDetail:
    spec = plan.reports.get(kind)
    if spec is None:
        raise HTTPException(422, f"report kind {kind!r} is unknown; known: {', '.join(plan.reports)}")
    registry = settings.kpi.operators
    if spec.uploaded_by == "department":
        if principal.role != "admin":
            raise HTTPException(403, f"{kind} reports are the department's: they need an admin key")
        if operator is not None:
            raise HTTPException(422, f"{kind} reports belong to no operator; leave out 'operator'")
        owner = ""
    else:
        if principal.is_operator:
            owner = principal.operator_scope(operator) or ""
        elif operator is None:
            raise HTTPException(422, f"{kind} reports belong to an operator: name it with 'operator='")
        else:
            owner = operator
        if owner not in registry:
            # A typo ('viettell') would otherwise be a new operator whose figures add to the KPIs.
            raise HTTPException(
                422,
                f"operator {owner!r} is not registered; registered: {', '.join(registry)} (kpi.operators)",
            )
    body = await read_upload(request, principal)
    fmt = format_of(request, format)
    max_rows = settings.api.max_upload_rows

    def save() -> ReportDetail:
        table = parse(body, fmt, f"{kind} report", max_rows)
        errors = Errors()
        units = UnitRepo(store)
        villages = {v["code"]: v["commune"] for v in units.villages()} if spec.rows == "village" else None
        values = validate_report(
            spec, table, units.commune_codes(), errors, villages=villages, number_format=number_format
        )
        try:
            errors.raise_if_any()
        except TableError as exc:
            raise table_error(exc, f"{kind} report") from None
        repo = ReportRepo(store)
        meta = repo.add(
            kind=kind,
            year=year,
            operator=owner,
            fmt=fmt,
            sha256=sha256_hex(body),
            rows=len(table.rows),
            note=note,
            values=values,
            actor=principal.actor(request),
        )
        return ReportDetail(**_out(meta, repo.states()), values=[ReportValueOut(**asdict(v)) for v in values])

    return await off_loop(save)


def _out(meta: dict[str, Any], states: dict[int, tuple[str, int | None]]) -> dict[str, Any]:
    state, by = states.get(meta["report_id"], ("current", None))
    return {**meta, "state": state, "replaced_by": by}


@router.post(
    "/reports/{report_id}/withdraw",
    response_model=ReportDetail,
    responses={**NOT_FOUND, **TOO_MANY},
    dependencies=[require_role("admin")],
    summary="withdraw a report version (kept and audited; the KPIs read the latest version not withdrawn)",
)
def withdraw_report(
    request: Request,
    principal: CurrentPrincipal,
    store: StoreDep,
    report_id: int,
    reason: Annotated[str, Query(min_length=1, max_length=500, description="why: kept in the audit log")],
) -> ReportDetail:
    check_write(request, principal.name)
    repo = ReportRepo(store)
    meta = repo.withdraw(report_id, reason, principal.actor(request)) if 0 < report_id < 2**62 else None
    if meta is None:
        raise HTTPException(404, f"no report {report_id}")
    return ReportDetail(
        **_out(meta, repo.states()), values=[ReportValueOut(**asdict(v)) for v in repo.values(report_id)]
    )


@router.get(
    "/reports",
    response_model=ReportList,
    responses={**CSV_OR_JSON, **LIST_TOO_LONG},
    summary="uploaded reports, newest first",
)
def list_reports(
    principal: CurrentPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
    operator: Annotated[str | None, Query(max_length=32)] = None,
    format: Format = "json",
) -> ReportList | Response:
    cap = settings.api.max_list_rows
    # One row over the cap is read (SQL LIMIT), never every report.
    rows = ReportRepo(store).find(
        kind=kind, year=year, operator=principal.operator_scope(operator), limit=cap + 1
    )
    check_capped(len(rows), cap, "reports")
    states = ReportRepo(store).states()
    out = [ReportOut(**_out(r, states)) for r in rows]
    if format != "json":
        return table_response(format, (r.model_dump() for r in out), list(ReportOut.model_fields), "reports")
    return ReportList(reports=out, total=len(out))


@router.get(
    "/reports/{report_id}",
    response_model=ReportDetail,
    responses=NOT_FOUND,
    summary="one report, every value",
)
def get_report(principal: CurrentPrincipal, store: StoreDep, report_id: int) -> ReportDetail:
    repo = ReportRepo(store)
    meta = repo.get(report_id) if 0 < report_id < 2**62 else None
    if meta is None or (principal.is_operator and meta["operator"] != principal.operator):
        raise HTTPException(404, f"no report {report_id}" + (" of yours" if meta else ""))
    return ReportDetail(
        **_out(meta, repo.states()), values=[ReportValueOut(**asdict(v)) for v in repo.values(report_id)]
    )
