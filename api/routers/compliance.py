"""QoS compliance per operator, commune and technology against the regulation profiles.

`GET /api/v1/compliance?period=2025-Q3&technology=4G&operator=&commune=&profile=`
`GET /api/v1/compliance/report?month=2025-07&format=html|csv|xlsx` (the monthly report)

Both are heavy queries: run in a worker thread (plain `def` endpoints), under the query gate
(api.max_queries, api.max_queries_per_key: one more is answered 429).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.auth import CurrentPrincipal
from api.compliance import (
    PERIOD_PATTERN,
    Profile,
    Scope,
    Standards,
    evaluate,
    overall,
    parse_period,
)
from api.errors import AUTH_ERRORS, CSV_OR_JSON, TOO_MANY, XLSX_CONTENT
from api.export import Format, table_response, xlsx_download
from api.report import REPORT_COLUMNS, render_monthly_html, render_monthly_xlsx, report_csv_rows
from api.schemas import ComplianceGroup, ComplianceResponse, ComplianceRow, NotJudged, ProfileRef
from collector.mqtt.schema import TECHNOLOGIES
from collector.store.store import Store
from collector.store.units import UnitRepo

router = APIRouter(prefix="/api/v1", tags=["compliance"], responses=AUTH_ERRORS)

MONTH_PATTERN = r"^(20\d\d|2100)-(0[1-9]|1[0-2])$"
TECH_PATTERN = r"^[A-Za-z0-9]{1,16}$"


def _profile_ref(p: Profile) -> ProfileRef:
    return ProfileRef(
        id=p.id,
        version=p.version,
        kind=p.kind,
        reference=p.reference,
        title_vi=p.title_vi,
        title_en=p.title_en,
        technologies=p.technologies,
        effective_from=p.effective_from.isoformat(),
        effective_from_unverified=p.effective_from_unverified,
        effective_from_note=p.effective_from_note,
    )


def compliance(
    request: Request,
    period_text: str,
    technology: str | None,
    operator: str | None,
    commune: str | None,
    profile_id: str | None,
) -> ComplianceResponse:
    """Evaluate every profile that applies; shared by the JSON/CSV endpoint and the monthly report."""
    standards: Standards = request.app.state.standards
    store = request.app.state.store
    try:
        period = parse_period(period_text)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if commune is not None:
        _known_commune(store, commune)
    probe_techs = _probe_technologies(store, operator, commune)
    pairs: list[tuple[str, Profile]] = []
    unjudged: list[str] = []
    if profile_id is not None:
        prof = standards.by_id(profile_id, period.start)
        if prof is None:
            known = sorted({p.id for p in standards.profiles})
            raise HTTPException(
                422, f"profile {profile_id!r} unknown or not in force; known: {', '.join(known)}"
            )
        techs = [technology] if technology else prof.technologies
        if technology and technology not in prof.technologies:
            raise HTTPException(
                422, f"profile {prof.id} covers {', '.join(prof.technologies)}, not {technology}"
            )
        pairs = [(t, prof) for t in techs]
    else:
        techs = [technology] if technology else sorted({*standards.technologies(), *probe_techs})
        for t in techs:
            prof = standards.regulation_for(t, period.start)
            if prof is None:
                if t in probe_techs or t in TECHNOLOGIES:
                    unjudged.append(t)  # a technology the probes measure: said, not hidden
                elif technology:
                    raise HTTPException(
                        422,
                        f"no regulation profile covers technology {t!r} in {period.label}; "
                        f"covered: {', '.join(standards.technologies())}",
                    )
                continue
            pairs.append((t, prof))
    names = UnitRepo(store).names()
    rows: list[ComplianceRow] = []
    groups: list[ComplianceGroup] = []
    for tech, prof in pairs:
        results = evaluate(store, standards, prof, period, Scope(tech, operator, commune))
        by_group: dict[tuple[str, str], list[str]] = {}
        for r in results:
            ind = r.indicator
            marks = prof.unverified_marks(ind, standards.speeds, tech)
            notes = list(r.notes) + [
                f"{what} is our choice: {note}" if note else f"{what} is our choice"
                for what, note in marks
                if what != "limit"  # the limit's note is the indicator's own, already in r.notes
            ]
            by_group.setdefault((r.operator, r.place), []).append(r.status)
            rows.append(
                ComplianceRow(
                    operator=r.operator,
                    commune=r.place,
                    commune_name=names.get(r.place, ""),
                    technology=tech,
                    profile=prof.id,
                    profile_version=prof.version,
                    indicator=ind.id,
                    name_vi=ind.name_vi,
                    name_en=ind.name_en,
                    stat=ind.stat,
                    unit=ind.unit,
                    value=r.value,
                    op=ind.op,
                    limit=r.limit,
                    threshold=r.threshold,
                    status=r.status,
                    passed={"pass": True, "fail": False}.get(r.status),
                    insufficient_data=r.status == "insufficient_data",
                    sample_count=r.sample_count,
                    min_samples=r.min_samples,
                    unverified=bool(marks),
                    unverified_what=[what for what, _ in marks],
                    approximate=r.approximate,
                    not_checked=r.not_checked,
                    note="; ".join(notes),
                )
            )
        for (op, place), statuses in by_group.items():
            groups.append(
                ComplianceGroup(
                    operator=op,
                    commune=place,
                    commune_name=names.get(place, ""),
                    technology=tech,
                    status=overall(statuses),
                    passed=statuses.count("pass"),
                    failed=statuses.count("fail"),
                    insufficient=statuses.count("insufficient_data"),
                )
            )
    not_judged: list[NotJudged] = []
    for tech in unjudged:
        covered = ", ".join(standards.technologies())
        reason = (
            f"no regulation profile in force on {period.start.isoformat()} covers {tech} (the profiles"
            f" cover {covered}): its measurements are kept (GET /api/v1/qos) but not judged"
        )
        places = _probe_places(store, tech, operator, commune)
        not_judged.append(NotJudged(technology=tech, probes=probe_techs.get(tech, 0), reason=reason))
        for op, place in places:
            groups.append(
                ComplianceGroup(
                    operator=op,
                    commune=place,
                    commune_name=names.get(place, ""),
                    technology=tech,
                    status="not_judged",
                    passed=0,
                    failed=0,
                    insufficient=0,
                    reason=reason,
                )
            )
    filters = {
        k: v
        for k, v in (
            ("technology", technology),
            ("operator", operator),
            ("commune", commune),
            ("profile", profile_id),
        )
        if v is not None
    }
    speeds = standards.speeds
    return ComplianceResponse(
        period=period.label,
        from_ms=period.from_ms,
        to_ms=period.to_ms,
        timezone="UTC+07:00",
        filters=filters,
        profiles=[_profile_ref(p) for p in {(p.id, p.version): p for _, p in pairs}.values()],
        declared_speeds={"version": speeds.version, "source": speeds.source, **speeds.unverified},
        groups=groups,
        rows=rows,
        not_judged=not_judged,
    )


def _flat(row: dict[str, object]) -> dict[str, object]:
    """A CSV cell per field: lists joined by '; '."""
    return {k: "; ".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()}


def _known_commune(store: Store, code: str) -> None:
    """422 naming the code unless it is an imported commune or one probes or series stand in:
    an unknown (mistyped) code must not answer an empty, good-looking report."""
    if code in UnitRepo(store).commune_codes():
        return
    conn = store.reader()
    for table in ("probes", "series"):
        if conn.execute(f"SELECT 1 FROM {table} WHERE commune = ? LIMIT 1", (code,)).fetchone():
            return
    raise HTTPException(
        422,
        f"commune {code!r} is unknown: not an imported commune, nor one with probes or data"
        " (GET /api/v1/communes lists them)",
    )


def _probe_technologies(store: Store, operator: str | None, commune: str | None) -> dict[str, int]:
    """Registered probes per technology, in scope."""
    where, args = _probe_scope(operator, commune)
    sql = f"SELECT technology, count(*) FROM probes WHERE {where} GROUP BY technology"
    return {str(t): int(n) for t, n in store.reader().execute(sql, args) if t}


def _probe_places(
    store: Store, tech: str, operator: str | None, commune: str | None
) -> list[tuple[str, str]]:
    where, args = _probe_scope(operator, commune)
    sql = f"SELECT DISTINCT operator, commune FROM probes WHERE {where} AND technology = ? ORDER BY 1, 2"
    return [(str(o), str(c)) for o, c in store.reader().execute(sql, [*args, tech]) if c]


def _probe_scope(operator: str | None, commune: str | None) -> tuple[str, list[str]]:
    where, args = ["1 = 1"], []
    for name, only in (("operator", operator), ("commune", commune)):
        if only:
            where.append(f"{name} = ?")
            args.append(only)
    return " AND ".join(where), args


Technology = Annotated[
    str | None, Query(pattern=TECH_PATTERN, description="4G, 5G, FTTH, ...; default: every covered one")
]
Operator = Annotated[str | None, Query(pattern=r"^[a-z0-9_-]{1,32}$", description="only this operator")]
Commune = Annotated[str | None, Query(max_length=32, description="only this commune (code)")]


@router.get(
    "/compliance",
    response_model=ComplianceResponse,
    responses={**CSV_OR_JSON, **TOO_MANY},
    summary="QCVN compliance per operator, commune, technology and indicator over a period",
)
def get_compliance(
    request: Request,
    principal: CurrentPrincipal,
    period: Annotated[str, Query(pattern=PERIOD_PATTERN, description="YYYY, YYYY-Qn or YYYY-MM (UTC+7)")],
    technology: Technology = None,
    operator: Operator = None,
    commune: Commune = None,
    profile: Annotated[
        str | None,
        Query(pattern=r"^[a-z0-9-]{1,64}$", description="another profile, e.g. decision-1110-2024"),
    ] = None,
    format: Format = "json",
) -> ComplianceResponse | Response:
    operator = principal.operator_scope(operator)
    with request.app.state.query_gate.hold(principal.name):
        out = compliance(request, period, technology, operator, commune, profile)
        if format != "json":
            return table_response(
                format,
                (_flat(r.model_dump()) for r in out.rows),
                list(ComplianceRow.model_fields),
                f"compliance-{period}",
            )
        return out


@router.get(
    "/compliance/report",
    responses={
        200: {"content": {"text/html": {}, "text/csv": {"schema": {"type": "string"}}, **XLSX_CONTENT}},
        **TOO_MANY,
    },
    response_class=Response,
    summary="the monthly compliance report, printable HTML, CSV or XLSX, Vietnamese and English labels",
)
def monthly_report(
    request: Request,
    principal: CurrentPrincipal,
    month: Annotated[str, Query(pattern=MONTH_PATTERN, description="YYYY-MM (UTC+7)")],
    technology: Technology = None,
    operator: Operator = None,
    commune: Commune = None,
    format: Annotated[
        Literal["html", "csv", "xlsx"], Query(description="html (printable), csv or xlsx (an Excel workbook)")
    ] = "html",
) -> Response:
    operator = principal.operator_scope(operator)
    with request.app.state.query_gate.hold(principal.name):
        out = compliance(request, month, technology, operator, commune, None)
        if format == "csv":
            return table_response(format, report_csv_rows(out), REPORT_COLUMNS, f"compliance-report-{month}")
        if format == "xlsx":
            return xlsx_download(render_monthly_xlsx(out, principal.name), f"compliance-report-{month}.xlsx")
        return HTMLResponse(render_monthly_html(out, principal.name))
